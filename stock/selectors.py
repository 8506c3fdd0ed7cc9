"""Reads of stock: levels, batches expiring soon, traceability, and the invariant audit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import BooleanField, DecimalField, ExpressionWrapper, F, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from stock.models import Allocation, Batch, Ingredient, Movement, StockLevel

ZERO = Decimal(0)


def stock_levels():
    """Every ingredient with ``on_hand``, ``reserved``, ``available`` (zero without stock) and ``low``.

    ``low`` is the rule the API, the admin, the stream and stockwatch all show: available below the
    ingredient's low-stock threshold.
    """
    on_hand = Coalesce("level__on_hand", Value(ZERO), output_field=DecimalField(max_digits=14, decimal_places=3))
    reserved = Coalesce("level__reserved", Value(ZERO), output_field=DecimalField(max_digits=14, decimal_places=3))
    return (
        Ingredient.objects.annotate(on_hand=on_hand, reserved=reserved)
        .annotate(available=F("on_hand") - F("reserved"))
        .annotate(low=ExpressionWrapper(Q(available__lt=F("low_stock_threshold")), output_field=BooleanField()))
        .order_by("sku")
    )


def batches_expiring_within(days: int, queryset=None):
    """Active batches whose best-before is at most ``days`` away, first-expiring first."""
    until = timezone.localdate() + timedelta(days=days)
    queryset = Batch.objects.all() if queryset is None else queryset
    return queryset.filter(status=Batch.Status.ACTIVE, best_before__lte=until).order_by("best_before", "id")


def batch_trace(batch: Batch):
    """Every reservation this batch went into, with quantity and state."""
    return Allocation.objects.filter(batch=batch).select_related("reservation").order_by("reservation__created_at")


def invariant_violations() -> list[str]:
    """What breaks "ledger sum = on hand = remaining on active batches; reserved = open allocations <= on hand"."""
    problems = []
    ledger = {
        row["ingredient_id"]: (row["on_hand"] or ZERO, row["reserved"] or ZERO)
        for row in Movement.objects.values("ingredient_id").annotate(
            on_hand=Sum("on_hand_delta"), reserved=Sum("reserved_delta")
        )
    }
    remaining = dict(
        Batch.objects.filter(status=Batch.Status.ACTIVE)
        .values("ingredient_id")
        .annotate(total=Sum("quantity_remaining"))
        .values_list("ingredient_id", "total")
    )
    allocated = dict(
        Allocation.objects.filter(open=True)
        .values("ingredient_id")
        .annotate(total=Sum("quantity"))
        .values_list("ingredient_id", "total")
    )
    batch_reserved = dict(
        Batch.objects.values("ingredient_id")
        .annotate(total=Sum("quantity_reserved"))
        .values_list("ingredient_id", "total")
    )
    for level in StockLevel.objects.select_related("ingredient"):
        sku = level.ingredient.sku
        ledger_on_hand, ledger_reserved = ledger.get(level.ingredient_id, (ZERO, ZERO))
        checks = {
            "ledger on hand": ledger_on_hand,
            "remaining on active batches": remaining.get(level.ingredient_id) or ZERO,
        }
        for name, value in checks.items():
            if value != level.on_hand:
                problems.append(f"{sku}: on hand {level.on_hand} != {name} {value}")
        for name, value in {
            "ledger reserved": ledger_reserved,
            "open allocations": allocated.get(level.ingredient_id) or ZERO,
            "reserved on batches": batch_reserved.get(level.ingredient_id) or ZERO,
        }.items():
            if value != level.reserved:
                problems.append(f"{sku}: reserved {level.reserved} != {name} {value}")
        if level.reserved > level.on_hand or level.available < 0:
            problems.append(f"{sku}: reserved {level.reserved} exceeds on hand {level.on_hand}")
    bad_batches = Batch.objects.filter(Q(quantity_remaining__lt=0) | Q(quantity_reserved__gt=0, status="expired"))
    problems.extend(
        f"batch {b.pk}: remaining {b.quantity_remaining}, reserved {b.quantity_reserved}, {b.status}"
        for b in bad_batches
    )
    return problems


def level_changes_since(after_id: int, skus: list[str] | None = None, page: int = 500) -> Iterator[dict]:
    """Every visible ``stock.level_changed`` event after outbox id ``after_id`` (the live stream's feed), by id."""
    from supplychain.events.models import OutboxEvent

    query = OutboxEvent.objects.filter(type="stock.level_changed")
    if skus:
        query = query.filter(key__in=skus)
    while True:
        rows = list(query.filter(id__gt=after_id).order_by("id").values("id", "payload", "occurred_at")[:page])
        yield from rows
        if len(rows) < page:
            return
        after_id = rows[-1]["id"]


@dataclass(frozen=True)
class OutboxPosition:
    """Where the outbox stood at one moment: its newest visible id and, on PostgreSQL, the snapshot's xid bounds.

    ``xmin`` is the oldest transaction still running then, ``xmax`` the first one not yet started;
    both ``None`` where writers run one at a time (SQLite), so ids are committed in order.
    """

    at: float
    max_id: int
    xmin: int | None = None
    xmax: int | None = None


def outbox_position() -> OutboxPosition:
    """The outbox's newest visible id and the transactions in flight, read in one snapshot."""
    from supplychain.events.models import OutboxEvent

    at = time.monotonic()
    if connection.vendor != "postgresql":
        return OutboxPosition(at, OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0)
    with connection.cursor() as cursor:
        table = connection.ops.quote_name(OutboxEvent._meta.db_table)
        cursor.execute(
            f"SELECT (SELECT coalesce(max(id), 0) FROM {table}),"  # noqa: S608 (a model's table, not input)
            " pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint FROM pg_current_snapshot() s"
        )
        max_id, xmin, xmax = cursor.fetchone()
    return OutboxPosition(at, max_id, xmin, xmax)
