"""The live level stream (SSE), stockwatch's terminal plot and the simulation."""

import json
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.core.signals import request_finished
from django.db import close_old_connections
from django.utils import timezone
from rest_framework.test import APIClient

from stock import selectors, services, stream
from stock.models import Batch, Movement, Receipt, Reservation
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
    return parse_events(b"".join(response.streaming_content).decode())


def close_unread(response) -> None:
    """Close a response as the server does when a client goes away, keeping the test's connection open.

    ``request_finished`` would close the database connection of a test running in a transaction; the test
    client disconnects that handler the same way around the responses it closes itself.
    """
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


def parse_events(text: str) -> list[tuple[str, dict, str | None]]:
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"]), fields.get("id")))
    return events


@pytest.mark.django_db(transaction=True)  # the stream reads what has committed, as in production
def test_stream_sends_current_levels_then_what_committed_after_their_position(ham):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {bootstrap(demo=False).api_token}")
    fresh = client.get("/api/v1/stock/levels/stream", {"sku": "ham", "max_seconds": 1})
    assert fresh["Content-Type"] == "text/event-stream"
    content = b"".join(fresh.streaming_content).decode()
    assert content.startswith("retry: ")  # an EventSource reconnects by itself when the stream ends
    [(event, data, position)] = parse_events(content)
    assert (event, data) == ("level", {"sku": "ham", "on_hand": "9.000", "reserved": "2.000", "available": "7.000"})
    assert selectors.valid_stream_token(position)

    services.reserve_stock(transaction_id="later", items=[services.Item("ham", 3)])
    services.release_reservation(transaction_id="t")
    resumed = client.get("/api/v1/stock/levels/stream", {"sku": "ham", "max_seconds": 1}, HTTP_LAST_EVENT_ID=position)
    changes = [(event, data["reserved"]) for event, data, _ in read_events(resumed)]
    assert changes == [("level_changed", "5.000"), ("level_changed", "3.000")]  # no levels again, nothing twice
    unknown = client.get("/api/v1/stock/levels/stream", {"sku": "ham", "max_seconds": 1}, HTTP_LAST_EVENT_ID="x:y")
    assert [(event, data["reserved"]) for event, data, _ in read_events(unknown)] == [("level", "3.000")]

    assert APIClient().get("/api/v1/stock/levels/stream").status_code == 401
    # What a browser's EventSource sends is accepted (an unauthenticated one still gets its 401).
    browser = client.get("/api/v1/stock/levels/stream", {"max_seconds": 1}, HTTP_ACCEPT="text/event-stream")
    assert (browser.status_code, browser["Content-Type"]) == (200, "text/event-stream")
    assert [event for event, _, _ in read_events(browser)] == ["level", "level"]
    anonymous = APIClient().get("/api/v1/stock/levels/stream", HTTP_ACCEPT="text/event-stream")
    assert anonymous.status_code == 401


@pytest.mark.django_db(transaction=True)
def test_an_unknown_sku_on_the_stream_is_a_404_naming_it_before_any_stream_starts(ham):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {bootstrap(demo=False).api_token}")
    for accept in ("application/json", "text/event-stream"):
        response = client.get("/api/v1/stock/levels/stream", {"sku": "ham,unicorn"}, HTTP_ACCEPT=accept)
        assert response.status_code == 404
        body = json.loads(response.content)
        assert body["type"] == "ingredient_not_found" and body["status"] == 404
        assert "unicorn" in body["detail"] and "ham" not in body["detail"]
    assert stream.slots.open == 0  # no slot was taken for it


@pytest.mark.django_db(transaction=True)
def test_a_position_with_more_changes_waiting_than_a_replay_should_carry_is_refused(ham):
    position, _ = selectors.level_stream_start(["ham"])
    for n in range(3):
        services.reserve_stock(transaction_id=f"many-{n}", items=[services.Item("ham", 1)])
    with pytest.raises(selectors.StreamBehind):
        selectors.level_changes_since(position, ["ham"], most=2)
    changes, after = selectors.level_changes_since(position, ["ham"], most=3)
    assert [change["payload"]["reserved"] for change in changes] == ["3.000", "4.000", "5.000"]
    assert selectors.level_changes_since(after, ["ham"])[0] == []  # nothing twice


