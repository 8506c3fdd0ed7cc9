"""Writes of the event backbone: publish, relay, deliver, redrive.

Publishing writes an outbox row in the caller's transaction; nothing leaves before commit. The relay
turns committed events into one delivery per matching subscription; delivery tasks claim due
deliveries in batches (``FOR UPDATE SKIP LOCKED``), like SQS receive with a visibility timeout,
run them and record every attempt in the audit log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_guid import get_guid

from supplychain.celery import app as celery_app
from supplychain.core.db import copy_insert, copy_rows
from supplychain.core.errors import DomainError
from supplychain.events import filters, metrics, registry, signals, signing, transport
from supplychain.events.errors import PublishNotAllowed, SubscriptionGone, SubscriptionInvalid
from supplychain.events.models import AuditEntry, Delivery, OutboxEvent, Subscription
from supplychain.events.transport import Outcome

logger = logging.getLogger(__name__)

# The tasks the services send by name (tasks.py registers them under these names; settings route them).
RELAY_TASK = "events.relay"
DELIVER_TASK = "events.deliver"
OPEN = (Delivery.Status.PENDING, Delivery.Status.IN_FLIGHT)
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
ATTEMPT_FIELDS = [*AUDIT_FIELDS, "delivery_id", "attempt", "http_status", "duration_ms", "delay_seconds"]


def _setting(name: str, default):
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


def publish_many(events: Iterable[NewEvent], *, with_keys: bool = True) -> list[OutboxEvent]:
    """Publish several events with two INSERTs (a bulk intake publishes hundreds per transaction).

    ``with_keys=False`` skips reading the new rows' primary keys back when the caller does not need them.
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
        announce_published(counts)
    return rows


def announce_published(counts: dict[str, int]) -> None:
    """After commit, count the events written in this transaction and kick the relay.

    ``publish_many`` calls it; so does a caller whose database function wrote its outbox and audit
    rows itself (``stock_reserve``), so those events are counted and relayed exactly the same way.
    """
    transaction.on_commit(lambda: metrics.count_published(counts))
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
    celery_app.send_task(RELAY_TASK, retry=False)


relay_kicker = Kicker(_setting("EVENTS_KICK_INTERVAL", 0.05))


# ---- Relay --------------------------------------------------------------------------------------


def relay_pending(*, batch_size: int | None = None, max_batches: int | None = None) -> int:
    """Fan committed events out into deliveries; returns how many events were relayed.

    Each batch is claimed with ``FOR UPDATE SKIP LOCKED`` so several relays never take the same
    event, and the unique (event, subscription) constraint makes relaying an event twice harmless.
    """
    batch_size = batch_size or _setting("EVENTS_RELAY_BATCH", 500)
    relayed = batches = 0
    while max_batches is None or batches < max_batches:
        with transaction.atomic():
            events = list(
                OutboxEvent.objects.select_for_update(skip_locked=True)
                .filter(relayed_at__isnull=True)
                .order_by("id")[:batch_size]
            )
            if not events:
                break
            subscriptions = list(Subscription.objects.filter(active=True))
            now = timezone.now()
            pairs = [
                (event.id, subscription)
                for event in events
                for subscription in subscriptions
                if subscription.matches_type(event.type) and filters.matches(subscription.filter_policy, event.payload)
            ]
            _insert_deliveries(pairs, now)
            OutboxEvent.objects.filter(id__in=[event.id for event in events]).update(relayed_at=now)
            touched = {subscription.id: subscription for _, subscription in pairs}
            transaction.on_commit(lambda touched=touched: kick_deliveries(touched.values()))
        relayed += len(events)
        batches += 1
        if len(events) < batch_size:
            break
    return relayed


