"""Group reservations: many all-or-nothing reservations in one transaction, planned together, written set-based.

The rules are the single path's (``stock.services.reservations``): a group answers and writes what the same
requests one by one would, but publishes one level change per ingredient per call.
"""

from __future__ import annotations

import json
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
    call_stock_function,
    canonical_request,
    check_each_sku_once,
    earliest_best_before,
    event_versions,
    rejected_response,
    replay_or_refuse,
    request_digest,
    reservation_body,
)
from supplychain.core.db import copy_rows
from supplychain.core.errors import DomainError
from supplychain.events.services import NewEvent, announce_published, current_correlation_id, publish_many

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

    On PostgreSQL the whole group is one call of the ``stock_reserve_many`` database function
    (stock/sql/stock_reserve_many.sql: planned before the locks, re-checked under them, written
    set-based); elsewhere (SQLite) the same rules run here in Python. Runs in the caller's transaction
    when there is one. A concurrent call that commits one of these transaction ids first makes the
    insert fail; the group is then planned again (inside a savepoint), and that request is answered as a repeat.
    """
    if len(requests) > GROUP_LIMIT:
        reason = f"At most {GROUP_LIMIT} reservations per call, got {len(requests)}."
        raise InvalidItems(f"reservations: {reason}", errors={"reservations": [reason]})
    results, planned = _screen(requests)
    if not planned:
        return results
    for attempt in range(1, _GROUP_ATTEMPTS + 1):
        try:
            if _set_based():
                _reserve_in_database(planned, results)
            else:
                with transaction.atomic():
                    _reserve_in_python(planned, results)
            return results
        except IntegrityError:
            if attempt == _GROUP_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _screen(requests: list[ReservationRequest]) -> tuple[list[ReservationResult | None], list[_Planned]]:
    """Refuse what needs no database (an id named twice, a repeated sku); the rest, canonical and digested."""
    results: list[ReservationResult | None] = [None] * len(requests)
    counts: dict[str, int] = defaultdict(int)
    for request in requests:
        counts[request.transaction_id] += 1
    planned: list[_Planned] = []
    for position, request in enumerate(requests):
        if counts[request.transaction_id] > 1:
            results[position] = ReservationResult(
                request.transaction_id,
                "refused",
                error=TransactionIdRepeated(
                    f"Transaction {request.transaction_id} appears more than once in the group.",
                    errors={f"reservations.{position}.transaction_id": ["Appears more than once in this call."]},
                ),
            )
            continue
        try:
            check_each_sku_once(request.items)
        except InvalidItems as error:
            results[position] = ReservationResult(request.transaction_id, "refused", error=error)
            continue
        canonical = canonical_request(request.transaction_id, request.items, request.needed_by, request.hold_seconds)
        planned.append(_Planned(position, request, canonical, request_digest(canonical)))
    return results, planned


def _reserve_in_database(planned: list[_Planned], results: list[ReservationResult | None]) -> None:
    """One call of ``stock_reserve_many``: plan, locks, re-check, every write and the events, in one round trip."""
    now = timezone.now()
    today = timezone.localdate()  # once: it reads the current time zone, a context-local lookup
    holds = {}
    documents = []
    for plan in planned:
        request = plan.request
        hold_until = now + timedelta(seconds=request.hold_seconds) if request.hold_seconds else None
        holds[plan.position] = hold_until
        documents.append(
            {
                "t": request.transaction_id,
                "r": plan.canonical,
                "h": plan.digest,
                "nb": earliest_best_before(request.needed_by, today).isoformat(),
                "nd": request.needed_by.isoformat() if request.needed_by else None,
                "hu": hold_until.isoformat() if hold_until else None,
                "i": [[item.sku, str(item.quantity)] for item in request.items],
            }
        )
    answer = call_stock_function(
        "SELECT stock_reserve_many(%s::jsonb, %s, %s, %s, %s::jsonb)",
        [json.dumps(documents), today, now.isoformat(), current_correlation_id(), event_versions()],
    )
    outcomes = answer["results"]
    replayed_ids = [outcome["id"] for outcome in outcomes if outcome["o"] == "replay"]
    stored = {r.id: r for r in Reservation.objects.filter(pk__in=replayed_ids)} if replayed_ids else {}
    for plan, outcome in zip(planned, outcomes, strict=True):
        transaction_id = plan.request.transaction_id
        kind = outcome["o"]
        if kind == "replay":
            try:
                result = ReservationResult(
                    transaction_id, "replayed", reservation=replay_or_refuse(stored[outcome["id"]], plan.digest)
                )
            except TransactionIdReused as error:
                result = ReservationResult(transaction_id, "refused", error=error)
        elif kind == "unknown":
            result = ReservationResult(
                transaction_id,
                "refused",
                error=UnknownSku(
                    "Unknown sku in the request.",
                    errors={f"items.{n}.sku": ["Unknown sku."] for n in outcome["missing"]},
                ),
            )
        else:
            rejected = kind == "rejected"
            reservation = Reservation(
                id=outcome["id"],
                transaction_id=transaction_id,
                status=kind,
                request_hash=plan.digest,
                request=plan.canonical,
                response_status=409 if rejected else 201,
                response=outcome["response"],
                needed_by=plan.request.needed_by,
                hold_until=holds[plan.position],
                created_at=now,
                closed_at=now if rejected else None,
            )
            reservation._state.adding, reservation._state.db = False, connection.alias
            result = ReservationResult(transaction_id, kind, reservation=reservation)
        results[plan.position] = result
    if answer["events"]:
        announce_published(answer["events"])


def _reserve_in_python(planned: list[_Planned], results: list[ReservationResult | None]) -> None:
    """The group on databases without ``stock_reserve_many`` (SQLite): the same rules, step by step."""

    def refuse(position: int, transaction_id: str, error: DomainError) -> None:
        results[position] = ReservationResult(transaction_id, "refused", error=error)

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


def _set_based() -> bool:
    """PostgreSQL runs a group as one call of ``stock_reserve_many``; other databases here, through the ORM."""
    return connection.vendor == "postgresql"


def _insert_reservations(reservations: list[Reservation]) -> None:
    """Insert the group's reservations (ids read back), in transaction id order.

    The order makes concurrent groups meet on the unique index in one order (no deadlock there either).
    """
    Reservation.objects.bulk_create(sorted(reservations, key=lambda reservation: reservation.transaction_id))
    for reservation in reservations:
        reservation._state.adding, reservation._state.db = False, connection.alias


def _add_reserved(taken: dict[int, Decimal]) -> None:
    """Add what the group took to each batch's reserved quantity, in one statement."""
    if not taken:
        return
    Batch.objects.filter(pk__in=taken).update(
        quantity_reserved=Case(*(When(pk=i, then=F("quantity_reserved") + take) for i, take in taken.items()))
    )
