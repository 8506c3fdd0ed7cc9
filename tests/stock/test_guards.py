"""Guards for stock promises a deliberate break once passed unnoticed (README, Tests: the breaks table)."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from stock import selectors, services
from stock.models import Allocation, Batch, Movement, Reservation, StockLevel
from stock.services import Item
from tests.stock.factories import IngredientFactory, csv_opener

pytestmark = pytest.mark.django_db
D = Decimal


def day(offset: int):
    return timezone.localdate() + timedelta(days=offset)


def receive(key: str, text: str) -> services.ReceiptOutcome:
    return services.ingest_receipt(key=key, open_stream=csv_opener(text), source="upload")


@pytest.fixture
def ham():
    IngredientFactory(sku="ham")
    receive("ham.csv", f"sku,quantity,best_before,lot\nham,10,{day(3)},H1\nham,10,{day(30)},H2\n")


# Idempotency: every field of the request is part of what a repeat must match.


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"needed_by": day(1)}, {"needed_by": day(2)}),
        ({"needed_by": day(1)}, {}),
        ({"hold_seconds": 60}, {"hold_seconds": 120}),
        ({}, {"hold_seconds": 60}),
    ],
    ids=["needed_by-changed", "needed_by-dropped", "hold_seconds-changed", "hold_seconds-added"],
)
def test_same_transaction_id_with_other_needed_by_or_hold_is_refused(ham, first, second):
    services.reserve_stock(transaction_id="t-1", items=[Item("ham", D(2))], **first)
    with pytest.raises(services.TransactionIdReused) as refused:
        services.reserve_stock(transaction_id="t-1", items=[Item("ham", D(2))], **second)
    assert refused.value.errors == {"transaction_id": ["Already used with a different body."]}
    assert str(refused.value) == "Transaction t-1 was already used with a different request."
    assert Reservation.objects.count() == 1
    assert StockLevel.objects.get(ingredient__sku="ham").reserved == D(2)


def test_exact_repeat_with_needed_by_and_hold_replays(ham):
    first = services.reserve_stock(transaction_id="t-2", items=[Item("ham", D(2))], needed_by=day(1), hold_seconds=60)
    again = services.reserve_stock(transaction_id="t-2", items=[Item("ham", D(2))], needed_by=day(1), hold_seconds=60)
    assert (again.pk, again.response) == (first.pk, first.response)


# Expiry re-allocation: of several candidate batches, the first-expiring take the moved quantity.


def test_expiry_moves_an_allocation_to_the_first_expiring_candidates_in_order():
    IngredientFactory(sku="ham")
    receive(
        "ham.csv",
        "sku,quantity,best_before,lot\n"
        f"ham,8,{day(2)},EXPIRING\n"
        f"ham,10,{day(40)},LATEST\n"
        f"ham,5,{day(9)},FIRST\n"
        f"ham,10,{day(20)},SECOND\n"
        f"ham,10,{day(30)},THIRD\n",
    )
    services.reserve_stock(transaction_id="moved", items=[Item("ham", D(8))])
    assert list(Allocation.objects.values_list("batch__lot", flat=True)) == ["EXPIRING"]

    services.expire_batches(today=day(3))

    moved = Allocation.objects.filter(reservation__transaction_id="moved", open=True).order_by("batch__best_before")
    assert [(a.batch.lot, a.quantity) for a in moved] == [("FIRST", D(5)), ("SECOND", D(3))]
    assert {b.lot: b.quantity_reserved for b in Batch.objects.all()} == {
        "EXPIRING": D(0),
        "FIRST": D(5),
        "SECOND": D(3),
        "THIRD": D(0),
        "LATEST": D(0),
    }
    assert selectors.invariant_violations() == []


def test_expiry_skips_a_fully_reserved_candidate_and_records_each_move_in_the_ledger():
    IngredientFactory(sku="ham")
    IngredientFactory(sku="egg")
    receive(
        "two.csv",
        "sku,quantity,best_before,lot\n"
        f"ham,6,{day(2)},EXPIRING\n"
        f"ham,4,{day(5)},FULL\n"
        f"ham,10,{day(9)},NEXT\n"
        f"egg,3,{day(1)},EGG-OLD\n"
        f"egg,3,{day(8)},EGG-NEW\n",
    )
    services.reserve_stock(transaction_id="moved", items=[Item("ham", D(6))])  # all of EXPIRING
    services.reserve_stock(transaction_id="filler", items=[Item("ham", D(4))])  # then all of FULL
    assert Batch.objects.get(lot="FULL").quantity_available == 0

    assert services.expire_batches(today=day(3)) == 2  # EXPIRING and EGG-OLD

    moved = Allocation.objects.filter(reservation__transaction_id="moved", open=True)
    assert [(a.batch.lot, a.quantity) for a in moved] == [("NEXT", D(6))]  # FULL skipped, not a stop
    ledger = Movement.objects.filter(reservation__transaction_id="moved").exclude(note="")
    assert sorted((m.kind, m.batch.lot, m.reserved_delta, m.note) for m in ledger) == [
        ("release", "EXPIRING", D(-6), "batch expired"),
        ("reserve", "NEXT", D(6), "moved off an expiring batch"),
    ]
    assert Reservation.objects.get(transaction_id="moved").at_risk is False
    assert selectors.invariant_violations() == []


def test_expiry_honours_needed_by_when_choosing_the_next_batch():
    IngredientFactory(sku="ham")
    receive(
        "ham.csv",
        f"sku,quantity,best_before,lot\nham,4,{day(2)},EXPIRING\nham,10,{day(5)},TOO-SOON\nham,10,{day(12)},OK\n",
    )
    services.reserve_stock(transaction_id="late", items=[Item("ham", D(4))], needed_by=day(2))
    Reservation.objects.filter(transaction_id="late").update(needed_by=day(10))  # needed later than TOO-SOON lasts
    services.expire_batches(today=day(3))
    moved = Allocation.objects.filter(reservation__transaction_id="late", open=True)
    assert [(a.batch.lot, a.quantity) for a in moved] == [("OK", D(4))]


# The invariant checker: each kind of broken state it must report, written straight into the tables.


@pytest.fixture
def reserved_ham(ham):
    services.reserve_stock(transaction_id="r", items=[Item("ham", D(4))])
    assert selectors.invariant_violations() == []
    return StockLevel.objects.get(ingredient__sku="ham")


def _drop_constraint(table: str, name: str) -> None:
    """Inside the test's transaction (rolled back after it): lets a row break what the schema forbids."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no deferred checks pending, so ALTER TABLE may run
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')


