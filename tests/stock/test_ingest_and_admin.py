"""Receipt sources (drop folder / S3 prefix poll, S3 notifications, the CLI) and the stock admin."""

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from stock import services
from stock.models import Receipt, StockLevel
from supplychain.core.bootstrap import bootstrap
from supplychain.core.storage import LocalStorage
from supplychain.events.models import AuditEntry
from tests.stock.factories import IngredientFactory, csv_opener

pytestmark = pytest.mark.django_db


def day(offset):
    return (timezone.localdate() + timedelta(days=offset)).isoformat()


@pytest.fixture
def folder(tmp_path):
    return LocalStorage(tmp_path)


def test_poll_finds_new_csv_files_under_the_prefix_only_once(folder):
    IngredientFactory(sku="ham")
    folder.put("receipts/a.csv", f"sku,quantity,best_before\nham,3,{day(2)}\n".encode())
    folder.put("receipts/notes.txt", b"not a receipt")
    folder.put("elsewhere/b.csv", b"sku,quantity,best_before\n")
    assert services.new_receipt_keys(prefix="receipts/", storage=folder) == ["receipts/a.csv"]
    outcome = services.ingest_object(key="receipts/a.csv", storage=folder)
    assert (outcome.outcome, outcome.receipt.source) == ("processed", "folder")
    assert services.new_receipt_keys(prefix="receipts/", storage=folder) == []
    assert StockLevel.objects.get(ingredient__sku="ham").on_hand == 3


def test_s3_notification_queues_matching_keys_and_audits_every_record():
    token = bootstrap(demo=False).api_token
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    body = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": "b"}, "object": {"key": "receipts/mon+day.csv"}},
            },
            {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": "other/x.csv"}}},
        ]
    }
    response = client.post("/api/v1/stock/receipts/notifications/", body, format="json")
    assert response.status_code == 202
    assert response.json() == {"queued": ["receipts/mon day.csv"]}
    outcomes = sorted(AuditEntry.objects.filter(kind="received", partner="s3").values_list("outcome", flat=True))
    assert outcomes == ["ignored", "queued"]
    bad = client.post("/api/v1/stock/receipts/notifications/", {"Records": []}, format="json")
    assert bad.status_code == 400


def test_ingest_command_reports_progress_and_errors(tmp_path):
    IngredientFactory(sku="ham")
    path = tmp_path / "big.csv"
    path.write_text("sku,quantity,best_before\n" + "".join(f"ham,1,{day(3)}\n" for _ in range(2)) + "ham,0,x\n")
    out, err = StringIO(), StringIO()
    call_command("ingest_receipt", str(path), stdout=out, stderr=err)  # two rows share the default lot
    assert "1 of 3 rows ingested" in out.getvalue()
    assert "line 3 lot: lot 'big' appears twice for ham in this file" in out.getvalue()
    assert "line 4 quantity: must be positive" in out.getvalue()
    path.write_text("sku,quantity,best_before,lot\n" + "".join(f"ham,1,{day(3)},L{n}\n" for n in range(12000)))
    call_command("ingest_receipt", str(path), "--key", "cli/big.csv", stdout=out, stderr=err)
    assert "12,000 of 12,000 rows ingested" in out.getvalue()
    assert "rows read" in err.getvalue()
    assert Receipt.objects.get(key="cli/big.csv").rows_ingested == 12000
    with pytest.raises(CommandError, match="No such file"):
        call_command("ingest_receipt", str(tmp_path / "missing.csv"))


@pytest.fixture
def staff():
    user = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-for-tests-only")
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("model", ["ingredient", "batch", "receipt", "reservation", "movement", "recipe"])
def test_stock_admin_pages_render(staff, model):
    IngredientFactory(sku="ham", low_stock_threshold=5)
    services.ingest_receipt(
        key="k.csv", open_stream=csv_opener(f"sku,quantity,best_before\nham,2,{day(2)}\n"), source="upload"
    )
    services.reserve_stock(transaction_id="t1", items=[services.Item("ham", 1)])
    response = staff.get(f"/admin/stock/{model}/", {"expiring_within": "3"} if model == "batch" else {})
    assert response.status_code == 200
    if model == "ingredient":
        assert "low" in response.content.decode()


def test_receipt_upload_in_the_admin(staff):
    from django.core.files.uploadedfile import SimpleUploadedFile

    IngredientFactory(sku="ham")
    upload = SimpleUploadedFile("tue.csv", f"sku,quantity,best_before\nham,4,{day(2)}\nham,-1,{day(2)}\n".encode())
    response = staff.post("/admin/stock/receipt/upload/", {"file": upload}, follow=True)
    assert response.status_code == 200
    receipt = Receipt.objects.get(key="uploads/tue.csv")
    assert receipt.rows_ingested == 1
    assert "must be positive" in response.content.decode()
