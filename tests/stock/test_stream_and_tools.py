"""The live level stream (SSE), stockwatch's terminal plot and the simulation."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from rest_framework.test import APIClient

from stock import selectors, services
from stock.models import Receipt
from supplychain.core.bootstrap import bootstrap
from tests.stock.factories import IngredientFactory, csv_opener

pytestmark = pytest.mark.django_db


@pytest.fixture
def ham():
    IngredientFactory(sku="ham")
    IngredientFactory(sku="cheese")
    best_before = (timezone.localdate() + timedelta(days=4)).isoformat()
    services.ingest_receipt(
        key="s.csv", open_stream=csv_opener(f"sku,quantity,best_before\nham,9,{best_before}\n"), source="upload"
    )
    services.reserve_stock(transaction_id="t", items=[services.Item("ham", 2)])


def read_events(response) -> list[tuple[str, dict, str | None]]:
    events = []
    for block in b"".join(response.streaming_content).decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"]), fields.get("id")))
    return events


def test_stream_sends_current_levels_then_replays_changes_after_last_event_id(ham):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {bootstrap(demo=False).api_token}")
    fresh = client.get("/api/v1/stock/levels/stream", {"sku": "ham", "max_seconds": 1})
    assert fresh["Content-Type"] == "text/event-stream"
    assert read_events(fresh) == [
        ("level", {"sku": "ham", "on_hand": "9.000", "reserved": "2.000", "available": "7.000"}, None)
    ]
    resumed = client.get("/api/v1/stock/levels/stream", {"sku": "ham", "max_seconds": 1}, HTTP_LAST_EVENT_ID="0")
    changes = [(event, data["on_hand"], data["reserved"]) for event, data, _ in read_events(resumed)]
    assert changes == [("level_changed", "9.000", "0.000"), ("level_changed", "9.000", "2.000")]
    assert APIClient().get("/api/v1/stock/levels/stream").status_code == 401


def test_stockwatch_plots_levels(ham):
    out = StringIO()
    call_command("stockwatch", "ham", "--frames", "2", "--interval", "0", stdout=out)
    text = out.getvalue()
    assert text.count("stock levels at") == 2
    assert "ham" in text
    assert "▓" in text and "█" in text
    with pytest.raises(CommandError, match="Unknown sku"):
        call_command("stockwatch", "caviar", "--frames", "1")


def test_simulation_receives_reserves_and_expires_keeping_the_invariants(settings, tmp_path):
    settings.OBJECT_STORAGE = {**settings.OBJECT_STORAGE, "BUCKET": "", "LOCAL_DIR": tmp_path}
    for sku in ("ham", "cheese", "onion"):
        IngredientFactory(sku=sku)
    out = StringIO()
    call_command("simulate", "--speed", "2000", "--duration", "3", "--day-length", "1200", "--seed", "7", stdout=out)
    text = out.getvalue()
    assert "receipt receipts/simulated-" in text
    assert "order sim-" in text
    assert "batch(es) expired" in text
    assert Receipt.objects.count() >= 2
    assert selectors.invariant_violations() == []