def test_checker_reports_a_ledger_on_hand_that_differs_from_the_level(reserved_ham):
    Movement.objects.create(ingredient=reserved_ham.ingredient, kind="receipt", on_hand_delta=D(3), reserved_delta=0)
    assert selectors.invariant_violations() == ["ham: on hand 20.000 != ledger on hand 23.000"]


def test_checker_reports_active_batches_that_hold_other_than_on_hand(reserved_ham):
    Batch.objects.filter(lot="H2").update(quantity_remaining=D(7))
    assert selectors.invariant_violations() == ["ham: on hand 20.000 != remaining on active batches 17.000"]


def test_checker_counts_only_active_batches_as_on_hand(reserved_ham):
    Batch.objects.filter(lot="H2").update(status="expired")
    assert selectors.invariant_violations() == ["ham: on hand 20.000 != remaining on active batches 10.000"]


def test_checker_reports_a_ledger_reserved_that_differs_from_the_level(reserved_ham):
    Movement.objects.create(ingredient=reserved_ham.ingredient, kind="reserve", on_hand_delta=0, reserved_delta=D(1))
    assert selectors.invariant_violations() == ["ham: reserved 4.000 != ledger reserved 5.000"]


def test_checker_reports_open_allocations_that_differ_from_reserved(reserved_ham):
    Allocation.objects.update(open=False)
    assert selectors.invariant_violations() == ["ham: reserved 4.000 != open allocations 0"]


def test_checker_reports_batches_reserving_other_than_the_level(reserved_ham):
    Batch.objects.filter(lot="H2").update(quantity_reserved=D(2))
    assert selectors.invariant_violations() == ["ham: reserved 4.000 != reserved on batches 6.000"]


def test_checker_reports_a_level_reserving_more_than_on_hand(reserved_ham):
    _drop_constraint("stock_stocklevel", "level_reserved_within_on_hand")
    StockLevel.objects.filter(pk=reserved_ham.pk).update(reserved=D(25))
    problems = selectors.invariant_violations()
    assert "ham: reserved 25.000 exceeds on hand 20.000" in problems


def test_checker_reports_a_negative_batch(reserved_ham):
    _drop_constraint("stock_batch", "batch_remaining_not_negative")
    _drop_constraint("stock_batch", "batch_reserved_within_remaining")
    batch = Batch.objects.get(lot="H2")
    Batch.objects.filter(pk=batch.pk).update(quantity_remaining=D(-1))
    assert f"batch {batch.pk}: remaining -1.000, reserved 0.000, active" in selectors.invariant_violations()


def test_checker_reports_an_expired_batch_still_reserved(reserved_ham):
    batch = Batch.objects.get(lot="H1")
    Batch.objects.filter(pk=batch.pk).update(status="expired")
    assert f"batch {batch.pk}: remaining 10.000, reserved 4.000, expired" in selectors.invariant_violations()


def test_checker_reports_an_allocation_whose_batch_does_not_exist(reserved_ham):
    allocation = Allocation.objects.get()
    Allocation.objects.filter(pk=allocation.pk).update(batch_id=999_999)  # no foreign key refuses it (stock 0013)
    assert selectors.invariant_violations() == [f"allocation {allocation.pk}: batch 999999 does not exist"]


def test_checker_reports_a_ledger_row_whose_ingredient_does_not_exist(reserved_ham):
    row = Movement.objects.filter(kind="reserve").get()
    Movement.objects.filter(pk=row.pk).update(ingredient_id=999_999)
    problems = selectors.invariant_violations()
    assert f"ledger row {row.pk}: ingredient 999999 does not exist" in problems
    assert "ham: reserved 4.000 != ledger reserved 0" in problems  # and ham's ledger is short of it


