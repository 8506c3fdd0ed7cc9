"""Partners end to end with a real worker, Redis, PostgreSQL, the live web server and the partner simulator."""

from __future__ import annotations

import json
import time

import pytest

from integrations.models import Order, PartnerMessage
from stock import selectors as stock_selectors
from supplychain.events import services as event_services
from supplychain.events.models import Delivery, Subscription
from tests.httpserver import Endpoint
from tests.integration.test_alerts_worker import alert_worker, set_rule, slack_texts
from tests.integrations.factories import order_doc, platform_client, stock_catalogue
from tests.integrations.test_partners import seed_vocabulary
from tests.processes import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = Order.Status
JOURNEY = ["received", "reserved", "sent_to_wms", "picked", "dispatched", "in_transit", "out_for_delivery", "delivered"]


@pytest.fixture
def partners(partner_simulator, live_server, celery_worker):
    """The simulator up, fast, calling back this test's live server; down again afterwards."""
    seed_vocabulary()  # an earlier transactional test's flush emptied the migration's rows
    partner_simulator.outbox.callback_url = live_server.url
    partner_simulator.set(down_for=0, delay=[0.05, 0.2], duplicates=False, out_of_order=False, fail_rate=0)
    try:
        yield partner_simulator
    finally:
        partner_simulator.set(down_for=10**9)


def status_of(order_id: str) -> str:
    return Order.objects.get(order_id=order_id).status


def place(order_id: str, delivery: int = 5) -> None:
    response = platform_client().post(
        "/api/v1/orders/", json.dumps(order_doc(order_id, delivery=delivery)), content_type="application/json"
    )
    assert response.status_code == 202, response.content


def test_an_order_goes_from_post_to_delivered_with_timeline_traceability_and_meal_plan(partners, settings):
    settings.PARTNER_COURIERS = ["parcelpost"]  # the pick is applied here, by the live server's thread
    stock_catalogue()
    place("e2e-1")
    wait_for(lambda: status_of("e2e-1") == S.DELIVERED, 120, "the order to be delivered through every partner")

    client = platform_client()
    detail = client.get("/api/v1/orders/e2e-1/").json()
    assert [step["to_status"] for step in detail["timeline"]] == JOURNEY
    dispatched = next(step for step in detail["timeline"] if step["to_status"] == "dispatched")
    assert dispatched["detail"]["courier"] == "parcelpost"
    assert dispatched["detail"]["tracking_id"].startswith("PP")
    ham = next(i for i in detail["lines"][0]["ingredients"] if i["sku"] == "ham")
    assert [(batch["lot"], batch["open"]) for batch in ham["batches"]] == [("H2", False)]  # consumed when picked
    kinds = [(m["direction"], m["kind"], m["status"]) for m in detail["partner_messages"]]
    assert ("out", "pick_request", "sent") in kinds
    assert ("in", "pick_confirmation", "applied") in kinds
    assert ("out", "shipment", "sent") in kinds
    assert [m["raw_status"] for m in detail["partner_messages"] if m["kind"] == "tracking_update"] == [
        "pre_transit",
        "in_transit",
        "out_for_delivery",
        "delivered",
    ]
    meals = client.get("/api/v1/orders/e2e-1/meal-plan/").json()["meals"]
    assert meals[0]["recipe"] == "ham-pasta"
    assert meals[0]["eat_by"] is not None
    assert stock_selectors.invariant_violations() == []


def test_duplicated_and_out_of_order_updates_change_the_order_once_and_never_backwards(partners, settings):
    settings.PARTNER_COURIERS = ["swiftship"]
    partners.set("swiftship", duplicates=True, out_of_order=True)
    stock_catalogue()
    place("e2e-2")
    wait_for(lambda: status_of("e2e-2") == S.DELIVERED, 120, "the order to be delivered")
    wait_for(
        lambda: PartnerMessage.objects.filter(partner="swiftship", kind="tracking_update").count() == 8,
        30,
        "every update and its duplicate to arrive",
    )
    order = Order.objects.get(order_id="e2e-2")
    moves = [step.to_status for step in order.timeline.all()]
    assert moves.count(S.DELIVERED) == 1
    assert S.OUT_FOR_DELIVERY not in moves  # it came after delivered: refused, never applied
    statuses = PartnerMessage.objects.filter(partner="swiftship", kind="tracking_update")
    assert statuses.filter(status="duplicate").count() == 4
    assert statuses.get(raw_status="OutForDelivery", status="rejected").reason == "illegal_transition"
    assert status_of("e2e-2") == S.DELIVERED


def test_a_courier_down_is_retried_dead_lettered_alerted_once_redriven_and_delivers_exactly_once(
    partners, settings, celery_worker, start_worker, celery_beat
):
    settings.PARTNER_COURIERS = ["swiftship"]
    set_rule("dead_letters", group_wait=2, group_interval=300, repeat_interval=3600)
    set_rule("partner_failing", group_wait=120)
    subscription = Subscription.objects.get(name="partner-swiftship")
    event_services.update_subscription(
        subscription=subscription, max_attempts=3, initial_interval=0.2, max_interval=0.5, jitter="none"
    )
    partners.set("swiftship", down_for=10**9)
    stock_catalogue()
    with Endpoint() as slack, alert_worker(celery_worker, start_worker, SLACK_WEBHOOK_URL=slack.url):
        place("e2e-3")
        dead = wait_for(
            lambda: Delivery.objects.filter(subscription__name="partner-swiftship", status="dead").first(),
            120,
            "the booking to be dead-lettered after its retries",
        )
        assert dead.attempts == 3
        assert status_of("e2e-3") == S.PICKED
        assert Subscription.objects.get(name="partner-swiftship").alarm_state == "alarm"
        wait_for(lambda: slack.received, 60, "the grouped Slack message about the dead letter")

        partners.set("swiftship", down_for=0)
        assert event_services.redrive_deliveries(subscription="partner-swiftship", actor="test") == 1
        wait_for(lambda: status_of("e2e-3") == S.DELIVERED, 120, "the redriven booking to deliver the order")
        wait_for(lambda: len(slack.received) >= 2, 60, "the resolved Slack message")
        time.sleep(3)  # more sweeps: nothing more
        texts = slack_texts(slack)
    assert len(texts) == 2, texts
    assert texts[0].startswith("*[FIRING] Dead letters: partner-swiftship (1)*"), texts
    assert texts[1].startswith("*[RESOLVED] Dead letters: partner-swiftship*"), texts
    booked = [s for s in partners["swiftship"].shipments.values() if s["reference"] == "e2e-3"]
    assert len(booked) == 1  # the simulator is the session's: other tests' shipments are there too
    moves = [step.to_status for step in Order.objects.get(order_id="e2e-3").timeline.all()]
    assert moves.count(S.DISPATCHED) == 1
    assert moves.count(S.DELIVERED) == 1
