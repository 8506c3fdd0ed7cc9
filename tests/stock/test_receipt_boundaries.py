"""Receipts at the boundary: rows no column holds are refused on their own; notification bodies and keys are checked."""

from datetime import timedelta
from decimal import Decimal
from urllib.parse import quote_plus

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from stock import selectors
from stock.models import Batch, Receipt, StockLevel, Supplier
from tests.stock.factories import IngredientFactory

pytestmark = pytest.mark.django_db
D = Decimal


def day(offset: int) -> str:
    return (timezone.localdate() + timedelta(days=offset)).isoformat()


@pytest.fixture
def staff():
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def upload(client, name: str, data: bytes, **extra):
    return client.post(
        "/api/v1/stock/receipts/", {"file": SimpleUploadedFile(name, data, "text/csv"), **extra}, format="multipart"
    )


def assert_stock_reads(client, staff, sku: str) -> None:
    """Every read of the ingredient answers (levels, batches, a reservation, the admin's batch list)."""
    assert client.get("/api/v1/stock/levels/", {"sku": sku}).status_code == 200
    batches = client.get("/api/v1/stock/batches/", {"sku": sku})
    assert batches.status_code == 200
    for batch in batches.json()["results"]:
        assert client.get(f"/api/v1/stock/batches/{batch['id']}/").status_code == 200
    reserve = client.post(
        "/api/v1/stock/reservations/",
        {"transaction_id": f"probe-{sku}", "items": [{"sku": sku, "quantity": 1}]},
        format="json",
    )
    assert reserve.status_code in (201, 409), reserve.content
    assert client.get("/api/v1/stock/receipts/").status_code == 200
    assert staff.get("/admin/stock/batch/").status_code == 200
    assert staff.get("/admin/stock/ingredient/").status_code == 200
    assert selectors.invariant_violations() == []


def errors_of(body) -> list[tuple[int, str]]:
    return [(error["line"], error["column"]) for error in body["errors"]]


def test_a_quantity_no_column_holds_is_refused_on_its_own_and_the_ingredient_stays_readable(platform, staff):
    IngredientFactory(sku="cheese")
    text = f"sku,quantity,best_before,lot\ncheese,99999999999999999999,{day(20)},L1\ncheese,4,{day(20)},L2\n"
    response = upload(platform, "huge.csv", text.encode())
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["rows_total"], body["rows_ingested"]) == (2, 1)
    assert errors_of(body) == [(2, "quantity")]
    assert "at most" in body["errors"][0]["reason"]
    assert StockLevel.objects.get(ingredient__sku="cheese").on_hand == D(4)
    assert_stock_reads(platform, staff, "cheese")


def test_1e400_is_refused_on_its_own(platform, staff):
    IngredientFactory(sku="cheese")
    text = f"sku,quantity,best_before,lot\ncheese,1e400,{day(20)},L1\ncheese,4,{day(20)},L2\n"
    response = upload(platform, "exp.csv", text.encode())
    assert response.status_code == 201, response.content
    assert errors_of(response.json()) == [(2, "quantity")]
    assert_stock_reads(platform, staff, "cheese")


def test_rows_that_would_push_a_level_past_its_column_are_refused_in_file_order(platform, staff):
    IngredientFactory(sku="cheese")
    IngredientFactory(sku="ham")
    first = f"sku,quantity,best_before,lot\ncheese,60000000000,{day(20)},A\n"
    assert upload(platform, "first.csv", first.encode()).status_code == 201
    # The level holds 60e9 of at most 99,999,999,999.999: 30e9 fits, the next 30e9 does not, 5e9 fits again.
    text = (
        "sku,quantity,best_before,lot\n"
        f"cheese,30000000000,{day(20)},B\n"
        f"ham,99999999999.999,{day(20)},H1\n"
        f"cheese,30000000000,{day(20)},C\n"
        f"ham,0.001,{day(20)},H2\n"
        f"cheese,5000000000,{day(20)},D\n"
    )
    response = upload(platform, "second.csv", text.encode())
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["rows_total"], body["rows_ingested"]) == (5, 3)
    assert errors_of(body) == [(4, "quantity"), (5, "quantity")]
    assert "past" in body["errors"][0]["reason"]
    assert StockLevel.objects.get(ingredient__sku="cheese").on_hand == D("95000000000")
    assert StockLevel.objects.get(ingredient__sku="ham").on_hand == D("99999999999.999")
    assert sorted(Batch.objects.values_list("lot", flat=True)) == ["A", "B", "D", "H1"]
    assert_stock_reads(platform, staff, "cheese")
    assert_stock_reads(platform, staff, "ham")


