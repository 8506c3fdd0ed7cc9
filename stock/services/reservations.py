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
from dataclasses import dataclass, field
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
    TransactionIdRepeated,
    TransactionIdReused,
    UnknownSku,
)
from stock.models import Allocation, Batch, Ingredient, Movement, Reservation
from stock.services.levels import MILLI, ZERO, LevelBook
from supplychain.core.db import copy_rows
from supplychain.core.errors import DomainError
from supplychain.events import registry
from supplychain.events.services import NewEvent, announce_published, current_correlation_id, publish_many


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


def _digest(request: dict) -> str:
    """The request hash a repeat must match to be answered as the first time."""
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def _check_each_sku_once(items: list[Item]) -> None:
    skus = [item.sku for item in items]
    repeated = sorted({sku for sku in skus if skus.count(sku) > 1})
    if repeated:
        reason = f"Each sku once; repeated: {', '.join(repeated)}."
        raise InvalidItems(f"items: {reason}", errors={"items": [reason]})


def _rejected_response(transaction_id: str, shortages: list[dict]) -> dict:
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
    _check_each_sku_once(items)
    request = _canonical(transaction_id, items, needed_by, hold_seconds)
    digest = _digest(request)
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
        reservation.response = _rejected_response(reservation.transaction_id, shortages)
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
    return _document(
        reservation.transaction_id,
        reservation.status,
        reservation.needed_by,
        reservation.hold_until,
        reservation.at_risk,
        lines,
    )


def _document(transaction_id, status, needed_by, hold_until, at_risk, allocations: list[AllocationLine]) -> dict:
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


# ---- Group reservations ---------------------------------------------------------------------------

GROUP_LIMIT = 1000
_GROUP_ATTEMPTS = 3


@dataclass(frozen=True)
class ReservationRequest:
    """One reservation of a group: what ``reserve_stock`` takes."""

    transaction_id: str
    items: list[Item]
    needed_by: date | None = None
    hold_seconds: int | None = None


@dataclass
class ReservationResult:
    """The answer to one request of a group, as the single path would have given it.

    ``status`` is ``reserved`` or ``rejected`` (new, ``reservation`` holds it), ``replayed`` (the stored
    reservation of an identical earlier request) or ``refused`` (``error`` is what ``reserve_stock``
    would have raised: a repeated sku, an unknown sku, the id reused with another body or named twice).
    """

    transaction_id: str
    status: str
    reservation: Reservation | None = None
    error: DomainError | None = None

    @property
    def http_status(self) -> int:
        return self.error.status if self.error is not None else self.reservation.response_status


@dataclass
class _FreeBatch:
    """An eligible batch while a group is planned: what is still free of it after the requests before."""

    id: int
    best_before: date
    lot: str
    supplier: str | None
    free: Decimal
    taken: Decimal = ZERO


@dataclass
class _Planned:
    position: int
    request: ReservationRequest
    canonical: dict
    digest: str
    takes: list[tuple[int, _FreeBatch, Decimal]] = field(default_factory=list)  # (ingredient id, batch, quantity)
    shortages: list[dict] = field(default_factory=list)