def _insert_deliveries(pairs: list[tuple[int, Subscription]], now: datetime) -> None:
    """Create one pending delivery per (event id, subscription), skipping pairs that already exist.

    On PostgreSQL a single INSERT … SELECT FROM unnest(ids) ON CONFLICT DO NOTHING: only two integer
    arrays cross the wire, instead of a dozen per-column arrays quoted in Python.
    """
    if not pairs:
        return
    if connection.vendor != "postgresql":
        Delivery.objects.bulk_create(
            [Delivery(event_id=e, subscription=s, visible_at=now, created_at=now) for e, s in pairs],
            ignore_conflicts=True,
            batch_size=1000,
        )
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO events_delivery (event_id, subscription_id, status, attempts, total_attempts, redrive_count,
                                         visible_at, last_error, created_at)
            SELECT e, s, 'pending', 0, 0, 0, %s, '', %s FROM unnest(%s::bigint[], %s::bigint[]) AS t(e, s)
            ON CONFLICT (event_id, subscription_id) DO NOTHING
            """,
            [now, now, [e for e, _ in pairs], [s.id for _, s in pairs]],
        )


def kick_deliveries(subscriptions: Iterable[Subscription], countdown: float | None = None) -> None:
    """Ask a worker on each subscription's queue to drain its due deliveries."""
    for subscription in subscriptions:
        try:
            celery_app.send_task(
                DELIVER_TASK, (subscription.id,), queue=subscription.queue, countdown=countdown, retry=False
            )
        except Exception as exc:  # the deliveries are in the database; the sweep kicks again
            logger.warning("delivery kick for %s not sent (%s); the sweep will", subscription.name, exc)


# ---- Deliver ------------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    claimed: int = 0
    succeeded: int = 0
    retrying: int = 0
    dead: int = 0
    next_retry_in: float | None = field(default=None, repr=False)


def process_deliveries(
    *, subscription_id: int, batch_size: int | None = None, time_budget: float | None = None, worker: str = ""
):
    """Claim and run due deliveries of one subscription until none are due or the budget is spent.

    ``worker`` (the Celery node name) is recorded on each claim: see ``take_back_leases``.
    """
    report = DeliveryReport()
    subscription = Subscription.objects.filter(pk=subscription_id, active=True).first()
    if subscription is None:
        return report
    batch_size = batch_size or _setting("EVENTS_DELIVERY_BATCH", 200)
    problems = subscription.policy_problems()
    if problems:  # a row written past validation (the database, an old row): no attempt can be computed
        _dead_letter_due(subscription, problems, batch_size, report)
        return report
    deadline = time.monotonic() + (time_budget or _setting("EVENTS_TIME_BUDGET", 5.0))
    while time.monotonic() < deadline:
        claimed = _claim(subscription, batch_size, worker)
        if not claimed:
            break
        report.claimed += len(claimed)
        if subscription.target == Subscription.Target.HANDLER:
            _run_handlers(subscription, claimed, report)
        else:
            outcomes = transport.post_deliveries(subscription, claimed)
            with transaction.atomic():
                _record(subscription, claimed, outcomes, report)
        if len(claimed) < batch_size:
            break  # drained: free the worker for the relay and other subscriptions; new events kick anew
    if report.next_retry_in is not None and report.next_retry_in <= _setting("EVENTS_COUNTDOWN_MAX", 300):
        kick_deliveries([subscription], countdown=report.next_retry_in + 0.1)
    return report


def _dead_letter_due(subscription: Subscription, problems: dict, batch_size: int, report: DeliveryReport) -> None:
    """Record one attempt with the policy's error on every due delivery and dead-letter it (alarm raised).

    Fix the subscription, then redrive: nothing is attempted, or crashes and comes back, meanwhile.
    """
    error = "The subscription's delivery settings are invalid, so no attempt can be computed: " + "; ".join(
        f"{name}: {' '.join(messages)}" for name, messages in sorted(problems.items())
    )
    while True:
        with transaction.atomic():
            rows = list(
                Delivery.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("event")
                .filter(subscription=subscription, status__in=OPEN, visible_at__lte=timezone.now())
                .order_by("visible_at", "id")[:batch_size]
            )
            if not rows:
                return
            Delivery.objects.filter(id__in=[d.id for d in rows]).update(
                attempts=F("attempts") + 1, total_attempts=F("total_attempts") + 1
            )
            for delivery in rows:
                delivery.attempts += 1
                delivery.total_attempts += 1
            report.claimed += len(rows)
            _record(subscription, rows, [Outcome(False, 0.0, error[:2000])] * len(rows), report, final=True)


