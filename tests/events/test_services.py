"""The backbone's services in one process: publish, relay, deliver, retry, dead letters, redrive."""

import random
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from supplychain.events import services, signals
from supplychain.events.models import AuditEntry, Delivery, OutboxEvent, Subscription
from supplychain.events.registry import SchemaError
from tests.events.factories import SubscriptionFactory
from tests.probe.models import Effect, Switch

pytestmark = pytest.mark.django_db

THING = "probe.thing_happened"


def due_now():
    Delivery.objects.update(visible_at=timezone.now() - timedelta(seconds=1))


def test_publish_writes_the_envelope_and_an_audit_entry():
    event = services.publish(THING, {"sku": "ham", "quantity": 3}, key="batch-7", correlation_id="corr-1")
    envelope = event.envelope()
    assert set(envelope) == {"id", "type", "version", "occurred_at", "source", "correlation_id", "key", "payload"}
    assert envelope["version"] == 1
    assert envelope["source"] == "supplychain/probe"
    audit = AuditEntry.objects.get(event_id=event.event_id)
    assert audit.kind == "published"
    assert audit.entity_key == "batch-7"
    assert audit.correlation_id == "corr-1"


def test_rolled_back_publish_leaves_nothing():
    with pytest.raises(RuntimeError), transaction.atomic():
        services.publish(THING, {"sku": "ham", "quantity": 3})
        raise RuntimeError("the business change failed")
    assert OutboxEvent.objects.count() == 0
    assert AuditEntry.objects.count() == 0


def test_invalid_payload_is_refused_naming_the_field_and_nothing_is_written():
    with pytest.raises(SchemaError) as caught:
        services.publish(THING, {"sku": "", "quantity": -1, "colour": "red"})
    errors = caught.value.errors
    assert set(errors) == {"payload.sku", "payload.quantity", "payload.colour"}
    assert OutboxEvent.objects.count() == 0


def test_missing_required_field_is_named():
    with pytest.raises(SchemaError) as caught:
        services.publish(THING, {"sku": "ham"})
    assert "payload.quantity" in caught.value.errors


def test_unknown_event_type_is_refused():
    with pytest.raises(SchemaError, match="Unknown event type"):
        services.publish("probe.never_defined", {})


def test_relay_fans_out_to_matching_subscriptions_only_once():
    for name in ("probe-a", "probe-b", "probe-c"):
        SubscriptionFactory(name=name, handler=name)
    SubscriptionFactory(name="filtered-out", handler="probe-a", filter_policy={"sku": ["cheese"]})
    SubscriptionFactory(name="other-types", handler="probe-a", event_types=["stock.*"])
    SubscriptionFactory(name="inactive", handler="probe-a", active=False)
    event = services.publish(THING, {"sku": "ham", "quantity": 3})
    assert services.relay_pending() == 1
    OutboxEvent.objects.filter(pk=event.pk).update(relayed_at=None)  # as if the relay crashed after the insert
    assert services.relay_pending() == 1
    names = sorted(Delivery.objects.values_list("subscription__name", flat=True))
    assert names == ["probe-a", "probe-b", "probe-c"]


def test_successful_handler_effect_and_delivery_commit_together():
    subscription = SubscriptionFactory(handler="probe-a")
    event = services.publish(THING, {"sku": "ham", "quantity": 1})
    services.relay_pending()
    report = services.process_deliveries(subscription_id=subscription.id)
    assert report.succeeded == 1
    delivery = Delivery.objects.get()
    assert delivery.status == "succeeded"
    assert delivery.attempts == 1
    assert Effect.objects.filter(event_id=event.event_id).count() == 1
    attempt = AuditEntry.objects.get(kind="attempt")
    assert attempt.outcome == "succeeded"
    assert attempt.duration_ms >= 0


def test_failed_handler_rolls_back_its_effect_and_retries_after_backoff():
    Switch.objects.create(name="broken", on=True)
    subscription = SubscriptionFactory(handler="probe-flaky", initial_interval=30, max_attempts=3)
    services.publish(THING, {"sku": "ham", "quantity": 1})
    services.relay_pending()
    report = services.process_deliveries(subscription_id=subscription.id)
    assert report.retrying == 1
    delivery = Delivery.objects.get()
    assert delivery.status == "pending"
    assert "probe is broken" in delivery.last_error
    assert 29 <= (delivery.visible_at - timezone.now()).total_seconds() <= 30
    assert Effect.objects.count() == 0
    assert services.process_deliveries(subscription_id=subscription.id).claimed == 0  # not due yet


