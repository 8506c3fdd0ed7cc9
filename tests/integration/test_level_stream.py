"""The live level stream served as in production (gunicorn gthread) on PostgreSQL.

A stream holds a server thread, so a process serves at most ``STOCK_STREAMS_PER_PROCESS``; the API keeps
its threads; a client that goes away gives its slot back; a client that comes back with
``Last-Event-ID`` gets every change it missed.
"""

import sys
import threading
import time
from datetime import timedelta

import pytest
import requests
from django.db import connection, transaction
from django.utils import timezone

from stock import services
from stock.stream import LevelStreamView
from supplychain.core.bootstrap import bootstrap
from tests.processes import free_port, running, wait_for
from tests.stock.factories import IngredientFactory, csv_opener

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def read_until_event(lines, event: str) -> dict[str, str]:
    """The fields of the next SSE event named ``event`` from a streaming response's lines."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            if fields.get("event") == event:
                return fields
            fields = {}
        elif not line.startswith(":") and ": " in line:
            name, value = line.split(": ", 1)
            fields[name] = value
    raise AssertionError(f"the stream ended before a {event!r} event")


def test_streams_take_limited_threads_free_their_slot_on_disconnect_and_resume(real_services, process_env, log_dir):
    IngredientFactory(sku="ham")
    best_before = (timezone.localdate() + timedelta(days=5)).isoformat()
    services.ingest_receipt(
        key="stream.csv", open_stream=csv_opener(f"sku,quantity,best_before\nham,100,{best_before}\n"), source="upload"
    )
    token = {"Authorization": f"Token {bootstrap(demo=False).api_token}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1/stock"
    argv = [sys.executable, "-m", "gunicorn", "supplychain.wsgi:application", "-b", f"127.0.0.1:{port}"]
    argv += ["-w", "1", "--worker-class", "gthread", "--threads", "3"]
    env = {**process_env, "ALLOWED_HOSTS": "127.0.0.1", "STOCK_STREAMS_PER_PROCESS": "1"}

    def answers() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    with running("stream-web", argv, env, log_dir) as web:
        web.wait_until(answers, 60, "gunicorn to answer")
        first = requests.get(f"{base}/levels/stream", params={"sku": "ham"}, headers=token, stream=True, timeout=10)
        assert first.status_code == 200
        # Hold on to the lines: an iterator dropped half-way closes the connection (the server would see it go).
        lines = first.iter_lines(decode_unicode=True)
        snapshot = read_until_event(lines, "level")
        assert '"available":"100.000"' in snapshot["data"]

        busy = requests.get(f"{base}/levels/stream", headers=token, timeout=10)
        assert busy.status_code == 503, busy.text
        assert busy.json()["type"] == "streams_busy" and busy.headers["Retry-After"]
        assert requests.get(f"{base}/levels/", headers=token, timeout=10).status_code == 200  # the API has threads

        first.close()  # the client goes away; the server sees it within half a second
        reserved = 0

        def slot_back() -> bool:
            nonlocal reserved
            reserved += 1
            services.reserve_stock(transaction_id=f"missed-{reserved}", items=[services.Item("ham", 1)])
            probe = requests.get(f"{base}/levels/stream", params={"max_seconds": 1}, headers=token, timeout=10)
            probe.close()
            return probe.status_code == 200

        wait_for(slot_back, timeout=30, what="the closed stream's slot to come back", interval=0.5)

        resumed = requests.get(
            f"{base}/levels/stream",
            params={"sku": "ham", "max_seconds": 2},
            headers={**token, "Last-Event-ID": snapshot["id"]},
            timeout=10,
        )
        assert resumed.status_code == 200
        changes = [line for line in resumed.text.splitlines() if line == "event: level_changed"]
        assert "event: level\n" not in resumed.text  # no snapshot again: it resumes after the given id
        assert len(changes) == reserved  # every change made while it was away, each once
        assert f'"available":"{100 - reserved}.000"' in resumed.text


def ham_and_cheese_in_stock() -> None:
    best_before = (timezone.localdate() + timedelta(days=5)).isoformat()
    for sku in ("ham", "cheese"):
        IngredientFactory(sku=sku)
    services.ingest_receipt(
        key="ham-and-cheese.csv",
        open_stream=csv_opener(f"sku,quantity,best_before\nham,10,{best_before}\ncheese,10,{best_before}\n"),
        source="upload",
    )


def test_an_event_committed_after_one_with_a_higher_id_still_reaches_the_stream(real_services):
    """A reservation holds its outbox id while a later one commits first: the stream sends both, each once."""
    ham_and_cheese_in_stock()
    received: list[str] = []
    snapshot_sent, written, release = threading.Event(), threading.Event(), threading.Event()

    def watch() -> None:
        try:
            for block in LevelStreamView()._changes([], None, max_seconds=8):
                received.append(block)
                if block.startswith("id:") and "event: level\n" in block:
                    snapshot_sent.set()
        finally:
            connection.close()

    def slow_reservation() -> None:
        try:
            with transaction.atomic():
                services.reserve_stock(transaction_id="slow-ham", items=[services.Item("ham", 2)])
                written.set()  # its outbox rows have their ids; the commit waits
                release.wait(timeout=30)
        finally:
            connection.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    slow = threading.Thread(target=slow_reservation)
    try:
        assert snapshot_sent.wait(timeout=30)
        slow.start()
        assert written.wait(timeout=30)
        services.reserve_stock(transaction_id="quick-cheese", items=[services.Item("cheese", 3)])  # a higher id
        time.sleep(2)  # the stream has sent cheese's change by now, ham's is not committed yet
        changes_before = [b for b in received if "event: level_changed" in b]
    finally:
        release.set()
        if slow.is_alive():
            slow.join()
        watcher.join()

    changes = [b for b in received if "event: level_changed" in b]
    assert len(changes_before) == 1 and '"sku":"cheese"' in changes_before[0]
    assert len(changes) == 2, changes  # ham's change, committed later with a lower id, is not skipped
    assert '"sku":"ham"' in changes[1] and '"available":"8.000"' in changes[1]


def test_a_later_transaction_with_a_lower_outbox_id_is_not_skipped_on_a_quiet_database(real_services):
    """The older transaction (lower xid) writes the higher outbox id and commits first; nothing else runs."""
    ham_and_cheese_in_stock()
    received: list[str] = []
    snapshot_sent = threading.Event()
    a_has_xid, b_written, a_go, b_go = (threading.Event() for _ in range(4))

    def watch() -> None:
        try:
            for block in LevelStreamView()._changes([], None, max_seconds=9):
                received.append(block)
                snapshot_sent.set()
        finally:
            connection.close()

    def older() -> None:  # takes its transaction id first, writes cheese later
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT pg_current_xact_id()")
                a_has_xid.set()
                a_go.wait(timeout=30)
                services.reserve_stock(transaction_id="older-cheese", items=[services.Item("cheese", 1)])
        finally:
            connection.close()

    def younger() -> None:  # a higher transaction id, a lower outbox id, committed last
        try:
            with transaction.atomic():
                services.reserve_stock(transaction_id="younger-ham", items=[services.Item("ham", 4)])
                b_written.set()
                b_go.wait(timeout=30)
        finally:
            connection.close()

    threads = [threading.Thread(target=f) for f in (watch, older, younger)]
    threads[0].start()
    try:
        assert snapshot_sent.wait(timeout=30)
        threads[1].start()
        assert a_has_xid.wait(timeout=30)
        threads[2].start()
        assert b_written.wait(timeout=30)
        a_go.set()
        threads[1].join()  # cheese committed: a higher outbox id than ham's, which is still open
        time.sleep(3)  # a quiet database: no other transaction ends meanwhile
    finally:
        a_go.set()
        b_go.set()
        for thread in threads:
            if thread.is_alive() or thread.ident:
                thread.join()
    changes = [b for b in received if "event: level_changed" in b]
    assert len(changes) == 2, changes
    assert '"sku":"cheese"' in changes[0] and '"sku":"ham"' in changes[1]
    assert '"available":"6.000"' in changes[1]


def test_a_client_that_disconnects_and_reconnects_at_once_gets_its_stream(real_services, process_env, log_dir):
    """One slot per process: the slot of a client that went away is free for its immediate reconnect (no 503)."""
    IngredientFactory(sku="ham")
    token = {"Authorization": f"Token {bootstrap(demo=False).api_token}"}
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/v1/stock/levels/stream"
    argv = [sys.executable, "-m", "gunicorn", "supplychain.wsgi:application", "-b", f"127.0.0.1:{port}"]
    argv += ["-w", "1", "--worker-class", "gthread", "--threads", "3"]
    env = {**process_env, "ALLOWED_HOSTS": "127.0.0.1", "STOCK_STREAMS_PER_PROCESS": "1"}

    def answers() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    with running("reconnect-web", argv, env, log_dir) as web:
        web.wait_until(answers, 60, "gunicorn to answer")
        for attempt in range(3):
            stream = requests.get(url, params={"sku": "ham"}, headers=token, stream=True, timeout=10)
            assert stream.status_code == 200, (attempt, stream.text)
            read_until_event(stream.iter_lines(decode_unicode=True), "level")
            stream.close()  # the client goes away and comes straight back
        started = time.monotonic()
        again = requests.get(url, params={"sku": "ham", "max_seconds": 1}, headers=token, timeout=10)
        assert again.status_code == 200, again.text
        assert time.monotonic() - started < 5