def _lease_seconds() -> float:
    return _setting("EVENTS_LEASE_SECONDS", 60)


def _claim(subscription: Subscription, limit: int, worker: str = "") -> list[Delivery]:
    """Take up to ``limit`` due deliveries and hide them for the lease (SQS receive), leased by ``worker``."""
    if subscription.target == Subscription.Target.HTTP:
        # Never claim more than the lease can cover at the endpoint's timeout.
        posts = max(1, int(_lease_seconds() // max(subscription.timeout_seconds, 0.1)))
        limit = min(limit, posts * subscription.max_batch_size)
    with transaction.atomic():
        now = timezone.now()
        rows = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("event")
            .filter(subscription=subscription, status__in=OPEN, visible_at__lte=now)
            .order_by("visible_at", "id")[:limit]
        )
        if not rows:
            return []
        spent = [d for d in rows if d.attempts >= subscription.max_attempts]
        live = [d for d in rows if d.attempts < subscription.max_attempts]
        if spent:  # a worker died during their last attempt
            lost = [Outcome(ok=False, duration_ms=0.0, error="worker lost during the final attempt")] * len(spent)
            _record(subscription, spent, lost, DeliveryReport(), count_attempt=False)
        visible_at = now + timedelta(seconds=_lease_seconds())
        Delivery.objects.filter(id__in=[d.id for d in live]).update(
            status=Delivery.Status.IN_FLIGHT,
            attempts=F("attempts") + 1,
            total_attempts=F("total_attempts") + 1,
            visible_at=visible_at,
            leased_by=worker[:200],
        )
    for delivery in live:
        delivery.status = Delivery.Status.IN_FLIGHT
        delivery.attempts += 1
        delivery.total_attempts += 1
        delivery.visible_at = visible_at
    return live


def take_back_leases(*, worker: str) -> int:
    """End now the leases ``worker`` holds, and kick their subscriptions; returns how many were taken back.

    For a worker starting under the node name it had: whatever it held then was lost with its process
    (a node name is one live worker), so waiting out the lease would only delay those deliveries. Their
    attempts are redone, so a subscriber may get such a delivery twice (at-least-once).
    """
    if not worker:
        return 0
    with transaction.atomic():
        now = timezone.now()
        held = Delivery.objects.filter(status=Delivery.Status.IN_FLIGHT, leased_by=worker, visible_at__gt=now)
        subscription_ids = set(held.values_list("subscription_id", flat=True))
        taken = held.update(visible_at=now)
        subscriptions = list(
            Subscription.objects.filter(id__in=subscription_ids, active=True).only("id", "queue", "name")
        )
        transaction.on_commit(lambda: kick_deliveries(subscriptions))
    if taken:
        logger.info("took back %d delivery leases held by %s before its restart", taken, worker)
    return taken


def _run_handlers(subscription: Subscription, deliveries: list[Delivery], report: DeliveryReport) -> None:
    """Run an internal handler on the deliveries; their database effects commit with the success marks.

    A batch handler gets all envelopes in one call; if that raises, every event is run on its own
    (each in a savepoint) so only the bad ones fail.
    """
    spec = registry.handlers().get(subscription.handler)
    with transaction.atomic():
        if spec is None:
            missing = Outcome(False, 0.0, f"no handler named {subscription.handler!r} in this worker")
            outcomes = [missing] * len(deliveries)
        elif spec.batch and len(deliveries) > 1:
            started = time.perf_counter()
            try:
                with transaction.atomic():
                    spec.function([delivery.event.envelope() for delivery in deliveries])
            except Exception:  # find the bad ones one by one
                outcomes = [_run_one(spec, delivery) for delivery in deliveries]
            else:
                each = _ms_since(started) / len(deliveries)
                outcomes = [Outcome(True, each)] * len(deliveries)
        else:
            outcomes = [_run_one(spec, delivery) for delivery in deliveries]
        _record(subscription, deliveries, outcomes, report)


def _run_one(spec: registry.HandlerSpec, delivery: Delivery) -> Outcome:
    started = time.perf_counter()
    envelope = delivery.event.envelope()
    try:
        with transaction.atomic():
            spec.function([envelope] if spec.batch else envelope)
    except Exception as exc:  # a failing handler is an attempt outcome, retried by policy
        return Outcome(False, _ms_since(started), f"{type(exc).__name__}: {exc}"[:2000])
    return Outcome(True, _ms_since(started))


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _record(
    subscription: Subscription,
    deliveries: list[Delivery],
    outcomes: list[Outcome],
    report: DeliveryReport,
    *,
    count_attempt: bool = True,
    final: bool = False,
) -> None:
    """Write each attempt's outcome: succeeded, retry at a backoff delay, or dead; audit every attempt.

    ``final`` dead-letters every failure whatever attempts remain; so does a retry delay that cannot
    be computed (its error is added to the attempt's), rather than crashing the task to come back forever.
    """
    now = timezone.now()
    audit = []
    latencies = []
    newly_dead = 0
    for delivery, outcome in zip(deliveries, outcomes, strict=True):
        delay = None
        delivery.last_error = outcome.error
        delivery.last_http_status = outcome.http_status
        if outcome.ok:
            delivery.status = Delivery.Status.SUCCEEDED
            delivery.completed_at = now
            report.succeeded += 1
            latencies.append((now - delivery.event.occurred_at).total_seconds())
            dead = False
        else:
            dead = final or delivery.attempts >= subscription.max_attempts
            if not dead:
                try:
                    delay = subscription.retry_delay(delivery.attempts)
                    visible_at = now + timedelta(seconds=delay)
                except (ArithmeticError, ValueError, TypeError) as exc:
                    delivery.last_error = f"{outcome.error}; no retry delay can be computed ({exc}): dead-lettered"
                    delay, dead = None, True
        if dead:
            delivery.status = Delivery.Status.DEAD
            delivery.dead_at = now
            report.dead += 1
            newly_dead += 1
        elif not outcome.ok:
            delivery.status = Delivery.Status.PENDING
            delivery.visible_at = visible_at
            report.retrying += 1
            report.next_retry_in = delay if report.next_retry_in is None else min(report.next_retry_in, delay)
        event = delivery.event
        audit.append(
            (
                now,
                AuditEntry.Kind.ATTEMPT,
                event.event_id,
                event.type,
                event.correlation_id,
                event.key,
                subscription.name,
                "",
                "succeeded" if outcome.ok else ("dead" if delivery.status == Delivery.Status.DEAD else "failed"),
                delivery.last_error,
                {"counted": count_attempt, "attempt_in_round": delivery.attempts},
                delivery.id,
                delivery.total_attempts,
                outcome.http_status,
                outcome.duration_ms,
                delay,
            )
        )
    _save_outcomes(deliveries, now)
    copy_rows(AuditEntry, ATTEMPT_FIELDS, audit)
    if newly_dead:
        _raise_alarm(subscription)
    elif report.succeeded and subscription.alarm_state == Subscription.Alarm.ALARM:
        _clear_alarm_if_no_dead(subscription)
    durations = [outcome.duration_ms / 1000 for outcome in outcomes]
    results = [outcome.ok for outcome in outcomes]
    transaction.on_commit(lambda: metrics.observe_attempts(subscription.name, durations, results, latencies))


def _save_outcomes(deliveries: list[Delivery], now) -> None:
    """One UPDATE per HTTP status for the successes (the common case), one per row for the rest."""
    succeeded: dict[int | None, list[int]] = defaultdict(list)
    for delivery in deliveries:
        if delivery.status == Delivery.Status.SUCCEEDED:
            succeeded[delivery.last_http_status].append(delivery.id)
        else:
            Delivery.objects.filter(pk=delivery.pk).update(
                status=delivery.status,
                visible_at=delivery.visible_at,
                last_error=delivery.last_error,
                last_http_status=delivery.last_http_status,
                dead_at=delivery.dead_at,
            )
    for http_status, ids in succeeded.items():
        Delivery.objects.filter(id__in=ids).update(
            status=Delivery.Status.SUCCEEDED, completed_at=now, last_error="", last_http_status=http_status
        )


def _raise_alarm(subscription: Subscription) -> None:
    """Fire once when a subscription goes from no dead letters to some (the alarm Slack will hear)."""
    raised = Subscription.objects.filter(pk=subscription.pk, alarm_state=Subscription.Alarm.OK).update(
        alarm_state=Subscription.Alarm.ALARM
    )
    if not raised:
        return
    subscription.alarm_state = Subscription.Alarm.ALARM
    dead = Delivery.objects.filter(subscription=subscription, status=Delivery.Status.DEAD).count()
    publish(
        "events.dead_letters_raised",
        {"subscription": subscription.name, "dead_count": dead, "target": subscription.target},
        key=subscription.name,
    )
    transaction.on_commit(
        lambda: signals.dead_letters_raised.send(sender=Subscription, subscription=subscription, dead_count=dead)
    )


def _clear_alarm_if_no_dead(subscription: Subscription) -> None:
    if not Delivery.objects.filter(subscription=subscription, status=Delivery.Status.DEAD).exists():
        Subscription.objects.filter(pk=subscription.pk).update(alarm_state=Subscription.Alarm.OK)
        subscription.alarm_state = Subscription.Alarm.OK


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


# ---- Sweep and redrive --------------------------------------------------------------------------


def sweep() -> dict:
    """Beat's safety net: relay anything the kicks missed, and kick subscriptions with due deliveries."""
    relayed = relay_pending()
    due = (
        Subscription.objects.filter(
            active=True,
            deliveries__status__in=OPEN,
            deliveries__visible_at__lte=timezone.now(),
        )
        .distinct()
        .only("id", "queue", "name")
    )
    due = list(due)
    kick_deliveries(due)
    return {"relayed": relayed, "kicked": [subscription.name for subscription in due]}


class NothingToRedrive(DomainError):
    status = 400
    type = "nothing_selected"
    title = "Say which dead deliveries to redrive."


def redrive_deliveries(
    *,
    delivery_ids: Iterable[int] | None = None,
    subscription: str | None = None,
    event_type: str | None = None,
    dead_since: datetime | None = None,
    dead_before: datetime | None = None,
    all_dead: bool = False,
    actor: str = "",
) -> int:
    """Give dead deliveries a new round of attempts; their earlier attempts stay in the audit log.

    Select by ids, by subscription name, by event type (pattern allowed with ``*``) and dead-time
    window, or ``all_dead=True``; with no selector at all it refuses rather than redrive everything.
    """
    query = Q(status=Delivery.Status.DEAD)
    selected = all_dead
    if delivery_ids is not None:
        query &= Q(id__in=list(delivery_ids))
        selected = True
    if subscription:
        query &= Q(subscription__name=subscription)
        selected = True
    if event_type:
        prefix = event_type.rstrip("*")
        query &= Q(event__type__startswith=prefix) if event_type.endswith("*") else Q(event__type=event_type)
        selected = True
    if dead_since:
        query &= Q(dead_at__gte=dead_since)
        selected = True
    if dead_before:
        query &= Q(dead_at__lt=dead_before)
        selected = True
    if not selected:
        raise NothingToRedrive("Give delivery ids, a subscription, an event type, a time window, or all.")
    with transaction.atomic():
        rows = list(
            Delivery.objects.select_for_update(of=("self",))
            .select_related("event", "subscription")
            .filter(query)
            .order_by("id")
        )
        if not rows:
            return 0
        now = timezone.now()
        Delivery.objects.filter(id__in=[row.id for row in rows]).update(
            status=Delivery.Status.PENDING,
            attempts=0,
            redrive_count=F("redrive_count") + 1,
            visible_at=now,
            dead_at=None,
        )
        AuditEntry.objects.bulk_create(
            [
                AuditEntry(
                    occurred_at=now,
                    kind=AuditEntry.Kind.REDRIVEN,
                    event_id=row.event.event_id,
                    event_type=row.event.type,
                    correlation_id=row.event.correlation_id,
                    entity_key=row.event.key,
                    subscription=row.subscription.name,
                    delivery_id=row.id,
                    outcome="redriven",
                    data={"actor": actor, "redrive": row.redrive_count + 1, "last_error": row.last_error},
                )
                for row in rows
            ]
        )
        subscriptions = {row.subscription_id: row.subscription for row in rows}
        transaction.on_commit(lambda: kick_deliveries(subscriptions.values()))
    return len(rows)


# ---- Subscriptions ------------------------------------------------------------------------------

# What a caller may set; alarm_state, the previous secret and the timestamps belong to the backbone.
SUBSCRIPTION_FIELDS = (
    "name",
    "description",
    "active",
    "event_types",
    "filter_policy",
    "target",
    "handler",
    "url",
    "secret",
    "max_batch_size",
    "timeout_seconds",
    "queue",
    "max_attempts",
    "initial_interval",
    "backoff_rate",
    "max_interval",
    "jitter",
)
SECRET_GRACE_SECONDS_DEFAULT = 86400  # a rotated-out secret keeps verifying for a day
SECRET_GRACE_SECONDS_MAX = 7 * 86400
EVENT_TYPE_PATTERNS_MAX = 50


def check_subscription(subscription: Subscription, *, new_secret: bool) -> None:
    """Every field rule and bound at once, each under its field name: ``SubscriptionInvalid`` (400)."""
    from django.core.exceptions import ValidationError

    from supplychain.core.identifiers import identifier_validator

    errors: dict[str, list[str]] = {}
    try:
        subscription.full_clean()
    except ValidationError as exc:
        errors.update(exc.message_dict)
    try:
        identifier_validator(subscription.name)
    except ValidationError as exc:
        errors.setdefault("name", []).extend(exc.messages)
    patterns = subscription.event_types
    if isinstance(patterns, list) and (len(patterns) > EVENT_TYPE_PATTERNS_MAX or any(len(p) > 100 for p in patterns)):
        errors.setdefault("event_types", []).append(f"At most {EVENT_TYPE_PATTERNS_MAX} patterns of 100 characters.")
    if new_secret and subscription.secret:
        problem = signing.secret_problem(subscription.secret)
        if problem:
            errors.setdefault("secret", []).append(problem)
    if errors:
        detail = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in errors.items())
        raise SubscriptionInvalid(detail, errors=errors)


