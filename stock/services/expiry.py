"""Expiry: batches past best-before leave stock; their open allocations move to the next eligible batches."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from decimal import Decimal

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from stock.models import Allocation, Batch, Movement, Reservation
from stock.services.levels import ZERO, LevelBook
from supplychain.events.services import NewEvent, publish_many


def expire_batches(*, today: date | None = None, skus: Collection[str] | None = None) -> int:
    """Take batches past best-before out of stock, one ingredient per transaction; returns how many.

    ``skus`` limits it to those ingredients (the simulation, whose date runs ahead, expires only its own).
    """
    today = today or timezone.localdate()
    due = Batch.objects.filter(status=Batch.Status.ACTIVE, best_before__lt=today)
    if skus is not None:
        due = due.filter(ingredient__sku__in=list(skus))
    ingredient_ids = sorted(set(due.values_list("ingredient_id", flat=True)))
    expired = 0
    for ingredient_id in ingredient_ids:
        expired += _expire_ingredient(ingredient_id, today)
    return expired


def _expire_ingredient(ingredient_id: int, today: date) -> int:
    with transaction.atomic():  # not a decorator: mutmut does not mutate decorated functions
        book = LevelBook([ingredient_id])
        expiring = list(
            Batch.objects.filter(
                ingredient_id=ingredient_id, status=Batch.Status.ACTIVE, best_before__lt=today
            ).order_by("best_before", "id")
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
                        {
                            "sku": book.levels[ingredient_id].ingredient.sku,
                            "batch_id": batch.id,
                            "missing": str(missing),
                        }
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
    # Not the expiring batch itself: its best-before is before today, so before ``not_before``.
    candidates = Batch.objects.filter(
        ingredient_id=allocation.ingredient_id, status=Batch.Status.ACTIVE, best_before__gte=not_before
    )
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
