"""On PostgreSQL: races the stock promises must survive, provoked deterministically rather than hoped for.

Each race holds one side's transaction open (or a third connection's row lock) until the other side is
seen waiting on a lock in ``pg_stat_activity``, then lets go: the interleaving that breaks a wrong
implementation happens on every run, not once in a thousand.
"""

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from stock import selectors, services
from stock.models import Batch, Receipt, Reservation, StockLevel
from stock.services import Item
from tests.stock.factories import IngredientFactory, csv_opener

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
D = Decimal
SKUS = ("apple", "bread", "cider")  # ascending ingredient ids in this order


def best_before(days: int = 30) -> str:
    return (timezone.localdate() + timedelta(days=days)).isoformat()


def waiting_on_locks() -> int:
    """How many other backends of this database wait for a lock right now."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def wait_for_lock_waiters(count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while waiting_on_locks() < count:
        assert time.monotonic() < deadline, f"expected {count} backends waiting on a lock"
        time.sleep(0.02)


class Runner:
    """Threads on their own connections; each result or exception kept by name."""

    def __init__(self):
        self.results, self.errors, self.threads = {}, {}, []

    def start(self, name, target):
        def run():
            try:
                self.results[name] = target()
            except Exception as exc:
                self.errors[name] = repr(exc)
            finally:
                connection.close()

        thread = threading.Thread(target=run, name=name)
        thread.start()
        self.threads.append(thread)

    def join(self, timeout: float = 60):
        for thread in self.threads:
            thread.join(timeout)
            assert not thread.is_alive(), f"{thread.name} hung"


@pytest.fixture
def stocked(real_services):
    lines = ["sku,quantity,best_before,lot"]
    for sku in SKUS:
        IngredientFactory(sku=sku)
        lines.append(f"{sku},1000,{best_before()},{sku}-0")
    services.ingest_receipt(key="start.csv", open_stream=csv_opener("\n".join(lines)), source="upload")


def test_second_request_with_the_same_transaction_id_replays_the_first_while_it_commits(stocked):
    """The second request starts before the first commits: its INSERT hits the unique key and it replays."""
    inside, done = threading.Event(), threading.Event()
    runner = Runner()

    def first():
        with transaction.atomic():
            reservation = services.reserve_stock(transaction_id="same", items=[Item("apple", D(3))])
            inside.set()
            done.wait(20)
        return reservation

    runner.start("first", first)
    assert inside.wait(20)
    runner.start("second", lambda: services.reserve_stock(transaction_id="same", items=[Item("apple", D(3))]))
    runner.start("other-body", lambda: services.reserve_stock(transaction_id="same", items=[Item("apple", D(4))]))
    wait_for_lock_waiters(2)  # both wait for the first's locks: neither can see its reservation yet
    done.set()
    runner.join()

    assert "second" not in runner.errors, runner.errors
    first_reservation, second = runner.results["first"], runner.results["second"]
    assert (second.pk, second.response_status, second.response) == (
        first_reservation.pk,
        201,
        first_reservation.response,
    )
    assert "TransactionIdReused" in runner.errors["other-body"]
    assert Reservation.objects.count() == 1
    assert StockLevel.objects.get(ingredient__sku="apple").reserved == D(3)
    assert selectors.invariant_violations() == []


def _receipt(key: str, skus, lot: str):
    text = "\n".join(["sku,quantity,best_before,lot"] + [f"{sku},5,{best_before()},{lot}-{sku}" for sku in skus])
    return lambda: services.ingest_receipt(key=key, open_stream=csv_opener(text), source="upload")


def _reserve(transaction_id: str, skus):
    return lambda: services.reserve_stock(transaction_id=transaction_id, items=[Item(sku, D(1)) for sku in skus])


def _release(transaction_id: str):
    return lambda: services.release_reservation(transaction_id=transaction_id)


def _race_behind_a_held_middle_row(first, second) -> Runner:
    """Hold the middle level row's lock; start ``first`` then ``second`` (each waits for it); let go.

    A client locking in ascending order holds ``apple`` and waits for ``bread``; one locking in descending
    order would hold ``cider`` and wait for ``bread``: whichever gets ``bread`` then waits for the other,
    a deadlock on every run. In one order they simply queue.
    """
    held, release = threading.Event(), threading.Event()
    runner = Runner()

    def hold():
        with transaction.atomic():
            StockLevel.objects.select_for_update().get(ingredient__sku="bread")
            held.set()
            release.wait(30)

    runner.start("holder", hold)
    assert held.wait(20)
    runner.start("first", first)
    wait_for_lock_waiters(1)
    runner.start("second", second)
    wait_for_lock_waiters(2)
    time.sleep(0.2)  # let each take what it can before waiting
    release.set()
    runner.join()
    return runner


@pytest.mark.parametrize("round_", range(3))
def test_reservations_receipts_and_releases_in_opposite_item_orders_never_deadlock(stocked, round_):
    """Every writer of levels (the database function and the Python path) locks in one order."""
    forward, backward = SKUS, tuple(reversed(SKUS))
    services.reserve_stock(transaction_id=f"held-{round_}", items=[Item(sku, D(2)) for sku in backward])
    pairs = {
        "reserve/receipt": (_reserve(f"a-{round_}", forward), _receipt(f"r1-{round_}.csv", backward, f"x{round_}")),
        "receipt/reserve": (_receipt(f"r2-{round_}.csv", forward, f"y{round_}"), _reserve(f"b-{round_}", backward)),
        "reserve/reserve": (_reserve(f"c-{round_}", backward), _reserve(f"d-{round_}", forward)),
        "release/receipt": (_release(f"held-{round_}"), _receipt(f"r3-{round_}.csv", backward, f"z{round_}")),
    }
    for name, (first, second) in pairs.items():
        runner = _race_behind_a_held_middle_row(first, second)
        assert runner.errors == {}, f"{name}: {runner.errors}"
    assert Receipt.objects.count() == 4
    assert Reservation.objects.filter(status="reserved").count() == 4
    assert selectors.invariant_violations() == []


def test_a_receipt_taken_by_two_workers_at_once_is_ingested_once(stocked):
    """The second worker starts while the first holds the file's key uncommitted: it answers duplicate."""
    text = f"sku,quantity,best_before,lot\napple,7,{best_before()},TWICE\n"
    inside, go = threading.Event(), threading.Event()

    def slow_opener():
        import io
        from contextlib import contextmanager

        @contextmanager
        def opener():
            if not inside.is_set():  # the first worker, inside its transaction with the key row written
                inside.set()
                go.wait(20)
            yield io.BytesIO(text.encode())

        return opener

    opener = slow_opener()
    runner = Runner()
    runner.start("first", lambda: services.ingest_receipt(key="twice.csv", open_stream=opener, source="s3"))
    assert inside.wait(20)
    runner.start("second", lambda: services.ingest_receipt(key="twice.csv", open_stream=opener, source="s3"))
    wait_for_lock_waiters(1)
    go.set()
    runner.join()

    assert runner.errors == {}
    assert sorted(r.outcome for r in runner.results.values()) == ["duplicate", "processed"]
    assert Batch.objects.filter(lot="TWICE").count() == 1
    assert StockLevel.objects.get(ingredient__sku="apple").on_hand == D(1007)
    assert selectors.invariant_violations() == []
