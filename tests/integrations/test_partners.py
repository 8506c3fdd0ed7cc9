"""Partners: adapters (translation, signatures both ways), the inbound webhook endpoint, picking, parking, replay."""

from __future__ import annotations

import json
import time

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from integrations import adapters, services
from integrations.adapters import Inbound, InvalidMessage, SignatureRejected, parcelpost, swiftship, wms
from integrations.models import Order, PartnerMessage, StatusVocabulary
from integrations.services import Move, transition_orders
from stock import selectors as stock_selectors
from stock.models import Allocation, Movement, Reservation
from supplychain.events import signing
from supplychain.events.models import AuditEntry, OutboxEvent
from tests.httpserver import Endpoint
from tests.integrations.factories import order_doc, stock_catalogue

pytestmark = pytest.mark.django_db
S = Order.Status

# Standard Webhooks' published test vector (libraries/javascript/src/webhook.test.ts).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SWIFT_SECRET = signing.generate_secret()
WMS_SECRET = signing.generate_secret()
PARCEL_SECRET = "b" * 64
PARTNERS = {
    "wms": {"url": "", "secret": WMS_SECRET, "timeout": 5.0},
    "erp": {"url": "", "secret": "", "timeout": 5.0},
    "swiftship": {"url": "", "secret": SWIFT_SECRET, "timeout": 5.0},
    "parcelpost": {"url": "", "secret": PARCEL_SECRET, "timeout": 5.0},
}


def seed_vocabulary() -> None:
    """The migration's seed rows again: a transactional test's flush (earlier in the run) empties every table."""
    import importlib

    from django.apps import apps

    importlib.import_module("integrations.migrations.0002_partners").seed_vocabulary(apps, None)


@pytest.fixture(autouse=True)
def partner_settings(settings):
    seed_vocabulary()
    settings.PARTNERS = {name: dict(config) for name, config in PARTNERS.items()}
    return settings


# ---- Signatures -------------------------------------------------------------------------------------


def test_standard_webhooks_published_vector_signs_and_verifies_both_ways():
    assert signing.sign(VECTOR_SECRET, message_id=VECTOR_ID, timestamp=VECTOR_TIMESTAMP, body=VECTOR_BODY) == (
        VECTOR_SIGNATURE
    )
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    assert swiftship.verify(VECTOR_BODY, headers, VECTOR_SECRET, now=VECTOR_TIMESTAMP + 10) == VECTOR_ID
    with pytest.raises(SignatureRejected):
        swiftship.verify(VECTOR_BODY + b" ", headers, VECTOR_SECRET, now=VECTOR_TIMESTAMP)
    with pytest.raises(SignatureRejected):  # stale: more than five minutes old
        swiftship.verify(VECTOR_BODY, headers, VECTOR_SECRET, now=VECTOR_TIMESTAMP + 301)


def test_outbound_calls_to_swiftship_verify_with_the_standardwebhooks_library():
    with Endpoint(secret=SWIFT_SECRET) as endpoint:
        config = {**PARTNERS["swiftship"], "url": endpoint.url}
        refused = pytest.raises(adapters.PartnerUnavailable, match="tracking_number")  # it answers {"ok": true}
        with override_settings(PARTNERS={**PARTNERS, "swiftship": config}), refused:
            swiftship.book_shipment(_order_document(), message_id="evt-1", secret=SWIFT_SECRET)
    assert endpoint.received[0].status == 200  # the endpoint verified the signature
    received = endpoint.received[0]
    Webhook(SWIFT_SECRET).verify(received.body, received.headers)  # raises when the signature is wrong
    assert received.headers["Idempotency-Key"] == "evt-1"
    assert received.json["shipment"]["destination"]["postal_code"] == "N1 9GU"


def test_parcelpost_hmac_header_round_trips_and_refuses_tampering_and_staleness():
    body = b'{"id":"evt_1"}'
    now = int(time.time())
    header = parcelpost.signature(PARCEL_SECRET, timestamp=now, body=body)
    assert parcelpost.check_signature(PARCEL_SECRET, header, body, now=now)
    assert not parcelpost.check_signature(PARCEL_SECRET, header, body + b"x", now=now)
    assert not parcelpost.check_signature("other" + PARCEL_SECRET, header, body, now=now)
    assert not parcelpost.check_signature(PARCEL_SECRET, header, body, now=now + 301)
    assert not parcelpost.check_signature(PARCEL_SECRET, "t=abc,v1=00", body, now=now)


