"""Service that removes the backbone's finished working rows: relayed outbox events and succeeded deliveries.

The audit log is the record of every message (published, each attempt; ``archive_audit`` moves old entries to
object storage); the outbox and delivery rows are working state, and they were kept forever. What goes, once
older than the retention age:

- a succeeded delivery whose successful attempt is in the audit log (or already in its archive);
- a relayed outbox event with no delivery left and its published entry in the audit log (or archive).

What stays: dead deliveries that were not redriven (they are the evidence an operator acts on, visible and
alarmed until redriven or removed by hand), deliveries still pending or in flight, and so their events; events
not relayed yet. The audit entries themselves stay: their own retention is ``archive_audit``.

Rows are removed in batches: each statement takes at most ``batch_size`` rows by ascending id, locks them with
``FOR UPDATE SKIP LOCKED`` (a row some worker holds is skipped, never waited for), and commits on its own, so
no lock is held for longer than one batch. The walk stops at the first batch whose rows are all younger than
the cutoff (ids grow with time), so a run reads the old part of a table, not all of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, models, transaction
from django.db.models import Exists, Max, OuterRef, Q
from django.utils import timezone

from supplychain.events.models import AuditArchive, AuditEntry, Delivery, OutboxEvent

Progress = Callable[[str, int], None]  # (what: "deliveries" or "events", removed so far)


@dataclass
class RetentionReport:
    cutoff: datetime
    deliveries: int = 0
    events: int = 0
    batches: int = 0  # DELETE statements run

    def as_dict(self) -> dict:
        return {
            "cutoff": self.cutoff.isoformat(),
            "deliveries": self.deliveries,
            "events": self.events,
            "batches": self.batches,
        }


def purge_finished_events(
    *, older_than: timedelta, batch_size: int = 1000, progress: Progress | None = None
) -> RetentionReport:
    """Remove succeeded deliveries and relayed events older than ``older_than`` whose audit entries exist.

    Safe to run at any time and twice: it only removes rows nothing works on any more, and a row locked by
    someone else is left for the next run. ``progress(what, removed)`` is called after every batch.
    """
    report = RetentionReport(cutoff=timezone.now() - older_than)
    archived_through = AuditArchive.objects.aggregate(last=Max("last_occurred_at"))["last"]

    succeeded_attempt = Q(
        Exists(AuditEntry.objects.filter(kind=AuditEntry.Kind.ATTEMPT, delivery_id=OuterRef("id"), outcome="succeeded"))
    )
    published = Q(Exists(AuditEntry.objects.filter(kind=AuditEntry.Kind.PUBLISHED, event_id=OuterRef("event_id"))))
    if archived_through is not None:  # entries up to this moment are in the archive, no longer in the table
        succeeded_attempt |= Q(completed_at__lte=archived_through)
        published |= Q(occurred_at__lte=archived_through)

    finished_deliveries = Q(status=Delivery.Status.SUCCEEDED, completed_at__lt=report.cutoff) & succeeded_attempt
    for removed in _remove_in_batches(Delivery, finished_deliveries, "created_at", report.cutoff, batch_size):
        report.deliveries += removed
        report.batches += 1
        if progress is not None:
            progress("deliveries", report.deliveries)

    finished_events = (
        Q(relayed_at__lt=report.cutoff) & ~Q(Exists(Delivery.objects.filter(event_id=OuterRef("id")))) & published
    )
    for removed in _remove_in_batches(OutboxEvent, finished_events, "occurred_at", report.cutoff, batch_size):
        report.events += removed
        report.batches += 1
        if progress is not None:
            progress("events", report.events)
    return report


def _remove_in_batches(model: type[models.Model], finished: Q, born: str, cutoff: datetime, batch_size: int):
    """Walk ``model``'s rows by id, ``batch_size`` at a time, deleting the ``finished`` ones; yield each count.

    ``born`` is a column no later than the one the cutoff applies to (a delivery is created before it
    completes, an event occurs before it is relayed): a window whose rows were all born after the cutoff
    holds nothing old enough, and neither do the younger rows after it.
    """
    after = 0
    while True:
        window = list(model.objects.filter(id__gt=after).order_by("id").values_list("id", born)[:batch_size])
        if not window or min(moment for _, moment in window) >= cutoff:
            return
        first, after = window[0][0], window[-1][0]
        with transaction.atomic():
            ids = list(
                model.objects.select_for_update(skip_locked=True)
                .filter(finished, id__gte=first, id__lte=after)
                .values_list("id", flat=True)
            )
            if ids:  # one plain DELETE (no cascade collector): nothing refers to the chosen rows any more
                table = connection.ops.quote_name(model._meta.db_table)  # a model's table; the ids are parameters
                placeholders = ", ".join(["%s"] * len(ids))
                with connection.cursor() as cursor:
                    cursor.execute(f"DELETE FROM {table} WHERE id IN ({placeholders})", ids)  # noqa: S608
        if ids:
            yield len(ids)
