"""Master data edited in the admin goes through the upsert services: every change publishes its event."""

from decimal import Decimal

import pytest

from stock import services
from stock.models import Ingredient, Recipe, Supplier
from supplychain.events.models import OutboxEvent
from tests.stock.factories import IngredientFactory, csv_opener

pytestmark = pytest.mark.django_db


def events(event_type: str) -> list[dict]:
    return [e.payload for e in OutboxEvent.objects.filter(type=event_type).order_by("pk")]


def test_an_ingredient_added_and_renamed_in_the_admin_publishes_created_then_updated(admin_client):
    added = admin_client.post(
        "/admin/stock/ingredient/add/", {"sku": "basil", "name": "Basil", "unit": "g", "low_stock_threshold": "50"}
    )
    assert added.status_code == 302, added.content
    basil = Ingredient.objects.get(sku="basil")
    changed = admin_client.post(
        f"/admin/stock/ingredient/{basil.pk}/change/",
        {"sku": "mint", "name": "Sweet basil", "unit": "g", "low_stock_threshold": "50"},
    )
    assert changed.status_code == 302, changed.content
    assert list(Ingredient.objects.values_list("sku", "name")) == [("basil", "Sweet basil")]  # the sku is fixed
    assert [(e["sku"], e["name"], e["change"]) for e in events("stock.ingredient_changed")] == [
        ("basil", "Basil", "created"),
        ("basil", "Sweet basil", "updated"),
    ]


def test_the_unit_of_an_ingredient_with_stock_cannot_change_in_the_admin_either(admin_client):
    ham = IngredientFactory(sku="ham", unit="g")
    services.ingest_receipt(
        key="k.csv",
        open_stream=csv_opener("sku,quantity,best_before,lot,supplier\nham,5,2099-01-01,L1,Farm\n"),
        source="upload",
    )
    before = OutboxEvent.objects.filter(type="stock.ingredient_changed").count()
    response = admin_client.post(
        f"/admin/stock/ingredient/{ham.pk}/change/",
        {"name": "Ham", "unit": "kg", "low_stock_threshold": "0"},
        follow=True,
    )
    assert response.status_code == 200
    assert "Not saved" in response.content.decode() and "cannot change" in response.content.decode()
    assert Ingredient.objects.get(pk=ham.pk).unit == "g"
    assert OutboxEvent.objects.filter(type="stock.ingredient_changed").count() == before


def test_a_recipe_and_its_lines_saved_in_the_admin_publish_one_recipe_changed_with_the_lines(admin_client):
    IngredientFactory(sku="rice")
    IngredientFactory(sku="egg")
    rice, egg = Ingredient.objects.get(sku="rice"), Ingredient.objects.get(sku="egg")
    form = {
        "code": "fried-rice",
        "name": "Fried rice",
        "lines-TOTAL_FORMS": "2",
        "lines-INITIAL_FORMS": "0",
        "lines-0-ingredient": str(rice.pk),
        "lines-0-quantity_per_portion": "120",
        "lines-1-ingredient": str(egg.pk),
        "lines-1-quantity_per_portion": "2",
    }
    response = admin_client.post("/admin/stock/recipe/add/", form)
    assert response.status_code == 302, response.content
    recipe = Recipe.objects.get(code="fried-rice")
    assert sorted((line.ingredient.sku, line.quantity_per_portion) for line in recipe.lines.all()) == [
        ("egg", Decimal("2.000")),
        ("rice", Decimal("120.000")),
    ]
    assert [(e["code"], e["change"], [line["sku"] for line in e["lines"]]) for e in events("stock.recipe_changed")] == [
        ("fried-rice", "created", ["egg", "rice"])
    ]


def test_a_supplier_renamed_in_the_admin_publishes_supplier_changed(admin_client):
    services.upsert_supplier(code="farm", name="Farm")
    supplier = Supplier.objects.get(code="farm")
    response = admin_client.post(
        f"/admin/stock/supplier/{supplier.pk}/change/", {"code": "other", "name": "Green Farm"}
    )
    assert response.status_code == 302, response.content
    assert list(Supplier.objects.values_list("code", "name")) == [("farm", "Green Farm")]
    assert [(e["code"], e["name"]) for e in events("stock.supplier_changed")][-1] == ("farm", "Green Farm")


def test_the_demo_catalogue_publishes_each_new_entity_once_and_leaves_edited_ones_alone():
    from stock.demo import INGREDIENTS, RECIPES, load_catalogue

    load_catalogue()
    assert len(events("stock.ingredient_changed")) == len(INGREDIENTS)
    assert len(events("stock.recipe_changed")) == len(RECIPES)
    first = INGREDIENTS[0][0]
    services.upsert_ingredient(sku=first, name="Renamed by admin_client", unit=INGREDIENTS[0][2])
    load_catalogue()
    assert Ingredient.objects.get(sku=first).name == "Renamed by admin_client"
    assert len(events("stock.ingredient_changed")) == len(INGREDIENTS) + 1  # the rename only
