"""Demo data for ``make run``: ingredients, two recipes, and a receipt file in the drop folder."""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from stock.models import Ingredient, Recipe, RecipeIngredient

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
    """The demo ingredients and recipes (bills of materials), created when missing; returns the ingredients."""
    ingredients = {}
    for sku, name, unit, threshold in INGREDIENTS:
        ingredients[sku], _ = Ingredient.objects.get_or_create(
            sku=sku, defaults={"name": name, "unit": unit, "low_stock_threshold": Decimal(threshold)}
        )
    for code, (name, lines) in RECIPES.items():
        recipe, _ = Recipe.objects.get_or_create(code=code, defaults={"name": name})
        for sku, quantity in lines.items():
            RecipeIngredient.objects.get_or_create(
                recipe=recipe, ingredient=ingredients[sku], defaults={"quantity_per_portion": Decimal(quantity)}
            )
    return ingredients
