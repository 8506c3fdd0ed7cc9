"""Writes of stock: receipts, reservations (reserve, commit, release), expiry, holds.

Every change of a level happens with its ledger rows in one transaction, under the level rows' locks
taken in ascending ingredient order. The level lock guards every batch of that ingredient too, so
concurrent reservations, receipts and the expiry sweep never oversell and never deadlock.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import heapq
import io
import itertools
import json
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import PurePosixPath
from typing import BinaryIO

from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from stock.models import Allocation, Batch, Ingredient, Movement, Receipt, Reservation, StockLevel, Supplier
from supplychain.core.db import ConnectionWorker, copy_rows
from supplychain.core.errors import Conflict, DomainError, NotFound, Unprocessable
from supplychain.events import registry
from supplychain.events.services import NewEvent, announce_published, current_correlation_id, publish_many

logger = logging.getLogger(__name__)
ZERO = Decimal(0)
MILLI = Decimal("0.001")


# ---- Errors ---------------------------------------------------------------------------------------


class UnknownSku(DomainError):
    status = 400
    type = "unknown_sku"
    title = "Unknown ingredient."


class InvalidItems(DomainError):
    status = 400
    type = "validation_error"  # the API's shape for a request that is not valid
    title = "The request is not valid."


class TransactionIdReused(Unprocessable):
    type = "transaction_id_reused"
    title = "This transaction id was used with a different request."


class ReservationNotFound(NotFound):
    type = "reservation_not_found"
    title = "No reservation with this transaction id."


class ReservationClosed(Conflict):
    type = "reservation_closed"
    title = "The reservation is no longer open."


class ReceiptConflict(Conflict):
    type = "receipt_conflict"
    title = "A different file was already received under this key."


# ---- Levels and the ledger ------------------------------------------------------------------------


class LevelBook:
    """The locked levels of one transaction; collects ledger rows and the events their changes cause."""

    def __init__(self, ingredient_ids: Iterable[int]):
        ids = sorted(set(ingredient_ids))
        self.levels = self._lock(ids)
        if len(self.levels) < len(ids):  # an ingredient's first stock: create its level row, then lock it
            StockLevel.objects.bulk_create([StockLevel(ingredient_id=i) for i in ids], ignore_conflicts=True)
            self.levels = self._lock(ids)
        self.before = {i: (level.on_hand, level.reserved) for i, level in self.levels.items()}
        self.movements: list[Movement] = []

    @staticmethod
    def _lock(ids: list[int]) -> dict[int, StockLevel]:
        query = StockLevel.objects.select_for_update().select_related("ingredient").filter(ingredient_id__in=ids)
        return {level.ingredient_id: level for level in query.order_by("ingredient_id")}

    def move(
        self,
        kind: str,
        ingredient_id: int,
        *,
        on_hand=ZERO,
        reserved=ZERO,
        batch_id=None,
        reservation_id=None,
        note: str = "",
    ) -> None:
        level = self.levels[ingredient_id]
        level.on_hand += on_hand
        level.reserved += reserved
        self.movements.append(
            Movement(
                ingredient_id=ingredient_id,
                kind=kind,
                on_hand_delta=on_hand,
                reserved_delta=reserved,
                batch_id=batch_id,
                reservation_id=reservation_id,
                note=note,
            )
        )

    def save(self) -> list[NewEvent]:
        """Write the levels and ledger; return the level_changed / low events to publish."""
        Movement.objects.bulk_create(self.movements, batch_size=2000)
        events = []
        changed = {i: level for i, level in self.levels.items() if (level.on_hand, level.reserved) != self.before[i]}
        if changed:
            _write_levels(changed)
        for ingredient_id, level in changed.items():
            ingredient = level.ingredient
            events.append(
                NewEvent(
                    "stock.level_changed",
                    {
                        "sku": ingredient.sku,
                        "on_hand": str(level.on_hand),
                        "reserved": str(level.reserved),
                        "available": str(level.available),
                        "unit": ingredient.unit,
                    },
                    key=ingredient.sku,
                )
            )
            old_available = self.before[ingredient_id][0] - self.before[ingredient_id][1]
            threshold = ingredient.low_stock_threshold
            if old_available >= threshold > level.available:
                events.append(
                    NewEvent(
                        "stock.low",
                        {"sku": ingredient.sku, "available": str(level.available), "threshold": str(threshold)},
                        key=ingredient.sku,
                    )
                )
        return events


def _write_levels(changed: dict[int, StockLevel]) -> None:
    """One UPDATE for every changed level (on PostgreSQL from two arrays: a receipt may touch thousands)."""
    now = timezone.now()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE stock_stocklevel l SET on_hand = v.on_hand, reserved = v.reserved, updated_at = %s"
                " FROM unnest(%s::bigint[], %s::numeric[], %s::numeric[]) AS v(ingredient_id, on_hand, reserved)"
                " WHERE l.ingredient_id = v.ingredient_id",
                [
                    now,
                    list(changed),
                    [level.on_hand for level in changed.values()],
                    [level.reserved for level in changed.values()],
                ],
            )
        return
    StockLevel.objects.filter(pk__in=changed).update(
        on_hand=Case(*(When(pk=i, then=Value(level.on_hand)) for i, level in changed.items())),
        reserved=Case(*(When(pk=i, then=Value(level.reserved)) for i, level in changed.items())),
        updated_at=now,
    )


# ---- Reservations ---------------------------------------------------------------------------------


@dataclass
class Item:
    sku: str
    quantity: Decimal

    def __post_init__(self) -> None:
        self.quantity = Decimal(str(self.quantity))


def _canonical(transaction_id: str, items: list[Item], needed_by: date | None, hold_seconds: int | None) -> dict:
    return {
        "transaction_id": transaction_id,
        "items": [{"sku": item.sku, "quantity": format(item.quantity.normalize(), "f")} for item in items],
        "needed_by": needed_by.isoformat() if needed_by else None,
        "hold_seconds": hold_seconds,
    }


def reserve_stock(
    *, transaction_id: str, items: list[Item], needed_by: date | None = None, hold_seconds: int | None = None
) -> Reservation:
    """Reserve every item or nothing, first-expiring batches first; idempotent on ``transaction_id``.

    Returns the reservation; its ``response_status`` is 201 (reserved) or 409 (rejected: nothing
    reserved, the shortages in ``response``). Repeating the same request returns the same reservation;
    the same id with a different request raises ``TransactionIdReused`` (422).

    On PostgreSQL the whole reservation is one call of the ``stock_reserve`` database function (one
    round trip: stock/sql/stock_reserve.sql); elsewhere (SQLite) the same rules run here in Python.
    """
    skus = [item.sku for item in items]
    repeated = sorted({sku for sku in skus if skus.count(sku) > 1})
    if repeated:
        reason = f"Each sku once; repeated: {', '.join(repeated)}."
        raise InvalidItems(f"items: {reason}", errors={"items": [reason]})
    request = _canonical(transaction_id, items, needed_by, hold_seconds)
    digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
    try:
        if connection.vendor == "postgresql":
            return _reserve_in_database(request, digest, items, needed_by, hold_seconds)
        with transaction.atomic():
            return _reserve_in_python(request, digest, items, needed_by, hold_seconds)
    except IntegrityError:
        # A concurrent request with the same id committed first: answer as a repeat of it.
        return _replay(Reservation.objects.get(transaction_id=transaction_id), digest)


RESERVE_EVENT_TYPES = (
    "stock.level_changed",
    "stock.low",
    "stock.reservation_created",
    "stock.reservation_rejected",
    "stock.reservation_committed",
    "stock.reservation_released",
)


@functools.cache
def _event_versions() -> str:
    return json.dumps({event_type: registry.latest_version(event_type) for event_type in RESERVE_EVENT_TYPES})


def _not_before(needed_by: date | None) -> date:
    today = timezone.localdate()
    return max(today, needed_by) if needed_by else today


def _call_stock_function(sql: str, params: list) -> dict:
    """One call of a stock database function (stock/sql/), its jsonb answer decoded.

    One statement is a transaction of its own; inside the caller's, a savepoint keeps that usable if it fails.
    """
    with transaction.atomic() if connection.in_atomic_block else nullcontext(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        result = cursor.fetchone()[0]
    return json.loads(result) if isinstance(result, str) else result  # Django leaves jsonb undecoded


def _reserve_in_database(request, digest, items, needed_by, hold_seconds) -> Reservation:
    """One call of ``stock_reserve``: locks, FEFO plan, every write and the events, in one round trip."""
    now = timezone.now()
    hold_until = now + timedelta(seconds=hold_seconds) if hold_seconds else None
    result = _call_stock_function(
        "SELECT stock_reserve(%s, %s::jsonb, %s, %s::text[], %s::numeric[], %s, %s, %s, %s, %s, %s::jsonb)",
        [
            request["transaction_id"],
            json.dumps(request),
            digest,
            [item.sku for item in items],
            [item.quantity for item in items],
            _not_before(needed_by),
            needed_by,
            hold_until.isoformat() if hold_until else None,
            now.isoformat(),
            current_correlation_id(),
            _event_versions(),
        ],
    )
    if result["outcome"] == "unknown":
        raise UnknownSku(
            "Unknown sku in the request.", errors={f"items.{n}.sku": ["Unknown sku."] for n in result["missing"]}
        )
    if result["outcome"] == "replay":
        return _replay(Reservation.objects.get(pk=result["id"]), digest)
    announce_published(result["events"])
    rejected = result["outcome"] == "rejected"
    reservation = Reservation(
        id=result["id"],
        transaction_id=request["transaction_id"],
        status=Reservation.Status.REJECTED if rejected else Reservation.Status.RESERVED,
        request_hash=digest,
        request=request,
        response_status=result["status"],
        response=result["response"],
        needed_by=needed_by,
        hold_until=hold_until,
        created_at=now,
        closed_at=now if rejected else None,
    )
    reservation._state.adding, reservation._state.db = False, connection.alias
    return reservation


def _replay(reservation: Reservation, digest: str) -> Reservation:
    if reservation.request_hash != digest:
        raise TransactionIdReused(
            f"Transaction {reservation.transaction_id} was already used with a different request.",
            errors={"transaction_id": ["Already used with a different body."]},
        )
    return reservation


def _ingredients_for(items: list[Item]) -> dict[str, Ingredient]:
    found = {i.sku: i for i in Ingredient.objects.filter(sku__in=[item.sku for item in items])}
    unknown = {f"items.{n}.sku": ["Unknown sku."] for n, item in enumerate(items) if item.sku not in found}
    if unknown:
        raise UnknownSku("Unknown sku in the request.", errors=unknown)
    return found


def _eligible_batches(ingredient_ids: list[int], not_before: date) -> dict[int, list[Batch]]:
    """Active batches that last until ``not_before``, first-expiring first, per ingredient."""
    by_ingredient: dict[int, list[Batch]] = defaultdict(list)
    query = (
        Batch.objects.filter(ingredient_id__in=ingredient_ids, status=Batch.Status.ACTIVE, best_before__gte=not_before)
        .select_related("supplier")
        .order_by("best_before", "id")
    )
    for batch in query:
        if batch.quantity_available > 0:
            by_ingredient[batch.ingredient_id].append(batch)
    return by_ingredient


def _reserve_in_python(request, digest, items, needed_by, hold_seconds) -> Reservation:
    """The reservation on databases without ``stock_reserve`` (SQLite): the same rules, step by step."""
    existing = Reservation.objects.filter(transaction_id=request["transaction_id"]).first()
    if existing is not None:
        return _replay(existing, digest)
    ingredients = _ingredients_for(items)
    book = LevelBook(ingredient.id for ingredient in ingredients.values())
    not_before = _not_before(needed_by)
    batches = _eligible_batches([i.id for i in ingredients.values()], not_before)
    shortages = []
    for item in items:
        ingredient = ingredients[item.sku]
        available = min(
            sum((b.quantity_available for b in batches[ingredient.id]), ZERO), book.levels[ingredient.id].available
        ).quantize(MILLI)
        if available < item.quantity:
            shortages.append(
                {"sku": item.sku, "requested": str(item.quantity.quantize(MILLI)), "available": str(available)}
            )
    now = timezone.now()
    reservation = Reservation(
        transaction_id=request["transaction_id"],
        request_hash=digest,
        request=request,
        needed_by=needed_by,
        hold_until=now + timedelta(seconds=hold_seconds) if hold_seconds else None,
    )
    if shortages:
        reservation.status = Reservation.Status.REJECTED
        reservation.response_status = 409
        reservation.closed_at = now
        reservation.response = {
            "type": "insufficient_stock",
            "title": "Not enough stock; nothing was reserved.",
            "status": 409,
            "detail": "; ".join(
                f"{s['sku']}: {s['requested']} requested, {s['available']} available" for s in shortages
            ),
            "errors": {},
            "transaction_id": reservation.transaction_id,
            "shortages": shortages,
        }
        reservation.save()
        publish_many(
            [
                NewEvent(
                    "stock.reservation_rejected",
                    {"transaction_id": reservation.transaction_id, "shortages": shortages},
                    key=reservation.transaction_id,
                )
            ],
            with_keys=False,
        )
        return reservation

    plan: list[tuple[Ingredient, Batch, Decimal]] = []
    for item in items:
        ingredient = ingredients[item.sku]
        needed = item.quantity
        for batch in batches[ingredient.id]:
            if needed <= 0:
                break
            take = min(needed, batch.quantity_available).quantize(MILLI)
            if take <= 0:
                continue
            needed -= take
            batch.quantity_reserved += take
            plan.append((ingredient, batch, take))
    reservation.status = Reservation.Status.RESERVED
    reservation.response_status = 201
    allocations = [Allocation(reservation=reservation, batch=b, ingredient=i, quantity=q) for i, b, q in plan]
    reservation.response = reservation_document(reservation, allocations)
    reservation.save()
    Batch.objects.filter(pk__in=[batch.pk for _, batch, _ in plan]).update(
        quantity_reserved=Case(*(When(pk=batch.pk, then=F("quantity_reserved") + take) for _, batch, take in plan))
    )
    Allocation.objects.bulk_create(allocations)
    for ingredient, batch, take in plan:
        book.move(Movement.Kind.RESERVE, ingredient.id, reserved=take, batch_id=batch.id, reservation_id=reservation.id)
    events = book.save()
    events.append(
        NewEvent("stock.reservation_created", _event_body(reservation, allocations), key=reservation.transaction_id)
    )
    publish_many(events, with_keys=False)
    return reservation


def reservation_document(reservation: Reservation, allocations: list[Allocation] | None = None) -> dict:
    """The reservation as the API shows it: status and, per item, the batches it came from.

    Pass ``allocations`` (batch, supplier and ingredient loaded) to build it without a query.
    """
    lines: dict[str, dict] = {}
    if allocations is None:
        query = Allocation.objects.filter(reservation=reservation).select_related("batch__supplier", "ingredient")
        allocations = list(query)
    allocations = sorted(allocations, key=lambda a: (a.ingredient.sku, a.batch.best_before, a.batch.id))
    for allocation in allocations:
        line = lines.setdefault(
            allocation.ingredient.sku, {"sku": allocation.ingredient.sku, "quantity": ZERO, "batches": []}
        )
        line["quantity"] += allocation.quantity
        batch = allocation.batch
        line["batches"].append(
            {
                "batch_id": batch.id,
                "lot": batch.lot,
                "best_before": batch.best_before.isoformat(),
                "supplier": batch.supplier.name if batch.supplier else None,
                "quantity": str(allocation.quantity),
                "open": allocation.open,
            }
        )
    for line in lines.values():
        line["quantity"] = str(line["quantity"])
    return {
        "transaction_id": reservation.transaction_id,
        "status": reservation.status,
        "needed_by": reservation.needed_by.isoformat() if reservation.needed_by else None,
        "hold_until": reservation.hold_until.isoformat() if reservation.hold_until else None,
        "at_risk": reservation.at_risk,
        "items": list(lines.values()),
    }


def _event_body(reservation: Reservation, allocations: list[Allocation]) -> dict:
    """The payload of reservation events: what moved, per batch."""
    return {
        "transaction_id": reservation.transaction_id,
        "items": [{"sku": a.ingredient.sku, "batch_id": a.batch_id, "quantity": str(a.quantity)} for a in allocations],
    }


def _locked_open(transaction_id: str) -> tuple[Reservation, LevelBook, list[Allocation]] | Reservation:
    """Lock the reservation's levels (ingredient order) and then the reservation itself."""
    reservation = Reservation.objects.filter(transaction_id=transaction_id).first()
    if reservation is None:
        raise ReservationNotFound(f"No reservation {transaction_id!r}.")
    ingredient_ids = list(Allocation.objects.filter(reservation=reservation).values_list("ingredient_id", flat=True))
    book = LevelBook(ingredient_ids)
    reservation = Reservation.objects.select_for_update().get(pk=reservation.pk)
    allocations = list(
        Allocation.objects.filter(reservation=reservation, open=True)
        .select_related("batch", "ingredient")
        .order_by("id")
    )
    return reservation, book, allocations


