"""Guards for backbone promises a deliberate break once passed unnoticed (README, Tests: the breaks table)."""

import itertools
import re
import threading
import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone

from supplychain.events import services, signals
from supplychain.events.models import Delivery, OutboxEvent, Subscription
from tests.events.factories import SubscriptionFactory
from tests.probe.models import Effect, Switch

pytestmark = pytest.mark.django_db
THING = "probe.thing_happened"


def due_now():
    Delivery.objects.update(visible_at=timezone.now() - timedelta(seconds=1))


@pytest.fixture
def alarms():
    heard = []

    def receiver(sender, subscription, dead_count, **kwargs):
        heard.append((subscription.name, dead_count))

    signals.dead_letters_raised.connect(receiver)
    yield heard
    signals.dead_letters_raised.disconnect(receiver)


@pytest.mark.django_db(transaction=True)
def test_dead_letters_in_separate_batches_raise_the_alarm_and_its_signal_once(alarms):
    """Each process_deliveries call commits; the second dead letter must not alarm again."""
    Switch.objects.create(name="broken", on=True)
    subscription = SubscriptionFactory(name="fragile", handler="probe-flaky", max_attempts=1)
    services.publish(THING, {"sku": "ham", "quantity": 1})
    services.relay_pending()
    assert services.process_deliveries(subscription_id=subscription.id).dead == 1
    assert alarms == [("fragile", 1)]  # sent after the real commit

    services.publish(THING, {"sku": "ham", "quantity": 2})
    services.relay_pending()
    assert services.process_deliveries(subscription_id=subscription.id).dead == 1

    assert Delivery.objects.filter(status="dead").count() == 2
    raised = OutboxEvent.objects.filter(type="events.dead_letters_raised")
    assert [event.payload["dead_count"] for event in raised] == [1]
    assert alarms == [("fragile", 1)]


@pytest.mark.django_db(transaction=True)
def test_the_alarm_is_raised_again_after_it_cleared(alarms):
    Switch.objects.create(name="broken", on=True)
    subscription = SubscriptionFactory(name="fragile", handler="probe-flaky", max_attempts=1)
    services.publish(THING, {"sku": "ham", "quantity": 1})
    services.relay_pending()
    services.process_deliveries(subscription_id=subscription.id)
    Switch.objects.filter(name="broken").update(on=False)
    services.redrive_deliveries(subscription="fragile")
    services.process_deliveries(subscription_id=subscription.id)
    assert Subscription.objects.get(pk=subscription.pk).alarm_state == "ok"

    Switch.objects.filter(name="broken").update(on=True)
    services.publish(THING, {"sku": "ham", "quantity": 2})
    services.relay_pending()
    services.process_deliveries(subscription_id=subscription.id)
    assert alarms == [("fragile", 1), ("fragile", 1)]


def test_a_leased_delivery_is_hidden_from_a_second_worker_until_the_lease_ends():
    subscription = SubscriptionFactory(handler="probe-a")
    event = services.publish(THING, {"sku": "ham", "quantity": 1})
    services.relay_pending()
    first_worker = services.deliveries._claim(subscription, 10)  # then dies before recording the attempt
    assert [d.event_id for d in first_worker] == [event.id]
    leased = Delivery.objects.get()
    assert leased.status == "in_flight"
    assert 59 <= (leased.visible_at - timezone.now()).total_seconds() <= 60

    second = services.process_deliveries(subscription_id=subscription.id)
    assert second.claimed == 0
    assert Effect.objects.count() == 0

    due_now()  # the lease ended: the delivery is claimed again, the lost attempt counted
    assert services.process_deliveries(subscription_id=subscription.id).succeeded == 1
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert Effect.objects.count() == 1


def test_a_retry_longer_than_the_countdown_limit_waits_in_the_database_and_the_sweep_resumes_it(monkeypatch, settings):
    settings.EVENTS_COUNTDOWN_MAX = 300
    kicks = []
    real_kick = services.kick_deliveries

    def recording_kick(subscriptions, countdown=None):
        subscriptions = list(subscriptions)
        kicks.append(([s.name for s in subscriptions], countdown))
        return real_kick(subscriptions, countdown=countdown)

    monkeypatch.setattr(services.deliveries, "kick_deliveries", recording_kick)
    Switch.objects.create(name="broken", on=True)
    slow = SubscriptionFactory(name="slow", handler="probe-flaky", initial_interval=301, max_attempts=3)
    quick = SubscriptionFactory(name="quick", handler="probe-flaky", initial_interval=30, max_attempts=3)
    services.publish(THING, {"sku": "ham", "quantity": 1})
    services.relay_pending()
    kicks.clear()

    assert services.process_deliveries(subscription_id=slow.id).retrying == 1
    assert kicks == []  # nothing waits 301 s in the broker
    waiting = Delivery.objects.get(subscription=slow)
    assert (waiting.status, round((waiting.visible_at - timezone.now()).total_seconds())) == ("pending", 301)

    assert services.process_deliveries(subscription_id=quick.id).retrying == 1
    assert kicks == [(["quick"], 30.1)]  # a short wait is a countdown
    kicks.clear()

    assert services.sweep()["kicked"] == []  # not due yet
    Switch.objects.filter(name="broken").update(on=False)
    Delivery.objects.filter(subscription=slow).update(visible_at=timezone.now() - timedelta(seconds=1))
    assert services.sweep()["kicked"] == ["slow"]
    assert kicks[-1] == (["slow"], None)
    assert services.process_deliveries(subscription_id=slow.id).succeeded == 1
    assert Delivery.objects.get(subscription=slow).attempts == 2