@transaction.atomic
def create_subscription(
    *,
    name: str,
    event_types: list[str],
    target: str,
    description: str = "",
    active: bool = True,
    filter_policy: dict | None = None,
    handler: str = "",
    url: str = "",
    secret: str = "",
    max_batch_size: int = 1,
    timeout_seconds: float = 10.0,
    queue: str = "events",
    max_attempts: int = 5,
    initial_interval: float = 1.0,
    backoff_rate: float = 2.0,
    max_interval: float = 3600.0,
    jitter: str = Subscription.Jitter.FULL,
) -> Subscription:
    """Create a subscription after checking every field against its rules and bounds.

    An HTTP subscription without a secret gets a generated ``whsec_`` one (read it from the returned
    object: the API shows it once, in the answer to the creation); a given secret must be
    ``whsec_<base64>`` of 24 to 64 bytes.
    """
    if target == Subscription.Target.HTTP and not secret:
        secret = signing.generate_secret()
    subscription = Subscription(
        name=name,
        description=description,
        active=active,
        event_types=event_types,
        filter_policy={} if filter_policy is None else filter_policy,
        target=target,
        handler=handler,
        url=url,
        secret=secret,
        max_batch_size=max_batch_size,
        timeout_seconds=timeout_seconds,
        queue=queue,
        max_attempts=max_attempts,
        initial_interval=initial_interval,
        backoff_rate=backoff_rate,
        max_interval=max_interval,
        jitter=jitter,
    )
    check_subscription(subscription, new_secret=True)
    subscription.save()
    return subscription


