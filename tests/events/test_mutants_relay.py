"""The relay, the sweep and redrive: which rows each one takes, and what it leaves (mutation survivors, README)."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from supplychain.events import services
from supplychain.events.models import AuditEntry, Delivery, OutboxEvent
from tests.events.factories import SubscriptionFactory
from tests.probe.models import Switch

pytestmark = pytest.mark.django_db
THING = "probe.thing_happened"


def due_now():
    Delivery.objects.update(visible_at=timezone.now() - timedelta(seconds=1))


def dead_letters(subscription, count: int, event_type: str = THING) -> list[Delivery]:
    """``count`` events of ``event_type`` delivered to ``subscription`` (max_attempts=1, a broken handler): dead."""
    Switch.objects.update_or_create(name="broken", defaults={"on": True})
    events = [services.publish(event_type, {"sku": "ham", "quantity": n + 1}) for n in range(count)]
    services.relay_pending()
    services.process_deliveries(subscription_id=subscription.id)
    Switch.objects.filter(name="broken").update(on=False)
    rows = list(Delivery.objects.filter(subscription=subscription, event__in=events).order_by("id"))
    assert [row.status for row in rows] == ["dead"] * count
    return rows


def statuses(rows) -> list[str]:
    return [Delivery.objects.get(pk=row.pk).status for row in rows]


@pytest.fixture
def fragile():
    return SubscriptionFactory(name="fragile", handler="probe-flaky", max_attempts=1, event_types=["probe.*"])


def test_redrive_by_id_takes_only_that_dead_delivery_and_never_a_finished_one(fragile):
    first, second = dead_letters(fragile, 2)
    fine = SubscriptionFactory(name="fine", handler="probe-a")
    services.publish(THING, {"sku": "ham", "quantity": 9})
    services.relay_pending()
    services.process_deliveries(subscription_id=fine.id)
    succeeded = Delivery.objects.get(subscription=fine, status="succeeded")

    assert services.redrive_deliveries(delivery_ids=[first.id, succeeded.id]) == 1
    assert statuses([first, second, succeeded]) == ["pending", "dead", "succeeded"]


def test_a_redriven_delivery_starts_a_new_round_now_and_its_audit_names_the_actor(fragile):
    (dead,) = dead_letters(fragile, 1)
    assert Delivery.objects.get(pk=dead.pk).dead_at is not None
    before = timezone.now()

    assert services.redrive_deliveries(delivery_ids=[dead.id]) == 1

    row = Delivery.objects.get(pk=dead.pk)
    assert (row.status, row.attempts, row.total_attempts, row.redrive_count, row.dead_at) == ("pending", 0, 1, 1, None)
    assert before <= row.visible_at <= timezone.now()
    audit = AuditEntry.objects.get(kind="redriven", delivery_id=dead.id)
    assert (audit.outcome, audit.subscription, audit.event_type) == ("redriven", "fragile", THING)
    assert audit.data == {"actor": "", "redrive": 1, "last_error": row.last_error}
    assert "probe is broken" in row.last_error


def test_redrive_by_subscription_takes_its_dead_letters_only(fragile):
    other = SubscriptionFactory(name="other", handler="probe-flaky", max_attempts=1)
    Switch.objects.create(name="broken", on=True)
    services.publish(THING, {"sku": "ham", "quantity": 1})
    services.relay_pending()
    services.process_deliveries(subscription_id=fragile.id)
    services.process_deliveries(subscription_id=other.id)
    Switch.objects.filter(name="broken").update(on=False)
    services.publish(THING, {"sku": "ham", "quantity": 2})  # delivered fine to both
    services.relay_pending()
    services.process_deliveries(subscription_id=fragile.id)
    services.process_deliveries(subscription_id=other.id)
    assert sorted(Delivery.objects.values_list("status", flat=True)) == ["dead", "dead", "succeeded", "succeeded"]

    assert services.redrive_deliveries(subscription="fragile") == 1
    assert sorted(Delivery.objects.filter(subscription=fragile).values_list("status", flat=True)) == [
        "pending",
        "succeeded",
    ]
    assert Delivery.objects.get(subscription=other, status__in=["dead", "pending"]).status == "dead"
    assert services.redrive_deliveries(delivery_ids=[], subscription="other") == 0  # both selectors apply


def test_redrive_by_event_type_exact_or_by_prefix_pattern(fragile):
    SubscriptionFactory(name="bystander", handler="probe-a")  # its deliveries stay pending: not dead
    thing = dead_letters(fragile, 1, THING)
    assert services.redrive_deliveries(event_type="probe.thing") == 0  # exact, not a prefix
    assert services.redrive_deliveries(event_type="*thing_happened") == 0  # the star only ends a pattern
    assert services.redrive_deliveries(event_type="probe.thing_happened") == 1
    assert statuses(thing) == ["pending"]

    dead_letters(fragile, 1, THING)  # the redriven one goes dead again with it
    assert services.redrive_deliveries(event_type="stock.*") == 0
    assert services.redrive_deliveries(event_type="probe.th*", subscription="nobody") == 0
    assert services.redrive_deliveries(event_type="probe.th*") == 2
    assert services.redrive_deliveries(event_type="probe.thing_happened", subscription="nobody") == 0


def test_redrive_by_a_dead_time_window_takes_only_the_letters_inside_it(fragile):
    older, newer = dead_letters(fragile, 2)
    now = timezone.now()
    Delivery.objects.filter(pk=older.pk).update(dead_at=now - timedelta(hours=2))
    Delivery.objects.filter(pk=newer.pk).update(dead_at=now - timedelta(minutes=5))

    assert services.redrive_deliveries(dead_before=now - timedelta(hours=3)) == 0
    assert services.redrive_deliveries(dead_since=now - timedelta(hours=1), subscription="nobody") == 0
    assert services.redrive_deliveries(dead_since=now - timedelta(hours=1)) == 1
    assert statuses([older, newer]) == ["dead", "pending"]
    assert services.redrive_deliveries(dead_before=now - timedelta(hours=1), subscription="nobody") == 0
    assert services.redrive_deliveries(dead_before=now - timedelta(hours=1)) == 1
    assert statuses([older, newer]) == ["pending", "pending"]


def test_redrive_all_dead_takes_every_dead_letter_and_nothing_else(fragile):
    dead = dead_letters(fragile, 2)
    assert services.redrive_deliveries(all_dead=True) == 2
    assert statuses(dead) == ["pending", "pending"]
    assert services.redrive_deliveries(all_dead=True) == 0  # nothing dead is left


def test_redrive_refuses_without_a_selector_and_says_what_to_give(fragile):
    dead_letters(fragile, 1)
    for empty in ({}, {"subscription": ""}, {"event_type": ""}, {"all_dead": False}):
        with pytest.raises(services.NothingToRedrive) as refused:
            services.redrive_deliveries(**empty)
        assert str(refused.value) == "Give delivery ids, a subscription, an event type, a time window, or all."
    assert Delivery.objects.get().status == "dead"


def test_the_sweep_does_not_kick_a_subscription_whose_due_rows_are_all_finished():
    live = SubscriptionFactory(name="live", handler="probe-a")
    services.publish(THING, {"sku": "ham", "quantity": 1})
    services.relay_pending()
    services.process_deliveries(subscription_id=live.id)
    due_now()  # a succeeded delivery's visibility time has passed too
    assert services.sweep() == {"relayed": 0, "kicked": []}


# relay_pending: batches, their order and count, and the kick after each.


def test_the_relay_takes_the_oldest_events_in_batches_up_to_max_batches_and_counts_them():
    SubscriptionFactory(name="all", handler="probe-a")
    events = [services.publish(THING, {"sku": "ham", "quantity": n + 1}) for n in range(7)]

    def relayed() -> list[int]:
        return sorted(Delivery.objects.values_list("event_id", flat=True))

    assert services.relay_pending(batch_size=2, max_batches=1) == 2
    assert relayed() == [event.id for event in events[:2]]
    assert services.relay_pending(batch_size=2, max_batches=2) == 4
    assert relayed() == [event.id for event in events[:6]]
    assert services.relay_pending(batch_size=2, max_batches=2) == 1  # a short batch: done
    assert relayed() == [event.id for event in events]
    assert OutboxEvent.objects.filter(relayed_at__isnull=True).count() == 0
    assert services.relay_pending(batch_size=2) == 0


def test_a_full_batch_is_followed_by_another_until_a_short_or_empty_one(settings):
    settings.EVENTS_RELAY_BATCH = 2
    SubscriptionFactory(name="all", handler="probe-a")
    for n in range(5):
        services.publish(THING, {"sku": "ham", "quantity": n + 1})
    assert services.relay_pending(max_batches=1) == 2  # the setting's batch size
    assert services.relay_pending() == 3
    assert Delivery.objects.count() == 5


def test_each_relay_batch_kicks_after_commit_the_subscriptions_it_gave_deliveries_to(
    monkeypatch, django_capture_on_commit_callbacks
):
    wanted = SubscriptionFactory(name="wanted", handler="probe-a", event_types=["probe.*"])
    SubscriptionFactory(name="elsewhere", handler="probe-a", event_types=["stock.*"])
    filtered = SubscriptionFactory(
        name="filtered", handler="probe-a", event_types=["probe.*"], filter_policy={"sku": ["egg"]}
    )
    ham_only = SubscriptionFactory(
        name="ham-only", handler="probe-a", event_types=["probe.*"], filter_policy={"sku": ["ham"]}
    )
    for n in range(3):
        services.publish(THING, {"sku": "ham", "quantity": n + 1})
    kicked = []
    monkeypatch.setattr(
        services.deliveries, "kick_deliveries", lambda subs: kicked.append(sorted(s.name for s in subs))
    )

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert services.relay_pending(batch_size=2) == 3
        assert kicked == []  # nothing before the commit

    assert kicked == [["ham-only", "wanted"], ["ham-only", "wanted"]]  # one kick per batch
    assert len(callbacks) == 2
    assert set(Delivery.objects.values_list("subscription_id", flat=True)) == {wanted.id, ham_only.id}
    assert not Delivery.objects.filter(subscription=filtered).exists()


# redrive_deliveries: what the audit keeps of each round.


def test_every_redrive_is_audited_with_its_event_its_actor_and_its_round(fragile):
    Switch.objects.create(name="broken", on=True)
    event = services.publish(THING, {"sku": "ham", "quantity": 1}, key="lot-7", correlation_id="corr-7")
    services.relay_pending()
    services.process_deliveries(subscription_id=fragile.id)
    dead = Delivery.objects.get(status="dead")

    assert services.redrive_deliveries(delivery_ids=[dead.id], actor="ops@kitchen") == 1
    due_now()
    services.process_deliveries(subscription_id=fragile.id)  # still broken: dead again
    assert services.redrive_deliveries(subscription="fragile", actor="night shift") == 1

    row = Delivery.objects.get(pk=dead.pk)
    audits = list(AuditEntry.objects.filter(kind="redriven").order_by("id"))
    assert [
        (a.event_id, a.event_type, a.correlation_id, a.entity_key, a.subscription, a.delivery_id, a.outcome)
        for a in audits
    ] == [(event.event_id, THING, "corr-7", "lot-7", "fragile", dead.id, "redriven")] * 2
    assert [a.data for a in audits] == [
        {"actor": "ops@kitchen", "redrive": 1, "last_error": audits[0].data["last_error"]},
        {"actor": "night shift", "redrive": 2, "last_error": row.last_error},
    ]
    assert "probe is broken" in audits[0].data["last_error"]
    assert (row.status, row.redrive_count) == ("pending", 2)
    assert audits[1].occurred_at == row.visible_at


@pytest.mark.django_db(transaction=True)
def test_the_relay_skips_events_another_relay_holds_instead_of_waiting_for_them():
    """Two relays at once: the second takes the events the first has not locked, without waiting on its batch."""
    SubscriptionFactory(name="all", handler="probe-a")
    held, *rest = [services.publish(THING, {"sku": "ham", "quantity": n + 1}) for n in range(3)]
    holding, release = threading.Event(), threading.Event()

    def other_relay():
        try:
            with transaction.atomic():
                list(OutboxEvent.objects.select_for_update().filter(pk=held.pk))
                holding.set()
                release.wait(30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_relay)
    thread.start()
    try:
        assert holding.wait(30)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '5s'")  # a relay that waited would fail here instead of hanging
        try:
            assert services.relay_pending() == 2
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = 0")
    finally:
        release.set()
        thread.join(30)
    assert sorted(Delivery.objects.values_list("event_id", flat=True)) == sorted(event.id for event in rest)
    assert services.relay_pending() == 1


class OtherVendor:
    """The default connection as the relay module sees it, named ``vendor``; all else is the real one."""

    def __init__(self, vendor: str) -> None:
        self.vendor = vendor

    def __getattr__(self, name):
        return getattr(connection, name)


@pytest.mark.parametrize("vendor", ["postgresql", "sqlite"])
def test_relayed_deliveries_are_pending_from_the_relay_time_and_relaying_again_adds_none(monkeypatch, vendor):
    """The same rows on both paths (PostgreSQL's one statement, the bulk insert elsewhere), and an event relayed
    a second time (its relayed mark lost) finds its deliveries there and adds nothing."""
    if vendor != "postgresql":
        monkeypatch.setattr(services.relay, "connection", OtherVendor(vendor))
    first, second = SubscriptionFactory(name="first"), SubscriptionFactory(name="second")
    events = [services.publish(THING, {"sku": "ham", "quantity": n + 1}) for n in range(2)]
    before = timezone.now()
    assert services.relay_pending() == 2
    rows = list(Delivery.objects.order_by("event_id", "subscription_id"))
    assert [(row.event_id, row.subscription_id) for row in rows] == [
        (event.id, subscription.id) for event in events for subscription in (first, second)
    ]
    relayed_at = OutboxEvent.objects.get(pk=events[0].pk).relayed_at
    assert before <= relayed_at <= timezone.now()
    for row in rows:
        assert (row.status, row.attempts, row.total_attempts, row.redrive_count) == ("pending", 0, 0, 0)
        assert row.visible_at == row.created_at == relayed_at
        assert row.last_error == ""

    OutboxEvent.objects.update(relayed_at=None)
    assert services.relay_pending() == 2
    assert Delivery.objects.count() == 4


def test_on_postgresql_the_relay_inserts_its_deliveries_with_one_statement_of_two_id_arrays():
    for n in range(3):
        SubscriptionFactory(name=f"s{n}")
    for n in range(4):
        services.publish(THING, {"sku": "ham", "quantity": n + 1})
    with CaptureQueriesContext(connection) as captured:
        services.relay_pending()
    inserts = [q["sql"] for q in captured.captured_queries if "INSERT INTO events_delivery" in q["sql"]]
    assert len(inserts) == 1 and "unnest" in inserts[0]
    assert not [q for q in captured.captured_queries if 'INSERT INTO "events_delivery"' in q["sql"]]
    assert Delivery.objects.count() == 12


def test_a_redrive_kicks_the_subscriptions_of_the_redriven_deliveries_after_commit(
    fragile, monkeypatch, django_capture_on_commit_callbacks
):
    dead_letters(fragile, 2)
    kicked = []
    monkeypatch.setattr(services.deliveries, "kick_deliveries", lambda subs: kicked.append([s.name for s in subs]))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.redrive_deliveries(all_dead=True) == 2
        assert kicked == []
    assert kicked == [["fragile"]]


def test_on_postgresql_the_relay_claims_and_marks_a_batch_with_one_update_returning():
    SubscriptionFactory(name="first")
    for n in range(3):
        services.publish(THING, {"sku": "ham", "quantity": n + 1})
    with CaptureQueriesContext(connection) as captured:
        assert services.relay_pending() == 3
    outbox = [q["sql"] for q in captured.captured_queries if "events_outboxevent" in q["sql"]]
    assert len(outbox) == 1, outbox  # no SELECT … FOR UPDATE and UPDATE by id: the portable path's two
    assert outbox[0].lstrip().startswith("UPDATE") and "RETURNING" in outbox[0]


@pytest.mark.parametrize("vendor", ["postgresql", "sqlite"])
def test_both_claims_hand_the_payload_to_the_filter_policies(monkeypatch, vendor):
    if vendor != "postgresql":
        monkeypatch.setattr(services.relay, "connection", OtherVendor(vendor))
    hams = SubscriptionFactory(name="hams", filter_policy={"sku": ["ham"]})
    ham = services.publish(THING, {"sku": "ham", "quantity": 1})
    services.publish(THING, {"sku": "cheese", "quantity": 1})
    assert services.relay_pending() == 2
    assert list(Delivery.objects.values_list("event_id", "subscription_id")) == [(ham.id, hams.id)]
