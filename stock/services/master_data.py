"""Writes of stock's master data: ingredients, recipes (bills of materials) and suppliers, upserted by natural key.

Operators and the ERP sync call the same services, for one entity or up to ``MAX_BULK`` in one
transaction. The writes are set-based: per table one locking read, at most one insert, one update and
(for recipe lines) one delete, whatever the number of entities. Every entity that changed publishes one
``stock.*_changed`` event; one already as asked writes and publishes nothing, so the same request again
changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple, TypeVar

from django.db import IntegrityError, transaction

from stock.errors import InvalidItems, MasterDataConflict, UnknownSku
from stock.models import Batch, Ingredient, Recipe, RecipeIngredient, Supplier, supplier_code_from_name
from stock.services.levels import MILLI, ZERO
from supplychain.core.errors import DomainError
from supplychain.events.services import NewEvent, publish_many

MAX_BULK = 1000  # entities per call: one ERP page; bounds the transaction and the request body
MAX_RECIPE_LINES = 200

Result = TypeVar("Result")


class Change(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


class IngredientData(NamedTuple):
    sku: str
    name: str
    unit: str
    low_stock_threshold: Decimal = ZERO


class RecipeLine(NamedTuple):
    sku: str
    quantity_per_portion: Decimal


class RecipeData(NamedTuple):
    code: str
    name: str
    lines: tuple[RecipeLine, ...]


class SupplierData(NamedTuple):
    code: str
    name: str


class Upserted(NamedTuple):
    """What an upsert did to one entity, in the order asked."""

    key: str
    change: Change


# ---- Ingredients ----------------------------------------------------------------------------------


def upsert_ingredient(
    *, sku: str, name: str, unit: str, low_stock_threshold: Decimal = ZERO
) -> tuple[Ingredient, Change]:
    """Create or change the ingredient ``sku`` (see ``upsert_ingredients``); the ingredient and what happened."""
    (result,) = _single(upsert_ingredients, [IngredientData(sku, name, unit, low_stock_threshold)])
    return Ingredient.objects.get(sku=sku), result.change


def upsert_ingredients(*, items: Sequence[IngredientData]) -> list[Upserted]:
    """Create or change ingredients by sku, all or nothing; one ``stock.ingredient_changed`` per changed one.

    The unit of an ingredient that has batches cannot change (their quantities are in it): 409.
    """
    _check_keys(items, "sku")
    return _retrying_once(lambda: _upsert_ingredients(items))


def _upsert_ingredients(items: Sequence[IngredientData]) -> list[Upserted]:
    wanted = [item._replace(low_stock_threshold=Decimal(item.low_stock_threshold).quantize(MILLI)) for item in items]
    existing = {
        ingredient.sku: ingredient
        # FOR NO KEY UPDATE: the key stays, and the key-share locks of rows referencing these ingredients (a
        # group reservation's allocations, checked before its level locks) must not wait for it, nor it for them.
        for ingredient in Ingredient.objects.select_for_update(no_key=True)
        .filter(sku__in=[i.sku for i in wanted])
        .order_by("pk")
    }
    fields = ("name", "unit", "low_stock_threshold")
    created, changed, results = [], [], []
    for item in wanted:
        current = existing.get(item.sku)
        if current is None:
            created.append(Ingredient(**item._asdict()))
            results.append(Upserted(item.sku, Change.CREATED))
        elif any(getattr(current, name) != getattr(item, name) for name in fields):
            changed.append((current, item))
            results.append(Upserted(item.sku, Change.UPDATED))
        else:
            results.append(Upserted(item.sku, Change.UNCHANGED))
    _refuse_unit_changes(wanted, [(current, item) for current, item in changed if current.unit != item.unit])
    for current, item in changed:
        current.name, current.unit, current.low_stock_threshold = item.name, item.unit, item.low_stock_threshold
    Ingredient.objects.bulk_create(created)
    Ingredient.objects.bulk_update([current for current, _ in changed], fields)
    publish_many(
        [
            NewEvent(
                "stock.ingredient_changed",
                {
                    "sku": ingredient.sku,
                    "name": ingredient.name,
                    "unit": ingredient.unit,
                    "low_stock_threshold": str(ingredient.low_stock_threshold),
                    "change": change,
                },
                key=ingredient.sku,
            )
            for change, ingredients in ((Change.CREATED, created), (Change.UPDATED, [c for c, _ in changed]))
            for ingredient in ingredients
        ],
        with_keys=False,
    )
    return results


def _refuse_unit_changes(wanted: Sequence[IngredientData], changes: list[tuple[Ingredient, IngredientData]]) -> None:
    if not changes:
        return
    stocked = set(
        Batch.objects.filter(ingredient_id__in=[current.pk for current, _ in changes])
        .values_list("ingredient_id", flat=True)
        .distinct()
    )
    position = {item.sku: n for n, item in enumerate(wanted)}
    errors = {
        f"items.{position[item.sku]}.unit": [
            f"{item.sku} has batches in {current.unit}; its unit cannot change to {item.unit}."
        ]
        for current, item in changes
        if current.pk in stocked
    }
    if errors:
        raise MasterDataConflict("The unit of an ingredient with stock cannot change.", errors=errors)


# ---- Recipes --------------------------------------------------------------------------------------


def upsert_recipe(*, code: str, name: str, lines: Sequence[RecipeLine]) -> tuple[Recipe, Change]:
    """Create or change the recipe ``code`` and its bill of materials (see ``upsert_recipes``)."""
    (result,) = _single(upsert_recipes, [RecipeData(code, name, tuple(lines))])
    return Recipe.objects.get(code=code), result.change


def upsert_recipes(*, items: Sequence[RecipeData]) -> list[Upserted]:
    """Create or change recipes by code, each with exactly the given lines (one per sku), all or nothing.

    Lines name existing ingredients by sku (an unknown one is a 400 naming it); lines left out are
    removed. One ``stock.recipe_changed`` per recipe whose name or lines changed.
    """
    _check_keys(items, "code")
    for n, item in enumerate(items):
        skus = [line.sku for line in item.lines]
        repeated = sorted({sku for sku in skus if skus.count(sku) > 1})
        if repeated:
            reason = f"Each sku once; repeated: {', '.join(repeated)}."
            raise InvalidItems(f"items.{n}.lines: {reason}", errors={f"items.{n}.lines": [reason]})
    return _retrying_once(lambda: _upsert_recipes(items))


def _upsert_recipes(items: Sequence[RecipeData]) -> list[Upserted]:
    ingredient_ids = dict(
        Ingredient.objects.filter(sku__in={line.sku for item in items for line in item.lines}).values_list("sku", "id")
    )
    unknown = {
        f"items.{n}.lines.{m}.sku": [f"Unknown sku {line.sku!r}."]
        for n, item in enumerate(items)
        for m, line in enumerate(item.lines)
        if line.sku not in ingredient_ids
    }
    if unknown:
        raise UnknownSku("A recipe line names an unknown sku.", errors=unknown)
    existing = {
        recipe.code: recipe
        for recipe in Recipe.objects.select_for_update().filter(code__in=[i.code for i in items]).order_by("pk")
    }
    current_lines: dict[int, dict[int, RecipeIngredient]] = {recipe.pk: {} for recipe in existing.values()}
    for line in RecipeIngredient.objects.filter(recipe_id__in=current_lines):
        current_lines[line.recipe_id][line.ingredient_id] = line
    new_recipes, renamed, results = [], [], []
    new_lines, changed_lines, gone_lines = [], [], []
    changed: list[tuple[Recipe, RecipeData, Change]] = []
    for item in items:
        wanted = {ingredient_ids[line.sku]: Decimal(line.quantity_per_portion).quantize(MILLI) for line in item.lines}
        recipe = existing.get(item.code)
        if recipe is None:
            recipe = Recipe(code=item.code, name=item.name)
            new_recipes.append((recipe, wanted))
            changed.append((recipe, item, Change.CREATED))
            results.append(Upserted(item.code, Change.CREATED))
            continue
        have = current_lines[recipe.pk]
        lines_differ = {i: line.quantity_per_portion for i, line in have.items()} != wanted
        if recipe.name == item.name and not lines_differ:
            results.append(Upserted(item.code, Change.UNCHANGED))
            continue
        if recipe.name != item.name:
            recipe.name = item.name
            renamed.append(recipe)
        for ingredient_id, line in have.items():
            if ingredient_id not in wanted:
                gone_lines.append(line.pk)
            elif line.quantity_per_portion != wanted[ingredient_id]:
                line.quantity_per_portion = wanted[ingredient_id]
                changed_lines.append(line)
        new_lines.extend(
            RecipeIngredient(recipe=recipe, ingredient_id=i, quantity_per_portion=q)
            for i, q in wanted.items()
            if i not in have
        )
        changed.append((recipe, item, Change.UPDATED))
        results.append(Upserted(item.code, Change.UPDATED))
    Recipe.objects.bulk_create([recipe for recipe, _ in new_recipes])
    if any(recipe.pk is None for recipe, _ in new_recipes):  # backends that return no keys from a bulk insert
        keys = dict(Recipe.objects.filter(code__in=[r.code for r, _ in new_recipes]).values_list("code", "id"))
        for recipe, _ in new_recipes:
            recipe.pk = keys[recipe.code]
    new_lines.extend(
        RecipeIngredient(recipe=recipe, ingredient_id=i, quantity_per_portion=q)
        for recipe, wanted in new_recipes
        for i, q in wanted.items()
    )
    Recipe.objects.bulk_update(renamed, ["name"])
    RecipeIngredient.objects.filter(pk__in=gone_lines).delete()
    RecipeIngredient.objects.bulk_update(changed_lines, ["quantity_per_portion"])
    RecipeIngredient.objects.bulk_create(new_lines)
    publish_many(
        [
            NewEvent(
                "stock.recipe_changed",
                {
                    "code": recipe.code,
                    "name": recipe.name,
                    "lines": sorted(
                        (
                            {
                                "sku": line.sku,
                                "quantity_per_portion": str(Decimal(line.quantity_per_portion).quantize(MILLI)),
                            }
                            for line in item.lines
                        ),
                        key=lambda line: line["sku"],
                    ),
                    "change": change,
                },
                key=recipe.code,
            )
            for recipe, item, change in changed
        ],
        with_keys=False,
    )
    return results


# ---- Suppliers ------------------------------------------------------------------------------------


def upsert_supplier(*, code: str, name: str) -> tuple[Supplier, Change]:
    """Create or rename the supplier ``code`` (see ``upsert_suppliers``)."""
    (result,) = _single(upsert_suppliers, [SupplierData(code, name)])
    return Supplier.objects.get(code=code), result.change


def upsert_suppliers(*, items: Sequence[SupplierData]) -> list[Upserted]:
    """Create or rename suppliers by code, all or nothing; one ``stock.supplier_changed`` per changed one.

    Names stay unique (receipts name their supplier): a name another supplier holds is a 409.
    """
    _check_keys(items, "code")
    _check_unique(items, "name")
    return _retrying_once(lambda: _upsert_suppliers(items))


def _upsert_suppliers(items: Sequence[SupplierData]) -> list[Upserted]:
    existing = {
        supplier.code: supplier
        for supplier in Supplier.objects.select_for_update().filter(code__in=[i.code for i in items]).order_by("pk")
    }
    holders = dict(Supplier.objects.filter(name__in=[i.name for i in items]).values_list("name", "code"))
    taken = {
        f"items.{n}.name": [f"{item.name!r} is the name of supplier {holders[item.name]!r}."]
        for n, item in enumerate(items)
        if holders.get(item.name, item.code) != item.code
    }
    if taken:
        raise MasterDataConflict("A supplier name is taken by another supplier.", errors=taken)
    created, renamed, results = [], [], []
    for item in items:
        current = existing.get(item.code)
        if current is None:
            created.append(Supplier(code=item.code, name=item.name))
            results.append(Upserted(item.code, Change.CREATED))
        elif current.name != item.name:
            current.name = item.name
            renamed.append(current)
            results.append(Upserted(item.code, Change.UPDATED))
        else:
            results.append(Upserted(item.code, Change.UNCHANGED))
    Supplier.objects.bulk_create(created)
    Supplier.objects.bulk_update(renamed, ["name"])
    changes = [(s, Change.CREATED) for s in created] + [(s, Change.UPDATED) for s in renamed]
    publish_many(_supplier_events(changes), with_keys=False)
    return results


def suppliers_named(*, names: Iterable[str]) -> dict[str, int]:
    """The ids of the suppliers with these names, creating missing ones with a code derived from the name.

    For receipts, whose rows name their supplier; each one created publishes ``stock.supplier_changed``.
    Runs in the caller's transaction.
    """
    names = set(names)
    if not names:
        return {}
    found = dict(Supplier.objects.filter(name__in=names).values_list("name", "id"))
    for _attempt in range(3):  # a code taken meanwhile by another supplier: derive the next one and go again
        missing = sorted(names - found.keys())
        if not missing:
            break
        taken = {code.lower() for code in Supplier.objects.values_list("code", flat=True)}
        created = [Supplier(name=name, code=supplier_code_from_name(name, taken)) for name in missing]
        Supplier.objects.bulk_create(created, ignore_conflicts=True)
        rows = Supplier.objects.filter(name__in=missing).values_list("name", "id", "code")
        written = {name: code for name, _, code in rows}
        ours = [supplier for supplier in created if written.get(supplier.name) == supplier.code]
        publish_many(_supplier_events([(supplier, Change.CREATED) for supplier in ours]), with_keys=False)
        found.update({name: pk for name, pk, _ in rows})
    return found


def _supplier_events(changes: list[tuple[Supplier, Change]]) -> list[NewEvent]:
    return [
        NewEvent(
            "stock.supplier_changed",
            {"code": supplier.code, "name": supplier.name, "change": change},
            key=supplier.code,
        )
        for supplier, change in changes
    ]


# ---- Shared ---------------------------------------------------------------------------------------


def _check_keys(items: Sequence[NamedTuple], key: str) -> None:
    if len(items) > MAX_BULK:
        reason = f"At most {MAX_BULK} per call; got {len(items)}."
        raise InvalidItems(f"items: {reason}", errors={"items": [reason]})
    _check_unique(items, key)


def _check_unique(items: Sequence[NamedTuple], field: str) -> None:
    seen: dict[str, int] = {}
    errors = {}
    for n, item in enumerate(items):
        value = getattr(item, field)
        if value in seen:
            errors[f"items.{n}.{field}"] = [f"{value!r} is also item {seen[value]}; each {field} once per call."]
        seen.setdefault(value, n)
    if errors:
        raise InvalidItems("A key is repeated in the request.", errors=errors)


def _retrying_once(write: Callable[[], Result]) -> Result:
    """Run ``write`` in a transaction; if a concurrent call created the same key first, once more.

    Both calls read the key as missing and insert it; the second insert waits for the first transaction
    and then fails on the unique index. Run again, the read finds (and locks) the committed row.
    """
    try:
        with transaction.atomic():
            return write()
    except IntegrityError:
        with transaction.atomic():
            return write()


def _single(upsert: Callable[..., list[Upserted]], items: list) -> list[Upserted]:
    """Upsert one entity through the bulk service, with errors named as for one entity (``lines.0.sku``)."""
    try:
        return upsert(items=items)
    except DomainError as error:
        error.errors = {key.removeprefix("items.0."): messages for key, messages in error.errors.items()}
        error.detail = error.detail.removeprefix("items.0.")
        raise
