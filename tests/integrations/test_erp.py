"""The ERP: purchase orders placed (idempotent) and delivered in the ERP's format, the sales-order mirror,
goods receipts becoming stock receipts."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from integrations import services
from integrations.models import PurchaseOrder
from stock.models import Batch, StockLevel, Supplier
from supplychain.core.bootstrap import bootstrap, issue_token
from supplychain.events import services as event_services
from supplychain.events.models import AuditEntry, Delivery, OutboxEvent, Subscription
from tests.httpserver import Endpoint
from tests.integrations.factories import day, order_doc, stock_catalogue

pytestmark = pytest.mark.django_db


def client_for(role: str) -> APIClient:
    bootstrap(demo=False)
    token = issue_token(username=f"{role}-user", role=role, create_user=True).token
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def po(purchase_order_id="po-1", **changes) -> dict:
    return {
        "purchase_order_id": purchase_order_id,
        "supplier": "Farm A",
        "expected_date": day(7).isoformat(),
        "lines": [{"sku": "ham", "quantity": "5000"}, {"sku": "mushroom", "quantity": 2500.5}],
        **changes,
    }


def post_po(client, body):
    return client.post("/api/v1/purchase-orders/", json.dumps(body), content_type="application/json")


def test_a_purchase_order_is_placed_once_and_a_repeat_answers_the_same():
    stock_catalogue()
    client = client_for("operations")
    first = post_po(client, po())
    assert first.status_code == 201, first.content
    body = first.json()
    assert body["status"] == "placed" and body["lines"] == [
        {"sku": "ham", "quantity": "5000"},
        {"sku": "mushroom", "quantity": "2500.5"},
    ]
    again = post_po(client, po())
    assert (again.status_code, again.json()) == (200, body)
    assert PurchaseOrder.objects.count() == 1
    assert AuditEntry.objects.filter(event_type="purchase_order.placed").count() == 1
    other = post_po(client, po(supplier="Farm B"))
    assert other.status_code == 422 and other.json()["type"] == "purchase_order_id_reused"
    assert client.get("/api/v1/purchase-orders/po-1/").json()["supplier"] == "Farm A"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lines": [{"sku": "unobtainium", "quantity": "1"}]}, "lines.0.sku"),
        ({"lines": [{"sku": "ham", "quantity": "0"}]}, "lines"),
        ({"lines": [{"sku": "ham", "quantity": "1.0001"}]}, "lines"),
        ({"lines": []}, "lines"),
        ({"lines": [{"sku": "ham", "quantity": "1"}, {"sku": "ham", "quantity": "2"}]}, "lines"),
        ({"expected_date": "2001-01-01"}, "expected_date"),
        ({"purchase_order_id": "has space"}, "purchase_order_id"),
        ({"supplier": 7}, "supplier"),
        ({"notes": "nul\x00"}, "notes"),
    ],
)
def test_a_bad_purchase_order_is_a_400_naming_the_field_and_stores_nothing(changes, field):
    stock_catalogue()
    response = post_po(client_for("operations"), po(**changes))
    assert response.status_code == 400, response.content
    assert any(key.startswith(field) for key in response.json()["errors"]), response.json()
    assert not PurchaseOrder.objects.exists()


def test_placing_purchase_orders_needs_authentication_and_the_permission():
    stock_catalogue()
    assert APIClient().post("/api/v1/purchase-orders/", po(), format="json").status_code == 401
    assert post_po(client_for("platform"), po()).status_code == 403


def deliver(name: str):
    event_services.relay_pending()
    return event_services.process_deliveries(subscription_id=Subscription.objects.get(name=name).id)


def test_a_purchase_order_goes_to_the_erp_in_its_format_and_is_marked_sent(settings):
    stock_catalogue()
    with Endpoint() as erp:
        settings.PARTNERS = {**settings.PARTNERS, "erp": {"url": erp.url, "secret": "erp-secret", "timeout": 5.0}}
        services.place_purchase_order(
            purchase_order_id="po-9",
            supplier="Farm A",
            expected_date=day(7),
            lines=[{"sku": "ham", "quantity": "12.5"}],
        )
        assert deliver("erp-purchase-orders").succeeded == 1
    (request,) = erp.received
    assert request.json == {
        "PurchaseOrder": {
            "DocumentNo": "po-9",
            "Vendor": "Farm A",
            "DeliveryDate": day(7).isoformat(),
            "Note": "",
            "Items": [{"Position": 10, "Material": "ham", "Quantity": "12.5"}],
        }
    }
    assert request.headers["Authorization"] == "Bearer erp-secret"
    assert request.headers["Idempotency-Key"]
    assert PurchaseOrder.objects.get().status == "sent"


def test_an_erp_that_is_down_gets_the_purchase_order_retried(settings):
    stock_catalogue()
    with Endpoint(always_fail=True, fail_status=503) as erp:
        settings.PARTNERS = {**settings.PARTNERS, "erp": {"url": erp.url, "secret": "", "timeout": 5.0}}
        services.place_purchase_order(
            purchase_order_id="po-10", supplier="Farm A", expected_date=day(7), lines=[{"sku": "ham", "quantity": "1"}]
        )
        report = deliver("erp-purchase-orders")
    assert report.retrying == 1
    delivery = Delivery.objects.get(subscription__name="erp-purchase-orders")
    assert "erp: HTTP 503" in delivery.last_error
    assert PurchaseOrder.objects.get().status == "placed"


def test_order_events_are_mirrored_to_the_erp_as_sales_orders_many_per_request(settings):
    stock_catalogue()
    with Endpoint() as erp:
        settings.PARTNERS = {**settings.PARTNERS, "erp": {"url": erp.url, "secret": "", "timeout": 5.0}}
        services.receive_orders(documents=[order_doc(f"web-{n}") for n in range(3)])
        services.process_received_orders()
        deliver("erp-sales-orders")
    sales = [order for request in erp.received for order in request.json["SalesOrders"]]
    assert len(erp.received) <= 2
    opened = {s["ExternalId"]: s for s in sales if s["Status"] == "OPEN"}
    assert set(opened) == {"web-0", "web-1", "web-2"}
    assert opened["web-0"]["Items"] == [{"Position": 10, "Kit": "ham-pasta", "Quantity": 2, "Unit": "PORTION"}]
    assert {s["ExternalId"] for s in sales if s["Status"] == "CONFIRMED"} == {"web-0", "web-1", "web-2"}


def goods_receipt(number="GR-1", quantity="500", lot="H9") -> dict:
    return {
        "GoodsReceipt": {
            "DocumentNo": number,
            "PurchaseOrder": "po-1",
            "Vendor": "Farm A",
            "Items": [{"Material": "ham", "Quantity": quantity, "BestBefore": day(10).isoformat(), "Batch": lot}],
        }
    }


def test_a_goods_receipt_from_the_erp_becomes_a_stock_receipt_once():
    stock_catalogue()
    before = StockLevel.objects.get(ingredient__sku="ham").on_hand
    client = client_for("erp")
    first = client.post("/api/v1/goods-receipts/", goods_receipt(), format="json")
    assert first.status_code == 201, first.content
    assert first.json()["key"] == "erp/goods-receipts/GR-1.csv" and first.json()["rows_ingested"] == 1
    batch = Batch.objects.get(lot="H9")
    assert (batch.quantity_received, batch.supplier.name, batch.best_before) == (Decimal(500), "Farm A", day(10))
    assert StockLevel.objects.get(ingredient__sku="ham").on_hand == before + 500
    again = client.post("/api/v1/goods-receipts/", goods_receipt(), format="json")
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    assert StockLevel.objects.get(ingredient__sku="ham").on_hand == before + 500
    assert client.post("/api/v1/goods-receipts/", goods_receipt(quantity="9"), format="json").status_code == 409
    assert AuditEntry.objects.filter(kind="received", partner="erp", event_type="erp.goods_receipt").count() == 2


def test_a_goods_receipt_missing_a_field_is_a_400_naming_it():
    stock_catalogue()
    body = goods_receipt()
    del body["GoodsReceipt"]["Items"][0]["Material"]
    response = client_for("erp").post("/api/v1/goods-receipts/", body, format="json")
    assert response.status_code == 400
    assert "GoodsReceipt.Items.0.Material" in response.json()["errors"]
    assert client_for("erp").post("/api/v1/goods-receipts/", [1], format="json").status_code == 400


def test_a_goods_receipt_row_the_ingest_refuses_is_reported_on_the_receipt():
    stock_catalogue()
    response = client_for("erp").post("/api/v1/goods-receipts/", goods_receipt(quantity="-5"), format="json")
    assert response.status_code == 201
    assert response.json()["rows_ingested"] == 0 and response.json()["errors"][0]["column"] == "quantity"


def test_goods_receipts_need_authentication_and_the_receipt_permission():
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    assert APIClient().post("/api/v1/goods-receipts/", goods_receipt(), format="json").status_code == 401
    nobody = get_user_model().objects.create_user("nobody")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=nobody).key}")
    assert client.post("/api/v1/goods-receipts/", goods_receipt(), format="json").status_code == 403


def suggestion(forecast_id: int = 7, supplier_code: str = "farm-a", **changes) -> dict:
    return {
        "forecast_id": forecast_id,
        "supplier_code": supplier_code,
        "order_by": day(1).isoformat(),
        "lines": [
            {
                "sku": "ham",
                "quantity": "6000",
                "packs": 6,
                "arrives": day(4).isoformat(),
                "needed_by": day(3).isoformat(),
                "late": True,
            },
            {
                "sku": "mushroom",
                "quantity": "2500",
                "packs": 5,
                "arrives": day(3).isoformat(),
                "needed_by": day(5).isoformat(),
                "late": False,
            },
        ],
        **changes,
    }


def test_a_forecasts_suggestion_is_placed_once_as_a_purchase_order_for_the_erp(settings):
    stock_catalogue()
    Supplier.objects.filter(name="Farm A").update(code="farm-a")
    event_services.publish("forecast.purchase_order_suggested", suggestion(), key="run-1:farm-a")
    event_services.publish("forecast.purchase_order_suggested", suggestion(), key="run-1:farm-a")  # a repeat
    event_services.publish("forecast.purchase_order_suggested", suggestion(supplier_code=""), key="run-1:-")
    assert deliver("erp-forecast-purchases").succeeded == 3
    order = PurchaseOrder.objects.get()
    assert order.purchase_order_id == "forecast-7-farm-a"
    assert (order.supplier, order.expected_date, order.status) == ("Farm A", day(3), "placed")
    assert order.lines == [{"sku": "ham", "quantity": "6000"}, {"sku": "mushroom", "quantity": "2500"}]
    assert order.notes == f"Suggested by forecast 7: order by {day(1).isoformat()}. Arrives after it is needed: ham."
    (placed,) = OutboxEvent.objects.filter(type="purchase_order.placed")
    assert placed.payload["purchase_order_id"] == "forecast-7-farm-a"  # erp-purchase-orders sends it on


def test_suggestions_are_left_to_the_buyers_when_placing_is_off(settings):
    settings.FORECAST_PLACE_PURCHASE_ORDERS = False
    stock_catalogue()
    Supplier.objects.filter(name="Farm A").update(code="farm-a")
    event_services.publish("forecast.purchase_order_suggested", suggestion(), key="run-1:farm-a")
    assert deliver("erp-forecast-purchases").succeeded == 1
    assert not PurchaseOrder.objects.exists()
