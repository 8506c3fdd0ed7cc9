"""Batch processing: received orders claimed, recipes expanded, one group reservation per batch, reserved or short."""

from decimal import Decimal

import pytest

from integrations import services
from integrations.models import Order
from integrations.services import processing
from stock.models import Reservation, StockLevel
from supplychain.events.models import OutboxEvent
from tests.integrations.factories import order_doc, stock_catalogue

pytestmark = pytest.mark.django_db


def level(sku: str) -> StockLevel:
    return StockLevel.objects.get(ingredient__sku=sku)


def test_a_batch_reserves_each_order_all_or_nothing_and_reports_short_lines():
    # Delivery in 5 days: ham lot H1 (best before day 4) cannot serve it, so 150 g of ham are usable.
    stock_catalogue(ham=300)
    services.receive_orders(
        documents=[
            order_doc("a", lines=[{"recipe": "ham-pasta", "portions": 2}]),  # ham 120, mushroom 160
            order_doc("b", lines=[{"recipe": "cheese-toast", "portions": 1}, {"recipe": "ham-pasta", "portions": 1}]),
            order_doc("c", lines=[{"recipe": "cheese-toast", "portions": 2}]),  # cheese 100
        ]
    )
    report = services.process_received_orders()
    assert (report.claimed, report.reserved, report.short) == (3, 2, 1)
    statuses = dict(Order.objects.values_list("order_id", "status"))
    assert statuses == {"a": "reserved", "b": "short", "c": "reserved"}
    b = Order.objects.get(order_id="b")
    detail = b.timeline.get(to_status="short").detail
    assert detail["shortages"] == [{"sku": "ham", "requested": "60.000", "available": "30.000", "lines": [1]}]
    # All or nothing: b's cheese was not reserved, only c's.
    assert level("cheese").reserved == Decimal(100)
    assert level("ham").reserved == Decimal(120)
    assert OutboxEvent.objects.filter(type="order.short", key="b").count() == 1
    assert OutboxEvent.objects.filter(type="order.reserved").count() == 2


def test_recipes_are_expanded_through_the_bill_of_materials_and_summed_per_sku():
    stock_catalogue()
    services.receive_order(
        document=order_doc(
            "a", lines=[{"recipe": "ham-pasta", "portions": 3}, {"sku": "ham", "quantity": 10.5}], delivery=2
        )
    )
    services.process_received_orders()
    reservation = Reservation.objects.get(transaction_id="a")
    assert reservation.status == "reserved"
    assert reservation.needed_by == Order.objects.get(order_id="a").delivery_date
    assert reservation.request["items"] == [
        {"sku": "ham", "quantity": "190.5"},
        {"sku": "mushroom", "quantity": "240"},
    ]


def test_one_group_reservation_per_batch_of_orders(monkeypatch, settings):
    stock_catalogue(ham=200000, mushroom=100000)
    settings.ORDERS_BATCH = 200
    calls = []
    real = processing.stock_services.reserve_many

    def counting(*, requests):
        calls.append(len(requests))
        return real(requests=requests)

    monkeypatch.setattr(processing.stock_services, "reserve_many", counting)
    services.receive_orders(documents=[order_doc(f"o-{n}") for n in range(450)])
    report = services.process_received_orders()
    assert calls == [200, 200, 50]
    assert report.batches == 3 and report.reserved == 450
    assert Reservation.objects.filter(status="reserved").count() == 450


def test_processing_again_reserves_nothing_twice():
    stock_catalogue()
    services.receive_orders(documents=[order_doc(f"o-{n}") for n in range(3)])
    services.process_received_orders()
    before = level("ham").reserved
    again = services.process_received_orders()
    assert again.claimed == 0
    assert level("ham").reserved == before
    assert Reservation.objects.count() == 3


def test_an_order_whose_id_a_reservation_already_took_with_other_items_is_short_with_the_reason():
    from stock import services as stock_services

    stock_catalogue()
    stock_services.reserve_stock(transaction_id="a", items=[stock_services.Item("cheese", Decimal(1))])
    services.receive_order(document=order_doc("a"))
    services.process_received_orders()
    order = Order.objects.get(order_id="a")
    assert order.status == "short"
    assert order.timeline.get(to_status="short").detail["error"]["type"] == "transaction_id_reused"