def commit_reservation(*, transaction_id: str) -> Reservation:
    """Consume the allocated stock (picked). Committing twice changes nothing.

    On PostgreSQL one call of the ``stock_close`` database function (stock/sql/stock_close.sql);
    elsewhere (SQLite) the same rules run here in Python.
    """
    if connection.vendor == "postgresql":
        return _close_in_database(transaction_id, Reservation.Status.COMMITTED, "")
    return _commit_in_python(transaction_id)


def release_reservation(*, transaction_id: str, note: str = "") -> Reservation:
    """Return the allocated stock. Releasing twice changes nothing (one database call on PostgreSQL)."""
    if connection.vendor == "postgresql":
        return _close_in_database(transaction_id, Reservation.Status.RELEASED, note)
    return _release_in_python(transaction_id, note)


def _close_in_database(transaction_id: str, status: str, note: str) -> Reservation:
    result = _call_stock_function(
        "SELECT stock_close(%s, %s, %s, %s, %s, %s::jsonb)",
        [transaction_id, status, note, timezone.now().isoformat(), current_correlation_id(), _event_versions()],
    )
    if result["outcome"] == "not_found":
        raise ReservationNotFound(f"No reservation {transaction_id!r}.")
    if result["outcome"] == "closed":
        raise ReservationClosed(f"Reservation {transaction_id} is {result['status']}.")
    if result["outcome"] == "done":
        announce_published(result["events"])
    return Reservation.objects.get(pk=result["id"])


