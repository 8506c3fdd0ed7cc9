"""Alerts grouped like Alertmanager: group_wait, what joined since, repeat, resolved; Slack and email handlers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.utils import timezone

from integrations import handlers
from integrations.models import AlertGroup, AlertNotification, AlertRule
from integrations.services import alerts
from integrations.services.alerts import Observation
from supplychain.events import services as event_services
from supplychain.events.models import AuditEntry, Delivery, OutboxEvent, Subscription
from tests.httpserver import Endpoint

pytestmark = pytest.mark.django_db
Kind = AlertRule.Kind


def short(order_id: str) -> Observation:
    return Observation(Kind.ORDER_SHORT, "", order_id, "ham: 120 requested, 0 available")


def set_rule(kind: str, **values) -> None:
    """Change a kind's rule (a transactional test before this one may have flushed the migration's rows)."""
    AlertRule.objects.update_or_create(kind=kind, defaults={**alerts.DEFAULT_RULES[kind], **values})


def sent() -> list[AlertNotification]:
    return list(AlertNotification.objects.order_by("id"))


def later(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


def test_every_kind_has_a_rule_integration_to_slack_logistics_by_email():
    rules = {kind: rule.channel for kind, rule in alerts.rules().items()}
    assert rules == {
        "dead_letters": "slack",
        "partner_failing": "slack",
        "webhook_rejected": "slack",
        "message_parked": "slack",
        "order_short": "email",
        "reservation_at_risk": "email",
        "delivery_failed": "email",
        "returned": "email",
        "pipeline_failed": "slack",
    }
    assert alerts.rules()["dead_letters"].group_wait == 30.0
    AlertRule.objects.filter(kind="returned").delete()  # a deleted rule comes back with the defaults
    assert alerts.rules()["returned"].channel == "email"


def test_a_group_waits_group_wait_then_one_message_counts_what_joined():
    set_rule(Kind.ORDER_SHORT, recipients="ops@example.com, chef@example.com")
    alerts.observe_alerts(observations=[short(f"o-{n}") for n in range(5)])
    assert alerts.sweep_alerts(now=later(10)).sent == []  # inside group_wait (30 s)

    report = alerts.sweep_alerts(now=later(31))
    assert len(report.sent) == 1
    (message,) = sent()
    assert (message.reason, message.count, message.channel) == ("firing", 5, "email")
    assert message.recipients == ["ops@example.com", "chef@example.com"]
    assert "o-4: ham: 120 requested, 0 available" in message.text
    event = OutboxEvent.objects.get(type="integration.alert_notified")
    assert event.payload["notification_id"] == message.id and message.event_id == event.event_id
    assert AuditEntry.objects.filter(kind="published", event_type="integration.alert_notified").count() == 1
    assert alerts.sweep_alerts(now=later(40)).sent == []  # nothing new: no second message


def test_alerts_joining_a_notified_group_wait_group_interval_and_are_counted_as_new():
    set_rule(Kind.ORDER_SHORT, resolve_after=3600)  # still firing when we look
    alerts.observe_alerts(observations=[short("a"), short("b")])
    alerts.sweep_alerts(now=later(31))
    alerts.observe_alerts(observations=[short(f"c-{n}") for n in range(3)])
    assert alerts.sweep_alerts(now=later(120)).sent == []  # group_interval is 5 min
    alerts.sweep_alerts(now=later(31 + 301))
    update = sent()[-1]
    assert (update.reason, update.count, update.new_since_last) == ("update", 5, 3)
    assert "5 in all, 3 new since the last message" in update.text


def test_an_unchanged_group_repeats_after_repeat_interval():
    alerts.observe_alerts(observations=[short("a")])
    alerts.sweep_alerts(now=later(31))
    AlertGroup.objects.update(last_seen_at=later(4 * 3600))  # still firing
    assert alerts.sweep_alerts(now=later(3600)).sent == []
    alerts.sweep_alerts(now=later(31 + 4 * 3600 + 1))
    assert [m.reason for m in sent()] == ["firing", "repeat"]


def test_an_event_group_resolves_once_quiet_and_says_so_when_the_rule_sends_resolved():
    alerts.observe_alerts(observations=[Observation(Kind.WEBHOOK_REJECTED, "courier-a", "m1", "bad signature")])
    alerts.sweep_alerts(now=later(31))
    alerts.sweep_alerts(now=later(301))  # resolve_after 300 s without a new one
    group = AlertGroup.objects.get()
    assert group.status == "resolved"
    assert [m.reason for m in sent()] == ["firing", "resolved"]
    assert sent()[-1].title == "[RESOLVED] Webhook rejected (bad or stale signature): courier-a"
    assert alerts.sweep_alerts(now=later(400)).sent == []
    # A new one later opens a new group.
    alerts.observe_alerts(observations=[Observation(Kind.WEBHOOK_REJECTED, "courier-a", "m2", "stale")])
    assert AlertGroup.objects.filter(status="firing").count() == 1


def test_groups_are_per_kind_and_partner():
    alerts.observe_alerts(
        observations=[
            Observation(Kind.MESSAGE_PARKED, "courier-a", "m1", "unknown status"),
            Observation(Kind.MESSAGE_PARKED, "courier-b", "m2", "unknown status"),
            Observation(Kind.MESSAGE_PARKED, "courier-a", "m3", "unknown order"),
            Observation(Kind.WEBHOOK_REJECTED, "courier-a", "m4", "bad signature"),
        ]
    )
    groups = {(g.kind, g.partner): g.count for g in AlertGroup.objects.all()}
    assert groups == {
        ("message_parked", "courier-a"): 2,
        ("message_parked", "courier-b"): 1,
        ("webhook_rejected", "courier-a"): 1,
    }


def test_a_group_resolved_before_group_wait_sends_nothing():
    alerts.observe_alerts(observations=[Observation(Kind.WEBHOOK_REJECTED, "wms", "m1", "stale")])
    set_rule(Kind.WEBHOOK_REJECTED, resolve_after=5)
    alerts.sweep_alerts(now=later(10))
    assert AlertGroup.objects.get().status == "resolved"
    assert sent() == []


def test_an_inactive_rule_keeps_the_group_and_sends_nothing():
    set_rule(Kind.ORDER_SHORT, active=False)
    alerts.observe_alerts(observations=[short("a")])
    alerts.sweep_alerts(now=later(31))
    assert sent() == [] and AlertGroup.objects.get().count == 1


def dead_deliveries(subscription: Subscription, count: int) -> list[Delivery]:
    events = [
        event_services.publish("probe.thing_happened", {"sku": "ham", "quantity": n + 1}, key=f"k{n}")
        for n in range(count)
    ]
    now = timezone.now()
    return Delivery.objects.bulk_create(
        [
            Delivery(
                event=e,
                subscription=subscription,
                status="dead",
                attempts=3,
                visible_at=now,
                created_at=now,
                dead_at=now,
            )
            for e in events
        ]
    )


def http_subscription(name: str) -> Subscription:
    return event_services.create_subscription(
        name=name, event_types=["probe.*"], target="http", url="http://127.0.0.1:9/hook", max_attempts=3
    )


def test_a_thousand_dead_letters_are_one_message_then_resolved_when_redriven_and_delivered():
    courier = http_subscription("courier-a")
    rows = dead_deliveries(courier, 1000)
    alerts.sweep_alerts()
    group = AlertGroup.objects.get(kind="dead_letters")
    assert (group.partner, group.count) == ("courier-a", 1000)
    for seconds in (31, 35, 40):
        alerts.sweep_alerts(now=later(seconds))
    assert [(m.reason, m.count, m.channel) for m in sent()] == [("firing", 1000, "slack")]

    Delivery.objects.filter(id__in=[d.id for d in rows]).update(status="succeeded")
    alerts.sweep_alerts(now=later(60))
    assert AlertGroup.objects.get().status == "resolved"
    assert [m.reason for m in sent()] == ["firing", "resolved"]
    assert "[RESOLVED] Dead letters: courier-a" == sent()[-1].title


def test_a_partner_failing_repeatedly_alerts_and_dead_letters_inhibit_it():
    courier = http_subscription("courier-b")
    event = event_services.publish("probe.thing_happened", {"sku": "ham", "quantity": 1})
    now = timezone.now()
    Delivery.objects.create(
        event=event, subscription=courier, attempts=3, visible_at=now, created_at=now, last_error="HTTP 503"
    )
    alerts.sweep_alerts()
    assert AlertGroup.objects.get().kind == "partner_failing"
    dead_deliveries(courier, 2)  # now it has dead letters too: only those are reported
    alerts.sweep_alerts(now=later(31))  # the failing group is due, but inhibited; the dead one just opened
    alerts.sweep_alerts(now=later(62))
    assert [(m.kind, m.reason) for m in sent()] == [("dead_letters", "firing")]


def test_dead_letters_of_the_alert_handlers_themselves_are_not_alerted_through_them():
    slack = Subscription.objects.get(name="alerts-slack")
    dead_deliveries(slack, 3)
    alerts.sweep_alerts(now=later(60))
    assert AlertGroup.objects.count() == 0


def envelope(type_: str, payload: dict) -> dict:
    return {"id": "00000000-0000-0000-0000-000000000001", "type": type_, "payload": payload}


def test_alerting_events_become_observations_naming_partner_and_what_happened():
    parked = handlers.observation(
        envelope(
            "integration.message_parked",
            {"partner": "courier-b", "message_id": "m9", "reason": "unknown_status", "raw_status": "lost_in_space"},
        )
    )
    assert parked == Observation("message_parked", "courier-b", "m9", "unknown status (raw_status lost_in_space)")
    shortage = {"sku": "ham", "requested": "120", "available": "0", "lines": [0]}
    order_short = handlers.observation(
        envelope(
            "order.short",
            {
                "order_id": "o1",
                "from_status": "received",
                "to_status": "short",
                "source": "worker",
                "detail": {"shortages": [shortage]},
            },
        )
    )
    assert order_short == Observation("order_short", "", "o1", "ham: 120 requested, 0 available")
    failed = handlers.observation(
        envelope(
            "order.delivery_failed",
            {
                "order_id": "o2",
                "from_status": "out_for_delivery",
                "to_status": "delivery_failed",
                "source": "courier-a",
                "detail": {"raw_status": "AttemptFail"},
            },
        )
    )
    assert failed == Observation(
        "delivery_failed", "courier-a", "o2", "out_for_delivery → delivery_failed (AttemptFail)"
    )


def test_the_observe_handler_subscription_turns_published_events_into_one_group(settings):
    for n in range(3):
        event_services.publish(
            "integration.webhook_rejected", {"partner": "courier-a", "reason": "bad signature", "message_id": f"m{n}"}
        )
    event_services.relay_pending()
    observe = Subscription.objects.get(name="alerts-observe")
    report = event_services.process_deliveries(subscription_id=observe.id)
    assert report.succeeded == 3
    group = AlertGroup.objects.get()
    assert (group.kind, group.partner, group.count) == ("webhook_rejected", "courier-a", 3)


def deliver_alert_messages() -> None:
    event_services.relay_pending()
    for name in ("alerts-slack", "alerts-email"):
        event_services.process_deliveries(subscription_id=Subscription.objects.get(name=name).id)


def test_a_slack_message_is_posted_to_the_incoming_webhook_and_marked_sent(settings):
    with Endpoint() as slack:
        settings.SLACK_WEBHOOK_URL = slack.url
        alerts.observe_alerts(observations=[Observation(Kind.WEBHOOK_REJECTED, "wms", "m1", "bad signature")])
        alerts.sweep_alerts(now=later(31))
        deliver_alert_messages()
    (request,) = slack.received
    assert request.json["text"].startswith("*[FIRING] Webhook rejected (bad or stale signature): wms (1)*")
    assert request.json["blocks"][0]["text"]["type"] == "mrkdwn"
    assert sent()[0].outcome == "sent" and sent()[0].sent_at is not None
    attempt = AuditEntry.objects.get(kind="attempt", subscription="alerts-slack")
    assert attempt.outcome == "succeeded"


def test_a_slack_refusal_is_retried_by_the_backbone(settings):
    with Endpoint(fail_first=1, fail_status=429) as slack:
        settings.SLACK_WEBHOOK_URL = slack.url
        alerts.observe_alerts(observations=[Observation(Kind.WEBHOOK_REJECTED, "wms", "m1", "bad signature")])
        alerts.sweep_alerts(now=later(31))
        deliver_alert_messages()
        delivery = Delivery.objects.get(subscription__name="alerts-slack")
        assert (delivery.status, delivery.attempts) == ("pending", 1)
        assert "HTTP 429" in delivery.last_error
        Delivery.objects.filter(pk=delivery.pk).update(visible_at=timezone.now())
        deliver_alert_messages()
    assert [r.status for r in slack.received] == [429, 200]
    assert Delivery.objects.get(pk=delivery.pk).status == "succeeded"
    assert sent()[0].outcome == "sent"


def test_without_a_slack_url_the_message_is_logged(settings, caplog):
    settings.SLACK_WEBHOOK_URL = ""
    alerts.observe_alerts(observations=[Observation(Kind.MESSAGE_PARKED, "wms", "m1", "unknown order")])
    alerts.sweep_alerts(now=later(31))
    with caplog.at_level("WARNING"):
        deliver_alert_messages()
    assert "SLACK_WEBHOOK_URL unset" in caplog.text and "Partner message parked" in caplog.text
    assert sent()[0].outcome == "logged"


def test_an_email_goes_to_the_rules_recipients(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    set_rule(Kind.ORDER_SHORT, recipients="ops@example.com")
    alerts.observe_alerts(observations=[short("o-1"), short("o-2")])
    alerts.sweep_alerts(now=later(31))
    deliver_alert_messages()
    (message,) = mail.outbox
    assert message.to == ["ops@example.com"]
    assert message.subject == "[supplychain] [FIRING] Order short of stock: stock (2)"
    assert "o-2: ham: 120 requested, 0 available" in message.body
    assert sent()[0].outcome == "sent"


def test_a_rule_with_a_bad_recipient_is_refused_naming_it():
    from django.core.exceptions import ValidationError

    rule = alerts.rules()[Kind.ORDER_SHORT]
    rule.recipients = "ops@example.com, not-an-address"
    with pytest.raises(ValidationError, match="not-an-address"):
        rule.full_clean()


def test_the_admin_lists_rules_groups_and_messages_with_filters_and_search(client):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-for-tests-only")
    client.force_login(user)
    alerts.observe_alerts(observations=[short("o-77")])
    alerts.sweep_alerts(now=later(31))
    assert client.get("/admin/integrations/alertrule/").status_code == 200
    page = client.get("/admin/integrations/alertgroup/?status=firing&q=o-77")
    assert page.status_code == 200 and b"Order short of stock" in page.content
    group = AlertGroup.objects.get()
    assert b"o-77" in client.get(f"/admin/integrations/alertgroup/{group.id}/change/").content
    page = client.get("/admin/integrations/alertnotification/?channel=email&q=FIRING")
    assert page.status_code == 200 and b"[FIRING] Order short of stock" in page.content


def failed_pipeline_run(monkeypatch, on_commit, *, pipeline: str, name: str):
    """A real run on the engine's executor whose Task fails with no retrier or catcher left (FAILED).

    Inside the test's transaction (``on_commit`` is pytest-django's ``django_capture_on_commit_callbacks``,
    which hands the start's message to the in-process dispatcher): the suite's live Celery worker, up for
    the rest of the session once an integration test has started it, sees none of these rows, so it cannot
    relay or deliver them before the test does.
    """
    from django.db import transaction

    from forecasting import services as forecasting
    from forecasting.engine.builder import Machine
    from forecasting.models import Run
    from forecasting.services import execution
    from tests.forecasting.inline import InlineDispatcher

    dispatcher = InlineDispatcher()
    monkeypatch.setattr(execution.dispatch, "dispatcher", dispatcher)
    machine = Machine().task("Boom", "probe.boom")
    forecasting.save_pipeline(name=pipeline, definition=machine.build())
    with on_commit(execute=True), transaction.atomic():
        run, _ = forecasting.start_run(pipeline=pipeline, name=name)
    dispatcher.drain()
    run = Run.objects.get(id=run.id)
    assert run.status == "FAILED"
    return run


def test_failed_pipeline_runs_join_one_group_per_pipeline_and_alert_once_on_slack(
    settings, monkeypatch, django_capture_on_commit_callbacks
):
    assert alerts.rules()[Kind.PIPELINE_FAILED].channel == "slack"
    on_commit = django_capture_on_commit_callbacks
    first = failed_pipeline_run(monkeypatch, on_commit, pipeline="nightly-forecast", name="2026-12-01")
    failed_pipeline_run(monkeypatch, on_commit, pipeline="nightly-forecast", name="2026-12-02")
    failed_pipeline_run(monkeypatch, on_commit, pipeline="weekly-report", name="w49")
    assert event_services.relay_pending() == OutboxEvent.objects.count()
    observer = Subscription.objects.get(name="alerts-pipelines")
    assert observer.event_types == ["forecasting.run_failed"] and observer.target == "handler"
    failures = OutboxEvent.objects.filter(type="forecasting.run_failed")
    assert failures.count() == 3
    mine = Delivery.objects.filter(subscription=observer)
    seen = [(d.event.type, d.event.payload.get("name"), d.status, d.visible_at, d.attempts) for d in mine]
    assert sorted(mine.values_list("event_id", flat=True)) == sorted(failures.values_list("id", flat=True)), seen
    report = event_services.process_deliveries(subscription_id=observer.id)
    assert report.succeeded == 3, (report, seen, timezone.now())

    groups = {group.partner: group for group in AlertGroup.objects.filter(kind=Kind.PIPELINE_FAILED)}
    assert sorted(groups) == ["nightly-forecast", "weekly-report"]
    nightly = groups["nightly-forecast"]
    assert nightly.count == 2 and [s["ref"] for s in nightly.samples] == ["2026-12-01", "2026-12-02"]
    assert first.error in nightly.samples[0]["summary"]
    assert not AlertGroup.objects.exclude(kind=Kind.PIPELINE_FAILED).exists()  # alerts-observe saw nothing

    with Endpoint() as slack:
        settings.SLACK_WEBHOOK_URL = slack.url
        alerts.sweep_alerts(now=later(31))
        deliver_alert_messages()
    texts = sorted(request.json["text"] for request in slack.received)
    assert len(texts) == 2
    assert texts[0].startswith("*[FIRING] Pipeline run failed: nightly-forecast (2)*")
    assert "2026-12-02" in texts[0]
    assert texts[1].startswith("*[FIRING] Pipeline run failed: weekly-report (1)*")


def test_the_migration_seeds_the_pipeline_failed_rule_to_slack_without_resolved_messages():
    import importlib

    from django.apps import apps

    AlertRule.objects.filter(kind=Kind.PIPELINE_FAILED).delete()  # what a flush by an earlier test leaves
    importlib.import_module("integrations.migrations.0006_pipeline_failed_alerts").create_rule(apps, None)
    rule = AlertRule.objects.get(kind=Kind.PIPELINE_FAILED)
    assert (rule.channel, rule.send_resolved, rule.active) == ("slack", False, True)
    assert alerts.DEFAULT_RULES[Kind.PIPELINE_FAILED] == {"channel": "slack", "send_resolved": False}


@pytest.mark.django_db(transaction=True)
def test_a_run_that_succeeds_raises_no_alert(monkeypatch):
    from django.db import transaction

    from forecasting import services as forecasting
    from forecasting.engine.builder import Machine

    forecasting.save_pipeline(name="fine", definition=Machine().pass_("A").build())
    with transaction.atomic():
        forecasting.start_run(pipeline="fine", name="ok")
    event_services.relay_pending()
    observer = Subscription.objects.get(name="alerts-pipelines")
    event_services.process_deliveries(subscription_id=observer.id)
    assert not Delivery.objects.filter(subscription=observer).exists()
    assert not AlertGroup.objects.exists()
