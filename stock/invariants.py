"""The invariant audit of the stock book: what the ledger, the levels, the batches and the allocations must agree on.

A critical module (mutation-tested, ``[tool.mutmut]`` in pyproject.toml): every assertion of the suite that the
book is consistent goes through ``invariant_violations``.
"""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Exists, OuterRef, Q, Sum

from stock.models import Allocation, Batch, Ingredient, Movement, StockLevel

ZERO = Decimal(0)


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
        if level.reserved > level.on_hand:  # the same as available < 0
            problems.append(f"{sku}: reserved {level.reserved} exceeds on hand {level.on_hand}")
    bad_batches = Batch.objects.filter(Q(quantity_remaining__lt=0) | Q(quantity_reserved__gt=0, status="expired"))
    problems.extend(
        f"batch {b.pk}: remaining {b.quantity_remaining}, reserved {b.quantity_reserved}, {b.status}"
        for b in bad_batches
    )
    problems.extend(_broken_references())
    return problems


def _broken_references() -> list[str]:
    """Allocations and ledger rows whose batch or ingredient is missing, or whose batch is another ingredient's.

    They have no database foreign keys to either (stock 0013, ``stock.models.UNCHECKED``): this is the check.
    """
    problems = []
    no_ingredient = ~Exists(Ingredient.objects.filter(pk=OuterRef("ingredient_id")))
    no_batch = Q(batch_id__isnull=False) & ~Exists(Batch.objects.filter(pk=OuterRef("batch_id")))
    other_ingredient = Exists(
        Batch.objects.filter(pk=OuterRef("batch_id")).exclude(ingredient_id=OuterRef("ingredient_id"))
    )
    for model, name in ((Allocation, "allocation"), (Movement, "ledger row")):
        for pk, ingredient_id, batch_id, missing_ingredient, missing_batch in (
            model.objects.filter(no_ingredient | no_batch | other_ingredient)
            .annotate(missing_ingredient=no_ingredient, missing_batch=no_batch)
            .values_list("pk", "ingredient_id", "batch_id", "missing_ingredient", "missing_batch")
            .order_by("pk")
        ):
            if missing_ingredient:
                problems.append(f"{name} {pk}: ingredient {ingredient_id} does not exist")
            elif missing_batch:
                problems.append(f"{name} {pk}: batch {batch_id} does not exist")
            else:
                problems.append(f"{name} {pk}: batch {batch_id} is not ingredient {ingredient_id}'s")
    return problems
