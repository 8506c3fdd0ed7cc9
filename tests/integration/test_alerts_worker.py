"""Alerts with real workers, beat, Redis and PostgreSQL: an outage is one grouped Slack message, then resolved;
an order short of stock is one email."""

from __future__ import annotations

import contextlib
import json
import time

import pytest

from integrations.models import AlertGroup, AlertNotification, AlertRule
from integrations.services import alerts
from supplychain.celery import app
from supplychain.events import services as event_services
from supplychain.events.models import Delivery
from tests.httpserver import Endpoint
from tests.integrations.factories import order_doc, platform_client, stock_catalogue
from tests.processes import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
QUEUE = "default"  # where the alert sweep and the alert handlers run


@contextlib.contextmanager
def alert_worker(celery_worker, start_worker, **env):
    """A worker of this test takes the alerts' queue (it has the Slack URL or the mail folder in its environment)."""
    app.control.cancel_consumer(QUEUE, destination=[celery_worker.node_name], reply=True, timeout=5)
    try:
        yield start_worker(QUEUE, label="alerts", **env)
    finally:
        app.control.add_consumer(QUEUE, destination=[celery_worker.node_name], reply=True, timeout=5)


def set_rule(kind: str, **values) -> None:
    """Change a kind's rule (a transactional test before this one flushed the migration's rows)."""
    AlertRule.objects.update_or_create(kind=kind, defaults={**alerts.DEFAULT_RULES[kind], **values})


def slack_texts(slack: Endpoint) -> list[str]:
    return [request.json["text"] for request in slack.received]


def test_a_courier_outage_is_one_grouped_slack_message_then_resolved_once_redriven(
    celery_worker, start_worker, celery_beat
):
    set_rule("dead_letters", group_wait=2, group_interval=300, repeat_interval=3600)
    set_rule("partner_failing", group_wait=120)
    with (
        Endpoint() as slack,
        Endpoint(always_fail=True, fail_status=503) as courier,
        alert_worker(celery_worker, start_worker, SLACK_WEBHOOK_URL=slack.url),
    ):
        event_services.create_subscription(
            name="courier-x",
            event_types=["probe.*"],
            target="http",
            url=courier.url,
            max_attempts=3,
            initial_interval=0.2,
            backoff_rate=1.0,
            jitter="none",
            timeout_seconds=2,
        )
        for n in range(30):
            event_services.publish("probe.thing_happened", {"sku": "ham", "quantity": n + 1}, key=f"parcel-{n}")

        wait_for(
            lambda: Delivery.objects.filter(subscription__name="courier-x", status="dead").count() == 30,
            90,
            "all 30 deliveries to be retried and dead-lettered",
        )
        assert len(courier.received) == 90  # three attempts each
        wait_for(lambda: slack.received, 60, "the grouped Slack message")
        time.sleep(5)  # five more sweeps: still one message
        (firing,) = slack_texts(slack)
        assert firing.startswith("*[FIRING] Dead letters: courier-x (30)*")

        courier.always_fail = False
        assert event_services.redrive_deliveries(subscription="courier-x", actor="test") == 30
        wait_for(
            lambda: Delivery.objects.filter(subscription__name="courier-x", status="succeeded").count() == 30,
            60,
            "the redriven deliveries to succeed",
        )
        wait_for(lambda: len(slack.received) >= 2, 60, "the resolved Slack message")
        time.sleep(3)
        texts = slack_texts(slack)
    assert len(texts) == 2, texts
    assert texts[1].startswith("*[RESOLVED] Dead letters: courier-x*")
    delivered = [json.loads(r.body)["key"] for r in courier.received if r.status == 200]
    assert sorted(delivered) == sorted(f"parcel-{n}" for n in range(30))  # each exactly once after the redrive
    assert list(AlertNotification.objects.order_by("id").values_list("reason", "outcome")) == [
        ("firing", "sent"),
        ("resolved", "sent"),
    ]
    assert AlertGroup.objects.filter(kind="partner_failing", notifications__gt=0).count() == 0


def test_an_order_short_of_stock_is_reported_short_and_one_email_goes_out(
    celery_worker, start_worker, celery_beat, tmp_path
):
    set_rule("order_short", recipients="ops@example.com", group_wait=1)
    stock_catalogue(ham=100)  # two portions of pasta take 120 g of ham; 50 g is good until the delivery date
    mail_dir = tmp_path / "mail"
    with alert_worker(
        celery_worker,
        start_worker,
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=str(mail_dir),
    ) as worker:
        response = platform_client().post(
            "/api/v1/orders/", json.dumps(order_doc("short-1")), content_type="application/json"
        )
        assert response.status_code == 202
        try:
            wait_for(lambda: mail_dir.is_dir() and list(mail_dir.iterdir()), 90, "the email about the short order")
        except AssertionError as exc:
            state = list(AlertGroup.objects.values()), list(AlertNotification.objects.values())
            raise AssertionError(f"{exc}: {state}\n{worker.output()[-5000:]}") from None
        time.sleep(4)
        files = list(mail_dir.iterdir())
    detail = platform_client().get("/api/v1/orders/short-1/").json()
    assert detail["status"] == "short"
    assert detail["timeline"][-1]["detail"]["shortages"][0]["sku"] == "ham"
    assert len(files) == 1
    message = files[0].read_text()
    assert "To: ops@example.com" in message
    assert "Subject: [supplychain] [FIRING] Order short of stock: stock (1)" in message
    assert "short-1: ham: 120.000 requested, 50.000 available" in message
