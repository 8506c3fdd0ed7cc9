"""COPY rows (supplychain.core.db.copy_rows): every kind of value comes back as it went in."""

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import DataError, connection

from stock.models import Batch, Ingredient, Receipt
from stock.services import BATCH_FIELDS
from supplychain.core.db import copy_rows
from supplychain.events.models import OutboxEvent

pytestmark = pytest.mark.django_db

AWKWARD = "tab\there, new\nline, cr\rback\\slash, \\N and a literal \\t"


def test_text_json_uuid_time_and_nulls_survive_copy():
    event_id = uuid.uuid4()
    moment = datetime(2026, 11, 23, 17, 30, 5, 123456, tzinfo=UTC)
    payload = {"note": AWKWARD, "nested": [1, 2.5, None, True], "unicode": "café ✓"}
    copy_rows(
        OutboxEvent,
        ["event_id", "type", "version", "source", "occurred_at", "correlation_id", "key", "payload", "relayed_at"],
        [(event_id, "test.copy", 3, "tests", moment, "", AWKWARD, payload, None)],
    )
    row = OutboxEvent.objects.get(event_id=event_id)
    assert (row.type, row.version, row.source, row.occurred_at, row.correlation_id) == (
        "test.copy",
        3,
        "tests",
        moment,
        "",
    )
    assert row.key == AWKWARD
    assert row.payload == payload
    assert row.relayed_at is None


def test_keys_decimals_dates_and_a_null_key_survive_copy():
    ingredient = Ingredient.objects.create(sku="copy-sku", name="Copy")
    receipt = Receipt.objects.create(key="copy.csv", sha256="0" * 64, source="upload")
    received = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    copy_rows(
        Batch,
        BATCH_FIELDS,
        [
            (
                ingredient.id,
                AWKWARD,
                None,
                receipt.id,
                7,
                received,
                date(2026, 12, 24),
                Decimal("12.345"),
                Decimal("12.345"),
                Decimal("0"),
                "active",
            )
        ],
    )
    batch = Batch.objects.get(ingredient=ingredient)
    assert batch.lot == AWKWARD
    assert batch.supplier_id is None
    assert (batch.receipt_id, batch.source_line, batch.received_at, batch.best_before) == (
        receipt.id,
        7,
        received,
        date(2026, 12, 24),
    )
    assert (batch.quantity_received, batch.quantity_remaining, batch.quantity_reserved) == (
        Decimal("12.345"),
        Decimal("12.345"),
        Decimal("0"),
    )


def test_a_string_given_for_a_number_column_is_still_escaped():
    """The number formatter must not write a str raw: a tab in it would shift every later column."""
    ingredient = Ingredient.objects.create(sku="copy-sku-2", name="Copy")
    receipt = Receipt.objects.create(key="copy-2.csv", sha256="0" * 64, source="upload")
    row = [ingredient.id, "lot-1", None, str(receipt.id), "7", datetime(2026, 11, 23, tzinfo=UTC)]
    row += [date(2026, 12, 24), "1.5", Decimal("1.5"), 0, "active"]
    copy_rows(Batch, BATCH_FIELDS, [row])
    assert Batch.objects.get(lot="lot-1").quantity_received == Decimal("1.5")
    bad = list(row)
    bad[1], bad[4] = "lot-2", "7\tEVIL"
    with pytest.raises((DataError, ValueError)) as caught:  # COPY on PostgreSQL, bulk_create elsewhere
        copy_rows(Batch, BATCH_FIELDS, [bad])
    if connection.vendor == "postgresql":  # refused as one bad value, not read as two columns
        assert 'column source_line: "7\tEVIL"' in str(caught.value)
