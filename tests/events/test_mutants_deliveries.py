"""Deliveries: the kick on the broker, batches and budget, leases, missing handlers, durations and the alarm
(mutation survivors, README)."""

import base64
import json
import logging
import time
import uuid
from datetime import timedelta

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from supplychain.events import services, signals
from supplychain.events.models import AuditEntry, Delivery, OutboxEvent, Subscription
from tests.events.factories import SubscriptionFactory
from tests.probe.models import Effect, Switch

pytestmark = pytest.mark.django_db
THING = "probe.thing_happened"


def publish_and_relay(count: int = 1, **extra) -> list[OutboxEvent]:
    events = [services.publish(THING, {"sku": "ham", "quantity": n + 1, **extra}) for n in range(count)]
    services.relay_pending()
    return events


def attempts() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(kind="attempt").order_by("id"))


@pytest.fixture
def broker():
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    yield client
    client.close()


def messages(broker, queue: str) -> list[dict]:
    found = []
    for raw in broker.lrange(queue, 0, -1):
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        found.append({"task": message["headers"]["task"], "args": body[0], "eta": message["headers"].get("eta")})
    return found


def test_a_delivery_kick_is_the_deliver_task_for_that_subscription_on_its_own_queue(broker):
    queue = f"mutants-{uuid.uuid4().hex[:8]}"
    subscription = SubscriptionFactory(name="kicked", queue=queue)
    try:
        services.kick_deliveries([subscription])
        services.kick_deliveries([subscription], countdown=30)
        sent = messages(broker, queue)
    finally:
        broker.delete(queue)
    assert [(m["task"], m["args"]) for m in sent] == [("events.deliver", [subscription.id])] * 2
    etas = sorted(sent, key=lambda m: m["eta"] is not None)
    assert etas[0]["eta"] is None
    eta = timezone.datetime.fromisoformat(etas[1]["eta"])
    assert 25 <= (eta - timezone.now()).total_seconds() <= 30


def test_a_kick_the_broker_refuses_is_logged_and_the_other_subscriptions_are_still_kicked(monkeypatch, caplog):
    first, second = SubscriptionFactory(name="first"), SubscriptionFactory(name="second")
    sent = []

    def send_task(name, args, **options):
        if args == (first.id,):
            raise ConnectionError("broker down")
        sent.append(args)

    monkeypatch.setattr(services.deliveries.celery_app, "send_task", send_task)
    with caplog.at_level(logging.WARNING, logger="supplychain.events.services.deliveries"):
        services.kick_deliveries([first, second])
    assert sent == [(second.id,)]
    warned = [r.getMessage() for r in caplog.records]
    assert warned == ["delivery kick for first not sent (broker down); the sweep will"]


def test_the_relay_kick_sends_the_relay_task_to_the_events_queue(broker):
    def relays() -> int:
        return sum(m["task"] == "events.relay" for m in messages(broker, "events"))

    before = relays()
    services.publishing._send_relay()
    assert relays() == before + 1


def test_an_inactive_subscription_gets_nothing_delivered():
    subscription = SubscriptionFactory(handler="probe-a")
    publish_and_relay()
    Subscription.objects.filter(pk=subscription.pk).update(active=False)
    assert services.process_deliveries(subscription_id=subscription.id).claimed == 0
    assert Delivery.objects.get().status == "pending"


def test_deliveries_are_drained_in_batches_of_the_given_size_and_counted_across_them():
    subscription = SubscriptionFactory(handler="probe-a")
    publish_and_relay(5)
    report = services.process_deliveries(subscription_id=subscription.id, batch_size=2)
    assert (report.claimed, report.succeeded) == (5, 5)
    assert Effect.objects.count() == 5


def test_the_delivery_batch_setting_and_the_time_budget_stop_a_drain_after_the_first_batch(settings):
    """A batch sleeping past the budget ends the drain: the rest waits for the next task."""
    settings.EVENTS_DELIVERY_BATCH = 2
    settings.EVENTS_TIME_BUDGET = 0.05
    subscription = SubscriptionFactory(handler="probe-a")
    publish_and_relay(5, sleep=0.06)
    report = services.process_deliveries(subscription_id=subscription.id)
    assert (report.claimed, report.succeeded) == (2, 2)
    assert Delivery.objects.filter(status="pending").count() == 3


