"""The relay: committed events become one delivery per matching subscription; the sweep and redrive."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from supplychain.core.errors import DomainError
from supplychain.events import filters
from supplychain.events.models import AuditEntry, Delivery, OutboxEvent, Subscription
from supplychain.events.services import deliveries
from supplychain.events.services.deliveries import OPEN
from supplychain.events.services.publishing import event_setting

logger = logging.getLogger(__name__)

# ---- Relay --------------------------------------------------------------------------------------


class _Claimed(NamedTuple):
    """An event claimed by the relay: what matching a subscription reads."""

    id: int
    type: str
    payload: dict


def relay_pending(*, batch_size: int | None = None, max_batches: int | None = None) -> int:
    """Fan committed events out into deliveries; returns how many events were relayed.

    Each batch is claimed and marked relayed at once (on PostgreSQL one ``UPDATE … RETURNING`` over a
    ``FOR UPDATE SKIP LOCKED`` sub-select), so several relays never take the same event; the deliveries
    are inserted in the same transaction, so a relay that dies leaves its events unrelayed, and the unique
    (event, subscription) constraint makes relaying an event twice harmless anyway.
    """
    batch_size = batch_size or event_setting("EVENTS_RELAY_BATCH", 500)
    relayed = batches = 0
    while max_batches is None or batches < max_batches:
        with transaction.atomic():
            now = timezone.now()
            events = _claim_events(batch_size, now)
            if not events:
                break
            subscriptions = list(Subscription.objects.filter(active=True))
            pairs = [
                (event.id, subscription)
                for event in events
                for subscription in subscriptions
                if subscription.matches_type(event.type) and filters.matches(subscription.filter_policy, event.payload)
            ]
            _insert_deliveries(pairs, now)
            touched = {subscription.id: subscription for _, subscription in pairs}
            transaction.on_commit(lambda touched=touched: deliveries.kick_deliveries(touched.values()))
        relayed += len(events)
        batches += 1
        if len(events) < batch_size:
            break
    return relayed


# One statement claims and marks a batch: measured, it replaced a SELECT … FOR UPDATE SKIP LOCKED and an
# UPDATE by id, two round trips and a second walk of the same rows per batch.
CLAIM_EVENTS = """
    UPDATE events_outboxevent AS e SET relayed_at = %s
     WHERE e.id IN (SELECT id FROM events_outboxevent
                     WHERE relayed_at IS NULL ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)
    RETURNING e.id, e.type, e.payload
"""


def _claim_events(limit: int, now: datetime) -> list[_Claimed]:
    """Take up to ``limit`` unrelayed events, oldest first, and mark them relayed (in the caller's transaction)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(CLAIM_EVENTS, [now, limit])
            rows = cursor.fetchall()
        # jsonb comes back as text (Django's psycopg set-up leaves decoding to JSONField)
        claimed = [_Claimed(i, t, json.loads(p) if isinstance(p, str | bytes) else p) for i, t, p in rows]
        return sorted(claimed, key=lambda event: event.id)
    events = list(
        OutboxEvent.objects.select_for_update(skip_locked=True)
        .filter(relayed_at__isnull=True)
        .order_by("id")
        .only("id", "type", "payload")[:limit]
    )
    OutboxEvent.objects.filter(id__in=[event.id for event in events]).update(relayed_at=now)
    return [_Claimed(event.id, event.type, event.payload) for event in events]


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
    deliveries.kick_deliveries(due)
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
        transaction.on_commit(lambda: deliveries.kick_deliveries(subscriptions.values()))
    return len(rows)
