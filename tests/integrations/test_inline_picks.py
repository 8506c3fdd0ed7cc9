"""The orders task sends its batch's pick requests itself: partner-wms deliveries, run by the backbone in-process."""

import pytest

from integrations import services
from integrations.models import Order
from integrations.services import processing
from supplychain.events.models import AuditEntry, Delivery
from supplychain.events.signing import generate_secret
from tests.httpserver import Endpoint
from tests.integrations.factories import order_doc, stock_catalogue

pytestmark = pytest.mark.django_db
S = Order.Status
WMS_SECRET = generate_secret()


@pytest.fixture(autouse=True)
def fresh_pause(monkeypatch):
    monkeypatch.setattr(processing.PickRequests, "paused_until", 0.0)


def wms(settings, endpoint: Endpoint) -> None:
    settings.PARTNERS = {
        **settings.PARTNERS,
        "wms": {"url": endpoint.url.rstrip("/"), "secret": WMS_SECRET, "timeout": 5.0},
    }


def pick_deliveries():
    return Delivery.objects.filter(subscription__name=processing.PICK_REQUESTS).order_by("id")


def test_the_task_that_reserves_a_batch_sends_its_pick_requests_through_the_backbone(settings):
    stock_catalogue()
    services.receive_orders(documents=[order_doc(f"web-{n}") for n in range(3)])
    with Endpoint(secret=WMS_SECRET) as endpoint:
        wms(settings, endpoint)
        report = services.process_received_orders(relay=True, worker="celery@orders-1")
    assert report.reserved == 3
    assert [r.status for r in endpoint.received] == [200]  # one signed list, verified by the stand-in
    assert [p["client_order_ref"] for p in endpoint.received[0].json["pick_lists"]] == ["web-0", "web-1", "web-2"]
    assert set(Order.objects.values_list("status", flat=True)) == {S.SENT_TO_WMS}
    # A delivery like any other: leased under the task's worker, succeeded, its attempt audited.
    deliveries = list(pick_deliveries())
    assert [(d.status, d.attempts, d.leased_by) for d in deliveries] == [("succeeded", 1, "celery@orders-1")] * 3
    attempts = AuditEntry.objects.filter(kind=AuditEntry.Kind.ATTEMPT, subscription=processing.PICK_REQUESTS)
    assert sorted(attempts.values_list("outcome", flat=True)) == ["succeeded"] * 3


def test_a_wms_that_fails_is_left_to_the_delivery_tasks_for_a_pause(settings):
    stock_catalogue()
    services.receive_orders(documents=[order_doc("web-1")])
    with Endpoint(always_fail=True) as endpoint:
        wms(settings, endpoint)
        services.process_received_orders(relay=True)
        assert len(endpoint.received) == 1
        assert processing.PickRequests.paused_until > 0
        # The next batch, within the pause: reserved, its pick request left to the delivery task's retry.
        services.receive_orders(documents=[order_doc("web-2")])
        report = services.process_received_orders(relay=True)
        assert report.reserved == 1
        assert len(endpoint.received) == 1
    first, second = pick_deliveries()
    assert (first.status, first.attempts) == ("pending", 1)  # retried by the backbone's policy
    assert "PartnerUnavailable" in first.last_error
    assert (second.status, second.attempts) == ("pending", 0)
    assert set(Order.objects.values_list("status", flat=True)) == {S.RESERVED}


def test_a_slow_wms_pauses_the_inline_picks_too(settings, monkeypatch):
    monkeypatch.setattr(processing, "PICKS_SLOW_SECONDS", 0.2)
    stock_catalogue()
    services.receive_orders(documents=[order_doc("web-1")])
    with Endpoint(slow_first=1, slow_seconds=0.4) as endpoint:
        wms(settings, endpoint)
        services.process_received_orders(relay=True)
        assert pick_deliveries().get().status == "succeeded"  # slow, but it answered
        assert processing.PickRequests.paused_until > 0
        services.receive_orders(documents=[order_doc("web-2")])
        services.process_received_orders(relay=True)
        assert len(endpoint.received) == 1


def test_inline_picks_can_be_switched_off(settings):
    settings.ORDERS_DELIVER_PICKS = False
    stock_catalogue()
    services.receive_orders(documents=[order_doc("web-1")])
    with Endpoint() as endpoint:
        wms(settings, endpoint)
        services.process_received_orders(relay=True)
    assert endpoint.received == []
    assert pick_deliveries().get().attempts == 0
    assert Order.objects.get().status == S.RESERVED
