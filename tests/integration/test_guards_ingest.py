"""Receipts from S3 through real workers, one per queue: routing by task name, the poll, the notification.

Each worker consumes only its own queue, so a task routed to the wrong queue is either never run (the
test times out waiting for its effect) or shows up in the wrong worker's log.
"""

import re
import uuid
from datetime import timedelta

import boto3
import pytest
from django.test import override_settings
from django.utils import timezone
from moto.server import ThreadedMotoServer
from rest_framework.test import APIClient

from stock.models import Batch, Receipt
from supplychain.celery import app
from supplychain.core.bootstrap import bootstrap
from supplychain.events.models import OutboxEvent
from tests.processes import wait_for
from tests.stock.factories import IngredientFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-west-1"}


@pytest.fixture
def bucket(monkeypatch):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in AWS.items():
        monkeypatch.setenv(name, value)
    name = f"receipts-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-1")
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    yield {"name": name, "endpoint": endpoint, "client": client}
    server.stop()


@pytest.fixture(autouse=True)
def only_the_tests_own_workers():
    """The session's worker, when one runs, consumes every queue: it stops consuming for these tests, so only
    their own workers (one per queue, started below) can take a task, and it consumes again afterwards."""
    from django.conf import settings

    from tests.conftest import LIVE_WORKERS

    names = [worker.node_name for worker in LIVE_WORKERS]
    for queue in settings.CELERY_QUEUES if names else ():
        app.control.cancel_consumer(queue, destination=names, reply=True, timeout=10)
    yield
    for queue in settings.CELERY_QUEUES if names else ():
        app.control.add_consumer(queue, destination=names, reply=True, timeout=10)


def _storage_env(bucket) -> dict:
    return {
        **AWS,
        "OBJECT_STORAGE_BUCKET": bucket["name"],
        "OBJECT_STORAGE_ENDPOINT_URL": bucket["endpoint"],
        "OBJECT_STORAGE_REGION": "eu-west-1",
    }


def _received_by(worker, task_name: str) -> list[str]:
    return re.findall(rf"Task {re.escape(task_name)}\[([0-9a-f-]+)\] received", worker.output())


def test_receipts_from_s3_reach_the_ingest_worker_by_poll_and_by_notification(real_services, start_worker, bucket):
    IngredientFactory(sku="ham")
    best_before = (timezone.localdate() + timedelta(days=9)).isoformat()
    put = bucket["client"].put_object
    put(Bucket=bucket["name"], Key="receipts/polled.csv", Body=f"sku,quantity,best_before\nham,3,{best_before}\n")
    put(Bucket=bucket["name"], Key="elsewhere/ignored.csv", Body=f"sku,quantity,best_before\nham,99,{best_before}\n")

    env = _storage_env(bucket)
    ingest = start_worker("ingest", label="ingest", **env)
    default = start_worker("default", label="default", **env)

    # The poll, sent by name with no queue: the routes must take it (and the ingest it queues) to `ingest`.
    app.send_task("stock.ingest_poll")
    wait_for(lambda: Receipt.objects.filter(key="receipts/polled.csv").exists(), 60, "the polled receipt")
    assert Batch.objects.get(lot="polled").quantity_received == 3
    assert not Receipt.objects.filter(key="elsewhere/ignored.csv").exists()

    # The notification: the API queues the ingest of the object it names.
    put(
        Bucket=bucket["name"],
        Key="receipts/notified.csv",
        Body=f"sku,quantity,best_before,lot\nham,4,{best_before},N1\n",
    )
    with override_settings(
        OBJECT_STORAGE={"BUCKET": bucket["name"], "ENDPOINT_URL": bucket["endpoint"], "REGION": "eu-west-1"}
    ):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {bootstrap(demo=False).api_token}")
        record = {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": bucket["name"]}}}
        record["s3"]["object"] = {"key": "receipts/notified.csv"}
        response = client.post("/api/v1/stock/receipts/notifications/", {"Records": [record]}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["queued"] == ["receipts/notified.csv"]
    wait_for(lambda: Receipt.objects.filter(key="receipts/notified.csv").exists(), 60, "the notified receipt")
    receipt = Receipt.objects.get(key="receipts/notified.csv")
    assert (receipt.source, receipt.rows_ingested) == ("s3", 1)

    processed = {e.payload["key"]: e.payload for e in OutboxEvent.objects.filter(type="stock.receipt_processed")}
    assert processed["receipts/notified.csv"] == {
        "key": "receipts/notified.csv",
        "source": "s3",
        "status": "processed",
        "rows": 1,
        "ingested": 1,
        "errors": 0,
    }
    assert processed["receipts/polled.csv"]["ingested"] == 1

    # Routed by name: the ingest tasks ran on the ingest worker, none on the default one.
    assert len(_received_by(ingest, "stock.ingest_poll")) == 1
    assert len(_received_by(ingest, "stock.ingest_object")) == 2
    assert _received_by(default, "stock.ingest_poll") == _received_by(default, "stock.ingest_object") == []


def test_tasks_sent_by_name_run_on_the_worker_of_their_queue(real_services, start_worker):
    """Every queue gets its own worker; each task name lands on the one its route names, and only there."""
    from django.conf import settings

    workers = {queue: start_worker(queue, label=queue) for queue in settings.CELERY_QUEUES}
    expected = {
        "supplychain.ping": "default",
        "stock.expire_batches": "default",
        "stock.release_expired_holds": "default",
        "events.sweep": "events",
        "events.relay": "events",
    }
    for name in expected:
        app.send_task(name, kwargs={"marker": "routing"} if name == "supplychain.ping" else None)
    for name, queue in expected.items():
        wait_for(lambda n=name, q=queue: _received_by(workers[q], n), 60, f"{name} on the {queue} worker")
    for name, queue in expected.items():
        for other, worker in workers.items():
            if other != queue:
                assert _received_by(worker, name) == [], f"{name} also ran on the {other} worker"