def test_a_claim_is_leased_by_the_worker_named_and_for_the_lease_setting(settings):
    settings.EVENTS_LEASE_SECONDS = 7
    Switch.objects.create(name="broken", on=True)
    subscription = SubscriptionFactory(handler="probe-flaky", max_attempts=3)
    publish_and_relay()
    (claimed,) = services.deliveries._claim(subscription, 10, "w1@host")
    assert 6 <= (claimed.visible_at - timezone.now()).total_seconds() <= 7
    Delivery.objects.update(visible_at=timezone.now() - timedelta(seconds=1))

    services.process_deliveries(subscription_id=subscription.id, worker="w2@host")
    assert Delivery.objects.get().leased_by == "w2@host"
    Delivery.objects.update(visible_at=timezone.now() - timedelta(seconds=1))
    services.process_deliveries(subscription_id=subscription.id)
    assert Delivery.objects.get().leased_by == ""  # no worker named: leased by no one


@pytest.fixture
def kicks(monkeypatch):
    sent = []
    monkeypatch.setattr(
        services.deliveries, "kick_deliveries", lambda subs, countdown=None: sent.append((list(subs), countdown))
    )
    return sent


@pytest.mark.parametrize(("countdown_max", "kicked"), [(30, True), (29.9, False)])
def test_a_retry_is_kicked_with_a_countdown_up_to_the_countdown_setting(settings, kicks, countdown_max, kicked):
    settings.EVENTS_COUNTDOWN_MAX = countdown_max
    Switch.objects.create(name="broken", on=True)
    subscription = SubscriptionFactory(handler="probe-flaky", initial_interval=30, max_attempts=3)
    publish_and_relay()
    assert services.process_deliveries(subscription_id=subscription.id).retrying == 1
    assert kicks == ([([subscription], 30.1)] if kicked else [])


def test_a_subscription_with_invalid_delivery_settings_dead_letters_its_due_deliveries(
    alarms, django_capture_on_commit_callbacks
):
    subscription = SubscriptionFactory(name="broken-policy", handler="probe-a", max_attempts=3)
    publish_and_relay(3)
    Subscription.objects.filter(pk=subscription.pk).update(initial_interval=-1)  # written past validation
    with django_capture_on_commit_callbacks(execute=True):
        report = services.process_deliveries(subscription_id=subscription.id, batch_size=2)
    assert (report.claimed, report.dead, report.succeeded) == (3, 3, 0)
    rows = list(Delivery.objects.order_by("id"))
    assert {(row.status, row.attempts, row.total_attempts) for row in rows} == {("dead", 1, 1)}
    assert rows[0].last_error.startswith("The subscription's delivery settings are invalid")
    assert "initial_interval" in rows[0].last_error
    assert Effect.objects.count() == 0
    assert alarms == [("broken-policy", 2, "alarm")]  # raised by the first batch of two


def test_a_missing_handler_is_a_failed_attempt_naming_it():
    subscription = SubscriptionFactory(handler="no-such-handler", max_attempts=3, initial_interval=30)
    publish_and_relay(2)
    report = services.process_deliveries(subscription_id=subscription.id)
    assert (report.claimed, report.retrying, report.succeeded) == (2, 2, 0)
    errors = {row.last_error for row in Delivery.objects.all()}
    assert errors == {"no handler named 'no-such-handler' in this worker"}
    assert [(a.outcome, a.duration_ms) for a in attempts()] == [("failed", 0.0)] * 2


def test_a_failing_handler_records_the_exception_type_and_message_cut_to_2000_characters():
    Switch.objects.create(name="broken", on=True)
    subscription = SubscriptionFactory(handler="probe-flaky", max_attempts=3, initial_interval=30)
    publish_and_relay()
    services.process_deliveries(subscription_id=subscription.id)
    assert Delivery.objects.get().last_error == "RuntimeError: probe is broken"

    long = SubscriptionFactory(handler="probe-a", max_attempts=3, initial_interval=30, event_types=["probe.*"])
    publish_and_relay(started_file="/nonexistent-dir/" + "x" * 2100)  # its error names the path
    services.process_deliveries(subscription_id=long.id)
    error = Delivery.objects.get(subscription=long).last_error
    assert len(error) == 2000
    assert error.startswith("OSError: ") or error.startswith("FileNotFoundError: ")