@pytest.mark.django_db(transaction=True)
def test_streams_per_process_are_limited_and_each_slot_comes_back_when_its_response_closes(ham, settings):
    settings.STOCK_STREAMS_PER_PROCESS = 2
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {bootstrap(demo=False).api_token}")
    first = client.get("/api/v1/stock/levels/stream", {"max_seconds": 1})
    second = client.get("/api/v1/stock/levels/stream", {"max_seconds": 1})
    assert (first.status_code, second.status_code) == (200, 200)

    busy = client.get("/api/v1/stock/levels/stream")
    assert busy.status_code == 503
    assert busy["Retry-After"] == str(stream.BUSY_RETRY_SECONDS)
    assert busy.json()["type"] == "streams_busy"
    assert "serves 2 streams" in busy.json()["detail"]

    # A browser's EventSource gives up on a 503: it gets an empty stream that tells it when to come back.
    browser_busy = client.get("/api/v1/stock/levels/stream", HTTP_ACCEPT="text/event-stream")
    assert (browser_busy.status_code, browser_busy["Content-Type"]) == (200, "text/event-stream")
    assert browser_busy.content.decode().startswith(f"retry: {stream.BUSY_RETRY_SECONDS * 1000}\n\nevent: busy\n")

    close_unread(first)  # never read: closing the response gives its slot back all the same
    third = client.get("/api/v1/stock/levels/stream", {"max_seconds": 1})
    assert third.status_code == 200
    assert [event for event, _, _ in read_events(third)] == ["level", "level"]  # read to the end: closed
    close_unread(second)
    assert stream.slots.open == 0


@pytest.mark.django_db(transaction=True)
def test_a_stream_ends_after_stock_stream_seconds_whatever_the_client_asks(ham, settings):
    settings.STOCK_STREAM_SECONDS = 1
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {bootstrap(demo=False).api_token}")
    started = time.monotonic()
    response = client.get("/api/v1/stock/levels/stream", {"sku": "ham", "max_seconds": 3600})
    assert [event for event, _, _ in read_events(response)] == ["level"]
    assert 0.9 <= time.monotonic() - started < 3  # the 1 s limit, one poll late at most, not the hour asked


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


def test_simulation_touches_only_its_own_ingredients_and_never_expires_real_batches(settings, tmp_path):
    settings.OBJECT_STORAGE = {**settings.OBJECT_STORAGE, "BUCKET": "", "LOCAL_DIR": tmp_path}
    IngredientFactory(sku="ham")
    services.ingest_receipt(
        key="real.csv",
        open_stream=csv_opener(
            f"sku,quantity,best_before,lot\nham,50,{timezone.localdate() + timedelta(days=1)},REAL-1\n"
        ),
        source="upload",
    )
    services.reserve_stock(transaction_id="real-order", items=[services.Item("ham", 5)])
    out = StringIO()
    # Days of 0.6 s: the simulated date runs several days past the real batch's best-before.
    call_command("simulate", "--speed", "2000", "--duration", "3", "--day-length", "1200", "--seed", "7", stdout=out)
    assert "batch(es) expired" in out.getvalue()

    real = Batch.objects.get(lot="REAL-1")
    assert (real.status, real.quantity_remaining, real.quantity_reserved) == ("active", 50, 5)
    assert Reservation.objects.get(transaction_id="real-order").allocations.get().batch == real
    assert (
        not Movement.objects.filter(ingredient__sku="ham")
        .exclude(reservation__transaction_id="real-order")
        .exclude(kind="receipt")
        .exists()
    )
    assert not Reservation.objects.filter(allocations__ingredient__sku="ham").exclude(transaction_id="real-order")
    simulated = Batch.objects.filter(ingredient__sku="sim-ham")
    assert simulated.filter(status="expired").exists()  # its own batches did expire
    assert selectors.invariant_violations() == []
