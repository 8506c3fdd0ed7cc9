"""Group reservations: many all-or-nothing reservations in one transaction, planned together, written set-based.

The rules are the single path's (``stock.services.reservations``): a group answers and writes what the same
requests one by one would, but publishes one level change per ingredient per call.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, When
from django.utils import timezone

from stock.errors import (
    InvalidItems,
    TransactionIdRepeated,
    TransactionIdReused,
    UnknownSku,
)
from stock.models import Allocation, Batch, Ingredient, Movement, Reservation
from stock.services.levels import MILLI, ZERO, LevelBook
from stock.services.reservations import (
    AllocationLine,
    Item,
    canonical_request,
    check_each_sku_once,
    earliest_best_before,
    rejected_response,
    replay_or_refuse,
    request_digest,
    reservation_body,
)
from supplychain.core.db import copy_rows
from supplychain.core.errors import DomainError
from supplychain.events.services import NewEvent, publish_many

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
            check_each_sku_once(request.items)
        except InvalidItems as error:
            refuse(position, request.transaction_id, error)
            continue
        canonical = canonical_request(request.transaction_id, request.items, request.needed_by, request.hold_seconds)
        planned.append(_Planned(position, request, canonical, request_digest(canonical)))

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
                    transaction_id, "replayed", reservation=replay_or_refuse(existing[transaction_id], plan.digest)
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
    not_before = earliest_best_before(plan.request.needed_by)
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
            reservation.response = rejected_response(request.transaction_id, plan.shortages)
        else:
            reservation.status = Reservation.Status.RESERVED
            reservation.response_status = 201
            levels = book.levels
            reservation.response = reservation_body(
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
