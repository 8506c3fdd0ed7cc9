"""Picking: the warehouse reports which batch it took for each line; allocations follow, then stock is consumed.

When the batch picked is not the one allocated (the picker took the crate in front), the allocation moves to
the picked batch: a release on the allocated batch and a reserve on the picked one in the ledger, so the level
is unchanged, the ledger still sums, and traceability shows the batch that went into the box. The reservation
is then committed (consumed) in the same transaction.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import NamedTuple

from django.db import transaction
from django.db.models import F

from stock.errors import PickMismatch, ReservationClosed, ReservationNotFound
from stock.models import Allocation, Batch, Movement, Reservation
from stock.services.levels import MILLI, ZERO, LevelBook
from stock.services.reservations import commit_reservation
from supplychain.events.services import publish_many


class PickedLine(NamedTuple):
    """What the warehouse took: this much of this sku from the batch with this lot."""

    sku: str
    lot: str
    quantity: Decimal


class MovedAllocation(NamedTuple):
    sku: str
    from_batch_id: int
    to_batch_id: int
    quantity: Decimal


def confirm_pick(*, transaction_id: str, picked: list[PickedLine]) -> list[MovedAllocation]:
    """Move the reservation's allocations onto the batches picked, then commit it; returns what moved.

    Per sku the picked quantities must add up to what the reservation holds, each picked batch must be an
    active batch of that sku with enough unreserved stock for what moves onto it: otherwise ``PickMismatch``
    (422) and nothing changes. Confirming a committed reservation again changes nothing (returns ``[]``).
    Locks: the levels (ascending ingredient), the reservation, then the batches (ascending id).
    """
    with transaction.atomic():
        reservation = Reservation.objects.filter(transaction_id=transaction_id).first()
        if reservation is None:
            raise ReservationNotFound(f"No reservation {transaction_id!r}.")
        if reservation.status == Reservation.Status.COMMITTED:
            return []
        allocations = list(Allocation.objects.filter(reservation=reservation, open=True).select_related("ingredient"))
        book = LevelBook({a.ingredient_id for a in allocations})
        reservation = Reservation.objects.select_for_update().get(pk=reservation.pk)
        if reservation.status == Reservation.Status.COMMITTED:
            return []
        if reservation.status != Reservation.Status.RESERVED:
            raise ReservationClosed(f"Reservation {transaction_id} is {reservation.status}.")
        allocations = list(
            Allocation.objects.filter(reservation=reservation, open=True).select_related("ingredient").order_by("id")
        )
        moves = _plan(reservation, allocations, picked)
        for move in moves:
            _move(book, reservation, allocations, move)
        publish_many(book.save(), with_keys=False)
        commit_reservation(transaction_id=transaction_id)
    return moves


def _plan(reservation: Reservation, allocations: list[Allocation], picked: list[PickedLine]) -> list[MovedAllocation]:
    ingredient_of = {a.ingredient.sku: a.ingredient_id for a in allocations}
    held: dict[str, dict[int, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    for allocation in allocations:
        held[allocation.ingredient.sku][allocation.batch_id] += allocation.quantity
    errors: dict[str, list[str]] = {}
    wanted: dict[str, dict[int, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    lots = {(line.sku, line.lot) for line in picked}
    batches = {
        (batch.ingredient_id, batch.lot): batch
        for batch in Batch.objects.select_for_update()
        .filter(ingredient_id__in=list(ingredient_of.values()), lot__in=[lot for _, lot in lots])
        .order_by("id")
    }
    for index, line in enumerate(picked):
        quantity = Decimal(str(line.quantity)).quantize(MILLI)
        if line.sku not in ingredient_of:
            errors.setdefault(f"lines.{index}.sku", []).append(f"The reservation holds no {line.sku}.")
            continue
        batch = batches.get((ingredient_of[line.sku], line.lot))
        if batch is None:
            errors.setdefault(f"lines.{index}.lot", []).append(f"No batch {line.lot!r} of {line.sku}.")
            continue
        if quantity <= 0:
            errors.setdefault(f"lines.{index}.quantity", []).append("Must be more than 0.")
            continue
        wanted[line.sku][batch.id] += quantity
    for sku, per_batch in held.items():
        total_held, total_picked = sum(per_batch.values(), ZERO), sum(wanted[sku].values(), ZERO)
        if total_held != total_picked:
            errors.setdefault(sku, []).append(f"{total_picked} picked, {total_held} reserved.")
    by_id = {batch.id: batch for batch in batches.values()}
    moves: list[MovedAllocation] = []
    for sku, per_batch in wanted.items():
        surplus = [(b, q - per_batch.get(b, ZERO)) for b, q in held[sku].items() if q > per_batch.get(b, ZERO)]
        deficit = [(b, q - held[sku].get(b, ZERO)) for b, q in per_batch.items() if q > held[sku].get(b, ZERO)]
        for batch_id, quantity in deficit:
            batch = by_id[batch_id]
            if batch.status != Batch.Status.ACTIVE or batch.quantity_available < quantity:
                errors.setdefault(sku, []).append(
                    f"Batch {batch.lot} has {batch.quantity_available} free ({batch.status}), {quantity} would move."
                )
        for to_batch, need in deficit:
            while need > 0 and surplus:
                from_batch, spare = surplus[0]
                take = min(need, spare)
                moves.append(MovedAllocation(sku, from_batch, to_batch, take))
                need -= take
                surplus[0] = (from_batch, spare - take)
                if surplus[0][1] == 0:
                    surplus.pop(0)
    if errors:
        detail = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in errors.items())
        raise PickMismatch(f"Pick of {reservation.transaction_id} does not match: {detail}", errors=errors)
    return moves


def _move(book: LevelBook, reservation: Reservation, allocations: list[Allocation], move: MovedAllocation) -> None:
    ingredient_id = next(a.ingredient_id for a in allocations if a.ingredient.sku == move.sku)
    left = move.quantity
    for allocation in [a for a in allocations if a.batch_id == move.from_batch_id and a.quantity > 0]:
        take = min(left, allocation.quantity)
        allocation.quantity -= take
        left -= take
        if allocation.quantity == 0:
            Allocation.objects.filter(pk=allocation.pk).delete()
        else:
            Allocation.objects.filter(pk=allocation.pk).update(quantity=allocation.quantity)
        if left == 0:
            break
    Batch.objects.filter(pk=move.from_batch_id).update(quantity_reserved=F("quantity_reserved") - move.quantity)
    Batch.objects.filter(pk=move.to_batch_id).update(quantity_reserved=F("quantity_reserved") + move.quantity)
    target = next((a for a in allocations if a.batch_id == move.to_batch_id and a.quantity > 0), None)
    if target is not None:
        target.quantity += move.quantity
        Allocation.objects.filter(pk=target.pk).update(quantity=target.quantity)
    else:
        created = Allocation.objects.create(
            reservation=reservation, batch_id=move.to_batch_id, ingredient_id=ingredient_id, quantity=move.quantity
        )
        created.ingredient = next(a.ingredient for a in allocations if a.ingredient_id == ingredient_id)
        allocations.append(created)
    book.move(
        Movement.Kind.RELEASE,
        ingredient_id,
        reserved=-move.quantity,
        batch_id=move.from_batch_id,
        reservation_id=reservation.id,
        note=f"picked from batch {move.to_batch_id} instead",
    )
    book.move(
        Movement.Kind.RESERVE,
        ingredient_id,
        reserved=move.quantity,
        batch_id=move.to_batch_id,
        reservation_id=reservation.id,
        note=f"picked instead of batch {move.from_batch_id}",
    )