def test_fields_over_their_columns_and_nul_bytes_are_refused_each_on_its_own(platform, staff):
    IngredientFactory(sku="cheese")
    rows = [
        f"cheese,1,{day(20)},L1,{'S' * 201}",  # supplier over its column
        f"cheese,1,{day(20)},L\x002,Farm",  # NUL in the lot
        f"cheese,1\x00,{day(20)},L3,Farm",  # NUL in the quantity
        f"cheese,1,{day(20)},L4,Fa\x00rm",  # NUL in the supplier
        f"{'c' * 65},1,{day(20)},L5,Farm",  # sku over its column
        f"cheese,1,{day(20)},{'L' * 101},Farm",  # lot over its column
        f"cheese,2,{day(20)},L7,Farm",  # good
    ]
    response = upload(platform, "long.csv", ("sku,quantity,best_before,lot,supplier\n" + "\n".join(rows)).encode())
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["rows_total"], body["rows_ingested"]) == (7, 1)
    assert errors_of(body) == [(2, "supplier"), (3, "lot"), (4, "quantity"), (5, "supplier"), (6, "sku"), (7, "lot")]
    assert list(Supplier.objects.values_list("name", flat=True)) == ["Farm"]
    assert_stock_reads(platform, staff, "cheese")


def test_a_nul_byte_in_the_header_fails_the_file_with_a_reason(platform):
    response = upload(platform, "nul.csv", f"sku,quantity,best_before,lo\x00t\ncheese,1,{day(20)},L1\n".encode())
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "failed"
    assert errors_of(body) == [(1, "header")]
    assert "NUL" in body["errors"][0]["reason"]


def test_a_refused_row_creates_no_supplier(platform):
    IngredientFactory(sku="cheese")
    text = "sku,quantity,best_before,lot,supplier\n"
    text += f"ghost,1,{day(20)},L1,Phantom Farm\ncheese,1,{day(20)},L2,Real Farm\n"
    text += f"cheese,1,{day(20)},L2,Twice Farm\ncheese,x,{day(20)},L3,Bad Number Farm\n"
    response = upload(platform, "ghost.csv", text.encode())
    assert response.status_code == 201, response.content
    assert errors_of(response.json()) == [(2, "sku"), (4, "lot"), (5, "quantity")]
    assert list(Supplier.objects.values_list("name", flat=True)) == ["Real Farm"]


def test_a_lot_already_received_creates_no_supplier(platform):
    IngredientFactory(sku="cheese")
    upload(platform, "a.csv", f"sku,quantity,best_before,lot\ncheese,1,{day(20)},L1\n".encode())
    text = f"sku,quantity,best_before,lot,supplier\ncheese,1,{day(20)},L1,Late Farm\n"
    response = upload(platform, "b.csv", text.encode())
    assert errors_of(response.json()) == [(2, "lot")]
    assert not Supplier.objects.exists()
    assert Receipt.objects.count() == 2


# ---- S3 notifications and receipt keys ------------------------------------------------------------

NOTIFICATIONS = "/api/v1/stock/receipts/notifications/"


