"""The lifecycle: one table of legal transitions; illegal ones refused, audited, never applied; cancel releases."""

from decimal import Decimal

import pytest

from integrations import services
from integrations.errors import IllegalTransition
from integrations.models import LEGAL_TRANSITIONS, Order, OrderTransition
from stock.models import Reservation, StockLevel
from supplychain.events.models import AuditEntry, OutboxEvent
from tests.integrations.factories import order_doc, platform_client, stock_catalogue

pytestmark = pytest.mark.django_db
S = Order.Status
ILLEGAL = [
    (current, target)
    for current in S.values
    for target in S.values
    if target != current and target not in LEGAL_TRANSITIONS[current]
]
HAPPY_PATH = [S.RESERVED, S.SENT_TO_WMS, S.PICKED, S.DISPATCHED, S.IN_TRANSIT, S.OUT_FOR_DELIVERY, S.DELIVERED]


@pytest.fixture
def order():
    stock_catalogue()
    services.receive_order(document=order_doc("web-1"))
    return Order.objects.get(order_id="web-1")


def test_the_table_covers_every_status_and_never_leads_back_to_received():
    assert set(LEGAL_TRANSITIONS) == set(S.values)
    assert all(S.RECEIVED not in targets for targets in LEGAL_TRANSITIONS.values())
    for final in (S.DELIVERED, S.RETURNED, S.CANCELLED):
        assert LEGAL_TRANSITIONS[final] == frozenset()


@pytest.mark.parametrize(("current", "target"), ILLEGAL)
def test_every_illegal_transition_is_refused_audited_and_not_applied(
    order, current, target, django_capture_on_commit_callbacks
):
    Order.objects.filter(pk=order.pk).update(status=current)  # put the order where the case starts
    steps = OrderTransition.objects.count()
    events = OutboxEvent.objects.filter(type__startswith="order.").count()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(IllegalTransition) as refused:
        services.transition_order(order_id="web-1", to_status=target, source="courier-a")
    assert refused.value.status == 409
    assert Order.objects.get(pk=order.pk).status == current
    assert OrderTransition.objects.count() == steps
    assert OutboxEvent.objects.filter(type__startswith="order.").count() == events
    audit = AuditEntry.objects.get(event_type=services.REFUSED_TRANSITION, entity_key="web-1")
    assert (audit.outcome, audit.partner) == ("refused", "courier-a")
    assert audit.data["from_status"] == current and audit.data["to_status"] == target


def test_the_happy_path_writes_one_event_and_one_timeline_step_per_transition(order):
    for target in HAPPY_PATH:
        services.transition_order(order_id="web-1", to_status=target, source="test")
    assert Order.objects.get(pk=order.pk).status == S.DELIVERED
    assert list(order.timeline.values_list("to_status", flat=True)) == [S.RECEIVED, *HAPPY_PATH]
    for target in HAPPY_PATH:
        assert OutboxEvent.objects.filter(type=f"order.{target}", key="web-1").count() == 1


def test_a_late_message_never_moves_a_delivered_order_back(order, django_capture_on_commit_callbacks):
    for target in HAPPY_PATH:
        services.transition_order(order_id="web-1", to_status=target, source="test")
    outcomes = services.transition_orders(
        moves=[services.Move("web-1", S.IN_TRANSIT), services.Move("web-1", S.OUT_FOR_DELIVERY)], source="courier-b"
    )
    assert [outcome.outcome for outcome in outcomes] == ["refused", "refused"]
    assert Order.objects.get(pk=order.pk).status == S.DELIVERED


def test_the_same_status_again_is_unchanged_not_an_error(order):
    services.transition_order(order_id="web-1", to_status=S.SHORT, source="test")
    outcome = services.transition_orders(moves=[services.Move("web-1", S.SHORT)], source="test")[0]
    assert outcome.outcome == "unchanged"
    assert order.timeline.count() == 2


def test_cancel_releases_the_reservation(order):
    services.process_received_orders()
    assert StockLevel.objects.get(ingredient__sku="ham").reserved == Decimal(120)
    response = platform_client().post("/api/v1/orders/web-1/cancel/", {"reason": "changed my mind"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["timeline"][-1]["detail"] == {"reason": "changed my mind", "released": True}
    assert StockLevel.objects.get(ingredient__sku="ham").reserved == Decimal(0)
    assert Reservation.objects.get(transaction_id="web-1").status == "released"
    assert OutboxEvent.objects.filter(type="order.cancelled", key="web-1").count() == 1


def test_cancel_twice_changes_nothing_the_second_time(order):
    client = platform_client()
    assert client.post("/api/v1/orders/web-1/cancel/", {}, format="json").status_code == 200
    assert client.post("/api/v1/orders/web-1/cancel/", {}, format="json").status_code == 200
    assert order.timeline.filter(to_status=S.CANCELLED).count() == 1


def test_cancel_after_picking_is_409_audited_and_the_reservation_stays(order, django_capture_on_commit_callbacks):
    services.process_received_orders()
    services.transition_order(order_id="web-1", to_status=S.SENT_TO_WMS, source="wms")
    services.transition_order(order_id="web-1", to_status=S.PICKED, source="wms")
    with django_capture_on_commit_callbacks(execute=True):
        response = platform_client().post("/api/v1/orders/web-1/cancel/", {}, format="json")
    assert response.status_code == 409
    assert response.json()["type"] == "illegal_transition"
    assert Order.objects.get(pk=order.pk).status == S.PICKED
    assert Reservation.objects.get(transaction_id="web-1").status == "reserved"
    assert AuditEntry.objects.filter(event_type=services.REFUSED_TRANSITION, entity_key="web-1").count() == 1


def test_cancelling_an_unknown_order_is_404():
    stock_catalogue()
    response = platform_client().post("/api/v1/orders/nope/cancel/", {}, format="json")
    assert response.status_code == 404
    assert response.json()["type"] == "order_not_found"


def test_two_moves_of_one_order_in_one_call_apply_in_order_and_leave_the_last(order):
    for target in (S.RESERVED, S.SENT_TO_WMS, S.PICKED, S.DISPATCHED):
        services.transition_order(order_id="web-1", to_status=target, source="test")
    outcomes = services.transition_orders(
        moves=[services.Move("web-1", S.IN_TRANSIT), services.Move("web-1", S.OUT_FOR_DELIVERY)], source="courier-a"
    )
    assert [outcome.outcome for outcome in outcomes] == ["applied", "applied"]
    assert Order.objects.get(pk=order.pk).status == S.OUT_FOR_DELIVERY
    assert list(order.timeline.values_list("to_status", flat=True))[-2:] == [S.IN_TRANSIT, S.OUT_FOR_DELIVERY]