@transaction.atomic
def _commit_in_python(transaction_id: str) -> Reservation:
    reservation, book, allocations = _locked_open(transaction_id)
    if reservation.status == Reservation.Status.COMMITTED:
        return reservation
    if reservation.status != Reservation.Status.RESERVED:
        raise ReservationClosed(f"Reservation {transaction_id} is {reservation.status}.")
    taken: dict[int, Decimal] = defaultdict(lambda: ZERO)  # per batch: expiry may re-allocate onto one twice
    for allocation in allocations:
        taken[allocation.batch_id] += allocation.quantity
        book.move(
            Movement.Kind.CONSUME,
            allocation.ingredient_id,
            on_hand=-allocation.quantity,
            reserved=-allocation.quantity,
            batch_id=allocation.batch_id,
            reservation_id=reservation.id,
        )
    batches = {allocation.batch_id: allocation.batch for allocation in allocations}
    for batch_id, quantity in taken.items():
        batch = batches[batch_id]
        Batch.objects.filter(pk=batch_id).update(
            quantity_remaining=F("quantity_remaining") - quantity,
            quantity_reserved=F("quantity_reserved") - quantity,
            status=Batch.Status.DEPLETED if batch.quantity_remaining - quantity == 0 else batch.status,
        )
    Allocation.objects.filter(id__in=[a.id for a in allocations]).update(open=False)
    return _close(reservation, book, allocations, Reservation.Status.COMMITTED, "stock.reservation_committed")


