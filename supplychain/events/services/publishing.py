"""Publishing: events written to the outbox in the caller's transaction, announced on commit; inbound messages
on record.

Nothing leaves before commit: a relay kick after commit (throttled by ``Kicker``) hands the rows to the relay.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_guid import get_guid

from supplychain.celery import app as celery_app
from supplychain.core.db import copy_insert, copy_rows
from supplychain.events import kicks, metrics, registry
from supplychain.events.errors import PublishNotAllowed
from supplychain.events.models import AuditEntry, OutboxEvent

logger = logging.getLogger(__name__)

# The relay task, sent by name (tasks.py registers it under this name; settings route it).
RELAY_TASK = "events.relay"
OUTBOX_FIELDS = ["event_id", "type", "version", "source", "occurred_at", "correlation_id", "key", "payload"]
AUDIT_FIELDS = [
    "occurred_at",
    "kind",
    "event_id",
    "event_type",
    "correlation_id",
    "entity_key",
    "subscription",
    "partner",
    "outcome",
    "error",
    "data",
]


def event_setting(name: str, default):
    return getattr(settings, name, default)


# ---- Publish ------------------------------------------------------------------------------------


@dataclass
class NewEvent:
    """One event to publish with ``publish_many``."""

    type: str
    payload: dict
    key: str = ""
    version: int | None = None
    correlation_id: str | None = None
    source: str | None = None  # who published it; the owning app (``supplychain/<app>``) unless given


def publish(
    type: str,
    payload: dict,
    *,
    correlation_id: str | None = None,
    key: str = "",
    version: int | None = None,
    source: str | None = None,
) -> OutboxEvent:
    """Write one event to the outbox in the current transaction; it is relayed after commit.

    The payload is validated against the type's JSON Schema (the newest version unless ``version``
    is given); an invalid one raises ``SchemaError`` naming the field, and nothing is written.
    """
    return publish_many([NewEvent(type, payload, key, version, correlation_id, source)])[0]


@transaction.atomic
def publish_as_caller(
    *, caller, event_type: str, payload: dict, key: str = "", version: int | None = None
) -> OutboxEvent:
    """Publish an event an outside caller (an API user) sends, recorded with ``api/<username>`` as source.

    Internal facts (every type outside the ``platform`` namespace) are published only by the services
    of the app that owns them, so they are refused to every caller, superusers included; a platform
    type needs the permission its schema names. Both refusals raise ``PublishNotAllowed`` (403).
    """
    permission = registry.publish_permission(event_type)
    if permission is None:
        raise PublishNotAllowed(
            f"{event_type} is an internal fact: only the app that owns it publishes it. "
            f"Outside callers publish {registry.PLATFORM_NAMESPACE}.* types.",
            errors={"type": [f"{event_type} may not be published through the API."]},
        )
    if not caller.has_perm(permission):
        raise PublishNotAllowed(
            f"Publishing {event_type} needs the {permission} permission.",
            errors={"type": [f"Needs the {permission} permission."]},
        )
    source = f"api/{caller.get_username()}"[: OutboxEvent._meta.get_field("source").max_length]
    return publish(event_type, payload, key=key, version=version, source=source)


def publish_many(events: Iterable[NewEvent], *, with_keys: bool = True, kick_relay: bool = True) -> list[OutboxEvent]:
    """Publish several events with two INSERTs (a bulk intake publishes hundreds per transaction).

    ``with_keys=False`` skips reading the new rows' primary keys back when the caller does not need them.
    ``kick_relay=False`` sends no relay kick on commit, for a caller whose own kicked task relays them (the
    order intake: the processing task relays what it finds); the beat sweep relays them in any case.
    """
    now = timezone.now()
    correlation_id = current_correlation_id()
    rows = []
    for event in events:
        version = event.version or registry.latest_version(event.type)
        registry.validate(event.type, version, event.payload)
        rows.append(
            OutboxEvent(
                type=event.type,
                version=version,
                source=event.source or f"supplychain/{event.type.split('.', 1)[0]}",
                occurred_at=now,
                correlation_id=event.correlation_id[:100] if event.correlation_id is not None else correlation_id,
                key=str(event.key or "")[:200],
                payload=event.payload,
            )
        )
    if not rows:
        return []
    # Outbox and audit rows together; inside the caller's transaction no savepoint is needed (a failure
    # here fails that transaction, so nothing of it is kept), which saves two round trips.
    with transaction.atomic(savepoint=False):
        copy_insert(OutboxEvent, rows, OUTBOX_FIELDS)
        if with_keys and rows[0].pk is None:  # COPY does not return keys: read them back by the unique event id
            ids = dict(
                OutboxEvent.objects.filter(event_id__in=[row.event_id for row in rows]).values_list("event_id", "id")
            )
            for row in rows:
                row.pk = ids[row.event_id]
                row._state.adding = False
        copy_rows(
            AuditEntry,
            AUDIT_FIELDS,
            (
                (
                    now,
                    AuditEntry.Kind.PUBLISHED,
                    row.event_id,
                    row.type,
                    row.correlation_id,
                    row.key,
                    "",
                    "",
                    "published",
                    "",
                    row.envelope(),
                )
                for row in rows
            ),
        )
        counts: dict[str, int] = defaultdict(int)
        for row in rows:
            counts[row.type] += 1
        announce_published(counts, kick_relay=kick_relay)
    return rows


def announce_published(counts: dict[str, int], *, kick_relay: bool = True) -> None:
    """After commit, count the events written in this transaction and kick the relay.

    ``publish_many`` calls it; so does a caller whose database function wrote its outbox and audit
    rows itself (``stock_reserve``), so those events are counted and relayed exactly the same way.
    """
    transaction.on_commit(lambda: metrics.count_published(counts))
    if kick_relay:
        transaction.on_commit(relay_kicker.kick)


def current_correlation_id() -> str:
    """The correlation id events published now carry (the request's or the task's), as stored."""
    return (get_guid() or "")[:100]


class Kicker:
    """Sends a task after commits, at most once per ``interval`` per process.

    A commit inside the interval schedules one trailing kick, so every committed row is picked up
    within ``interval`` seconds while a busy web process sends a few messages a second, not one per
    transaction. A broker that is down makes the kick fail quietly: the beat sweep picks the rows up
    later. ``send`` sends the task (the relay's by default; the orders' batch processing has its own).
    """

    def __init__(self, interval: float, send: Callable[[], object] | None = None, what: str = "relay"):
        self.interval = interval
        self.what = what
        self._send_task = send or _send_relay
        self._lock = threading.Lock()
        self._last = 0.0
        self._timer: threading.Timer | None = None

    def kick(self) -> None:
        with self._lock:
            if self._timer is not None:
                return
            wait = self._last + self.interval - time.monotonic()
            if wait > 0:
                self._timer = threading.Timer(wait, self._fire)
                self._timer.daemon = True
                self._timer.start()
                return
            self._last = time.monotonic()
        self._send()

    def _fire(self) -> None:
        with self._lock:
            self._timer = None
            self._last = time.monotonic()
        self._send()

    def _send(self) -> None:
        try:
            self._send_task()
        except Exception as exc:  # the rows stay in the database; the sweep picks them up when the broker is back
            logger.warning("%s kick not sent (%s: %s); the sweep will do it", self.what, type(exc).__name__, exc)


def _send_relay() -> None:
    """One relay kick pending at a time, across processes (``kicks``); the relay clears it when it starts."""
    if not kicks.claim(kicks.RELAY):
        return
    try:
        celery_app.send_task(RELAY_TASK, retry=False)
    except Exception:
        kicks.clear(kicks.RELAY)
        raise


relay_kicker = Kicker(event_setting("EVENTS_KICK_INTERVAL", 0.05))


# ---- Inbound messages -----------------------------------------------------------------------------


def record_received(
    *,
    partner: str,
    message_type: str,
    entity_key: str = "",
    outcome: str = "accepted",
    error: str = "",
    data: dict | None = None,
    correlation_id: str | None = None,
) -> AuditEntry:
    """Audit one inbound message (a webhook call, a dropped file), accepted or refused.

    Written outside the caller's transaction on purpose when the caller refuses the message: the
    refusal itself must stay on record.
    """
    return AuditEntry.objects.create(
        occurred_at=timezone.now(),
        kind=AuditEntry.Kind.RECEIVED,
        event_type=message_type[:100],
        correlation_id=correlation_id[:100] if correlation_id is not None else current_correlation_id(),
        entity_key=entity_key[:200],
        partner=partner[:100],
        outcome=outcome[:20],
        error=error,
        data=data or {},
    )
