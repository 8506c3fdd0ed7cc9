"""Expiry: promises that mutants of stock/services/expiry.py broke unnoticed (README, mutation testing)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from stock import selectors, services
from stock.models import Allocation, Batch, Movement, Reservation
from stock.services import Item
from supplychain.events.models import OutboxEvent
from tests.stock.factories import IngredientFactory, csv_opener, move_to_the_end_of_the_table
from tests.stock.races import while_the_other_waits

pytestmark = pytest.mark.django_db
D = Decimal


def day(offset: int):
    return timezone.localdate() + timedelta(days=offset)


def receive(key: str, text: str) -> None:
    services.ingest_receipt(key=key, open_stream=csv_opener(text), source="upload")


@pytest.fixture
def ham_and_egg():
    IngredientFactory(sku="ham")
    IngredientFactory(sku="egg")
    receive(
        "he.csv",
        "sku,quantity,best_before,lot\n"
        f"ham,5,{day(1)},HAM-OLD\nham,5,{day(30)},HAM-NEW\n"
        f"egg,5,{day(1)},EGG-OLD\negg,5,{day(30)},EGG-NEW\n",
    )


def statuses() -> dict[str, str]:
    return dict(Batch.objects.values_list("lot", "status"))


def test_expiry_limited_to_skus_expires_only_those_ingredients(ham_and_egg):
    assert services.expire_batches(today=day(2), skus=[]) == 0
    assert services.expire_batches(today=day(2), skus={"egg"}) == 1  # any collection of skus
    assert statuses() == {"HAM-OLD": "active", "HAM-NEW": "active", "EGG-OLD": "expired", "EGG-NEW": "active"}
    assert services.expire_batches(today=day(2), skus=["ham", "caviar"]) == 1
    assert statuses()["HAM-OLD"] == "expired"
    assert selectors.invariant_violations() == []


def test_expiry_with_nothing_due_locks_no_level(ham_and_egg, django_assert_num_queries):
    """Batches expired before and batches not due yet: one read, no transaction per ingredient, no level locked."""
    assert services.expire_batches(today=day(2)) == 2
    with django_assert_num_queries(1):
        assert services.expire_batches(today=day(2)) == 0


def test_expiry_moves_onto_batches_of_one_best_before_in_the_order_they_came():
    """Candidates expiring the same day are taken oldest batch first (by id), as a reservation takes them."""
    IngredientFactory(sku="ham")
    receive(
        "ham.csv",
        f"sku,quantity,best_before,lot\nham,4,{day(1)},EXPIRING\nham,3,{day(9)},FIRST\nham,3,{day(9)},SECOND\n",
    )
    first = Batch.objects.get(lot="FIRST")
    assert first.id < Batch.objects.get(lot="SECOND").id
    services.reserve_stock(transaction_id="r", items=[Item("ham", D(4))])
    move_to_the_end_of_the_table(first)

    services.expire_batches(today=day(2))

    moved = Allocation.objects.filter(open=True).order_by("id")
    assert [(a.batch.lot, a.quantity) for a in moved] == [("FIRST", D(3)), ("SECOND", D(1))]
    assert selectors.invariant_violations() == []


# The expired batch, its ledger row and its events (_expire_ingredient).


def test_an_expired_batch_leaves_stock_with_one_ledger_row_and_its_event(ham_and_egg):
    old = Batch.objects.get(lot="HAM-OLD")

    assert services.expire_batches(today=day(2), skus=["ham"]) == 1

    old.refresh_from_db()
    assert (old.status, old.quantity_remaining, old.quantity_reserved) == ("expired", D(0), D(0))
    assert Batch.objects.get(lot="HAM-NEW").quantity_remaining == D(5)
    assert list(
        Movement.objects.filter(kind="expire").values_list(
            "batch_id", "reservation_id", "on_hand_delta", "reserved_delta", "note"
        )
    ) == [(old.id, None, D(-5), D(0), f"best before {day(1)}")]
    (expired,) = OutboxEvent.objects.filter(type="stock.batch_expired")
    assert expired.key == f"batch-{old.id}"
    assert expired.payload == {
        "batch_id": old.id,
        "sku": "ham",
        "lot": "HAM-OLD",
        "best_before": day(1).isoformat(),
        "quantity": "5.000",
    }
    (changed,) = OutboxEvent.objects.filter(type="stock.level_changed", payload__sku="ham", payload__on_hand="5.000")
    assert changed.key == "ham"
    assert selectors.invariant_violations() == []


def test_an_allocation_short_by_less_than_one_puts_its_reservation_at_risk_and_a_whole_move_does_not():
    IngredientFactory(sku="ham")
    IngredientFactory(sku="egg")
    receive(
        "short.csv",
        "sku,quantity,best_before,lot\n"
        f"ham,1,{day(1)},HAM-OLD\nham,5,{day(30)},HAM-NEW\n"
        f"egg,3,{day(1)},EGG-OLD\negg,2.5,{day(30)},EGG-NEW\n",
    )
    services.reserve_stock(transaction_id="whole", items=[Item("ham", D(1))])
    services.reserve_stock(transaction_id="part", items=[Item("egg", D(3))])

    assert services.expire_batches(today=day(2)) == 2

    assert dict(Reservation.objects.values_list("transaction_id", "at_risk")) == {"whole": False, "part": True}
    (at_risk,) = OutboxEvent.objects.filter(type="stock.reservation_at_risk")
    assert at_risk.key == "part"
    egg_old = Batch.objects.get(lot="EGG-OLD")
    assert at_risk.payload == {
        "transaction_id": "part",
        "items": [{"sku": "egg", "batch_id": egg_old.id, "missing": "0.500"}],
    }
    assert selectors.invariant_violations() == []


def test_an_ingredients_batches_expire_first_expiring_first_then_in_the_order_they_came():
    """Ledger rows and events follow best-before, then arrival (id), whatever order PostgreSQL keeps the rows in."""
    IngredientFactory(sku="ham")
    receive(
        "order.csv",
        f"sku,quantity,best_before,lot\nham,1,{day(3)},LATER\nham,2,{day(1)},FIRST\nham,3,{day(1)},SECOND\n",
    )
    move_to_the_end_of_the_table(Batch.objects.get(lot="FIRST"))

    assert services.expire_batches(today=day(5)) == 3

    lots = dict(Batch.objects.values_list("id", "lot"))
    events = OutboxEvent.objects.filter(type="stock.batch_expired").order_by("id")
    assert [event.payload["lot"] for event in events] == ["FIRST", "SECOND", "LATER"]
    ledger = Movement.objects.filter(kind="expire").order_by("id")
    assert [lots[row.batch_id] for row in ledger] == ["FIRST", "SECOND", "LATER"]


def test_expiry_leaves_a_batch_already_out_of_stock_as_it_is():
    """A depleted batch past its best-before is not expired again beside the active one that is due."""
    IngredientFactory(sku="ham")
    receive("gone.csv", f"sku,quantity,best_before,lot\nham,2,{day(1)},GONE\nham,3,{day(1)},DUE\n")
    services.reserve_stock(transaction_id="picked", items=[Item("ham", D(2))])
    services.commit_reservation(transaction_id="picked")
    assert statuses() == {"GONE": "depleted", "DUE": "active"}

    assert services.expire_batches(today=day(2)) == 1

    assert statuses() == {"GONE": "depleted", "DUE": "expired"}
    assert [event.payload["lot"] for event in OutboxEvent.objects.filter(type="stock.batch_expired")] == ["DUE"]
    assert Movement.objects.filter(kind="expire").count() == 1
    assert selectors.invariant_violations() == []


def test_expiry_reads_no_event_keys_back_and_each_reservation_with_its_allocation(ham_and_egg):
    """No SELECT of the outbox rows' keys after the COPY, and no reservation read on its own: it comes joined to
    its allocation (one round trip saved for each)."""
    for transaction_id in ("r-1", "r-2"):
        services.reserve_stock(transaction_id=transaction_id, items=[Item("ham", D(1)), Item("egg", D(1))])
    with CaptureQueriesContext(connection) as captured:
        assert services.expire_batches(today=day(2)) == 2
    selects = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT")]
    assert [sql for sql in selects if OutboxEvent._meta.db_table in sql] == []
    assert [sql for sql in selects if f'FROM "{Reservation._meta.db_table}"' in sql] == []
    assert OutboxEvent.objects.filter(type="stock.batch_expired").count() == 2
    assert Allocation.objects.filter(open=True, batch__lot__endswith="-NEW").count() == 4


@pytest.mark.django_db(transaction=True)
def test_two_expiries_at_once_expire_a_batch_once():
    """The second expiry read the batch as due, then waited for the level lock the first held: once the first
    commits, it finds nothing left to expire and counts nothing."""
    IngredientFactory(sku="ham")
    receive("race.csv", f"sku,quantity,best_before,lot\nham,5,{day(1)},DUE\n")
    expired = while_the_other_waits(
        lambda: services.expire_batches(today=day(2)),
        lambda: services.expire_batches(today=day(2)),
        waiting="the second expiry",  # for the level lock: it has read the batch
    )
    assert expired == (1, 0)
    assert Movement.objects.filter(kind="expire").count() == 1
    assert OutboxEvent.objects.filter(type="stock.batch_expired").count() == 1
    assert selectors.invariant_violations() == []
