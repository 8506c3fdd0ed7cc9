"""Reads of stock: master data, levels, batches expiring soon, traceability, the live stream.

The invariant audit lives in ``stock.invariants`` (re-exported here as ``invariant_violations``).
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from decimal import Decimal
from typing import NamedTuple

from django.db import connection, transaction
from django.db.models import BooleanField, DecimalField, ExpressionWrapper, F, Prefetch, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from stock.invariants import invariant_violations  # noqa: F401 (re-exported: callers read it from here)
from stock.models import Allocation, Batch, Ingredient, Recipe, RecipeIngredient, Supplier

ZERO = Decimal(0)


def ingredients():
    """Every ingredient, by sku."""
    return Ingredient.objects.order_by("sku")


def recipes():
    """Every recipe by code, its bill of materials loaded (lines by sku, with the ingredient's unit)."""
    lines = RecipeIngredient.objects.select_related("ingredient").order_by("ingredient__sku")
    return Recipe.objects.prefetch_related(Prefetch("lines", queryset=lines)).order_by("code")


def suppliers():
    """Every supplier, by code."""
    return Supplier.objects.order_by("code")


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


def unknown_skus(skus: list[str]) -> list[str]:
    """Those of ``skus`` that name no ingredient, in the order given."""
    known = set(Ingredient.objects.filter(sku__in=skus).values_list("sku", flat=True)) if skus else set()
    return [sku for sku in dict.fromkeys(skus) if sku not in known]


class AllocatedLot(NamedTuple):
    """An open allocation as a pick list names it: which sku, from which lot and best-before, how much."""

    sku: str
    lot: str
    best_before: date
    quantity: Decimal


def open_allocations(transaction_ids: list[str]) -> dict[str, list[AllocatedLot]]:
    """The open allocations of many reservations, by transaction id, in one query.

    Each reservation's lots come by sku, then earliest best-before, then batch: the order its pick list
    lists them in. Measured (bench/orders_stages.py): with one query per order the partner-wms delivery
    cost 2.9 ms per order, with this one query per batch 0.6 ms.
    """
    found: dict[str, list[AllocatedLot]] = {transaction_id: [] for transaction_id in transaction_ids}
    if not transaction_ids:
        return found
    rows = (
        Allocation.objects.filter(reservation__transaction_id__in=transaction_ids, open=True)
        .order_by("reservation__transaction_id", "ingredient__sku", "batch__best_before", "batch_id")
        .values_list("reservation__transaction_id", "ingredient__sku", "batch__lot", "batch__best_before", "quantity")
    )
    for transaction_id, sku, lot, best_before, quantity in rows:
        found[transaction_id].append(AllocatedLot(sku, lot, best_before, quantity))
    return found


def batches_expiring_within(days: int, queryset=None):
    """Active batches whose best-before is at most ``days`` away, first-expiring first."""
    until = timezone.localdate() + timedelta(days=days)
    queryset = Batch.objects.all() if queryset is None else queryset
    return queryset.filter(status=Batch.Status.ACTIVE, best_before__lte=until).order_by("best_before", "id")


def batch_trace(batch: Batch):
    """Every reservation this batch went into, with quantity and state."""
    return Allocation.objects.filter(batch=batch).select_related("reservation").order_by("reservation__created_at")


# The live stream reads level changes in commit order. Outbox ids are taken at write time, so on
# PostgreSQL a change can commit after one with a higher id: reading "after the last id" would skip it.
# Instead a stream keeps the database snapshot of its last read (``pg_current_snapshot()``, its
# position token) and asks for the changes visible now that were not visible then; every row records
# the top-level transaction that wrote it (``txid``, events migration 0004). Only transactions at or
# above that snapshot's xmin can have committed since, so the partial index on ``txid`` (events
# migration 0006) bounds the read. SQLite runs one writer at a time, so there ids commit in order and
# the token is the last id read.
_SNAPSHOT = re.compile(r"^[0-9]{1,20}:[0-9]{1,20}:([0-9]{1,20}(,[0-9]{1,20})*)?$")
LEVEL_CHANGED = "stock.level_changed"


def level_stream_start(skus: list[str] | None = None) -> tuple[str, list]:
    """The position token of now, and the levels (``stock_levels()``) exactly as of that position."""
    from supplychain.events.models import OutboxEvent

    levels = stock_levels()
    if skus:
        levels = levels.filter(sku__in=skus)
    if connection.vendor != "postgresql":
        with transaction.atomic():  # SQLite: one snapshot for both reads
            last = OutboxEvent.objects.filter(type=LEVEL_CHANGED).order_by("-id").values_list("id", flat=True).first()
            return str(last or 0), list(levels)
    repeatable = not connection.in_atomic_block  # inside a caller's transaction its isolation stands
    with transaction.atomic(), connection.cursor() as cursor:
        if repeatable:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # both reads in one snapshot
        cursor.execute("SELECT pg_current_snapshot()::text")
        token = cursor.fetchone()[0]
        return token, list(levels)


def valid_stream_token(token: str) -> bool:
    """Whether ``token`` is a position this database's stream hands out (else a client starts afresh)."""
    if connection.vendor != "postgresql":
        return token.isdigit() and len(token) < 20
    if not _SNAPSHOT.match(token):
        return False
    xmin, xmax, running = token.split(":")
    xids = [int(xid) for xid in running.split(",") if xid]
    low, high = int(xmin), int(xmax)
    # What pg_snapshot accepts: 0 < xmin <= xmax, the running ones ascending within [xmin, xmax).
    return 0 < low <= high < 2**63 and xids == sorted(set(xids)) and all(low <= xid < high for xid in xids)


def level_changes_since(token: str, skus: list[str] | None = None, most: int = 5000) -> tuple[list[dict], str]:
    """The level changes committed after position ``token``, oldest first, and the position after them.

    At most ``most`` changes; more raises ``StreamBehind`` (the client is better served by fresh levels).
    """
    from supplychain.events.models import OutboxEvent

    if connection.vendor != "postgresql":
        query = OutboxEvent.objects.filter(type=LEVEL_CHANGED, id__gt=int(token))
        if skus:
            query = query.filter(key__in=skus)
        rows = list(query.order_by("id").values("id", "payload", "occurred_at")[: most + 1])
        if len(rows) > most:
            raise StreamBehind
        return rows, str(rows[-1]["id"]) if rows else token
    table = connection.ops.quote_name(OutboxEvent._meta.db_table)
    sql = (
        "SELECT snap.snapshot::text, o.id, o.payload, o.occurred_at"  # noqa: S608 (the table is a model's)
        " FROM (SELECT pg_current_snapshot() AS snapshot) snap"
        " LEFT JOIN LATERAL ("
        f"  SELECT id, payload, occurred_at FROM {table}"
        "   WHERE type = %s AND txid >= pg_snapshot_xmin(%s::pg_snapshot)"
        "     AND NOT pg_visible_in_snapshot(txid, %s::pg_snapshot) AND (%s::text[] IS NULL OR key = ANY(%s))"
        "   LIMIT %s"  # no ORDER BY here: a stale position must not sort its whole backlog to find it too long
        " ) o ON true ORDER BY o.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [LEVEL_CHANGED, token, token, skus or None, skus or None, most + 1])
        found = cursor.fetchall()
    if len(found) > most:
        raise StreamBehind
    rows = [
        {"id": event_id, "payload": json.loads(payload) if isinstance(payload, str) else payload, "occurred_at": at}
        for _, event_id, payload, at in found
        if event_id is not None
    ]
    return rows, found[0][0]


class StreamBehind(Exception):
    """More changes are waiting for a stream than it should replay one by one."""
