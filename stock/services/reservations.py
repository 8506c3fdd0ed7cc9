"""Reservations: reserve (all or nothing, FEFO), commit, release, and the release of expired holds.

Every change of a level happens with its ledger rows in one transaction, under the level rows' locks
taken in ascending ingredient order, so concurrent reservations never oversell and never deadlock.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import NamedTuple

from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, When
from django.utils import timezone

from stock.errors import (
    InvalidItems,
    ReservationClosed,
    ReservationNotFound,
    TransactionIdReused,
    UnknownSku,
)
from stock.models import Allocation, Batch, Ingredient, Movement, Reservation
from stock.services.levels import MILLI, ZERO, LevelBook
from supplychain.events import registry
from supplychain.events.services import NewEvent, announce_published, current_correlation_id, publish_many


@dataclass
class Item:
    sku: str
    quantity: Decimal

    def __post_init__(self) -> None:
        self.quantity = Decimal(str(self.quantity))


def canonical_request(transaction_id: str, items: list[Item], needed_by: date | None, hold_seconds: int | None) -> dict:
    return {
        "transaction_id": transaction_id,
        "items": [{"sku": item.sku, "quantity": format(item.quantity.normalize(), "f")} for item in items],
        "needed_by": needed_by.isoformat() if needed_by else None,
        "hold_seconds": hold_seconds,
    }


def request_digest(request: dict) -> str:
    """The request hash a repeat must match to be answered as the first time."""
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def check_each_sku_once(items: list[Item]) -> None:
    skus = [item.sku for item in items]
    repeated = sorted({sku for sku in skus if skus.count(sku) > 1})
    if repeated:
        reason = f"Each sku once; repeated: {', '.join(repeated)}."
        raise InvalidItems(f"items: {reason}", errors={"items": [reason]})


def rejected_response(transaction_id: str, shortages: list[dict]) -> dict:
    """The stored 409 answer of a rejected reservation (stock_reserve.sql builds the same)."""
    return {
        "type": "insufficient_stock",
        "title": "Not enough stock; nothing was reserved.",
        "status": 409,
        "detail": "; ".join(f"{s['sku']}: {s['requested']} requested, {s['available']} available" for s in shortages),
        "errors": {},
        "transaction_id": transaction_id,
        "shortages": shortages,
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
    check_each_sku_once(items)
    request = canonical_request(transaction_id, items, needed_by, hold_seconds)
    digest = request_digest(request)
    try:
        if connection.vendor == "postgresql":
            return _reserve_in_database(request, digest, items, needed_by, hold_seconds)
        with transaction.atomic():
            return _reserve_in_python(request, digest, items, needed_by, hold_seconds)
    except IntegrityError:
        # A concurrent request with the same id committed first: answer as a repeat of it.
        return replay_or_refuse(Reservation.objects.get(transaction_id=transaction_id), digest)


RESERVE_EVENT_TYPES = (
    "stock.level_changed",
    "stock.low",
    "stock.reservation_created",
    "stock.reservation_rejected",
    "stock.reservation_committed",
    "stock.reservation_released",
)


@functools.cache
def event_versions() -> str:
    return json.dumps({event_type: registry.latest_version(event_type) for event_type in RESERVE_EVENT_TYPES})


def earliest_best_before(needed_by: date | None, today: date | None = None) -> date:
    """The first best-before date a batch may have to serve a request (``today``: pass it for many at once)."""
    today = today or timezone.localdate()
    return max(today, needed_by) if needed_by else today


def call_stock_function(sql: str, params: list) -> dict:
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
    result = call_stock_function(
        "SELECT stock_reserve(%s, %s::jsonb, %s, %s::text[], %s::numeric[], %s, %s, %s, %s, %s, %s::jsonb)",
        [
            request["transaction_id"],
            json.dumps(request),
            digest,
            [item.sku for item in items],
            [item.quantity for item in items],
            earliest_best_before(needed_by),
            needed_by,
            hold_until.isoformat() if hold_until else None,
            now.isoformat(),
            current_correlation_id(),
            event_versions(),
        ],
    )
    if result["outcome"] == "unknown":
        raise UnknownSku(
            "Unknown sku in the request.", errors={f"items.{n}.sku": ["Unknown sku."] for n in result["missing"]}
        )
    if result["outcome"] == "replay":
        return replay_or_refuse(Reservation.objects.get(pk=result["id"]), digest)
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


def replay_or_refuse(reservation: Reservation, digest: str) -> Reservation:
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
        return replay_or_refuse(existing, digest)
    ingredients = _ingredients_for(items)
    book = LevelBook(ingredient.id for ingredient in ingredients.values())
    not_before = earliest_best_before(needed_by)
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
        reservation.response = rejected_response(reservation.transaction_id, shortages)
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


class AllocationLine(NamedTuple):
    """One allocation as the reservation document shows it."""

    sku: str
    batch_id: int
    lot: str
    best_before: date
    supplier: str | None
    quantity: Decimal
    open: bool


def reservation_document(reservation: Reservation, allocations: list[Allocation] | None = None) -> dict:
    """The reservation as the API shows it: status and, per item, the batches it came from.

    Pass ``allocations`` (batch, supplier and ingredient loaded) to build it without a query.
    """
    if allocations is None:
        query = Allocation.objects.filter(reservation=reservation).select_related("batch__supplier", "ingredient")
        allocations = list(query)
    lines = [
        AllocationLine(
            a.ingredient.sku,
            a.batch.id,
            a.batch.lot,
            a.batch.best_before,
            a.batch.supplier.name if a.batch.supplier else None,
            a.quantity,
            a.open,
        )
        for a in allocations
    ]
    return reservation_body(
        reservation.transaction_id,
        reservation.status,
        reservation.needed_by,
        reservation.hold_until,
        reservation.at_risk,
        lines,
    )


def reservation_body(transaction_id, status, needed_by, hold_until, at_risk, allocations: list[AllocationLine]) -> dict:
    items: dict[str, dict] = {}
    for allocation in sorted(allocations, key=lambda a: (a.sku, a.best_before, a.batch_id)):
        line = items.setdefault(allocation.sku, {"sku": allocation.sku, "quantity": ZERO, "batches": []})
        line["quantity"] += allocation.quantity
        line["batches"].append(
            {
                "batch_id": allocation.batch_id,
                "lot": allocation.lot,
                "best_before": allocation.best_before.isoformat(),
                "supplier": allocation.supplier,
                "quantity": str(allocation.quantity),
                "open": allocation.open,
            }
        )
    for line in items.values():
        line["quantity"] = str(line["quantity"])
    return {
        "transaction_id": transaction_id,
        "status": status,
        "needed_by": needed_by.isoformat() if needed_by else None,
        "hold_until": hold_until.isoformat() if hold_until else None,
        "at_risk": at_risk,
        "items": list(items.values()),
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
    result = call_stock_function(
        "SELECT stock_close(%s, %s, %s, %s, %s, %s::jsonb)",
        [transaction_id, status, note, timezone.now().isoformat(), current_correlation_id(), event_versions()],
    )
    if result["outcome"] == "not_found":
        raise ReservationNotFound(f"No reservation {transaction_id!r}.")
    if result["outcome"] == "closed":
        raise ReservationClosed(f"Reservation {transaction_id} is {result['status']}.")
    if result["outcome"] == "done":
        announce_published(result["events"])
    return Reservation.objects.get(pk=result["id"])


def _commit_in_python(transaction_id: str) -> Reservation:
    with transaction.atomic():  # not a decorator: mutmut does not mutate decorated functions
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


def _release_in_python(transaction_id: str, note: str) -> Reservation:
    with transaction.atomic():  # not a decorator: mutmut does not mutate decorated functions
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