@transaction.atomic
def _release_in_python(transaction_id: str, note: str) -> Reservation:
    reservation, book, allocations = _locked_open(transaction_id)
    if reservation.status == Reservation.Status.RELEASED:
        return reservation
    if reservation.status != Reservation.Status.RESERVED:
        raise ReservationClosed(f"Reservation {transaction_id} is {reservation.status}.")
    for allocation in allocations:
        Batch.objects.filter(pk=allocation.batch_id).update(
            quantity_reserved=F("quantity_reserved") - allocation.quantity
        )
        book.move(
            Movement.Kind.RELEASE,
            allocation.ingredient_id,
            reserved=-allocation.quantity,
            batch_id=allocation.batch_id,
            reservation_id=reservation.id,
            note=note,
        )
    Allocation.objects.filter(id__in=[a.id for a in allocations]).update(open=False)
    return _close(reservation, book, allocations, Reservation.Status.RELEASED, "stock.reservation_released")


def _close(
    reservation: Reservation, book: LevelBook, allocations: list[Allocation], status: str, event_type: str
) -> Reservation:
    body = _event_body(reservation, allocations)
    reservation.status = status
    reservation.closed_at = timezone.now()
    reservation.save(update_fields=["status", "closed_at"])
    events = book.save()
    events.append(NewEvent(event_type, body, key=reservation.transaction_id))
    publish_many(events, with_keys=False)
    return reservation