class CountingKicker(services.Kicker):
    """The real kicker, sending into a list instead of the broker."""

    def __init__(self, interval):
        self.sent = []
        super().__init__(interval, send=lambda: self.sent.append(time.monotonic()), what="test")


def test_relay_kicks_are_throttled_to_one_per_interval_with_one_trailing_kick():
    kicker = CountingKicker(0.3)
    started = time.monotonic()
    for _ in range(50):
        kicker.kick()
    assert len(kicker.sent) == 1  # the first at once, the rest wait for one trailing kick
    time.sleep(0.6)
    assert len(kicker.sent) == 2
    assert kicker.sent[1] - started >= 0.29  # not before the interval
    for _ in range(10):  # a burst well inside the interval, even on a loaded machine
        kicker.kick()
        time.sleep(0.01)
    time.sleep(0.6)
    assert len(kicker.sent) == 4  # the next burst: one at once (the interval had passed), one trailing
    assert all(later - earlier >= 0.29 for earlier, later in itertools.pairwise(kicker.sent))


def test_relay_kicks_from_many_threads_still_send_one_per_interval():
    kicker = CountingKicker(0.5)
    threads = [threading.Thread(target=lambda: [kicker.kick() for _ in range(20)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(0.8)
    assert len(kicker.sent) == 2


def _published_total() -> float:
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.get_or_create(username="metrics", is_staff=True)[0])
    for line in client.get("/metrics").content.decode().splitlines():
        if line.startswith(f'supplychain_events_published_total{{type="{THING}"}}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.django_db(transaction=True)
def test_a_committed_publish_moves_the_published_counter_and_a_rolled_back_one_does_not():
    before = _published_total()
    with transaction.atomic():
        services.publish(THING, {"sku": "ham", "quantity": 1})
        services.publish(THING, {"sku": "ham", "quantity": 2})
        assert _published_total() == before  # not before the commit
    assert _published_total() == before + 2
    with pytest.raises(RuntimeError), transaction.atomic():
        services.publish(THING, {"sku": "ham", "quantity": 3})
        raise RuntimeError("roll back")
    assert _published_total() == before + 2


@pytest.mark.parametrize(
    ("model", "query"),
    [("subscription", "flaky"), ("delivery", "order-5"), ("outboxevent", "order-5"), ("auditentry", "trace-5")],
)
def test_events_admin_search_finds_the_row_and_only_it(model, query):
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-for-tests-only"))
    SubscriptionFactory(name="flaky")
    services.publish(THING, {"sku": "ham", "quantity": 1}, key="order-5", correlation_id="trace-5")
    services.publish(THING, {"sku": "ham", "quantity": 2}, key="order-6", correlation_id="trace-6")
    services.relay_pending()
    found = client.get(f"/admin/events/{model}/", {"q": query}).content.decode()
    assert result_rows(found) == 1
    assert query in found
    assert result_rows(client.get(f"/admin/events/{model}/", {"q": "nothing-matches"}).content.decode()) == 0


def result_rows(html: str) -> int:
    """Rows of an admin changelist's result table (none when nothing matched)."""
    table = re.search(r'<table id="result_list">(.*?)</table>', html, re.S)
    return table.group(1).count("<tr") - 1 if table else 0


def test_sweep_relays_what_the_kicks_missed_and_kicks_only_active_subscriptions_with_due_deliveries():
    live = SubscriptionFactory(name="live", handler="probe-a")
    paused = SubscriptionFactory(name="paused", handler="probe-b")
    services.publish(THING, {"sku": "ham", "quantity": 1})
    services.publish(THING, {"sku": "ham", "quantity": 2})
    assert services.sweep() == {"relayed": 2, "kicked": ["live", "paused"]}
    Subscription.objects.filter(pk=paused.pk).update(active=False)
    assert services.sweep() == {"relayed": 0, "kicked": ["live"]}
    services.process_deliveries(subscription_id=live.id)
    assert services.sweep() == {"relayed": 0, "kicked": []}


def test_finished_deliveries_are_never_claimed_again():
    subscription = SubscriptionFactory(handler="probe-a", max_attempts=1)
    services.publish(THING, {"sku": "ham", "quantity": 1})
    services.relay_pending()
    assert services.process_deliveries(subscription_id=subscription.id).succeeded == 1
    due_now()  # a finished delivery's visibility time has passed too
    assert services.deliveries._claim(subscription, 10) == []
    assert services.process_deliveries(subscription_id=subscription.id).claimed == 0
    assert Effect.objects.count() == 1
    assert Delivery.objects.get().status == "succeeded"
