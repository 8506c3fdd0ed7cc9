"""Order reads: the detail with timeline and traceability, the meal plan, the filtered list, the admin, the schema."""

import pytest
from django.contrib.auth import get_user_model

from integrations import services
from integrations.models import Order
from tests.integrations.factories import day, order_doc, platform_client, stock_catalogue

pytestmark = pytest.mark.django_db


@pytest.fixture
def reserved():
    stock_catalogue()
    lines = [{"recipe": "cheese-toast", "portions": 1}, {"recipe": "ham-pasta", "portions": 2}]
    services.receive_order(document=order_doc("web-1", lines=lines, delivery=3))
    services.process_received_orders()
    return platform_client()


def test_the_detail_shows_status_timeline_and_the_batches_lots_suppliers_of_each_line(reserved):
    body = reserved.get("/api/v1/orders/web-1/").json()
    assert body["status"] == "reserved"
    assert [(step["from_status"], step["to_status"], step["source"]) for step in body["timeline"]] == [
        (None, "received", "platform"),
        ("received", "reserved", "worker"),
    ]
    assert all(step["occurred_at"] for step in body["timeline"])
    pasta = body["lines"][1]
    assert (pasta["recipe"], pasta["portions"]) == ("ham-pasta", 2)
    ham = next(i for i in pasta["ingredients"] if i["sku"] == "ham")
    assert ham["quantity"] == "120.000"
    # Delivery in 3 days: the first-expiring lot H1 (best before day 4) serves it.
    assert [(b["lot"], b["supplier"], b["best_before"], b["quantity"]) for b in ham["batches"]] == [
        ("H1", "Farm A", day(4).isoformat(), "120.000")
    ]


def test_the_meal_plan_orders_recipes_by_the_earliest_best_before_of_their_ingredients(reserved):
    body = reserved.get("/api/v1/orders/web-1/meal-plan/").json()
    assert [(m["cook_order"], m["recipe"], m["eat_by"], m["limited_by"]) for m in body["meals"]] == [
        (1, "ham-pasta", day(4).isoformat(), "ham"),
        (2, "cheese-toast", day(12).isoformat(), "cheese"),
    ]


def test_an_unknown_order_is_404_in_the_error_shape(reserved):
    response = reserved.get("/api/v1/orders/nope/")
    assert response.status_code == 404
    assert response.json()["type"] == "order_not_found"
    assert reserved.get("/api/v1/orders/nope/meal-plan/").status_code == 404


def test_the_list_filters_by_status_delivery_date_and_customer_reference():
    stock_catalogue(ham=0)
    services.receive_orders(
        documents=[
            order_doc("a", customer="cust-1", delivery=2, lines=[{"recipe": "cheese-toast", "portions": 1}]),
            order_doc("b", customer="cust-2", delivery=3),  # no ham: short
            order_doc("c", customer="cust-1", delivery=3, lines=[{"sku": "cheese", "quantity": 5}]),
        ]
    )
    services.process_received_orders()
    client = platform_client()

    def ids(query: str) -> list[str]:
        response = client.get(f"/api/v1/orders/{query}")
        assert response.status_code == 200, response.content
        return sorted(order["order_id"] for order in response.json()["results"])

    assert ids("") == ["a", "b", "c"]
    assert ids("?status=short") == ["b"]
    assert ids("?status=reserved") == ["a", "c"]
    assert ids(f"?delivery_date={day(3).isoformat()}") == ["b", "c"]
    assert ids("?customer_reference=cust-1") == ["a", "c"]
    assert ids(f"?customer_reference=cust-1&delivery_date_from={day(3).isoformat()}") == ["c"]
    assert client.get("/api/v1/orders/?status=nonsense").status_code == 400
    assert client.get("/api/v1/orders/?page_size=1").json()["count"] == 3


def test_the_admin_lists_orders_with_filters_and_search_and_shows_the_timeline_read_only(reserved, client):
    admin = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-for-tests-only")
    client.force_login(admin)
    listing = client.get("/admin/integrations/order/?status__exact=reserved&q=web-1")
    assert listing.status_code == 200 and b"web-1" in listing.content
    order = Order.objects.get(order_id="web-1")
    page = client.get(f"/admin/integrations/order/{order.pk}/change/")
    assert page.status_code == 200
    assert b"received" in page.content and b"worker" in page.content
    assert client.get("/admin/integrations/order/add/").status_code == 403


def test_the_openapi_schema_documents_the_order_endpoints_with_examples(reserved):
    schema = reserved.get("/api/schema/?format=json").json()
    create = schema["paths"]["/api/v1/orders/"]["post"]
    body = create["requestBody"]["content"]["application/json"]
    assert "lines" in body["schema"]["properties"]
    assert body["examples"]
    assert "/api/v1/orders/bulk/" in schema["paths"]
    assert "/api/v1/orders/{order_id}/meal-plan/" in schema["paths"]


def test_the_openapi_examples_work_against_the_demo_data():
    from decimal import Decimal

    from integrations import api
    from stock import demo
    from stock.models import Ingredient, Recipe, RecipeIngredient

    # The demo catalogue (stock.demo), without the receipt file demo.load() drops into storage.
    for sku, name, unit, _ in demo.INGREDIENTS:
        Ingredient.objects.create(sku=sku, name=name, unit=unit)
    for code, (name, lines) in demo.RECIPES.items():
        recipe = Recipe.objects.create(code=code, name=name)
        for sku, quantity in lines.items():
            RecipeIngredient.objects.create(
                recipe=recipe, ingredient=Ingredient.objects.get(sku=sku), quantity_per_portion=Decimal(quantity)
            )
    client = platform_client()
    single = client.post("/api/v1/orders/", api.ORDER_EXAMPLE, format="json")
    assert single.status_code == 202, single.content
    assert set(single.json()) == set(api.ACCEPTED_EXAMPLE)
    again = client.post("/api/v1/orders/bulk/", {"orders": [api.ORDER_EXAMPLE]}, format="json")
    assert again.status_code == 202 and again.json()["results"][0]["outcome"] == "replayed"
    cancelled = client.post(
        f"/api/v1/orders/{api.ORDER_EXAMPLE['order_id']}/cancel/", {"reason": "changed"}, format="json"
    )
    assert cancelled.status_code == 200
    assert set(cancelled.json()) == set(api.DETAIL_EXAMPLE)