def release_expired_holds(*, now=None, limit: int = 500) -> int:
    """Release reservations whose hold time has passed without a commit (run by beat)."""
    now = now or timezone.now()
    due = list(
        Reservation.objects.filter(status=Reservation.Status.RESERVED, hold_until__lte=now)
        .order_by("hold_until")
        .values_list("transaction_id", flat=True)[:limit]
    )
    released = 0
    for transaction_id in due:
        try:
            release_reservation(transaction_id=transaction_id, note="hold time passed")
            released += 1
        except ReservationClosed:
            continue  # committed meanwhile
    return released


# ---- Expiry ---------------------------------------------------------------------------------------


def expire_batches(*, today: date | None = None) -> int:
    """Take batches past best-before out of stock, one ingredient per transaction; returns how many."""
    today = today or timezone.localdate()
    ingredient_ids = sorted(
        set(
            Batch.objects.filter(status=Batch.Status.ACTIVE, best_before__lt=today).values_list(
                "ingredient_id", flat=True
            )
        )
    )
    expired = 0
    for ingredient_id in ingredient_ids:
        expired += _expire_ingredient(ingredient_id, today)
    return expired


@transaction.atomic
def _expire_ingredient(ingredient_id: int, today: date) -> int:
    book = LevelBook([ingredient_id])
    expiring = list(
        Batch.objects.filter(ingredient_id=ingredient_id, status=Batch.Status.ACTIVE, best_before__lt=today).order_by(
            "best_before", "id"
        )
    )
    if not expiring:
        return 0
    events = []
    at_risk: dict[int, dict] = {}
    for batch in expiring:
        for allocation in Allocation.objects.filter(batch=batch, open=True).select_related("reservation"):
            missing = _reallocate(book, allocation, today)
            if missing > 0:
                at_risk.setdefault(allocation.reservation_id, {"reservation": allocation.reservation, "items": []})
                at_risk[allocation.reservation_id]["items"].append(
                    {"sku": book.levels[ingredient_id].ingredient.sku, "batch_id": batch.id, "missing": str(missing)}
                )
        batch.refresh_from_db()
        book.move(
            Movement.Kind.EXPIRE,
            ingredient_id,
            on_hand=-batch.quantity_remaining,
            batch_id=batch.id,
            note=f"best before {batch.best_before}",
        )
        Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.EXPIRED, quantity_remaining=ZERO)
        events.append(
            NewEvent(
                "stock.batch_expired",
                {
                    "batch_id": batch.id,
                    "sku": book.levels[ingredient_id].ingredient.sku,
                    "lot": batch.lot,
                    "best_before": batch.best_before.isoformat(),
                    "quantity": str(batch.quantity_remaining),
                },
                key=f"batch-{batch.id}",
            )
        )
    for entry in at_risk.values():
        reservation = entry["reservation"]
        Reservation.objects.filter(pk=reservation.pk).update(at_risk=True)
        events.append(
            NewEvent(
                "stock.reservation_at_risk",
                {"transaction_id": reservation.transaction_id, "items": entry["items"]},
                key=reservation.transaction_id,
            )
        )
    publish_many(book.save() + events, with_keys=False)
    return len(expiring)


def _reallocate(book: LevelBook, allocation: Allocation, today: date) -> Decimal:
    """Move an allocation off an expiring batch to the next eligible ones; return what could not move."""
    reservation = allocation.reservation
    not_before = max(today, reservation.needed_by) if reservation.needed_by else today
    needed = allocation.quantity
    candidates = Batch.objects.filter(
        ingredient_id=allocation.ingredient_id, status=Batch.Status.ACTIVE, best_before__gte=not_before
    ).exclude(pk=allocation.batch_id)
    moved = []
    for batch in candidates.order_by("best_before", "id"):
        if needed <= 0:
            break
        take = min(needed, batch.quantity_available)
        if take <= 0:
            continue
        needed -= take
        Batch.objects.filter(pk=batch.pk).update(quantity_reserved=F("quantity_reserved") + take)
        moved.append(
            Allocation(reservation=reservation, batch=batch, ingredient_id=allocation.ingredient_id, quantity=take)
        )
        book.move(
            Movement.Kind.RESERVE,
            allocation.ingredient_id,
            reserved=take,
            batch_id=batch.id,
            reservation_id=reservation.id,
            note="moved off an expiring batch",
        )
    Allocation.objects.bulk_create(moved)
    Batch.objects.filter(pk=allocation.batch_id).update(quantity_reserved=F("quantity_reserved") - allocation.quantity)
    book.move(
        Movement.Kind.RELEASE,
        allocation.ingredient_id,
        reserved=-allocation.quantity,
        batch_id=allocation.batch_id,
        reservation_id=reservation.id,
        note="batch expired",
    )
    Allocation.objects.filter(pk=allocation.pk).update(open=False)
    return needed