def test_dead_after_max_attempts_raises_the_alarm_once_and_redrive_delivers_once(django_capture_on_commit_callbacks):
    alarms = []

    def receiver(sender, subscription, dead_count, **kwargs):
        alarms.append((subscription.name, dead_count))

    signals.dead_letters_raised.connect(receiver)
    try:
        Switch.objects.create(name="broken", on=True)
        subscription = SubscriptionFactory(name="flaky", handler="probe-flaky", max_attempts=3)
        first = services.publish(THING, {"sku": "ham", "quantity": 1})
        services.publish(THING, {"sku": "ham", "quantity": 2})
        services.relay_pending()
        for _ in range(3):
            due_now()
            with django_capture_on_commit_callbacks(execute=True):  # what the commit of each call would run
                services.process_deliveries(subscription_id=subscription.id)
        assert Delivery.objects.filter(status="dead").count() == 2
        assert alarms == [("flaky", 2)]
        subscription.refresh_from_db()
        assert subscription.alarm_state == "alarm"
        alarm_events = OutboxEvent.objects.filter(type="events.dead_letters_raised")
        assert alarm_events.count() == 1
        assert alarm_events.get().payload == {"subscription": "flaky", "dead_count": 2, "target": "handler"}

        Switch.objects.filter(name="broken").update(on=False)
        dead = Delivery.objects.get(event=first)
        assert services.redrive_deliveries(delivery_ids=[dead.id], actor="ops") == 1
        report = services.process_deliveries(subscription_id=subscription.id)
        assert report.succeeded == 1
        assert Effect.objects.filter(event_id=first.event_id).count() == 1
        dead.refresh_from_db()
        assert dead.status == "succeeded"
        assert dead.total_attempts == 4
        assert dead.redrive_count == 1
        kinds = list(AuditEntry.objects.filter(delivery_id=dead.id).order_by("id").values_list("outcome", flat=True))
        assert kinds == ["failed", "failed", "dead", "redriven", "succeeded"]

        subscription.refresh_from_db()
        assert subscription.alarm_state == "alarm"  # one dead letter is left
        services.redrive_deliveries(subscription="flaky")
        services.process_deliveries(subscription_id=subscription.id)
        subscription.refresh_from_db()
        assert subscription.alarm_state == "ok"
    finally:
        signals.dead_letters_raised.disconnect(receiver)
    # after real commits, with dead letters in separate batches: tests/events/test_guards.py


def test_redrive_without_a_selector_is_refused():
    with pytest.raises(services.NothingToRedrive):
        services.redrive_deliveries()


def test_a_delivery_whose_worker_died_on_the_last_attempt_goes_dead():
    subscription = SubscriptionFactory(handler="probe-a", max_attempts=2)
    services.publish(THING, {"sku": "ham", "quantity": 1})
    services.relay_pending()
    Delivery.objects.update(status="in_flight", attempts=2, total_attempts=2, visible_at=timezone.now())
    services.process_deliveries(subscription_id=subscription.id)
    delivery = Delivery.objects.get()
    assert delivery.status == "dead"
    assert delivery.last_error == "worker lost during the final attempt"


@pytest.mark.parametrize(
    ("jitter", "low", "high"),
    [("none", 4.0, 4.0), ("full", 0.0, 4.0), ("equal", 2.0, 4.0)],
)
def test_retry_delay_grows_by_the_backoff_rate_within_its_jitter(jitter, low, high):
    subscription = Subscription(initial_interval=1, backoff_rate=2, max_interval=3600, jitter=jitter)
    rng = random.Random(7)
    delays = [subscription.retry_delay(3, rng) for _ in range(200)]
    assert all(low <= delay <= high for delay in delays)
    assert subscription.backoff_ceiling(1) == 1
    assert subscription.backoff_ceiling(20) == 3600
    if jitter != "none":
        assert len(set(delays)) > 100


def test_audit_entries_cannot_be_changed():
    event = services.publish(THING, {"sku": "ham", "quantity": 3})
    entry = AuditEntry.objects.get(event_id=event.event_id)
    entry.outcome = "tampered"
    with pytest.raises(TypeError):
        entry.save()
    with pytest.raises(TypeError):
        AuditEntry.objects.filter(pk=entry.pk).update(outcome="tampered")


def test_database_refuses_audit_updates_too():
    from django.db import connection
    from django.db.utils import DatabaseError

    event = services.publish(THING, {"sku": "ham", "quantity": 3})
    entry = AuditEntry.objects.get(event_id=event.event_id)
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE events_auditentry SET outcome = 'x' WHERE id = %s", [entry.pk])


def test_http_subscriber_declaring_batches_gets_one_signed_post_for_many_events():
    from supplychain.events import signing
    from tests.httpserver import Endpoint

    secret = signing.generate_secret()

    with Endpoint() as endpoint:
        subscription = SubscriptionFactory(
            target="http", handler="", url=endpoint.url, secret=secret, max_batch_size=10
        )
        events = [services.publish(THING, {"sku": "ham", "quantity": n + 1}) for n in range(5)]
        services.relay_pending()
        report = services.process_deliveries(subscription_id=subscription.id)
    assert report.succeeded == 5
    assert len(endpoint.received) == 1
    request = endpoint.received[0]
    assert request.headers["X-Supplychain-Batch-Size"] == "5"
    assert sorted(e["id"] for e in request.json["events"]) == sorted(str(e.event_id) for e in events)
    assert signing.verify(secret, request.body, request.headers)
    assert request.headers["webhook-id"].startswith("batch_")


def test_one_bad_event_in_a_batch_handler_fails_alone():
    subscription = SubscriptionFactory(handler="probe-a", max_attempts=3)
    good = [services.publish(THING, {"sku": "ham", "quantity": n + 1}) for n in range(3)]
    bad = services.publish(THING, {"sku": "ham", "quantity": 9, "started_file": "/nonexistent-dir/x"})
    services.relay_pending()
    report = services.process_deliveries(subscription_id=subscription.id)
    assert report.succeeded == 3
    assert report.retrying == 1
    assert Effect.objects.filter(handler="probe-a").count() == 3
    assert Delivery.objects.get(event=bad).status == "pending"
    assert {d.status for d in Delivery.objects.filter(event__in=good)} == {"succeeded"}


def test_inbound_messages_are_audited():
    entry = services.record_received(
        partner="courier",
        message_type="courier.status",
        entity_key="order-9",
        outcome="refused",
        error="bad signature",
        data={"status": "complete"},
    )
    assert AuditEntry.objects.get(pk=entry.pk).kind == "received"
