"""Order intake: 202 once committed, idempotent on order_id, 422 on reuse, schema errors named by path, bounds."""

import json

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from integrations.models import Order, OrderTransition
from supplychain.events.models import OutboxEvent
from tests.integrations.factories import order_doc, platform_client, stock_catalogue

pytestmark = pytest.mark.django_db


@pytest.fixture
def platform():
    stock_catalogue()
    return platform_client()


def post(client, document):
    # Sent as ASCII JSON, so a lone surrogate travels as the escape a platform would send.
    return client.post("/api/v1/orders/", json.dumps(document), content_type="application/json")


def bulk(client, documents):
    return client.post("/api/v1/orders/bulk/", json.dumps({"orders": documents}), content_type="application/json")


def test_an_order_is_answered_202_once_committed_with_its_received_event_and_timeline(platform):
    response = post(platform, order_doc("web-1"))
    assert response.status_code == 202
    assert response.json()["order_id"] == "web-1" and response.json()["status"] == "received"
    order = Order.objects.get(order_id="web-1")
    assert order.status == "received"
    assert list(OrderTransition.objects.filter(order=order).values_list("to_status", "source")) == [
        ("received", "platform")
    ]
    event = OutboxEvent.objects.get(type="order.received")
    assert event.key == "web-1" and event.payload["lines"] == [{"recipe": "ham-pasta", "portions": 2}]


def test_the_same_order_again_changes_nothing_and_answers_as_the_first_time(platform):
    first = post(platform, order_doc("web-1"))
    again = post(platform, order_doc("web-1"))
    assert again.status_code == 202
    assert again.json() == first.json()
    assert Order.objects.count() == 1
    assert OrderTransition.objects.count() == 1
    assert OutboxEvent.objects.filter(type="order.received").count() == 1


def test_the_same_order_id_with_another_body_is_422_and_changes_nothing(platform):
    post(platform, order_doc("web-1"))
    response = post(platform, order_doc("web-1", lines=[{"recipe": "ham-pasta", "portions": 3}]))
    assert response.status_code == 422
    assert response.json()["type"] == "order_id_reused"
    assert Order.objects.get(order_id="web-1").lines == [{"recipe": "ham-pasta", "portions": 2}]


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda d: d["lines"][0].update(portions=0), "lines.0.portions"),
        (lambda d: d["lines"][0].update(portions="two"), "lines.0.portions"),
        (lambda d: d.pop("customer_reference"), "customer_reference"),
        (lambda d: d.update(colour="blue"), "colour"),
        (lambda d: d["delivery_address"].update(country="United Kingdom"), "delivery_address.country"),
        (lambda d: d["delivery_address"].update(city="x" * 101), "delivery_address.city"),
        (lambda d: d["delivery_address"].update(line1="12\x00 Row"), "delivery_address.line1"),
        (lambda d: d["delivery_address"].update(line1="12 \ud800 Row"), "delivery_address.line1"),
        (lambda d: d.update(delivery_date="2026-02-30"), "delivery_date"),
        (lambda d: d.update(delivery_date="2001-01-01"), "delivery_date"),
        (lambda d: d.update(order_id="a/b"), "order_id"),
        (lambda d: d.update(order_id="bulk"), "order_id"),
        (lambda d: d.update(order_id="x" * 101), "order_id"),
        (lambda d: d.update(lines=[]), "lines"),
        (lambda d: d.update(lines=[{"recipe": "ham-pasta", "portions": 1}] * 101), "lines"),
        (lambda d: d.update(lines=[{"sku": "ham", "quantity": 1.2345}]), "lines.0.quantity"),
        (lambda d: d.update(lines=[{"sku": "ham", "quantity": 10**9}]), "lines.0.quantity"),
        (lambda d: d.update(lines=[{"sku": "ham", "portions": 2}]), "lines.0.quantity"),
        (lambda d: d.update(lines=[{"recipe": "ham-pasta"}]), "lines.0.portions"),
        (lambda d: d.update(lines=[{"recipe": "no-such-recipe", "portions": 2}]), "lines.0.recipe"),
        (lambda d: d.update(lines=[{"sku": "no-such-sku", "quantity": 2}]), "lines.0.sku"),
    ],
)
def test_a_bad_element_is_400_named_by_its_path_and_nothing_is_stored(platform, change, path):
    document = order_doc("web-1")
    change(document)
    response = post(platform, document)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["type"] == "validation_error"
    assert path in body["errors"], body["errors"]
    assert Order.objects.count() == 0 and not OutboxEvent.objects.filter(type__startswith="order.").exists()


def test_a_body_that_is_not_an_object_is_400(platform):
    response = platform.post("/api/v1/orders/", [1, 2], format="json")
    assert response.status_code == 400
    assert Order.objects.count() == 0


def test_bulk_accepts_a_thousand_orders_in_one_call_with_one_result_each(platform):
    response = bulk(platform, [order_doc(f"web-{n}") for n in range(1000)])
    assert response.status_code == 202
    results = response.json()["results"]
    assert [r["order_id"] for r in results] == [f"web-{n}" for n in range(1000)]
    assert {r["outcome"] for r in results} == {"accepted"}
    assert Order.objects.count() == 1000 and OrderTransition.objects.count() == 1000
    assert OutboxEvent.objects.filter(type="order.received").count() == 1000


def test_bulk_refuses_more_than_a_thousand_orders(platform):
    response = bulk(platform, [order_doc(f"web-{n}") for n in range(1001)])
    assert response.status_code == 400
    assert "orders" in response.json()["errors"]
    assert Order.objects.count() == 0


def test_bulk_names_a_bad_element_by_its_index_and_stores_nothing(platform):
    documents = [order_doc(f"web-{n}") for n in range(5)]
    documents[3]["lines"][0]["portions"] = -1
    response = bulk(platform, documents)
    assert response.status_code == 400
    assert "orders.3.lines.0.portions" in response.json()["errors"]
    assert Order.objects.count() == 0


def test_bulk_refuses_an_id_named_twice_in_one_call(platform):
    response = bulk(platform, [order_doc("web-1"), order_doc("web-1")])
    assert response.status_code == 400
    assert "orders.1.order_id" in response.json()["errors"]


def test_bulk_replays_repeats_and_refuses_a_reused_id_alone(platform):
    post(platform, order_doc("web-1"))
    post(platform, order_doc("web-2"))
    response = bulk(
        platform,
        [order_doc("web-1"), order_doc("web-2", customer="someone-else"), order_doc("web-3")],
    )
    assert response.status_code == 202
    results = response.json()["results"]
    assert [(r["outcome"], r["http_status"]) for r in results] == [
        ("replayed", 202),
        ("refused", 422),
        ("accepted", 202),
    ]
    assert results[1]["body"]["type"] == "order_id_reused"
    assert Order.objects.get(order_id="web-2").customer_reference == "cust-1"
    assert Order.objects.count() == 3


def test_placing_orders_needs_the_permission(platform):
    user = get_user_model().objects.create_user("reader", password="pw-for-tests-only")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    assert post(client, order_doc("web-1")).status_code == 403
    assert bulk(client, [order_doc("web-1")]).status_code == 403
    assert Order.objects.count() == 0