# ---- Receipts -------------------------------------------------------------------------------------

REQUIRED_COLUMNS = ("sku", "quantity", "best_before")
OPTIONAL_COLUMNS = ("lot", "supplier")
CHUNK_ROWS = 5000
BATCH_FIELDS = [
    "ingredient",
    "lot",
    "supplier",
    "receipt",
    "source_line",
    "received_at",
    "best_before",
    "quantity_received",
    "quantity_remaining",
    "quantity_reserved",
    "status",
]
MAX_REPORTED_ERRORS = 1000
_UNDECODED = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" makes of bytes that are not UTF-8


@dataclass
class ReceiptOutcome:
    receipt: Receipt
    outcome: str  # "processed" or "duplicate"


@dataclass
class _Progress:
    rows: int = 0
    ingested: int = 0
    errors: list = field(default_factory=list)
    error_count: int = 0

    def error(self, line: int, column: str, reason: str) -> None:
        if not reason.isascii():  # bytes that were not UTF-8 must not reach the JSON column as lone surrogates
            reason = reason.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"line": line, "column": column, "reason": reason})

    def absorb(self, other: _Progress) -> None:
        """Add another tally's rows ingested and errors; the errors stay in line order, the first ones kept."""
        self.ingested += other.ingested
        self.error_count += other.error_count
        merged = heapq.merge(self.errors, other.errors, key=lambda error: error["line"])
        self.errors = list(itertools.islice(merged, MAX_REPORTED_ERRORS))


class _HashingReader(io.RawIOBase):
    """Reads a binary stream while hashing it, so a file is parsed and fingerprinted in one pass."""

    def __init__(self, stream: BinaryIO):
        self.stream, self.sha256 = stream, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        self.sha256.update(data)
        buffer[: len(data)] = data
        return len(data)


def ingest_upload(*, upload, key: str | None = None) -> ReceiptOutcome:
    """Ingest an uploaded file (API or admin); its key defaults to ``uploads/<file name>``."""

    @contextmanager
    def reopen():
        upload.seek(0)  # read twice when it is a duplicate: once to hash, never closed in between
        yield upload

    return ingest_receipt(key=key or f"uploads/{upload.name}", open_stream=reopen, source="upload")