def test_a_batch_handler_runs_once_for_the_batch_and_each_attempt_gets_its_share_of_the_time():
    """One call for the batch: the attempts share its duration equally (one sleeping event costs them all)."""
    for count in (2, 4):
        subscription = SubscriptionFactory(handler="probe-a")
        services.publish(THING, {"sku": "ham", "quantity": 1, "sleep": 0.2})
        for n in range(count - 1):
            services.publish(THING, {"sku": "ham", "quantity": n + 2})
        services.relay_pending()
        started = time.perf_counter()
        assert services.process_deliveries(subscription_id=subscription.id).succeeded == count
        wall_ms = (time.perf_counter() - started) * 1000
        durations = [a.duration_ms for a in AuditEntry.objects.filter(kind="attempt", subscription=subscription.name)]
        assert len(set(durations)) == 1, durations  # one measured call, split
        assert 200 / count <= durations[0] <= wall_ms / count
        Subscription.objects.filter(pk=subscription.pk).update(active=False)


def test_attempt_durations_are_milliseconds_kept_to_the_microsecond():
    subscription = SubscriptionFactory(handler="probe-flaky", max_attempts=3)
    events = publish_and_relay(6, sleep=0.0)
    services.publish(THING, {"sku": "ham", "quantity": 1})  # not delivered: published after the relay
    started = time.perf_counter()
    services.process_deliveries(subscription_id=subscription.id)
    wall_ms = (time.perf_counter() - started) * 1000
    durations = [a.duration_ms for a in attempts()]
    assert len(durations) == len(events)
    assert all(0 < d < wall_ms and round(d, 3) == d for d in durations)
    assert any(round(d) != d for d in durations)
    assert any(round(d, 2) != d for d in durations)  # three decimals are kept, not fewer


@pytest.fixture
def alarms():
    heard = []

    def receiver(sender, subscription, dead_count, **kwargs):
        heard.append((subscription.name, dead_count, subscription.alarm_state))

    signals.dead_letters_raised.connect(receiver, sender=Subscription)
    yield heard
    signals.dead_letters_raised.disconnect(receiver, sender=Subscription)


NAMES = ["fragile", "bystander", "sturdy"]


def test_the_alarm_is_one_subscriptions_own(django_capture_on_commit_callbacks, alarms):
    Switch.objects.create(name="broken", on=True)
    fragile = SubscriptionFactory(name="fragile", handler="probe-flaky", max_attempts=1)
    bystander = SubscriptionFactory(name="bystander", handler="probe-flaky", max_attempts=1)
    sturdy = SubscriptionFactory(name="sturdy", handler="probe-a")
    publish_and_relay(2)
    with django_capture_on_commit_callbacks(execute=True):
        services.process_deliveries(subscription_id=bystander.id)
        services.process_deliveries(subscription_id=fragile.id)
    states = dict(Subscription.objects.filter(name__in=NAMES).values_list("name", "alarm_state"))
    assert states == {"fragile": "alarm", "bystander": "alarm", "sturdy": "ok"}
    raised = OutboxEvent.objects.filter(type="events.dead_letters_raised").order_by("id")
    assert [(e.key, e.payload["subscription"], e.payload["dead_count"]) for e in raised] == [
        ("bystander", "bystander", 2),
        ("fragile", "fragile", 2),
    ]
    assert alarms == [("bystander", 2, "alarm"), ("fragile", 2, "alarm")]
    assert Subscription.objects.get(pk=sturdy.pk).alarm_state == "ok"

    # fragile's letters delivered after a redrive clear its alarm, though bystander's are still dead
    Switch.objects.filter(name="broken").update(on=False)
    services.redrive_deliveries(subscription="fragile")
    services.process_deliveries(subscription_id=fragile.id)
    states = dict(Subscription.objects.filter(name__in=NAMES).values_list("name", "alarm_state"))
    assert states == {"fragile": "ok", "bystander": "alarm", "sturdy": "ok"}


