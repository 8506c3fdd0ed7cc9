"""The bulk reservation endpoint: one result per element, in order, as the single endpoint would answer."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from stock import services
from stock.models import Reservation
from supplychain.core.bootstrap import bootstrap
from tests.stock.factories import IngredientFactory, csv_opener

pytestmark = pytest.mark.django_db
BULK = "/api/v1/stock/reservations/bulk/"


def day(offset):
    return (timezone.localdate() + timedelta(days=offset)).isoformat()


@pytest.fixture
def stocked():
    IngredientFactory(sku="ham")
    text = f"sku,quantity,best_before,lot,supplier\nham,10,{day(3)},H1,Farm A\nham,10,{day(9)},H2,Farm A\n"
    services.ingest_receipt(key="seed.csv", open_stream=csv_opener(text), source="upload")


def test_bulk_answers_each_element_with_the_single_endpoints_status_and_body(platform, stocked):
    first = platform.post(
        "/api/v1/stock/reservations/",
        {"transaction_id": "one", "items": [{"sku": "ham", "quantity": 1}]},
        format="json",
    )
    elements = [
        {"transaction_id": "one", "items": [{"sku": "ham", "quantity": 1}]},  # replayed
        {"transaction_id": "two", "items": [{"sku": "ham", "quantity": 12}]},  # H1 + part of H2
        {"transaction_id": "three", "items": [{"sku": "ham", "quantity": 8}]},  # 7 left: rejected
        {"transaction_id": "one", "items": [{"sku": "ham", "quantity": 2}]},  # named twice: refused
        {"transaction_id": "four", "items": [{"sku": "caviar", "quantity": 1}]},  # unknown: refused
        {"transaction_id": "five", "items": [{"sku": "ham", "quantity": 7}], "hold_seconds": 60},
    ]
    response = platform.post(BULK, {"reservations": elements}, format="json")
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [(r["transaction_id"], r["status"], r["http_status"]) for r in results] == [
        ("one", "refused", 422),
        ("two", "reserved", 201),
        ("three", "rejected", 409),
        ("one", "refused", 422),
        ("four", "refused", 400),
        ("five", "reserved", 201),
    ]
    assert results[0]["body"]["type"] == "transaction_id_repeated"
    assert results[4]["body"]["errors"] == {"items.0.sku": ["Unknown sku."]}
    assert results[2]["body"]["shortages"] == [{"sku": "ham", "requested": "8.000", "available": "7.000"}]
    assert all(r["body"]["correlation_id"] for r in results if r["http_status"] >= 400)
    for result in (results[1], results[5]):  # the stored answer the single endpoint replays
        again = platform.get(f"/api/v1/stock/reservations/{result['transaction_id']}/")
        assert again.json() == result["body"]
    assert first.json() == platform.get("/api/v1/stock/reservations/one/").json()
    replay = platform.post(BULK, {"reservations": [elements[1]]}, format="json").json()["results"]
    assert [(r["status"], r["http_status"], r["body"]) for r in replay] == [("replayed", 201, results[1]["body"])]


def test_a_malformed_element_refuses_the_whole_call_by_its_index(platform, stocked):
    elements = [
        {"transaction_id": "ok", "items": [{"sku": "ham", "quantity": 1}]},
        {"transaction_id": "bad", "items": [{"sku": "not a sku!", "quantity": 1}]},
    ]
    response = platform.post(BULK, {"reservations": elements}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "validation_error"
    assert list(body["errors"]) == ["reservations.1.items.0.sku"]
    assert not Reservation.objects.exists()


def test_more_than_1000_elements_is_a_400_saying_the_limit(platform, stocked):
    elements = [{"transaction_id": f"t{n}", "items": [{"sku": "ham", "quantity": 1}]} for n in range(1001)]
    response = platform.post(BULK, {"reservations": elements}, format="json")
    assert response.status_code == 400
    assert "1000" in response.json()["errors"]["reservations"][0]
    assert not Reservation.objects.exists()


def test_bulk_needs_the_permission_to_reserve(stocked):
    bootstrap(demo=False)
    user = get_user_model().objects.create_user("viewer")
    client = APIClient()
    client.force_authenticate(user)
    element = {"transaction_id": "x", "items": [{"sku": "ham", "quantity": 1}]}
    response = client.post(BULK, {"reservations": [element]}, format="json")
    assert response.status_code == 403
    assert response.json()["type"] == "permission_denied"
    assert not Reservation.objects.exists()


def test_bulk_is_not_a_transaction_id_since_its_url_is_the_group_endpoint(platform, stocked):
    response = platform.post(
        "/api/v1/stock/reservations/",
        {"transaction_id": "bulk", "items": [{"sku": "ham", "quantity": 1}]},
        format="json",
    )
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["transaction_id"]
    assert not Reservation.objects.exists()


PLAIN = {"transaction_id": "p-1", "items": [{"sku": "ham", "quantity": 2}, {"sku": "cheese-2", "quantity": "0.5"}]}


@pytest.mark.parametrize(
    "element",
    [
        PLAIN,
        {**PLAIN, "needed_by": day(4), "hold_seconds": 600},
        {**PLAIN, "needed_by": None, "hold_seconds": None, "note": "ignored, as by the serializer"},
        {**PLAIN, "items": [{"sku": "ham", "quantity": "99999999999.999"}]},
        # Not the plain shape: the serializers decide (accept or refuse), the reader steps aside.
        {**PLAIN, "items": [{"sku": "ham", "quantity": 1.5}]},
        {**PLAIN, "items": [{"sku": "ham", "quantity": "0.0005"}]},
        {**PLAIN, "items": [{"sku": "ham", "quantity": True}]},
        {**PLAIN, "items": [{"sku": " ham ", "quantity": 1}]},
        {**PLAIN, "items": []},
        {**PLAIN, "transaction_id": 17},
        {**PLAIN, "transaction_id": "bulk"},
        {**PLAIN, "needed_by": "2026-02-30"},
        {**PLAIN, "needed_by": "2026-1-5"},
        {**PLAIN, "hold_seconds": "60"},
        {**PLAIN, "hold_seconds": 0},
        {**PLAIN, "hold_seconds": 30 * 86400 + 1},
        ["not", "an", "object"],
    ],
)
def test_the_plain_reader_accepts_only_what_the_serializers_accept_with_the_same_values(element):
    from stock.api import BulkReservationInput, plain_bulk_requests

    body = {"reservations": [element]}
    plain = plain_bulk_requests(body)
    checked = BulkReservationInput(data=body)
    if plain is None:
        return  # the view runs the serializers: their answer is the view's
    assert checked.is_valid(), checked.errors
    (values,) = checked.validated_data["reservations"]
    (request,) = plain
    assert (request.transaction_id, request.needed_by, request.hold_seconds) == (
        values["transaction_id"],
        values.get("needed_by"),
        values.get("hold_seconds"),
    )
    assert [(i.sku, i.quantity, str(i.quantity)) for i in request.items] == [
        (i["sku"], i["quantity"], str(i["quantity"])) for i in values["items"]
    ]


def test_the_plain_reader_reads_the_common_shape_and_steps_aside_for_the_rest():
    from stock.api import plain_bulk_requests

    assert plain_bulk_requests({"reservations": [PLAIN] * 3}) is not None
    assert plain_bulk_requests({"reservations": [PLAIN] * 1001}) is None
    assert plain_bulk_requests({"reservations": []}) is None
    assert plain_bulk_requests({"reservations": [{**PLAIN, "items": [{"sku": "ham", "quantity": 1.5}]}]}) is None
