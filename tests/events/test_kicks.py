"""Coalesced kicks and the one-statement relay claim, on the real Redis and PostgreSQL of the test run.

One pending kick per drain across processes (a Redis ``SET NX`` guard the drain clears before it claims),
countdown kicks never held back, a drain out of time kicking itself, and concurrent relays that each take
an event once.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid

import pytest
import redis
from django.conf import settings as django_settings
from django.db import close_old_connections, connection, transaction

from supplychain.events import kicks, services
from supplychain.events.models import Delivery, OutboxEvent
from tests.events.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db
THING = "probe.thing_happened"


@pytest.fixture
def broker():
    if not django_settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.fail("these tests need the Redis broker (CELERY_BROKER_URL): run `make test`")
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def no_pending_kicks(broker):
    for key in broker.scan_iter(match=kicks.PREFIX + "*"):
        broker.delete(key)


@pytest.fixture
def queue(broker):
    """A queue of this test alone, emptied afterwards."""
    name = f"kicks-{uuid.uuid4().hex[:8]}"
    yield name
    broker.delete(name)


def delivers(broker, queue: str) -> list[tuple[list, str | None]]:
    """The deliver messages waiting on ``queue``: (args, eta)."""
    found = []
    for raw in broker.lrange(queue, 0, -1):
        message = json.loads(raw)
        assert message["headers"]["task"] == "events.deliver"
        found.append((json.loads(base64.b64decode(message["body"]))[0], message["headers"].get("eta")))
    return found


def test_kicks_for_a_subscription_coalesce_into_one_pending_until_its_drain_starts(broker, queue):
    subscription = SubscriptionFactory(handler="probe-a", queue=queue)
    other = SubscriptionFactory(handler="probe-b", queue=queue)
    for _ in range(5):
        services.kick_deliveries([subscription, other])
    assert sorted(args for args, _ in delivers(broker, queue)) == sorted([[subscription.id], [other.id]])

    services.process_deliveries(subscription_id=subscription.id)  # the drain starts: the guard goes
    services.kick_deliveries([subscription, other])
    assert [args for args, _ in delivers(broker, queue)].count([subscription.id]) == 2
    assert [args for args, _ in delivers(broker, queue)].count([other.id]) == 1


def test_an_event_published_after_a_drain_started_is_kicked_and_delivered(
    broker, queue, django_capture_on_commit_callbacks
):
    """The drain clears the guard before it claims, so an event committed while it runs kicks a new drain."""
    subscription = SubscriptionFactory(handler="probe-a", queue=queue)
    services.kick_deliveries([subscription])  # a kick is pending
    services.publish(THING, {"sku": "ham", "quantity": 1})
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.relay_pending()  # its kick is held back: one is pending
    assert callbacks
    assert len(delivers(broker, queue)) == 1

    assert services.process_deliveries(subscription_id=subscription.id).succeeded == 1  # the pending one ran
    services.publish(THING, {"sku": "ham", "quantity": 2})
    with django_capture_on_commit_callbacks(execute=True):
        services.relay_pending()
    assert len(delivers(broker, queue)) == 2  # this event's kick went out
    assert services.process_deliveries(subscription_id=subscription.id).succeeded == 1
    assert Delivery.objects.filter(subscription=subscription, status="succeeded").count() == 2


def test_a_countdown_kick_is_sent_even_while_one_is_pending_and_does_not_hold_back_the_next(broker, queue):
    subscription = SubscriptionFactory(handler="probe-a", queue=queue)
    services.kick_deliveries([subscription], countdown=30)
    services.kick_deliveries([subscription])
    services.kick_deliveries([subscription], countdown=30)
    sent = delivers(broker, queue)
    assert len(sent) == 3
    assert sum(eta is None for _, eta in sent) == 1


def test_a_pending_kick_expires_after_the_setting_so_a_lost_message_only_delays(broker, queue, settings):
    settings.EVENTS_KICK_PENDING_SECONDS = 0.05
    subscription = SubscriptionFactory(handler="probe-a", queue=queue)
    services.kick_deliveries([subscription])
    broker.delete(queue)  # the message is lost
    threading.Event().wait(0.1)
    services.kick_deliveries([subscription])
    assert len(delivers(broker, queue)) == 1


def test_a_drain_that_runs_out_of_time_kicks_itself_for_the_rest(broker, queue, settings):
    settings.EVENTS_DELIVERY_BATCH = 2
    settings.EVENTS_TIME_BUDGET = 0.05
    subscription = SubscriptionFactory(handler="probe-a", queue=queue)
    for n in range(5):
        services.publish(THING, {"sku": "ham", "quantity": n + 1, "sleep": 0.06})
    services.relay_pending()
    broker.delete(queue)
    kicks.clear(kicks.deliveries_key(subscription.id))

    report = services.process_deliveries(subscription_id=subscription.id)
    assert report.claimed == 2
    assert delivers(broker, queue) == [([subscription.id], None)]


def test_a_drain_that_finished_sends_no_kick(broker, queue):
    subscription = SubscriptionFactory(handler="probe-a", queue=queue)
    services.publish(THING, {"sku": "ham", "quantity": 1})
    services.relay_pending()
    broker.delete(queue)
    kicks.clear(kicks.deliveries_key(subscription.id))
    assert services.process_deliveries(subscription_id=subscription.id).succeeded == 1
    assert delivers(broker, queue) == []


def test_relay_kicks_coalesce_across_calls_until_the_relay_task_starts(broker):
    def relays() -> int:
        return sum(json.loads(raw)["headers"]["task"] == "events.relay" for raw in broker.lrange("events", 0, -1))

    kicks.clear(kicks.RELAY)
    before = relays()
    for _ in range(5):
        services.publishing._send_relay()
    assert relays() == before + 1
    from supplychain.events.tasks import relay

    relay.run()  # the relay task clears the guard first
    services.publishing._send_relay()
    assert relays() == before + 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_relays_claim_each_event_exactly_once():
    """Four relays at once over 2,000 events (batches of 50): the counts they return add up to the events."""
    if connection.vendor != "postgresql":
        pytest.fail("the one-statement claim is PostgreSQL's: run `make test`")
    SubscriptionFactory(handler="probe-a")
    SubscriptionFactory(handler="probe-b", event_types=["probe.other"])
    with transaction.atomic():
        events = [services.NewEvent(THING, {"sku": "ham", "quantity": n + 1}) for n in range(2000)]
        services.publish_many(events, kick_relay=False)  # no kick: a live worker of the session must not relay them
    relayed: list[int] = []
    start = threading.Barrier(4)

    def relay() -> None:
        try:
            start.wait()
            relayed.append(services.relay_pending(batch_size=50))
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=relay) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(relayed) == 2000
    assert not OutboxEvent.objects.filter(relayed_at__isnull=True).exists()
    assert Delivery.objects.count() == 2000
    assert Delivery.objects.values("event_id").distinct().count() == 2000


def test_a_drain_that_dead_letters_a_broken_policy_still_clears_its_guard(broker, queue):
    """An early return (a policy no attempt can be computed from) must not leave the next kick held back."""
    subscription = SubscriptionFactory(handler="probe-a", queue=queue)
    type(subscription).objects.filter(pk=subscription.pk).update(initial_interval=1e308)
    services.kick_deliveries([subscription])
    services.process_deliveries(subscription_id=subscription.id)
    services.kick_deliveries([subscription])
    assert len(delivers(broker, queue)) == 2


def test_a_pending_kick_holds_back_only_its_own_subscription(broker, queue):
    pending = SubscriptionFactory(handler="probe-a", queue=queue)
    free = SubscriptionFactory(handler="probe-b", queue=queue)
    services.kick_deliveries([pending])
    services.kick_deliveries([pending, free])  # the first is held back; the second still goes out
    assert sorted(args for args, _ in delivers(broker, queue)) == sorted([[pending.id], [free.id]])


def test_a_kick_the_broker_refuses_gives_its_guard_back(broker, queue, monkeypatch):
    from supplychain.events.services import deliveries

    subscription = SubscriptionFactory(handler="probe-a", queue=queue)

    def refused(*args, **options):
        raise ConnectionError("broker down")

    monkeypatch.setattr(deliveries.celery_app, "send_task", refused)
    services.kick_deliveries([subscription])  # logged, not raised: the sweep kicks again
    assert kicks.claim(kicks.deliveries_key(subscription.id))  # the guard was given back for the next kick