def test_an_http_claim_takes_no_more_than_the_lease_covers_at_the_endpoints_timeout(settings):
    settings.EVENTS_LEASE_SECONDS = 60
    subscription = SubscriptionFactory(
        target="http", handler="", url="http://127.0.0.1:9/", timeout_seconds=25, max_batch_size=2
    )
    handler = SubscriptionFactory(handler="probe-a")  # the limit is for HTTP only
    publish_and_relay(7)
    assert len(services.deliveries._claim(subscription, 10)) == 4  # 60 // 25 = 2 posts of 2
    Subscription.objects.filter(pk=subscription.pk).update(timeout_seconds=50)
    subscription.refresh_from_db()
    Delivery.objects.update(visible_at=timezone.now() - timedelta(seconds=1))
    assert len(services.deliveries._claim(subscription, 10)) == 2  # one post at least
    assert len(services.deliveries._claim(handler, 10)) == 7


def test_the_claim_takes_the_longest_due_first():
    subscription = SubscriptionFactory(handler="probe-a")
    first, second = (event.id for event in publish_and_relay(2))
    now = timezone.now()
    Delivery.objects.filter(event_id=first).update(visible_at=now - timedelta(seconds=5))
    Delivery.objects.filter(event_id=second).update(visible_at=now - timedelta(seconds=50))
    (claimed,) = services.deliveries._claim(subscription, 1)
    assert claimed.event_id == second


def test_each_attempt_is_audited_with_its_number_and_whether_it_counted(settings):
    Switch.objects.create(name="broken", on=True)
    subscription = SubscriptionFactory(handler="probe-flaky", max_attempts=3)
    publish_and_relay()
    for _ in range(2):
        Delivery.objects.update(visible_at=timezone.now() - timedelta(seconds=1))
        services.process_deliveries(subscription_id=subscription.id)
    Delivery.objects.update(visible_at=timezone.now() - timedelta(seconds=1))
    services.deliveries._claim(subscription, 10, "w" * 250)  # the worker dies during the last attempt
    assert Delivery.objects.get().leased_by == "w" * 200
    Delivery.objects.update(visible_at=timezone.now() - timedelta(seconds=1))
    services.process_deliveries(subscription_id=subscription.id)
    rows = [(a.attempt, a.outcome, a.data, a.partner) for a in attempts()]
    assert rows == [
        (1, "failed", {"counted": True, "attempt_in_round": 1}, ""),
        (2, "failed", {"counted": True, "attempt_in_round": 2}, ""),
        (3, "dead", {"counted": False, "attempt_in_round": 3}, ""),
    ]
    assert attempts()[-1].duration_ms == 0.0
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.last_error) == ("dead", "worker lost during the final attempt")


def test_a_success_is_stored_with_its_completion_time():
    subscription = SubscriptionFactory(handler="probe-a")
    publish_and_relay()
    before = timezone.now()
    services.process_deliveries(subscription_id=subscription.id)
    delivery = Delivery.objects.get()
    assert delivery.status == "succeeded"
    assert before <= delivery.completed_at <= timezone.now()


def test_an_http_failure_keeps_the_status_the_endpoint_answered():
    from tests.httpserver import Endpoint

    with Endpoint(always_fail=True, fail_status=503) as endpoint:
        subscription = SubscriptionFactory(
            target="http", handler="", url=endpoint.url, max_attempts=3, initial_interval=30
        )
        publish_and_relay()
        assert services.process_deliveries(subscription_id=subscription.id).retrying == 1
    assert Delivery.objects.get().last_http_status == 503
    assert [a.http_status for a in attempts()] == [503]


def test_the_next_kick_waits_for_the_soonest_retry_of_the_batch(kicks):
    Switch.objects.create(name="broken", on=True)
    subscription = SubscriptionFactory(handler="probe-flaky", initial_interval=30, max_attempts=5)
    soon, later = (event.id for event in publish_and_relay(2))
    now = timezone.now()
    Delivery.objects.filter(event_id=soon).update(visible_at=now - timedelta(seconds=9))  # claimed first
    Delivery.objects.filter(event_id=later).update(attempts=1, total_attempts=1, visible_at=now - timedelta(seconds=1))
    assert services.process_deliveries(subscription_id=subscription.id).retrying == 2
    assert kicks == [([subscription], 30.1)]  # not 60.1, the second one's backoff


