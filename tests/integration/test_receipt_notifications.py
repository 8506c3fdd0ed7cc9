"""S3 notifications through a real worker: a notified object that is not in storage is recorded, not retried."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from stock.models import Receipt, StockLevel
from supplychain.core.bootstrap import bootstrap
from supplychain.core.storage import get_storage
from tests.stock.factories import IngredientFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def notify(client, key: str):
    record = {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": key}}}
    response = client.post("/api/v1/stock/receipts/notifications/", {"Records": [record]}, format="json")
    assert (response.status_code, response.json()) == (202, {"queued": [key]}), response.content
    return response


def test_a_notified_missing_object_is_recorded_failed_by_the_worker_and_the_file_sent_later_is_ingested(
    celery_worker,
):
    IngredientFactory(sku="cheese")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {bootstrap(demo=False).api_token}")
    key = f"receipts/missing-{uuid.uuid4().hex[:8]}.csv"
    log_before = len(celery_worker.output())

    notify(client, key)

    def recorded(status):
        return lambda: Receipt.objects.filter(key=key, status=status).exists()

    celery_worker.wait_until(recorded("failed"), timeout=30, what="the missing object's receipt")
    receipt = Receipt.objects.get(key=key)
    assert receipt.errors == [{"line": 0, "column": "", "reason": "object not found"}]
    shown = client.get(f"/api/v1/stock/receipts/{receipt.pk}/").json()
    assert (shown["status"], shown["errors"][0]["reason"]) == ("failed", "object not found")
    celery_worker.wait_until(
        lambda: "no such object" in celery_worker.output()[log_before:], timeout=10, what="the warning"
    )
    assert "Traceback" not in celery_worker.output()[log_before:]

    storage = get_storage()
    best_before = (timezone.localdate() + timedelta(days=5)).isoformat()
    storage.put(key, f"sku,quantity,best_before\ncheese,4,{best_before}\n".encode())
    try:
        notify(client, key)
        celery_worker.wait_until(recorded("processed"), timeout=30, what="the file sent later to be ingested")
    finally:
        storage.delete(key)
    assert Receipt.objects.filter(key=key).count() == 1
    assert StockLevel.objects.get(ingredient__sku="cheese").on_hand == 4
    assert "Traceback" not in celery_worker.output()[log_before:]