@transaction.atomic
def update_subscription(
    *, subscription: Subscription, secret_grace_seconds: float = SECRET_GRACE_SECONDS_DEFAULT, **changes
) -> Subscription:
    """Change the named fields of a subscription, checked like a new one; the others stay.

    A new ``secret`` is a rotation: the old one stays valid (deliveries are signed with both) for
    ``secret_grace_seconds``. Turning a subscription into an HTTP one without a secret generates one.
    """
    unknown = sorted(set(changes) - set(SUBSCRIPTION_FIELDS))
    if unknown:
        raise SubscriptionInvalid(
            f"Not a field of a subscription: {', '.join(unknown)}.", errors={f: ["Unknown field."] for f in unknown}
        )
    if not 0 <= secret_grace_seconds <= SECRET_GRACE_SECONDS_MAX:
        raise SubscriptionInvalid(
            f"secret_grace_seconds: between 0 and {SECRET_GRACE_SECONDS_MAX}.",
            errors={"secret_grace_seconds": [f"Between 0 and {SECRET_GRACE_SECONDS_MAX} seconds."]},
        )
    locked = _locked_subscription(subscription)
    if changes.get("secret") == "" and changes.get("target", locked.target) == Subscription.Target.HTTP:
        raise SubscriptionInvalid(
            "secret: an HTTP subscription keeps a secret; rotate-secret generates a new one and shows it.",
            errors={"secret": ["An HTTP subscription keeps a secret; use rotate-secret to generate a new one."]},
        )
    old_secret = locked.secret
    for name, value in changes.items():
        setattr(locked, name, {} if name == "filter_policy" and value is None else value)
    if locked.target == Subscription.Target.HTTP and not locked.secret:
        locked.secret = signing.generate_secret()
    rotated = bool(locked.secret) and locked.secret != old_secret
    check_subscription(locked, new_secret=rotated)
    if rotated and old_secret:
        locked.previous_secret = old_secret
        locked.previous_secret_expires_at = timezone.now() + timedelta(seconds=secret_grace_seconds)
    locked.save()
    return locked


