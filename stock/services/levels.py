"""Levels and the movement ledger: the locked levels of one transaction and the events their changes cause."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import NamedTuple

from django.db import connection
from django.db.models import Case, Value, When
from django.utils import timezone

from stock.models import Movement, StockLevel
from supplychain.core.db import copy_rows
from supplychain.events.services import NewEvent

ZERO = Decimal(0)
MILLI = Decimal("0.001")


class MovementRow(NamedTuple):
    """One ledger row before it is written (``created_at`` is the moment of ``LevelBook.save``)."""

    ingredient_id: int
    batch_id: int | None
    reservation_id: int | None
    kind: str
    on_hand_delta: Decimal
    reserved_delta: Decimal
    note: str


MOVEMENT_FIELDS = [*MovementRow._fields, "created_at"]


class LevelBook:
    """The locked levels of one transaction; collects ledger rows and the events their changes cause."""

    def __init__(self, ingredient_ids: Iterable[int]):
        ids = sorted(set(ingredient_ids))
        self.levels = self._lock(ids)
        if len(self.levels) < len(ids):  # an ingredient's first stock: create its level row, then lock it
            StockLevel.objects.bulk_create([StockLevel(ingredient_id=i) for i in ids], ignore_conflicts=True)
            self.levels = self._lock(ids)
        self.before = {i: (level.on_hand, level.reserved) for i, level in self.levels.items()}
        self.movements: list[MovementRow] = []

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
        self.movements.append(MovementRow(ingredient_id, batch_id, reservation_id, kind, on_hand, reserved, note))

    def save(self) -> list[NewEvent]:
        """Write the levels and ledger; return the level_changed / low events to publish."""
        if self.movements:  # plain rows by COPY on PostgreSQL (a group reservation writes hundreds)
            now = timezone.now()
            copy_rows(Movement, MOVEMENT_FIELDS, ((*row, now) for row in self.movements))
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