def reserve_many(*, requests: list[ReservationRequest]) -> list[ReservationResult]:
    """Reserve a group of requests in one transaction, in the order given; each all or nothing on its own.

    Each request is reserved whole (FEFO, never a batch expiring before its ``needed_by``) or rejected
    with its shortages, and a rejected or refused request never undoes the others. Idempotent per
    request as ``reserve_stock`` is. Every level row is locked once, in ascending ingredient order, so
    group calls and single reservations never deadlock; the level changes publish one
    ``stock.level_changed`` (and at most one ``stock.low``) per ingredient, with the level after the call.
    Returns one ``ReservationResult`` per request, in order.

    Runs in the caller's transaction when there is one. A concurrent call that commits one of these
    transaction ids first makes the insert fail; the group is then planned again (inside a savepoint),
    and that request is answered as a repeat.
    """
    if len(requests) > GROUP_LIMIT:
        reason = f"At most {GROUP_LIMIT} reservations per call, got {len(requests)}."
        raise InvalidItems(f"reservations: {reason}", errors={"reservations": [reason]})
    for attempt in range(1, _GROUP_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                return _reserve_group(requests)
        except IntegrityError:
            if attempt == _GROUP_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _reserve_group(requests: list[ReservationRequest]) -> list[ReservationResult]:
    results: list[ReservationResult | None] = [None] * len(requests)

    def refuse(position: int, transaction_id: str, error: DomainError) -> None:
        results[position] = ReservationResult(transaction_id, "refused", error=error)

    counts: dict[str, int] = defaultdict(int)
    for request in requests:
        counts[request.transaction_id] += 1
    planned: list[_Planned] = []
    for position, request in enumerate(requests):
        if counts[request.transaction_id] > 1:
            refuse(
                position,
                request.transaction_id,
                TransactionIdRepeated(
                    f"Transaction {request.transaction_id} appears more than once in the group.",
                    errors={f"reservations.{position}.transaction_id": ["Appears more than once in this call."]},
                ),
            )
            continue
        try:
            _check_each_sku_once(request.items)
        except InvalidItems as error:
            refuse(position, request.transaction_id, error)
            continue
        canonical = _canonical(request.transaction_id, request.items, request.needed_by, request.hold_seconds)
        planned.append(_Planned(position, request, canonical, _digest(canonical)))

    skus = {item.sku for plan in planned for item in plan.request.items}
    ingredient_ids = dict(Ingredient.objects.filter(sku__in=skus).values_list("sku", "id")) if skus else {}
    book = LevelBook(ingredient_ids.values())  # the level locks, ascending ingredient order, once per call

    # After the locks: what committed before them is seen here (a concurrent insert of the same id still
    # fails at ours, and the call is planned again).
    existing = {
        reservation.transaction_id: reservation
        for reservation in Reservation.objects.filter(
            transaction_id__in=[plan.request.transaction_id for plan in planned]
        )
    }
    fresh: list[_Planned] = []
    for plan in planned:
        transaction_id = plan.request.transaction_id
        if transaction_id in existing:
            try:
                results[plan.position] = ReservationResult(
                    transaction_id, "replayed", reservation=_replay(existing[transaction_id], plan.digest)
                )
            except TransactionIdReused as error:
                refuse(plan.position, transaction_id, error)
            continue
        unknown = {
            f"items.{n}.sku": ["Unknown sku."]
            for n, item in enumerate(plan.request.items)
            if item.sku not in ingredient_ids
        }
        if unknown:
            refuse(plan.position, transaction_id, UnknownSku("Unknown sku in the request.", errors=unknown))
            continue
        fresh.append(plan)

    batches = _free_batches(sorted({ingredient_ids[item.sku] for plan in fresh for item in plan.request.items}))
    taken: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for plan in fresh:
        _plan_one(plan, ingredient_ids, book, batches, taken)
    for plan, reservation in zip(fresh, _write_group(fresh, book), strict=True):
        results[plan.position] = ReservationResult(
            reservation.transaction_id, reservation.status, reservation=reservation
        )
    return results


def _free_batches(ingredient_ids: list[int]) -> dict[int, list[_FreeBatch]]:
    """Active batches with stock free and not yet past best-before, first-expiring first, per ingredient."""
    by_ingredient: dict[int, list[_FreeBatch]] = defaultdict(list)
    if not ingredient_ids:
        return by_ingredient
    rows = (
        Batch.objects.filter(
            ingredient_id__in=ingredient_ids,
            status=Batch.Status.ACTIVE,
            best_before__gte=timezone.localdate(),
            quantity_remaining__gt=F("quantity_reserved"),
        )
        .order_by("best_before", "id")
        .values_list(
            "id", "ingredient_id", "best_before", "lot", "supplier__name", "quantity_remaining", "quantity_reserved"
        )
    )
    for batch_id, ingredient_id, best_before, lot, supplier, remaining, reserved in rows:
        by_ingredient[ingredient_id].append(_FreeBatch(batch_id, best_before, lot, supplier, remaining - reserved))
    return by_ingredient


def _plan_one(plan: _Planned, ingredient_ids: dict[str, int], book: LevelBook, batches, taken) -> None:
    """Reserve one request against what the requests before it left (the rules of ``_reserve_in_python``).

    ``taken`` is what the group planned so far per ingredient: the levels change when the plan is written.
    """
    not_before = _not_before(plan.request.needed_by)
    for item in plan.request.items:
        ingredient_id = ingredient_ids[item.sku]
        free = sum((b.free for b in batches[ingredient_id] if b.best_before >= not_before), ZERO)
        available = min(free, book.levels[ingredient_id].available - taken[ingredient_id]).quantize(MILLI)
        if available < item.quantity:
            plan.shortages.append(
                {"sku": item.sku, "requested": str(item.quantity.quantize(MILLI)), "available": str(available)}
            )
    if plan.shortages:
        return
    for item in plan.request.items:
        ingredient_id = ingredient_ids[item.sku]
        needed = item.quantity
        for batch in batches[ingredient_id]:
            if needed <= 0:
                break
            if batch.best_before < not_before:
                continue
            take = min(needed, batch.free).quantize(MILLI)
            if take <= 0:
                continue
            needed -= take
            batch.free -= take
            batch.taken += take
            plan.takes.append((ingredient_id, batch, take))
            taken[ingredient_id] += take


def _write_group(plans: list[_Planned], book: LevelBook) -> list[Reservation]:
    """Every write of a planned group: reservations, allocations, batches, ledger, levels, events."""
    now = timezone.now()
    reservations = []
    for plan in plans:
        request = plan.request
        hold_until = now + timedelta(seconds=request.hold_seconds) if request.hold_seconds else None
        reservation = Reservation(
            transaction_id=request.transaction_id,
            request_hash=plan.digest,
            request=plan.canonical,
            needed_by=request.needed_by,
            hold_until=hold_until,
            created_at=now,
        )
        if plan.shortages:
            reservation.status = Reservation.Status.REJECTED
            reservation.response_status = 409
            reservation.closed_at = now
            reservation.response = _rejected_response(request.transaction_id, plan.shortages)
        else:
            reservation.status = Reservation.Status.RESERVED
            reservation.response_status = 201
            levels = book.levels
            reservation.response = _document(
                request.transaction_id,
                reservation.status,
                request.needed_by,
                hold_until,
                False,
                [
                    AllocationLine(levels[i].ingredient.sku, b.id, b.lot, b.best_before, b.supplier, take, True)
                    for i, b, take in plan.takes
                ],
            )
        reservations.append(reservation)
    _insert_reservations(reservations)
    allocations = []
    events = []
    for plan, reservation in zip(plans, reservations, strict=True):
        if plan.shortages:
            events.append(
                NewEvent(
                    "stock.reservation_rejected",
                    {"transaction_id": reservation.transaction_id, "shortages": plan.shortages},
                    key=reservation.transaction_id,
                )
            )
            continue
        for ingredient_id, batch, take in plan.takes:
            allocations.append((reservation.id, batch.id, ingredient_id, take, True))
            book.move(
                Movement.Kind.RESERVE, ingredient_id, reserved=take, batch_id=batch.id, reservation_id=reservation.id
            )
        events.append(
            NewEvent(
                "stock.reservation_created",
                {
                    "transaction_id": reservation.transaction_id,
                    "items": [
                        {"sku": book.levels[i].ingredient.sku, "batch_id": b.id, "quantity": str(take)}
                        for i, b, take in plan.takes
                    ],
                },
                key=reservation.transaction_id,
            )
        )
    copy_rows(Allocation, ["reservation", "batch", "ingredient", "quantity", "open"], allocations)
    _add_reserved(_taken_per_batch(plans))
    publish_many(events + book.save(), with_keys=False)
    return reservations


def _taken_per_batch(plans: list[_Planned]) -> dict[int, Decimal]:
    taken: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for plan in plans:
        for _, batch, take in plan.takes:
            taken[batch.id] += take
    return taken


_RESERVATION_FIELDS = [
    "id",
    "transaction_id",
    "status",
    "request_hash",
    "request",
    "response_status",
    "response",
    "needed_by",
    "hold_until",
    "at_risk",
    "created_at",
    "closed_at",
]


def _set_based() -> bool:
    """PostgreSQL writes a group with a sequence, COPY and ``unnest``; other databases through the ORM."""
    return connection.vendor == "postgresql"


@functools.cache
def _id_sequence() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence('stock_reservation', 'id')")
        return cursor.fetchone()[0]


def _insert_reservations(reservations: list[Reservation]) -> None:
    """Insert the group's reservations, ids set on them, in transaction id order.

    On PostgreSQL the ids come from the table's sequence in one query and the rows go by COPY; the
    order by transaction id makes concurrent groups meet on the unique index in one order (no deadlock
    there either). Elsewhere ``bulk_create`` reads the ids back.
    """
    ordered = sorted(reservations, key=lambda reservation: reservation.transaction_id)
    if _set_based():
        with connection.cursor() as cursor:
            cursor.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)", [_id_sequence(), len(ordered)])
            for reservation, (new_id,) in zip(ordered, cursor.fetchall(), strict=True):
                reservation.id = new_id
        copy_rows(
            Reservation,
            _RESERVATION_FIELDS,
            ([getattr(reservation, name) for name in _RESERVATION_FIELDS] for reservation in ordered),
        )
    else:
        Reservation.objects.bulk_create(ordered)
    for reservation in reservations:
        reservation._state.adding, reservation._state.db = False, connection.alias


def _add_reserved(taken: dict[int, Decimal]) -> None:
    """Add what the group took to each batch's reserved quantity, in one statement."""
    if not taken:
        return
    if _set_based():
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE stock_batch b SET quantity_reserved = b.quantity_reserved + v.take"
                " FROM unnest(%s::bigint[], %s::numeric[]) AS v(id, take) WHERE b.id = v.id",
                [list(taken), list(taken.values())],
            )
        return
    Batch.objects.filter(pk__in=taken).update(
        quantity_reserved=Case(*(When(pk=i, then=F("quantity_reserved") + take) for i, take in taken.items()))
    )