def record(key="receipts/monday.csv", bucket="b", **extra):
    return {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": bucket}, "object": {"key": key}}, **extra}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"Records": [{"s3": "x"}]}, "Records.0.s3"),
        ({"Records": [record(key=7)]}, "Records.0.s3.object.key"),
        ({"Records": [record(key=None)]}, "Records.0.s3.object.key"),
        ({"Records": [record(key=["receipts/a.csv"])]}, "Records.0.s3.object.key"),
        ({"Records": [record(bucket=["b"])]}, "Records.0.s3.bucket.name"),
        ({"Records": [record(), {"s3": {"bucket": {"name": "b"}, "object": {}}}]}, "Records.1.s3.object.key"),
        ({"Records": [{"eventName": 5, "s3": record()["s3"]}]}, "Records.0.eventName"),
        ({"Records": ["receipts/a.csv"]}, "Records.0"),
        ({"Records": {"s3": {}}}, "Records"),
        ({"Records": [record(key="receipts/../secrets.csv")]}, "Records.0.s3.object.key"),
        ({"Records": [record(key="receipts%2F..%2Fsecrets.csv")]}, "Records.0.s3.object.key"),  # URL-encoded
        ({"Records": [record(key="/receipts/a.csv")]}, "Records.0.s3.object.key"),
        ({"Records": [record(key="receipts/a%00.csv")]}, "Records.0.s3.object.key"),
        ({"Records": [record(key="receipts/" + "a" * 500 + ".csv")]}, "Records.0.s3.object.key"),
    ],
)
def test_a_malformed_notification_is_400_naming_the_path_and_nothing_is_recorded_or_queued(platform, body, path):
    from supplychain.events.models import AuditEntry

    response = platform.post(NOTIFICATIONS, body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["type"] == "validation_error"
    errors = response.json()["errors"]
    assert path in errors or f"{path}.non_field_errors" in errors, errors
    assert not AuditEntry.objects.filter(kind="received", partner="s3").exists()
    assert not Receipt.objects.exists()


def test_a_notification_for_a_key_outside_the_prefix_is_still_ignored_on_record(platform):
    response = platform.post(NOTIFICATIONS, {"Records": [record(key="elsewhere/a.csv")]}, format="json")
    assert (response.status_code, response.json()) == (202, {"queued": []})


def test_a_notified_key_is_measured_once_decoded(platform):
    key = "receipts/" + "é" * 150 + ".csv"  # 163 characters; 913 once URL-encoded as S3 sends it
    response = platform.post(NOTIFICATIONS, {"Records": [record(key=quote_plus(key))]}, format="json")
    assert (response.status_code, response.json()) == (202, {"queued": [key]})


@pytest.mark.parametrize("key", ["", "../up.csv", "/abs.csv", "a/./b.csv", "a\x00b.csv", "k" * 501])
def test_an_upload_with_a_bad_key_is_400_naming_key_and_stores_nothing(platform, key):
    IngredientFactory(sku="cheese")
    response = upload(platform, "a.csv", f"sku,quantity,best_before\ncheese,1,{day(3)}\n".encode(), key=key)
    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == ["key"]
    assert not Receipt.objects.exists()
    assert not Batch.objects.exists()


def test_the_ingest_command_refuses_a_bad_key(tmp_path):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    path = tmp_path / "a.csv"
    path.write_text("sku,quantity,best_before\n")
    with pytest.raises(CommandError, match=r"'\.\.'"):
        call_command("ingest_receipt", str(path), "--key", "../a.csv")
    assert not Receipt.objects.exists()


def test_a_notified_object_that_is_not_there_is_recorded_failed_and_a_later_file_under_the_key_is_ingested(
    tmp_path, settings, caplog
):
    from stock import tasks
    from supplychain.core.storage import LocalStorage

    settings.OBJECT_STORAGE = {**settings.OBJECT_STORAGE, "BUCKET": "", "LOCAL_DIR": str(tmp_path)}
    IngredientFactory(sku="cheese")
    with caplog.at_level("WARNING"):
        result = tasks.ingest_object.apply(args=["receipts/late.csv"])
    assert result.successful(), result.traceback
    assert result.result["outcome"] == "missing"
    receipt = Receipt.objects.get(key="receipts/late.csv")
    assert (receipt.status, receipt.errors) == ("failed", [{"line": 0, "column": "", "reason": "object not found"}])
    [warning] = [r for r in caplog.records if r.levelname == "WARNING" and "receipts/late.csv" in r.getMessage()]
    assert warning.exc_info is None
    again = tasks.ingest_object.apply(args=["receipts/late.csv"])  # notified twice: still one record
    assert again.result["outcome"] == "missing"
    assert Receipt.objects.count() == 1

    storage = LocalStorage(tmp_path / "supplychain")
    storage.put("receipts/late.csv", f"sku,quantity,best_before\ncheese,3,{day(3)}\n".encode())
    from stock import services

    assert services.new_receipt_keys(prefix="receipts/") == ["receipts/late.csv"]  # the poll sees it again
    done = tasks.ingest_object.apply(args=["receipts/late.csv"])
    assert (done.result["outcome"], done.result["ingested"]) == ("processed", 1)
    receipt = Receipt.objects.get(key="receipts/late.csv")
    assert (receipt.status, receipt.rows_ingested, receipt.errors) == ("processed", 1, [])
    assert StockLevel.objects.get(ingredient__sku="cheese").on_hand == D(3)


def test_a_level_another_receipt_filled_meanwhile_fails_the_file_whole_with_409(platform, monkeypatch):
    from stock.receipt_parser import limits
    from stock.services import receipts

    cheese = IngredientFactory(sku="cheese")
    real_book = receipts.LevelBook

    def book_after_a_concurrent_receipt(deltas):  # what a receipt committed between the checks and the lock does
        StockLevel.objects.update_or_create(ingredient=cheese, defaults={"on_hand": limits().level_max})
        return real_book(deltas)

    monkeypatch.setattr(receipts, "LevelBook", book_after_a_concurrent_receipt)
    response = upload(platform, "late.csv", f"sku,quantity,best_before\ncheese,1,{day(3)}\n".encode())
    assert response.status_code == 409, response.content
    assert (response.json()["type"], response.json()["skus"]) == ("level_overflow", ["cheese"])
    assert not Receipt.objects.exists()
    assert not Batch.objects.exists()


def test_the_poll_skips_keys_no_receipt_can_have(tmp_path, caplog):
    from stock import services
    from supplychain.core.storage import LocalStorage

    folder = LocalStorage(tmp_path)
    deep = "receipts/" + "/".join(["d" * 100] * 5) + "/long.csv"  # a valid object key, longer than Receipt.key
    folder.put(deep, b"sku,quantity,best_before\n")
    folder.put("receipts/ok.csv", b"sku,quantity,best_before\n")
    with caplog.at_level("WARNING"):
        assert services.new_receipt_keys(prefix="receipts/", storage=folder) == ["receipts/ok.csv"]
    assert any("long.csv" in record.getMessage() for record in caplog.records)


def test_an_ingest_task_a_rule_refuses_logs_a_warning_instead_of_failing(tmp_path, settings, caplog):
    from stock import tasks
    from supplychain.core.storage import LocalStorage

    settings.OBJECT_STORAGE = {**settings.OBJECT_STORAGE, "BUCKET": "", "LOCAL_DIR": str(tmp_path)}
    storage = LocalStorage(tmp_path / "supplychain")
    storage.put("receipts/a.csv", b"sku,quantity,best_before\n")
    assert tasks.ingest_object.apply(args=["receipts/a.csv"]).result["outcome"] == "processed"
    storage.put("receipts/a.csv", b"sku,quantity,best_before\n\n")  # changed under the same key
    with caplog.at_level("WARNING"):
        result = tasks.ingest_object.apply(args=["receipts/a.csv"])
    assert result.successful(), result.traceback
    assert result.result == {
        "key": "receipts/a.csv",
        "outcome": "refused",
        "reason": "receipts/a.csv was already received with different content.",
    }
    assert any("different content" in record.getMessage() for record in caplog.records)
