"""Stock API: reservations with replay, 409 shortages and 422 reuse; receipts upload; levels, batches, trace."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from stock import services
from stock.models import Batch
from supplychain.core.identifiers import IDENTIFIER_PATTERN
from tests.stock.factories import IngredientFactory, csv_opener

pytestmark = pytest.mark.django_db


def day(offset):
    return (timezone.localdate() + timedelta(days=offset)).isoformat()


@pytest.fixture
def stocked():
    IngredientFactory(sku="ham", low_stock_threshold=5)
    IngredientFactory(sku="mushroom")
    text = f"sku,quantity,best_before,lot,supplier\nham,10,{day(3)},H1,Farm A\nham,10,{day(9)},H2,Farm A\n"
    text += f"mushroom,20,{day(5)},M1,Woods\n"
    services.ingest_receipt(key="seed.csv", open_stream=csv_opener(text), source="upload")


RESERVE = {"transaction_id": "abc123", "items": [{"sku": "ham", "quantity": 10}, {"sku": "mushroom", "quantity": 10}]}


def test_reserve_returns_201_with_fefo_batches_and_a_repeat_replays(platform, stocked):
    first = platform.post("/api/v1/stock/reservations/", RESERVE, format="json")
    assert first.status_code == 201, first.content
    body = first.json()
    assert body["status"] == "reserved"
    ham = next(item for item in body["items"] if item["sku"] == "ham")
    assert [(b["lot"], b["supplier"]) for b in ham["batches"]] == [("H1", "Farm A")]
    again = platform.post("/api/v1/stock/reservations/", RESERVE, format="json")
    assert (again.status_code, again.json()) == (201, body)


def test_shortage_is_409_naming_requested_and_available_and_replays(platform, stocked):
    request = {"transaction_id": "big", "items": [{"sku": "ham", "quantity": 25}, {"sku": "mushroom", "quantity": 1}]}
    response = platform.post("/api/v1/stock/reservations/", request, format="json")
    assert response.status_code == 409
    body = response.json()
    assert body["type"] == "insufficient_stock"
    assert body["shortages"] == [{"sku": "ham", "requested": "25.000", "available": "20.000"}]
    assert body["correlation_id"] == response["X-Correlation-ID"]
    again = platform.post("/api/v1/stock/reservations/", request, format="json", HTTP_X_CORRELATION_ID="retry-1")
    assert again.status_code == 409
    assert again.json() == {**body, "correlation_id": "retry-1"}  # the stored reply, quoted by this request
    levels = platform.get("/api/v1/stock/levels/", {"sku": "ham,mushroom"}).json()["results"]
    assert [level["reserved"] for level in levels] == ["0.000", "0.000"]


def test_same_transaction_id_with_another_body_is_422(platform, stocked):
    platform.post("/api/v1/stock/reservations/", RESERVE, format="json")
    changed = {**RESERVE, "items": [{"sku": "ham", "quantity": 1}]}
    response = platform.post("/api/v1/stock/reservations/", changed, format="json")
    assert response.status_code == 422
    assert response.json()["type"] == "transaction_id_reused"


def test_bad_bodies_get_400_naming_the_fields(platform, stocked):
    response = platform.post(
        "/api/v1/stock/reservations/",
        {"transaction_id": "x", "items": [{"sku": "ham", "quantity": 0}, {"sku": "ham", "quantity": "lots"}]},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"items.0.quantity", "items.1.quantity"}
    unknown = platform.post(
        "/api/v1/stock/reservations/",
        {"transaction_id": "y", "items": [{"sku": "caviar", "quantity": 1}]},
        format="json",
    )
    assert unknown.status_code == 400
    assert unknown.json()["errors"] == {"items.0.sku": ["Unknown sku."]}


def test_commit_and_release_through_the_api(platform, stocked):
    platform.post("/api/v1/stock/reservations/", RESERVE, format="json")
    committed = platform.post("/api/v1/stock/reservations/abc123/commit/")
    assert committed.status_code == 200
    assert committed.json()["status"] == "committed"
    release = platform.post("/api/v1/stock/reservations/abc123/release/")
    assert release.status_code == 409
    assert platform.post("/api/v1/stock/reservations/nope/commit/").status_code == 404


def test_receipt_upload_reports_bad_rows_then_duplicate_then_conflict(platform):
    IngredientFactory(sku="ham")
    text = f"sku,quantity,best_before\nham,5,{day(4)}\nham,x,{day(4)}\n".encode()
    first = platform.post(
        "/api/v1/stock/receipts/", {"file": SimpleUploadedFile("monday.csv", text, "text/csv")}, format="multipart"
    )
    assert first.status_code == 201, first.content
    body = first.json()
    assert (body["outcome"], body["rows_ingested"], body["key"]) == ("processed", 1, "uploads/monday.csv")
    assert body["errors"] == [{"line": 3, "column": "quantity", "reason": "not a number: 'x'"}]
    again = platform.post(
        "/api/v1/stock/receipts/", {"file": SimpleUploadedFile("monday.csv", text, "text/csv")}, format="multipart"
    )
    assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
    other = platform.post(
        "/api/v1/stock/receipts/",
        {"file": SimpleUploadedFile("monday.csv", b"sku,quantity,best_before\n", "text/csv")},
        format="multipart",
    )
    assert other.status_code == 409


def test_a_row_that_is_not_utf8_is_refused_on_its_own_and_the_rest_ingested(platform):
    IngredientFactory(sku="ham")
    text = (
        f"sku,quantity,best_before,lot,supplier\nham,5,{day(4)},L1,Müller Feinkost\n".encode()
        + f"ham,3,{day(4)},L2,Müller Feinkost\n".encode("latin-1")  # an Excel export's bytes
        + f"ham,2,{day(5)},L3,Çelik\n".encode()
    )
    response = platform.post(
        "/api/v1/stock/receipts/", {"file": SimpleUploadedFile("mixed.csv", text, "text/csv")}, format="multipart"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["rows_total"], body["rows_ingested"]) == (3, 2)
    assert body["errors"] == [{"line": 3, "column": "", "reason": "not UTF-8 text (save the file as UTF-8)"}]
    assert sorted(Batch.objects.values_list("lot", "supplier__name")) == [
        ("L1", "Müller Feinkost"),
        ("L3", "Çelik"),
    ]


def test_batches_filter_by_expiry_and_trace_their_reservations(platform, stocked):
    platform.post("/api/v1/stock/reservations/", RESERVE, format="json")
    expiring = platform.get("/api/v1/stock/batches/", {"expiring_within": 4}).json()
    assert [batch["lot"] for batch in expiring["results"]] == ["H1"]
    batch_id = expiring["results"][0]["id"]
    detail = platform.get(f"/api/v1/stock/batches/{batch_id}/").json()
    assert detail["reservations"] == [
        {"transaction_id": "abc123", "reservation_status": "reserved", "quantity": "10.000", "open": True}
    ]


def test_levels_show_low_stock(platform, stocked):
    platform.post(
        "/api/v1/stock/reservations/", {"transaction_id": "t", "items": [{"sku": "ham", "quantity": 16}]}, format="json"
    )
    ham = platform.get("/api/v1/stock/levels/", {"sku": "ham"}).json()["results"][0]
    assert (ham["available"], ham["low"]) == ("4.000", True)


def test_a_user_without_stock_permissions_cannot_reserve(stocked):
    user = get_user_model().objects.create_user("nobody")
    client = APIClient()
    client.force_authenticate(user)
    assert client.post("/api/v1/stock/reservations/", RESERVE, format="json").status_code == 403


def test_a_sku_twice_in_one_request_is_400_naming_items_and_reserves_nothing(platform, stocked):
    request = {"transaction_id": "twice", "items": [{"sku": "ham", "quantity": 1}, {"sku": "ham", "quantity": 2}]}
    response = platform.post("/api/v1/stock/reservations/", request, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "validation_error"
    assert body["errors"] == {"items": ["Each sku once; repeated: ham."]}
    assert platform.get("/api/v1/stock/reservations/twice/").status_code == 404


# ---- Bad input: identifiers in URLs, numbers past the columns, text PostgreSQL cannot store --------


@pytest.mark.parametrize("transaction_id", ["a/b", ".", "..", "a b", "-x", "é", "x" * 101, ""])
def test_a_transaction_id_outside_the_alphabet_is_refused_and_nothing_reserved(platform, stocked, transaction_id):
    body = {"transaction_id": transaction_id, "items": [{"sku": "ham", "quantity": 1}]}
    response = platform.post("/api/v1/stock/reservations/", body, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == ["transaction_id"]
    ham = platform.get("/api/v1/stock/levels/", {"sku": "ham"}).json()["results"][0]
    assert ham["reserved"] == "0.000"


@pytest.mark.parametrize("transaction_id", ["order:42", "A.b_c-9", "x" * 100])
def test_every_identifier_of_the_alphabet_can_be_reserved_read_committed_and_released(
    platform, stocked, transaction_id
):
    body = {"transaction_id": transaction_id, "items": [{"sku": "ham", "quantity": 1}]}
    assert platform.post("/api/v1/stock/reservations/", body, format="json").status_code == 201
    assert platform.get(f"/api/v1/stock/reservations/{transaction_id}/").status_code == 200
    assert platform.post(f"/api/v1/stock/reservations/{transaction_id}/release/").json()["status"] == "released"


def test_a_reservation_url_outside_the_alphabet_is_a_json_404(platform):
    response = platform.get("/api/v1/stock/reservations/a b/")
    assert response.status_code == 404
    assert response.json()["type"] == "not_found"


@pytest.mark.parametrize("days", ["99999999999", "-1", "99999999999999999999999", "1e400"])
def test_expiring_within_past_its_bounds_is_a_400_naming_it(platform, stocked, days):
    response = platform.get("/api/v1/stock/batches/", {"expiring_within": days})
    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == ["expiring_within"]


def test_a_batch_id_past_a_bigint_is_a_json_404(platform, stocked):
    response = platform.get("/api/v1/stock/batches/99999999999999999999/")
    assert response.status_code == 404
    assert response.json()["type"] == "not_found"


def test_nul_in_a_filter_is_a_400_naming_it(platform, stocked):
    response = platform.get("/api/v1/stock/batches/", {"lot": "H1\x00"})
    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == ["lot"]


def test_hold_seconds_past_a_bigint_is_a_400_naming_it(platform, stocked):
    body = '{"transaction_id": "t1", "items": [{"sku": "ham", "quantity": 1}], "hold_seconds": 1e400}'
    response = platform.generic("POST", "/api/v1/stock/reservations/", body, content_type="application/json")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["hold_seconds"]


def test_reservation_errors_are_documented_where_they_happen():
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = schema["paths"]
    assert {"400", "409", "422"} <= set(paths["/api/v1/stock/reservations/"]["post"]["responses"])
    for action in ("commit", "release"):
        assert {"404", "409"} <= set(
            paths[f"/api/v1/stock/reservations/{{transaction_id}}/{action}/"]["post"]["responses"]
        )
    assert "404" in paths["/api/v1/stock/reservations/{transaction_id}/"]["get"]["responses"]
    parameter = paths["/api/v1/stock/reservations/{transaction_id}/"]["get"]["parameters"][0]
    assert parameter["schema"]["pattern"].strip("^$") == IDENTIFIER_PATTERN