def test_the_alarm_stays_raised_until_a_delivery_succeeds_again():
    Switch.objects.create(name="broken", on=True)
    subscription = SubscriptionFactory(name="fragile", handler="probe-flaky", max_attempts=2)
    publish_and_relay()
    for _ in range(2):
        Delivery.objects.update(visible_at=timezone.now() - timedelta(seconds=1))
        services.process_deliveries(subscription_id=subscription.id)
    assert Subscription.objects.get(pk=subscription.pk).alarm_state == "alarm"
    services.redrive_deliveries(subscription="fragile")
    assert services.process_deliveries(subscription_id=subscription.id).retrying == 1  # no dead letter now
    assert Subscription.objects.get(pk=subscription.pk).alarm_state == "alarm"  # but nothing succeeded yet
    Switch.objects.filter(name="broken").update(on=False)
    Delivery.objects.update(visible_at=timezone.now() - timedelta(seconds=1))
    assert services.process_deliveries(subscription_id=subscription.id).succeeded == 1
    assert Subscription.objects.get(pk=subscription.pk).alarm_state == "ok"


@pytest.mark.django_db(transaction=True)
def test_committed_attempts_move_the_attempt_metrics_in_seconds():
    from prometheus_client import REGISTRY

    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, {"subscription": "measured", **labels}) or 0.0

    subscription = SubscriptionFactory(name="measured", handler="probe-a")
    publish_and_relay(2, sleep=0.1)
    count_before = sample("supplychain_delivery_attempt_duration_seconds_count")
    sum_before = sample("supplychain_delivery_attempt_duration_seconds_sum")
    succeeded_before = sample("supplychain_delivery_attempts_total", outcome="succeeded")
    started = time.perf_counter()
    services.process_deliveries(subscription_id=subscription.id)
    wall = time.perf_counter() - started
    assert sample("supplychain_delivery_attempts_total", outcome="succeeded") == succeeded_before + 2
    assert sample("supplychain_delivery_attempt_duration_seconds_count") == count_before + 2
    spent = sample("supplychain_delivery_attempt_duration_seconds_sum") - sum_before
    durations = sum(a.duration_ms for a in attempts()) / 1000
    assert 0.1 <= spent <= wall
    assert spent == pytest.approx(durations, rel=1e-6)


# take_back_leases: which leases, the kick after commit, the log line.