def test_checker_reports_a_ledger_row_whose_batch_does_not_exist(reserved_ham):
    row = Movement.objects.filter(kind="reserve").get()
    Movement.objects.filter(pk=row.pk).update(batch_id=999_999)
    assert selectors.invariant_violations() == [f"ledger row {row.pk}: batch 999999 does not exist"]


def test_checker_reports_an_allocation_of_another_ingredients_batch(reserved_ham):
    other = IngredientFactory(sku="cheese")
    allocation = Allocation.objects.get()
    Allocation.objects.filter(pk=allocation.pk).update(ingredient=other)
    problems = selectors.invariant_violations()
    assert f"allocation {allocation.pk}: batch {allocation.batch_id} is not ingredient {other.pk}'s" in problems


def test_checker_is_quiet_on_ledger_rows_without_a_batch(reserved_ham):
    Movement.objects.create(ingredient=reserved_ham.ingredient, kind="adjust", on_hand_delta=0, reserved_delta=0)
    assert selectors.invariant_violations() == []


def test_checker_is_quiet_on_a_consistent_book_with_every_kind_of_movement(ham):
    services.reserve_stock(transaction_id="a", items=[Item("ham", D(3))])
    services.reserve_stock(transaction_id="b", items=[Item("ham", D(2))])
    services.commit_reservation(transaction_id="a")
    services.release_reservation(transaction_id="b")
    services.expire_batches(today=day(4))
    assert selectors.invariant_violations() == []


def test_a_lot_received_in_an_earlier_file_is_refused_on_its_row(ham):
    outcome = receive(
        "later.csv", f"sku,quantity,best_before,lot\nham,5,{day(9)},H2\nham,6,{day(9)},H3\n"
    )  # H2 came in ham.csv
    assert outcome.outcome == "processed"
    assert outcome.receipt.errors == [{"line": 2, "column": "lot", "reason": "lot 'H2' of ham was already received"}]
    assert outcome.receipt.rows_ingested == 1
    assert Batch.objects.get(lot="H2").quantity_received == D(10)
    assert StockLevel.objects.get(ingredient__sku="ham").on_hand == D(26)
    assert selectors.invariant_violations() == []


# The admin: what a person sees, not only that a page answers.


@pytest.fixture
def staff():
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-for-tests-only"))
    return client


LOW_MARK = 'title="below the low-stock threshold">'


def test_admin_marks_low_stock_on_the_low_ingredient_only(staff):
    IngredientFactory(sku="ham", low_stock_threshold=D(5))
    IngredientFactory(sku="mushroom", low_stock_threshold=D(5))
    receive("k.csv", f"sku,quantity,best_before\nham,4,{day(9)}\nmushroom,50,{day(9)}\n")
    html = staff.get("/admin/stock/ingredient/").content.decode()
    assert html.count(LOW_MARK) == 1
    assert f"{LOW_MARK}4.000 low</strong>" in html
    services.reserve_stock(transaction_id="big", items=[Item("mushroom", D(46))])  # 4 left: low too
    assert staff.get("/admin/stock/ingredient/").content.decode().count(LOW_MARK) == 2


@pytest.mark.parametrize(
    ("model", "shown"),
    [
        ("ingredient", "ham"),
        ("batch", "LOT-7"),
        ("receipt", "admin-k.csv"),
        ("reservation", "t-admin"),
        ("movement", "t-admin"),
    ],
)
def test_stock_admin_changelists_list_the_rows(staff, model, shown):
    IngredientFactory(sku="ham")
    receive("admin-k.csv", f"sku,quantity,best_before,lot\nham,2,{day(2)},LOT-7\n")
    services.reserve_stock(transaction_id="t-admin", items=[Item("ham", 1)])
    page = staff.get(f"/admin/stock/{model}/", {"q": shown}).content.decode()
    assert shown in page
    assert result_rows(page) == 1
    assert result_rows(staff.get(f"/admin/stock/{model}/", {"q": "nothing-matches-this"}).content.decode()) == 0


def result_rows(html: str) -> int:
    """Rows of an admin changelist's result table (none when nothing matched)."""
    table = re.search(r'<table id="result_list">(.*?)</table>', html, re.S)
    return table.group(1).count("<tr") - 1 if table else 0


def test_expired_holds_release_only_open_reservations_and_say_why(ham):
    services.reserve_stock(transaction_id="kept", items=[Item("ham", D(1))], hold_seconds=10)
    services.reserve_stock(transaction_id="lapsed", items=[Item("ham", D(2))], hold_seconds=10)
    services.commit_reservation(transaction_id="kept")
    assert services.release_expired_holds(now=timezone.now() + timedelta(seconds=11)) == 1
    assert dict(Reservation.objects.values_list("transaction_id", "status")) == {
        "kept": "committed",
        "lapsed": "released",
    }
    release = Movement.objects.get(kind="release", reservation__transaction_id="lapsed")
    assert release.note == "hold time passed"
    assert selectors.invariant_violations() == []