def file_sha256(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def ingest_receipt(
    *, key: str, open_stream: Callable[[], BinaryIO], source: str, progress: Callable[[int, int], None] | None = None
) -> ReceiptOutcome:
    """Ingest one CSV receipt (``sku,quantity,best_before,lot,supplier``), streaming, all-or-nothing per file.

    The same key and content again is a duplicate and changes nothing; the same key with other content
    is refused (``ReceiptConflict``). Each row is checked on its own: good rows are ingested, bad ones
    reported on the receipt with line, column and reason.
    """
    existing = Receipt.objects.filter(key=key).first()
    if existing is None:
        try:
            with transaction.atomic():
                return _ingest_new(key, open_stream, source, progress)
        except IntegrityError:
            existing = Receipt.objects.get(key=key)  # another worker ingested it meanwhile
    with open_stream() as stream:
        digest = file_sha256(stream)
    if digest != existing.sha256:
        raise ReceiptConflict(
            f"{key} was already received with different content.",
            errors={"key": ["Already received with different content."]},
        )
    return ReceiptOutcome(existing, "duplicate")


def _ingest_new(key, open_stream, source, progress) -> ReceiptOutcome:
    receipt = Receipt.objects.create(key=key, sha256="", source=source)  # holds the key against a 2nd worker
    default_lot = PurePosixPath(key).stem or key
    state = _Progress()
    deltas: dict[int, Decimal] = defaultdict(lambda: ZERO)
    with open_stream() as raw:
        hashing = _HashingReader(raw)
        # Bytes that are not UTF-8 become lone surrogates, so the row holding them is refused on its own.
        text = io.TextIOWrapper(
            io.BufferedReader(hashing, 1 << 20), encoding="utf-8-sig", errors="surrogateescape", newline=""
        )
        reader = csv.reader(text)
        header = _read_header(reader, state)
        if header is not None:
            _ingest_rows(receipt, _parse_rows(reader, header, default_lot, state), state, deltas, progress)
        for _ in iter(lambda: hashing.read(1 << 20), b""):
            pass  # hash the rest even if the header was bad
    receipt.sha256 = hashing.sha256.hexdigest()
    receipt.rows_total = state.rows
    receipt.rows_ingested = state.ingested
    receipt.errors = state.errors
    receipt.status = Receipt.Status.PROCESSED if header is not None else Receipt.Status.FAILED
    receipt.save()
    # The ledger gets one receipt row per ingredient and file; each batch keeps its file, line and quantity.
    book = LevelBook(deltas)
    for ingredient_id, delta in deltas.items():
        book.move(Movement.Kind.RECEIPT, ingredient_id, on_hand=delta, note=key[:200])
    events = book.save()
    events.append(
        NewEvent(
            "stock.receipt_processed",
            {
                "key": key,
                "source": source,
                "status": receipt.status,
                "rows": state.rows,
                "ingested": state.ingested,
                "errors": state.error_count,
            },
            key=key,
        )
    )
    publish_many(events, with_keys=False)
    return ReceiptOutcome(receipt, "processed")


def _ingest_rows(receipt: Receipt, rows: Iterator[tuple], state: _Progress, deltas, progress) -> None:
    """Write the parsed rows chunk by chunk while the next chunk is parsed (a pipeline of two threads).

    Parsing is Python; the lookups and the COPY of a chunk are mostly the database's time, which here
    overlaps the parsing of the next chunk instead of following it. The writes run in a thread of their
    own on this connection and transaction (``ConnectionWorker``), one chunk at a time and in file order.
    """
    written = _Progress()  # the writer's own tally: rows ingested, rows the database refused
    known = _Known()

    def written_down(pending) -> None:
        pending.result()
        if progress:
            progress(state.rows, written.ingested)

    pending = None
    with ConnectionWorker() as writer:
        for chunk in _chunks(rows, CHUNK_ROWS):
            if pending is not None:
                written_down(pending)
            pending = writer.submit(_ingest_chunk, receipt, chunk, written, deltas, known)
        if pending is not None:
            written_down(pending)
    state.absorb(written)


def _read_header(reader, state: _Progress) -> dict[str, int] | None:
    try:
        header = [column.strip().lower() for column in next(reader)]
    except StopIteration:
        state.error(1, "", "the file is empty")
        return None
    except csv.Error as exc:
        state.error(1, "header", f"not readable as CSV: {exc}")
        return None
    if _UNDECODED.search("".join(header)):
        state.error(1, "header", "not UTF-8 text (save the file as UTF-8)")
        return None
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    unknown = [column for column in header if column not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        reason = "; ".join(
            filter(
                None,
                [
                    f"missing column(s): {', '.join(missing)}" if missing else "",
                    f"unknown column(s): {', '.join(unknown)}" if unknown else "",
                ],
            )
        )
        state.error(1, "header", f"{reason}; expected sku,quantity,best_before[,lot][,supplier]")
        return None
    return {column: header.index(column) for column in header}


def _records(reader, state: _Progress) -> Iterator[tuple[int, list[str]]]:
    """``(line, fields)`` of each record after the header; a CSV syntax error ends the file there, reported.

    After such an error (an unbalanced quote running into the field size limit, say) where the next record
    starts is unknowable, so nothing after it is guessed at; the rows before it are ingested as usual.
    """
    records = enumerate(reader, start=2)
    while True:
        try:
            yield next(records)
        except StopIteration:
            return
        except csv.Error as exc:
            state.rows += 1
            state.error(reader.line_num, "", f"not readable as CSV ({exc}); the rest of the file was not read")
            return


def _parse_rows(reader, header, default_lot, state: _Progress) -> Iterator[tuple]:
    """Good rows as ``(line, sku, quantity, best_before, lot, supplier)``; each bad one reported once."""
    today = timezone.localdate()
    seen_lots: set[tuple[str, str]] = set()
    width = len(header)
    at_sku, at_quantity, at_best_before = header["sku"], header["quantity"], header["best_before"]
    at_lot, at_supplier = header.get("lot"), header.get("supplier")
    for number, values in _records(reader, state):
        if len(values) != width:
            if not values or all(not value.strip() for value in values):
                continue
            if len(values) > width:
                state.rows += 1
                state.error(number, "", f"expected {width} fields, found {len(values)}")
                continue
            values = values + [""] * (width - len(values))  # trailing optional fields (lot, supplier) left out
        joined = "".join(values)
        if not joined.isascii() and _UNDECODED.search(joined):
            state.rows += 1
            state.error(number, "", "not UTF-8 text (save the file as UTF-8)")
            continue
        sku, text_quantity, text_date = (
            values[at_sku].strip(),
            values[at_quantity].strip(),
            values[at_best_before].strip(),
        )
        lot = values[at_lot].strip() if at_lot is not None else ""
        supplier = values[at_supplier].strip() if at_supplier is not None else ""
        if not (sku and text_quantity and text_date):
            if not (sku or text_quantity or text_date or lot or supplier):
                continue  # a blank row
            state.rows += 1
            state.error(number, "sku" if not sku else "quantity" if not text_quantity else "best_before", "missing")
            continue
        state.rows += 1
        try:
            quantity = Decimal(text_quantity)
            if not quantity.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            state.error(number, "quantity", f"not a number: {text_quantity!r}")
            continue
        if quantity <= 0:
            state.error(number, "quantity", f"must be positive, got {text_quantity}")
            continue
        if quantity.as_tuple().exponent < -3:
            state.error(number, "quantity", "at most 3 decimal places")
            continue
        try:
            best_before = date.fromisoformat(text_date)
        except ValueError:
            state.error(number, "best_before", f"not a date (YYYY-MM-DD): {text_date!r}")
            continue
        if best_before < today:
            state.error(number, "best_before", f"{best_before} is already past")
            continue
        lot = lot or default_lot
        if len(lot) > 100:
            state.error(number, "lot", "longer than 100 characters")
            continue
        if (sku, lot) in seen_lots:
            state.error(number, "lot", f"lot {lot!r} appears twice for {sku} in this file")
            continue
        seen_lots.add((sku, lot))
        yield number, sku, quantity, best_before, lot, supplier


def _chunks(rows: Iterator[tuple], size: int) -> Iterator[list[tuple]]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class _Known:
    """Ingredient and supplier ids already looked up while ingesting one file."""

    ingredients: dict[str, int | None] = field(default_factory=dict)
    suppliers: dict[str, int] = field(default_factory=dict)


def _ingest_chunk(
    receipt: Receipt, rows: list[tuple], state: _Progress, deltas: dict[int, Decimal], known: _Known
) -> None:
    new_skus = {row[1] for row in rows} - known.ingredients.keys()
    if new_skus:
        found = dict(Ingredient.objects.filter(sku__in=new_skus).values_list("sku", "id"))
        known.ingredients.update({sku: found.get(sku) for sku in new_skus})
    ingredients = known.ingredients
    existing = _received_lots({(ingredients[row[1]], row[4]) for row in rows if ingredients[row[1]] is not None})
    new_suppliers = {row[5] for row in rows if row[5]} - known.suppliers.keys()
    if new_suppliers:
        known.suppliers.update(_suppliers(new_suppliers))
    suppliers = known.suppliers
    now = timezone.now()
    batches = []
    for line, sku, quantity, best_before, lot, supplier in rows:
        ingredient_id = ingredients[sku]
        if ingredient_id is None:
            state.error(line, "sku", f"unknown sku {sku!r}")
            continue
        if (ingredient_id, lot) in existing:
            state.error(line, "lot", f"lot {lot!r} of {sku} was already received")
            continue
        batches.append(
            (
                ingredient_id,
                lot,
                suppliers.get(supplier),
                receipt.id,
                line,
                now,
                best_before,
                quantity,
                quantity,
                ZERO,
                Batch.Status.ACTIVE,
            )
        )
        deltas[ingredient_id] += quantity
    copy_rows(Batch, BATCH_FIELDS, batches)  # COPY on PostgreSQL
    state.ingested += len(batches)


def _received_lots(pairs: set[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which (ingredient, lot) pairs already have a batch; on PostgreSQL one probe of the unique index each.

    The LATERAL ... LIMIT 1 keeps the planner from hashing the whole batch table instead (it did, once per
    5,000-row chunk, without fresh statistics: a fifth of the database's time on a 200,000-row file).
    """
    if not pairs:
        return set()
    if connection.vendor != "postgresql":
        found = Batch.objects.filter(
            ingredient_id__in={i for i, _ in pairs}, lot__in={lot for _, lot in pairs}
        ).values_list("ingredient_id", "lot")
        return set(found) & pairs
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT wanted.ingredient_id, wanted.lot"
            " FROM unnest(%s::bigint[], %s::text[]) AS wanted(ingredient_id, lot)"
            " CROSS JOIN LATERAL (SELECT 1 FROM stock_batch b"
            " WHERE b.ingredient_id = wanted.ingredient_id AND b.lot = wanted.lot LIMIT 1) hit",
            [[i for i, _ in pairs], [lot for _, lot in pairs]],
        )
        return set(cursor.fetchall())


def _suppliers(names: set[str]) -> dict[str, int]:
    if not names:
        return {}
    Supplier.objects.bulk_create([Supplier(name=name) for name in names], ignore_conflicts=True)
    return dict(Supplier.objects.filter(name__in=names).values_list("name", "id"))


# ---- Receipts from object storage -----------------------------------------------------------------


def ingest_object(*, key: str, storage=None) -> ReceiptOutcome:
    """Ingest one receipt file from object storage (S3, or the local drop folder by default)."""
    from supplychain.core.storage import get_storage

    storage = storage or get_storage()
    source = "s3" if storage.describe().startswith("s3://") else "folder"
    return ingest_receipt(key=key, open_stream=lambda: storage.open_stream(key), source=source)


def new_receipt_keys(*, prefix: str, storage=None, limit: int = 100) -> list[str]:
    """CSV keys under ``prefix`` that were never received (the poll's to-do list)."""
    from supplychain.core.storage import get_storage

    storage = storage or get_storage()
    candidates = []
    for key in storage.list(prefix):
        if key.lower().endswith(".csv"):
            candidates.append(key)
    known = set(Receipt.objects.filter(key__in=candidates).values_list("key", flat=True))
    return [key for key in candidates if key not in known][:limit]


def queue_notified_receipts(*, records: list[dict]) -> list[str]:
    """Queue ingest of the CSV objects named in an S3 event notification; the rest is ignored, on record."""
    from urllib.parse import unquote_plus

    from django.conf import settings

    from stock import tasks
    from supplychain.events.services import record_received

    bucket = settings.OBJECT_STORAGE["BUCKET"]
    queued = []
    for record in records:
        s3 = record.get("s3") or {}
        key = unquote_plus((s3.get("object") or {}).get("key", ""))  # S3 URL-encodes keys in notifications
        record_bucket = (s3.get("bucket") or {}).get("name", "")
        wanted = (
            key.startswith(settings.STOCK_RECEIPTS_PREFIX)
            and key.lower().endswith(".csv")
            and (not bucket or record_bucket == bucket)
            and str(record.get("eventName", "ObjectCreated")).startswith("ObjectCreated")
        )
        record_received(
            partner="s3",
            message_type="s3.object_created",
            entity_key=key,
            outcome="queued" if wanted else "ignored",
            data=record,
        )
        if wanted:
            transaction.on_commit(lambda key=key: tasks.ingest_object.delay(key))
            queued.append(key)
    return queued
