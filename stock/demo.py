"""Demo data for ``make run``: ingredients, two recipes, and a receipt file in the drop folder."""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from stock.models import Ingredient, Recipe

INGREDIENTS = [
    ("ham", "Sliced ham", "g", 500),
    ("mushroom", "Chestnut mushrooms", "g", 400),
    ("cheese", "Mature cheddar", "g", 300),
    ("pasta", "Fresh tagliatelle", "g", 800),
    ("cream", "Double cream", "ml", 300),
    ("onion", "Brown onion", "unit", 10),
]
RECIPES = {
    "ham-mushroom-pasta": ("Ham and mushroom tagliatelle", {"ham": 60, "mushroom": 80, "pasta": 125, "cream": 50}),
    "cheesy-onion-bake": ("Cheesy onion bake", {"cheese": 70, "onion": 1, "cream": 40, "pasta": 100}),
}


def load() -> None:
    from supplychain.core.storage import get_storage

    load_catalogue()
    today = timezone.localdate()
    rows = ["sku,quantity,best_before,lot,supplier"]
    for number, (sku, _name, _unit, threshold) in enumerate(INGREDIENTS):
        for batch in range(3):
            rows.append(
                f"{sku},{threshold * (batch + 2)},{today + timedelta(days=2 + 4 * batch + number % 3)},"
                f"DEMO-{sku.upper()}-{batch + 1},{'Farm Fresh Ltd' if batch % 2 else 'Valley Growers'}"
            )
    # Dropped into the receipts folder: the beat poll ingests it like any partner's file.
    get_storage().put(f"receipts/demo-{today.isoformat()}.csv", ("\n".join(rows) + "\n").encode(), "text/csv")


def load_catalogue() -> dict:
    """The demo ingredients and recipes (bills of materials), created when missing through the master-data
    services (so each publishes its ``stock.*_changed`` event); what exists, edited or not, is left as it
    is. Returns the ingredients by sku."""
    from stock.services import IngredientData, RecipeData, RecipeLine, upsert_ingredients, upsert_recipes

    have = set(Ingredient.objects.filter(sku__in=[row[0] for row in INGREDIENTS]).values_list("sku", flat=True))
    upsert_ingredients(
        items=[
            IngredientData(sku, name, unit, Decimal(threshold))
            for sku, name, unit, threshold in INGREDIENTS
            if sku not in have
        ]
    )
    have = set(Recipe.objects.filter(code__in=list(RECIPES)).values_list("code", flat=True))
    upsert_recipes(
        items=[
            RecipeData(code, name, tuple(RecipeLine(sku, Decimal(q)) for sku, q in lines.items()))
            for code, (name, lines) in RECIPES.items()
            if code not in have
        ]
    )
    return {i.sku: i for i in Ingredient.objects.filter(sku__in=[row[0] for row in INGREDIENTS])}


# Purchasing terms of the demo suppliers (pack size, minimum order, lead time) for the forecast's suggestions.
SUPPLIERS = {"farm-fresh-ltd": ("Farm Fresh Ltd", 2), "valley-growers": ("Valley Growers", 3)}
TERMS = {
    "ham": ("farm-fresh-ltd", 1000, 2000, None),
    "mushroom": ("valley-growers", 2500, 5000, 1),
    "cheese": ("farm-fresh-ltd", 2000, 2000, None),
    "pasta": ("valley-growers", 5000, 10000, None),
    "cream": ("farm-fresh-ltd", 1000, 3000, None),
    "onion": ("valley-growers", 20, 40, 2),
}


def load_purchasing_terms() -> None:
    """The demo suppliers and what each sells on which terms, created when missing (existing ones kept)."""
    from stock.models import Supplier, SupplierIngredient
    from stock.services import SupplierData, upsert_suppliers

    have = set(Supplier.objects.filter(name__in=[n for n, _ in SUPPLIERS.values()]).values_list("name", flat=True))
    upsert_suppliers(items=[SupplierData(code, name) for code, (name, _) in SUPPLIERS.items() if name not in have])
    by_name = {s.name: s for s in Supplier.objects.filter(name__in=[n for n, _ in SUPPLIERS.values()])}
    by_code = {}
    for code, (name, lead_time) in SUPPLIERS.items():
        by_code[code] = by_name[name]
        if name not in have:  # a new demo supplier gets the demo lead time; an existing one keeps its own
            Supplier.objects.filter(pk=by_name[name].pk).update(lead_time_days=lead_time)
    ingredients = {i.sku: i for i in Ingredient.objects.filter(sku__in=list(TERMS))}
    for sku, (supplier_code, pack, minimum, lead_time) in TERMS.items():
        if sku in ingredients:
            SupplierIngredient.objects.get_or_create(
                supplier=by_code[supplier_code],
                ingredient=ingredients[sku],
                defaults={
                    "pack_size": Decimal(pack),
                    "minimum_order_quantity": Decimal(minimum),
                    "lead_time_days": lead_time,
                    "preferred": True,
                },
            )
