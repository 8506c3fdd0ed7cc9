"""Publishing and inbound records: what is stored, with which defaults and bounds (mutation survivors, README)."""

import pytest
from django_guid import clear_guid, set_guid

from supplychain.events import services
from supplychain.events.models import AuditEntry

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