def test_a_restarted_worker_takes_back_only_its_live_in_flight_leases_and_kicks_their_active_subscriptions(
    monkeypatch, caplog, django_capture_on_commit_callbacks
):
    for n in range(3):  # subscription ids unlike the delivery ids
        SubscriptionFactory(name=f"idle-{n}", event_types=["idle.*"])
    mine, paused = SubscriptionFactory(name="mine"), SubscriptionFactory(name="paused")
    publish_and_relay(4)
    now = timezone.now()
    leased, retrying, expired, other = Delivery.objects.filter(subscription=mine).order_by("id")
    Delivery.objects.filter(pk__in=[leased.pk, expired.pk, other.pk]).update(status="in_flight")
    Delivery.objects.filter(pk__in=[leased.pk, retrying.pk, expired.pk]).update(leased_by="w@host")
    Delivery.objects.filter(pk__in=[leased.pk, retrying.pk, other.pk]).update(visible_at=now + timedelta(minutes=5))
    Delivery.objects.filter(pk=expired.pk).update(visible_at=now - timedelta(minutes=1))
    Delivery.objects.filter(pk=other.pk).update(leased_by="someone@else")
    Delivery.objects.filter(subscription=paused).update(
        status="in_flight", leased_by="w@host", visible_at=now + timedelta(minutes=5)
    )
    Subscription.objects.filter(pk=paused.pk).update(active=False)
    kicked = []
    monkeypatch.setattr(
        services.deliveries, "kick_deliveries", lambda subs: kicked.append(sorted(s.name for s in subs))
    )

    with (
        caplog.at_level(logging.INFO, logger="supplychain.events.services.deliveries"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert services.take_back_leases(worker="w@host") == 5  # 1 of mine, 4 of the paused subscription
        assert kicked == []

    assert kicked == [["mine"]]  # the paused one is not kicked; its deliveries wait for it
    visible = {row.pk: row.visible_at for row in Delivery.objects.filter(subscription=mine)}
    assert visible[leased.pk] <= timezone.now()
    assert visible[retrying.pk] > timezone.now()  # a retry's backoff is not cut short
    assert visible[expired.pk] < now  # already due: left as it was
    assert visible[other.pk] > timezone.now()
    assert [r.getMessage() for r in caplog.records] == ["took back 5 delivery leases held by w@host before its restart"]


# _dead_letter_due: a subscription whose settings cannot give an attempt.


def test_a_subscription_with_invalid_settings_dead_letters_each_due_delivery_once_with_the_reason(
    django_assert_max_num_queries,
):
    broken = SubscriptionFactory(name="broken-policy", handler="probe-a", max_attempts=3)
    bystander = SubscriptionFactory(name="bystander", handler="probe-a", event_types=["probe.*"])
    publish_and_relay(1)
    services.process_deliveries(subscription_id=broken.id)  # delivered before the settings broke
    publish_and_relay(3)
    done = Delivery.objects.get(subscription=broken, status="succeeded")
    later, earlier, waiting = Delivery.objects.filter(subscription=broken, status="pending").order_by("id")
    now = timezone.now()
    Delivery.objects.filter(pk=later.pk).update(visible_at=now - timedelta(seconds=5), attempts=1, total_attempts=4)
    Delivery.objects.filter(pk=earlier.pk).update(visible_at=now - timedelta(seconds=10))
    Delivery.objects.filter(pk=waiting.pk).update(visible_at=now + timedelta(minutes=5))
    Subscription.objects.filter(pk=broken.pk).update(backoff_rate=float("inf"), jitter="x" * 10)
    problems = Subscription.objects.get(pk=broken.pk).policy_problems()
    assert len(problems["backoff_rate"]) == 2
    reason = "The subscription's delivery settings are invalid, so no attempt can be computed: " + "; ".join(
        f"{name}: {' '.join(messages)}" for name, messages in sorted(problems.items())
    )

    with CaptureQueriesContext(connection) as captured:
        report = services.process_deliveries(subscription_id=broken.id, batch_size=1)

    assert (report.claimed, report.dead) == (2, 2)
    event_reads = [q for q in captured.captured_queries if 'WHERE "events_outboxevent"."id" =' in q["sql"]]
    assert event_reads == []  # each delivery's event comes joined to it
    rows = {row.pk: row for row in Delivery.objects.filter(subscription=broken)}
    assert (rows[earlier.pk].status, rows[earlier.pk].attempts, rows[earlier.pk].total_attempts) == ("dead", 1, 1)
    assert (rows[later.pk].status, rows[later.pk].attempts, rows[later.pk].total_attempts) == ("dead", 2, 5)
    assert rows[later.pk].last_error == reason
    assert rows[waiting.pk].status == "pending"  # not due yet
    assert rows[done.pk].status == "succeeded"
    assert set(Delivery.objects.filter(subscription=bystander).values_list("status", flat=True)) == {"pending"}
    audit = AuditEntry.objects.filter(kind="attempt", subscription="broken-policy", outcome="dead").order_by("id")
    assert [(a.delivery_id, a.attempt, a.data, a.duration_ms, a.error) for a in audit] == [
        (earlier.pk, 1, {"counted": True, "attempt_in_round": 1}, 0.0, reason),  # the first due first
        (later.pk, 5, {"counted": True, "attempt_in_round": 2}, 0.0, reason),
    ]


def test_a_success_after_a_failure_clears_the_error_and_keeps_the_status_the_endpoint_answered():
    from tests.httpserver import Endpoint

    with Endpoint(fail_first=1, fail_status=503) as endpoint:
        subscription = SubscriptionFactory(target="http", handler="", url=endpoint.url, max_attempts=3)
        publish_and_relay()
        assert services.process_deliveries(subscription_id=subscription.id).retrying == 1
        failed = Delivery.objects.get()
        assert (failed.last_http_status, failed.last_error != "") == (503, True)
        Delivery.objects.update(visible_at=timezone.now() - timedelta(seconds=1))
        assert services.process_deliveries(subscription_id=subscription.id).succeeded == 1
    delivered = Delivery.objects.get()
    assert (delivered.status, delivered.last_error, delivered.last_http_status) == ("succeeded", "", 200)