def _locked_subscription(subscription: Subscription) -> Subscription:
    locked = Subscription.objects.select_for_update().filter(pk=subscription.pk).first()
    if locked is None:  # deleted since the caller read it
        raise SubscriptionGone(f"Subscription {subscription.name!r} no longer exists.")
    return locked


@transaction.atomic
def delete_subscription(*, subscription: Subscription) -> None:
    """Remove a subscription with its deliveries; their attempts stay in the audit log."""
    Subscription.objects.filter(pk=subscription.pk).delete()


def rotate_subscription_secret(
    *, subscription: Subscription, secret: str = "", grace_seconds: float = SECRET_GRACE_SECONDS_DEFAULT
) -> Subscription:
    """Give a subscription a new signing secret (generated unless given); the old one verifies for
    ``grace_seconds`` more, so a receiver can switch without losing a delivery."""
    return update_subscription(
        subscription=subscription, secret=secret or signing.generate_secret(), secret_grace_seconds=grace_seconds
    )


# ---- Subscriptions from code --------------------------------------------------------------------


def sync_handler_subscriptions() -> list[str]:
    """Create the subscription of each ``@subscriber(auto_subscribe=True)`` handler that lacks one."""
    created = []
    for spec in registry.handlers().values():
        if not spec.auto_subscribe:
            continue
        _, was_created = Subscription.objects.get_or_create(
            name=spec.name,
            defaults={
                "description": (spec.function.__doc__ or "").strip().split("\n")[0][:300],
                "event_types": spec.event_types,
                "filter_policy": spec.filter_policy,
                "target": Subscription.Target.HANDLER,
                "handler": spec.name,
                "queue": spec.queue,
                "max_attempts": spec.max_attempts,
                "initial_interval": spec.initial_interval,
                "backoff_rate": spec.backoff_rate,
                "max_interval": spec.max_interval,
                "jitter": spec.jitter,
            },
        )
        if was_created:
            created.append(spec.name)
    return created
