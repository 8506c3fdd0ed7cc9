"""Publishing and inbound records: what is stored, with which defaults and bounds (mutation survivors, README)."""

from unittest import mock

import pytest
from django_guid import clear_guid, set_guid

from supplychain.events import kicks, services
from supplychain.events.models import AuditEntry, OutboxEvent
from supplychain.events.services import NewEvent, publishing

pytestmark = pytest.mark.django_db


def test_an_inbound_message_is_stored_as_given():
    entry = services.record_received(
        partner="courier",
        message_type="courier.status",
        entity_key="order-9",
        outcome="refused",
        error="bad signature",
        data={"status": "complete"},
        correlation_id="trace-9",
    )
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert (stored.kind, stored.partner, stored.event_type, stored.entity_key) == (
        "received",
        "courier",
        "courier.status",
        "order-9",
    )
    assert (stored.outcome, stored.error, stored.data, stored.correlation_id) == (
        "refused",
        "bad signature",
        {"status": "complete"},
        "trace-9",
    )


def test_an_inbound_message_defaults_to_accepted_without_error_key_or_data_and_the_current_correlation_id():
    set_guid("request-guid-1")
    try:
        entry = services.record_received(partner="courier", message_type="courier.status")
    finally:
        clear_guid()
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert (stored.outcome, stored.error, stored.entity_key, stored.data) == ("accepted", "", "", {})
    assert stored.correlation_id == "request-guid-1"


def test_overlong_inbound_fields_are_cut_to_their_columns_not_refused():
    """The refusal must stay on record whatever the partner sent: every bounded field is cut to its column."""
    entry = services.record_received(
        partner="p" * 150,
        message_type="t" * 150,
        entity_key="k" * 250,
        outcome="o" * 30,
        error="e" * 5000,
        correlation_id="c" * 150,
    )
    stored = AuditEntry.objects.get(pk=entry.pk)
    lengths = [len(stored.partner), len(stored.event_type), len(stored.entity_key), len(stored.outcome)]
    assert lengths == [100, 100, 200, 20]
    assert (len(stored.correlation_id), len(stored.error)) == (100, 5000)


# ---- The relay kick ----------------------------------------------------------------------------------


def test_a_kick_the_broker_refuses_is_logged_as_the_relays_and_does_not_raise(caplog):
    def refused():
        raise ConnectionError("broker down")

    kicker = services.Kicker(0.0, send=refused)
    with caplog.at_level("WARNING", logger="supplychain.events.services.publishing"):
        kicker.kick()
    assert [record.getMessage() for record in caplog.records] == [
        "relay kick not sent (ConnectionError: broker down); the sweep will do it"
    ]


def test_the_relay_kick_holds_the_relay_guard_until_the_relay_starts(monkeypatch):
    sent = []
    monkeypatch.setattr(publishing.celery_app, "send_task", lambda name, **options: sent.append((name, options)))
    kicks.clear(kicks.RELAY)
    publishing._send_relay()
    publishing._send_relay()  # the guard is held: no second message
    assert sent == [(publishing.RELAY_TASK, {"retry": False})]
    assert kicks._redis().exists(kicks.PREFIX + "relay")
    kicks.clear(kicks.RELAY)


def test_a_relay_kick_the_broker_refuses_gives_the_guard_back_for_the_next(monkeypatch):
    def refused(name, **options):
        raise ConnectionError("broker down")

    monkeypatch.setattr(publishing.celery_app, "send_task", refused)
    kicks.clear(kicks.RELAY)
    with pytest.raises(ConnectionError):
        publishing._send_relay()
    assert not kicks._redis().exists(kicks.PREFIX + "relay")
    assert kicks.claim(kicks.RELAY)  # the next kick goes out
    kicks.clear(kicks.RELAY)


# ---- What a publish stores, and what it announces -------------------------------------------------------

THING = "probe.thing_happened"


def test_a_publish_stores_its_defaults_and_its_given_source():
    plain = services.publish(THING, {"sku": "ham", "quantity": 1})
    sourced = services.publish(THING, {"sku": "ham", "quantity": 2}, source="api/alice")
    stored = {event.pk: event for event in OutboxEvent.objects.all()}
    assert (stored[plain.pk].key, stored[plain.pk].source, stored[plain.pk].correlation_id) == (
        "",
        "supplychain/probe",
        "",
    )
    assert plain.envelope()["key"] is None
    assert stored[sourced.pk].source == "api/alice"
    assert plain._state.adding is False  # read back as stored rows: a save() updates them


def test_overlong_keys_and_correlation_ids_are_cut_to_their_columns():
    event = services.publish(THING, {"sku": "ham", "quantity": 1}, key="k" * 250, correlation_id="c" * 150)
    stored = OutboxEvent.objects.get(pk=event.pk)
    assert (len(stored.key), len(stored.correlation_id)) == (200, 100)
    set_guid("g" * 150)
    try:
        assert services.current_correlation_id() == "g" * 100
    finally:
        clear_guid()
    assert services.current_correlation_id() == ""


def test_the_published_audit_entry_names_no_subscription_partner_or_error():
    event = services.publish(THING, {"sku": "ham", "quantity": 1}, key="order-1")
    entry = AuditEntry.objects.get(event_id=event.event_id)
    assert (entry.kind, entry.outcome, entry.subscription, entry.partner, entry.error) == (
        "published",
        "published",
        "",
        "",
        "",
    )
    assert entry.data == event.envelope()


def test_events_of_one_type_in_one_call_are_counted_each_after_commit(django_capture_on_commit_callbacks):
    published = publishing.metrics.EVENTS_PUBLISHED.labels(THING)
    before = published._value.get()
    with django_capture_on_commit_callbacks(execute=True):
        services.publish_many([NewEvent(THING, {"sku": "ham", "quantity": n}) for n in (1, 2, 3)])
        assert published._value.get() == before  # not before the commit
    assert published._value.get() == before + 3


def test_a_publish_kicks_the_relay_after_commit_unless_told_not_to(django_capture_on_commit_callbacks):
    with mock.patch.object(publishing.relay_kicker, "kick") as kick:
        with django_capture_on_commit_callbacks(execute=True):
            services.publish_many([NewEvent(THING, {"sku": "ham", "quantity": 1})])
        assert kick.call_count == 1
        with django_capture_on_commit_callbacks(execute=True):
            services.publish_many([NewEvent(THING, {"sku": "ham", "quantity": 2})], kick_relay=False)
        assert kick.call_count == 1


def test_a_setting_the_project_does_not_define_falls_back_to_the_default_given():
    assert publishing.event_setting("EVENTS_NOT_A_SETTING", 7) == 7


def test_a_database_functions_events_are_announced_with_a_relay_kick_by_default(django_capture_on_commit_callbacks):
    """stock_reserve writes its outbox rows itself and calls announce_published(counts) alone."""
    with mock.patch.object(publishing.relay_kicker, "kick") as kick:
        with django_capture_on_commit_callbacks(execute=True):
            services.announce_published({THING: 1})
        assert kick.call_count == 1