# ---- Translation ------------------------------------------------------------------------------------


def _order_document() -> dict:
    doc = order_doc("web-1")
    return {"order_id": "web-1", "delivery_address": doc["delivery_address"], "delivery_date": doc["delivery_date"]}


def test_each_adapter_translates_its_own_format_into_our_terms():
    swift = swiftship.parse(_swift_body("web-1", "OutForDelivery"), {"webhook-id": "msg_1"})
    assert (swift.message_id, swift.order_reference, swift.raw_status) == ("msg_1", "web-1", "OutForDelivery")
    assert swift.data["tracking_id"] == "SS-web-1"
    parcel = parcelpost.parse(_parcel_body("evt_9", "web-2", "return_to_sender"), {})
    assert (parcel.message_id, parcel.order_reference, parcel.raw_status) == ("evt_9", "web-2", "return_to_sender")
    pick = wms.parse(_pick_body("web-3", [("ham", "H2", "120")]), {"webhook-id": "msg_3"})
    assert pick.kind == "pick_confirmation"
    assert pick.data["lines"] == [{"sku": "ham", "lot": "H2", "quantity": "120.000"}]
    lists = json.loads(
        wms.pick_lists_body(
            [
                {
                    "request_id": "pick-web-3",
                    "order_id": "web-3",
                    "ship_by": "2026-12-05",
                    "lines": [{"sku": "ham", "lot": "H1", "best_before": "2026-12-06", "quantity": "120.000"}],
                }
            ]
        )
    )
    assert lists == {
        "pick_lists": [
            {
                "pick_id": "pick-web-3",
                "client_order_ref": "web-3",
                "ship_date": "2026-12-05",
                "items": [{"item_code": "ham", "qty": "120.000", "lot": "H1", "expiry": "2026-12-06"}],
            }
        ]
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


def _near_valid(module):
    """Documents shaped like the partner's, with any value in any place."""
    if module is swiftship:
        return st.fixed_dictionaries(
            {
                "event": st.just("tracking_update") | json_values,
                "msg": st.dictionaries(
                    st.sampled_from(["order_id", "tag", "tracking_number", "updated_at", "subtag"]), json_values
                )
                | json_values,
            }
        )
    if module is parcelpost:
        return st.fixed_dictionaries(
            {
                "id": json_values,
                "description": st.just("tracker.updated"),
                "result": st.dictionaries(
                    st.sampled_from(["reference", "status", "tracking_code", "updated_at"]), json_values
                )
                | json_values,
            }
        )
    return st.fixed_dictionaries(
        {"event": st.just("pick.confirmed"), "pick_id": json_values, "client_order_ref": json_values,
         "items": st.lists(st.dictionaries(st.sampled_from(["item_code", "lot", "qty"]), json_values), max_size=3)
         | json_values}
    )  # fmt: skip


@pytest.mark.parametrize("module", [wms, swiftship, parcelpost], ids=lambda m: m.NAME)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_inbound_parser_answers_any_body_with_a_message_or_invalid_message(module, data):
    body = data.draw(
        st.binary(max_size=200)
        | json_values.map(lambda value: json.dumps(value).encode())
        | _near_valid(module).map(lambda value: json.dumps(value).encode())
    )
    headers = data.draw(st.fixed_dictionaries({}, optional={"webhook-id": st.text(max_size=250)}))
    try:
        inbound = module.parse(body, headers)
    except InvalidMessage as exc:
        assert exc.detail  # noqa: PT017 (the parser's own answer, checked as a value)
        return
    assert isinstance(inbound, Inbound)
    assert inbound.message_id and len(inbound.message_id) <= 200
    assert inbound.order_reference and len(inbound.order_reference) <= 100


# ---- The webhook endpoint ----------------------------------------------------------------------------


def _swift_body(order_id: str, tag: str) -> bytes:
    return json.dumps(
        {
            "event": "tracking_update",
            "msg": {"tracking_number": f"SS-{order_id}", "order_id": order_id, "tag": tag, "updated_at": "2026-12-02"},
        }
    ).encode()


def _parcel_body(event_id: str, order_id: str, status: str) -> bytes:
    result = {"object": "Tracker", "tracking_code": f"PP-{order_id}", "status": status, "reference": order_id}
    return json.dumps({"id": event_id, "object": "Event", "description": "tracker.updated", "result": result}).encode()


def _pick_body(order_id: str, lines) -> bytes:
    items = [{"item_code": sku, "lot": lot, "qty": quantity} for sku, lot, quantity in lines]
    return json.dumps(
        {"event": "pick.confirmed", "pick_id": f"pick-{order_id}", "client_order_ref": order_id, "items": items}
    ).encode()


def post_standard(partner: str, secret: str, body: bytes, message_id: str, *, timestamp: int | None = None):
    timestamp = int(time.time()) if timestamp is None else timestamp
    headers = signing.headers(message_id=message_id, body=body, secrets=[secret], timestamp=timestamp)
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    return APIClient().generic("POST", f"/api/v1/webhooks/{partner}/", body, content_type="application/json", **extra)


def post_parcel(body: bytes, *, secret: str = PARCEL_SECRET, timestamp: int | None = None):
    header = parcelpost.signature(secret, timestamp=int(time.time()) if timestamp is None else timestamp, body=body)
    return APIClient().generic(
        "POST",
        "/api/v1/webhooks/parcelpost/",
        body,
        content_type="application/json",
        HTTP_X_PARCELPOST_SIGNATURE=header,
    )


def order_at(order_id: str, status: str, *, delivery: int = 5) -> Order:
    """An order placed, reserved by the batch processing and moved along the lifecycle to ``status``."""
    services.receive_order(document=order_doc(order_id, delivery=delivery))
    services.process_order_batch()
    path = [S.SENT_TO_WMS, S.PICKED, S.DISPATCHED, S.IN_TRANSIT, S.OUT_FOR_DELIVERY, S.DELIVERED]
    for step in path[: path.index(status) + 1] if status in path else []:
        transition_orders(moves=[Move(order_id, step, {})], source="test")
    return Order.objects.get(order_id=order_id)


def test_a_bad_signature_is_a_401_audited_and_published_and_changes_nothing():
    stock_catalogue()
    order_at("web-1", S.DISPATCHED)
    response = post_standard("swiftship", signing.generate_secret(), _swift_body("web-1", "Delivered"), "msg_bad")
    assert response.status_code == 401
    assert response.json()["type"] == "webhook_signature_rejected"
    assert Order.objects.get(order_id="web-1").status == S.DISPATCHED
    assert PartnerMessage.objects.count() == 0
    audit = AuditEntry.objects.get(partner="swiftship", outcome="rejected")
    assert audit.entity_key == "msg_bad"
    event = OutboxEvent.objects.get(type="integration.webhook_rejected")
    assert event.payload["partner"] == "swiftship"
    stale = post_standard("swiftship", SWIFT_SECRET, _swift_body("web-1", "Delivered"), "msg_old", timestamp=1)
    assert stale.status_code == 401
    assert post_parcel(_parcel_body("evt_1", "web-1", "delivered"), secret="c" * 64).status_code == 401


def test_unknown_partner_is_404_and_a_partner_without_a_secret_is_403(partner_settings):
    assert APIClient().post("/api/v1/webhooks/no-such/", {}, format="json").status_code == 404
    partner_settings.PARTNERS = {**partner_settings.PARTNERS, "swiftship": {"url": "", "secret": "", "timeout": 1}}
    response = post_standard("swiftship", SWIFT_SECRET, _swift_body("web-1", "Delivered"), "msg_1")
    assert response.status_code == 403
    assert response.json()["type"] == "partner_disabled"


def test_a_tracking_update_moves_the_order_and_a_duplicate_changes_it_once():
    stock_catalogue()
    order_at("web-1", S.DISPATCHED)
    body = _swift_body("web-1", "InTransit")
    first = post_standard("swiftship", SWIFT_SECRET, body, "msg_1")
    again = post_standard("swiftship", SWIFT_SECRET, body, "msg_1")
    assert first.status_code == again.status_code == 200
    assert first.json()["status"] == "applied"
    assert again.json()["status"] == "duplicate"
    order = Order.objects.get(order_id="web-1")
    assert order.status == S.IN_TRANSIT
    assert [step.to_status for step in order.timeline.all()].count(S.IN_TRANSIT) == 1
    step = order.timeline.get(to_status=S.IN_TRANSIT)
    assert step.source == "swiftship"
    assert step.detail["raw_status"] == "InTransit"
    assert list(PartnerMessage.objects.order_by("id").values_list("status", flat=True)) == ["applied", "duplicate"]
    detail = _staff().get("/api/v1/orders/web-1/").json()
    assert [m["status"] for m in detail["partner_messages"]] == ["applied", "duplicate"]


def test_an_out_of_order_update_never_moves_an_order_backwards(django_capture_on_commit_callbacks):
    stock_catalogue()
    order_at("web-1", S.DISPATCHED)
    assert post_parcel(_parcel_body("evt_1", "web-1", "delivered")).json()["status"] == "applied"
    with django_capture_on_commit_callbacks(execute=True):
        late = post_parcel(_parcel_body("evt_0", "web-1", "in_transit"))
    assert late.status_code == 200
    assert late.json()["status"] == "rejected"
    assert late.json()["reason"] == "illegal_transition"
    assert Order.objects.get(order_id="web-1").status == S.DELIVERED
    assert AuditEntry.objects.filter(event_type="order.transition_refused", entity_key="web-1").exists()


def _staff() -> APIClient:
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-for-tests-only")
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_an_unknown_status_is_parked_then_applied_once_the_word_is_added_and_replayed():
    stock_catalogue()
    order_at("web-1", S.DISPATCHED)
    response = post_standard("swiftship", SWIFT_SECRET, _swift_body("web-1", "Delivered_003"), "msg_1")
    assert response.json() | {"detail": ""} == {
        "message_id": "msg_1",
        "status": "parked",
        "reason": "unknown_status",
        "order_id": None,
        "detail": "",
    }
    parked = OutboxEvent.objects.get(type="integration.message_parked")
    assert parked.payload["raw_status"] == "Delivered_003"
    assert Order.objects.get(order_id="web-1").status == S.DISPATCHED
    message = PartnerMessage.objects.get()
    staff = _staff()
    assert staff.post(f"/api/v1/partner-messages/{message.pk}/replay/").json()["status"] == "parked"

    StatusVocabulary.objects.create(partner="swiftship", raw_status="Delivered_003", canonical_status="delivered")
    replayed = staff.post(f"/api/v1/partner-messages/{message.pk}/replay/")
    assert replayed.status_code == 200
    assert replayed.json()["status"] == "applied"
    assert Order.objects.get(order_id="web-1").status == S.DELIVERED
    assert staff.post(f"/api/v1/partner-messages/{message.pk}/replay/").status_code == 409  # not parked any more
    assert staff.get("/api/v1/partner-messages/", {"status": "parked"}).json()["count"] == 0


def test_an_unknown_order_is_parked_and_an_unreadable_message_is_a_400_kept_parked():
    response = post_parcel(_parcel_body("evt_1", "nobody", "in_transit"))
    assert response.json()["reason"] == "unknown_order"
    unreadable = post_standard("swiftship", SWIFT_SECRET, b'{"event": "tracking_update"}', "msg_9")
    assert unreadable.status_code == 400
    assert unreadable.json()["errors"] == {"msg": ["An object."]}
    assert PartnerMessage.objects.get(message_id="msg_9").reason == "invalid"


# ---- Picking ------------------------------------------------------------------------------------------


def test_a_pick_of_another_batch_moves_the_allocation_commits_and_traceability_follows():
    stock_catalogue()
    order_at("web-1", S.SENT_TO_WMS, delivery=3)  # ham allocated from H1 (the earlier lot)
    assert set(Allocation.objects.filter(ingredient__sku="ham").values_list("batch__lot", flat=True)) == {"H1"}
    body = _pick_body("web-1", [("ham", "H2", "120"), ("mushroom", "M1", "160")])
    response = post_standard("wms", WMS_SECRET, body, "msg_pick")
    assert response.json()["status"] == "applied", response.json()
    order = Order.objects.get(order_id="web-1")
    assert order.status == S.PICKED
    picked = order.timeline.get(to_status=S.PICKED)
    assert picked.detail["courier"] in ("swiftship", "parcelpost")
    assert picked.detail["moved"][0]["sku"] == "ham"
    assert Reservation.objects.get(transaction_id="web-1").status == "committed"
    lines = _staff().get("/api/v1/orders/web-1/").json()["lines"]
    ham = next(i for i in lines[0]["ingredients"] if i["sku"] == "ham")
    assert [(b["lot"], b["quantity"]) for b in ham["batches"]] == [("H2", "120.000")]
    notes = list(
        Movement.objects.filter(reservation__transaction_id="web-1", kind="release").values_list("note", flat=True)
    )
    assert notes and "instead" in notes[0]
    assert stock_selectors.invariant_violations() == []


def test_a_pick_that_does_not_add_up_is_parked_and_changes_no_stock():
    stock_catalogue()
    order_at("web-1", S.SENT_TO_WMS, delivery=3)
    response = post_standard("wms", WMS_SECRET, _pick_body("web-1", [("ham", "H1", "100")]), "msg_pick")
    assert response.json()["status"] == "parked"
    assert response.json()["reason"] == "invalid"
    assert Reservation.objects.get(transaction_id="web-1").status == "reserved"
    assert Order.objects.get(order_id="web-1").status == S.SENT_TO_WMS
    assert stock_selectors.invariant_violations() == []


# ---- Calls out -------------------------------------------------------------------------------------------


def test_pick_requests_go_out_as_one_signed_list_and_the_orders_are_sent(partner_settings):
    stock_catalogue()
    for n in range(3):
        order_at(f"web-{n}", S.RESERVED)
    with Endpoint(secret=WMS_SECRET) as endpoint:
        partner_settings.PARTNERS = {**PARTNERS, "wms": {**PARTNERS["wms"], "url": endpoint.url.rstrip("/")}}
        sent = services.send_pick_requests(order_ids=["web-0", "web-1", "web-2", "nobody"], message_id="batch_1")
    assert sent == 3
    assert len(endpoint.received) == 1
    assert endpoint.received[0].status == 200  # the endpoint verified the Standard Webhooks signature
    lists = endpoint.received[0].json["pick_lists"]
    assert [p["client_order_ref"] for p in lists] == ["web-0", "web-1", "web-2"]
    assert set(Order.objects.values_list("status", flat=True)) == {S.SENT_TO_WMS}
    assert PartnerMessage.objects.get(direction="out").kind == "pick_request"


def test_a_wms_that_is_down_changes_nothing_so_the_delivery_retries(partner_settings):
    stock_catalogue()
    order_at("web-1", S.RESERVED)
    with Endpoint(always_fail=True) as endpoint:
        partner_settings.PARTNERS = {**PARTNERS, "wms": {**PARTNERS["wms"], "url": endpoint.url.rstrip("/")}}
        with pytest.raises(adapters.PartnerUnavailable):
            services.send_pick_requests(order_ids=["web-1"], message_id="evt_1")
    assert Order.objects.get(order_id="web-1").status == S.RESERVED
    assert not PartnerMessage.objects.exists()


def test_the_courier_is_chosen_stably_per_order():
    assert adapters.courier_for("web-1") == adapters.courier_for("web-1")
    assert {adapters.courier_for(f"web-{n}") for n in range(20)} == {"swiftship", "parcelpost"}


def test_partner_handlers_are_subscribed_with_their_courier_filters():
    from supplychain.events.models import Subscription

    subscriptions = {s.name: s for s in Subscription.objects.filter(name__startswith="partner-")}
    assert set(subscriptions) == {"partner-wms", "partner-swiftship", "partner-parcelpost"}
    assert subscriptions["partner-wms"].event_types == ["order.reserved"]
    assert subscriptions["partner-swiftship"].filter_policy == {"detail": {"courier": ["swiftship"]}}


def test_the_seeded_vocabulary_maps_both_couriers_words():
    words = dict(StatusVocabulary.objects.filter(partner="swiftship").values_list("raw_status", "canonical_status"))
    assert words["AttemptFail"] == "delivery_failed"
    assert StatusVocabulary.objects.get(partner="parcelpost", raw_status="return_to_sender").canonical_status == (
        "returned"
    )


# ---- A partner faster than our own commit -------------------------------------------------------------


def _booked(monkeypatch, partner: str = "swiftship") -> None:
    """The courier's booking answers at once with a tracking number (its HTTP client is tested above)."""
    monkeypatch.setattr(
        adapters.adapter(partner), "book_shipment", lambda order, **_: (f"T-{order['order_id']}", b"{}")
    )


def test_a_courier_update_before_the_dispatch_commits_is_parked_early_then_applied_by_the_booking(monkeypatch):
    stock_catalogue()
    order_at("web-1", S.PICKED)
    early = post_standard("swiftship", SWIFT_SECRET, _swift_body("web-1", "InTransit"), "msg_1")
    assert early.status_code == 200
    assert (early.json()["status"], early.json()["reason"]) == ("parked", "early")
    assert "applied once it is dispatched" in early.json()["detail"]
    assert Order.objects.get(order_id="web-1").status == S.PICKED
    assert not OutboxEvent.objects.filter(type="integration.message_parked").exists()  # a race, not an incident
    assert not AuditEntry.objects.filter(event_type="order.transition_refused").exists()

    _booked(monkeypatch)
    assert services.book_shipment(partner="swiftship", order_id="web-1", message_id="book-1") == "T-web-1"
    order = Order.objects.get(order_id="web-1")
    assert order.status == S.IN_TRANSIT
    assert [step.to_status for step in order.timeline.all()][-2:] == [S.DISPATCHED, S.IN_TRANSIT]
    message = PartnerMessage.objects.get(message_id="msg_1")
    assert (message.status, message.reason, message.replays) == ("applied", "", 1)


def test_early_updates_are_applied_in_the_order_they_came_and_a_late_one_still_never_goes_backwards(monkeypatch):
    stock_catalogue()
    order_at("web-1", S.PICKED)
    order_at("web-2", S.PICKED)
    post_standard("swiftship", SWIFT_SECRET, _swift_body("web-1", "InTransit"), "msg_1")
    post_standard("swiftship", SWIFT_SECRET, _swift_body("web-1", "Delivered"), "msg_2")
    post_standard("swiftship", SWIFT_SECRET, _swift_body("web-2", "Delivered"), "msg_3")
    post_standard("swiftship", SWIFT_SECRET, _swift_body("web-2", "InTransit"), "msg_4")
    assert set(PartnerMessage.objects.values_list("reason", flat=True)) == {"early"}
    _booked(monkeypatch)
    services.book_shipment(partner="swiftship", order_id="web-1", message_id="book-1")
    assert Order.objects.get(order_id="web-1").status == S.DELIVERED
    assert Order.objects.get(order_id="web-2").status == S.PICKED  # its own booking has not happened
    services.book_shipment(partner="swiftship", order_id="web-2", message_id="book-2")
    assert Order.objects.get(order_id="web-2").status == S.DELIVERED
    statuses = dict(PartnerMessage.objects.filter(direction="in").values_list("message_id", "status"))
    assert statuses == {"msg_1": "applied", "msg_2": "applied", "msg_3": "applied", "msg_4": "rejected"}


def test_a_pick_confirmed_before_the_order_is_marked_sent_is_applied_once_it_is(partner_settings):
    stock_catalogue()
    order_at("web-1", S.RESERVED, delivery=3)
    body = _pick_body("web-1", [("ham", "H1", "120"), ("mushroom", "M1", "160")])
    early = post_standard("wms", WMS_SECRET, body, "msg_pick")
    assert (early.json()["status"], early.json()["reason"]) == ("parked", "early")
    assert Reservation.objects.get(transaction_id="web-1").status == "reserved"
    with Endpoint(secret=WMS_SECRET) as endpoint:
        partner_settings.PARTNERS = {**PARTNERS, "wms": {**PARTNERS["wms"], "url": endpoint.url.rstrip("/")}}
        assert services.send_pick_requests(order_ids=["web-1"], message_id="batch_1") == 1
    assert Order.objects.get(order_id="web-1").status == S.PICKED
    assert Reservation.objects.get(transaction_id="web-1").status == "committed"
    assert PartnerMessage.objects.get(message_id="msg_pick").status == "applied"
    assert stock_selectors.invariant_violations() == []
