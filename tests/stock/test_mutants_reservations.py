"""Reservations (stock/services/reservations.py): promises its surviving mutants showed untested (README, mutation).

The Python path (what SQLite runs) is driven here in-process on PostgreSQL through the public functions, by
giving the module a view of the connection that names another vendor, so mutation testing traces it.
"""

import functools
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from stock import selectors, services
from stock.models import Allocation, Batch, Movement, Reservation, StockLevel
from stock.services import Item, reservations
from supplychain.events import metrics
from supplychain.events.models import OutboxEvent
from tests.stock.factories import IngredientFactory, csv_opener, move_to_the_end_of_the_table
from tests.stock.races import while_the_other_waits
from tests.stock.test_reserve_paths import Rollback, scenario, snapshot

pytestmark = pytest.mark.django_db
D = Decimal


def day(offset: int):
    return timezone.localdate() + timedelta(days=offset)


def receive(key: str, text: str) -> None:
    services.ingest_receipt(key=key, open_stream=csv_opener(text), source="upload")


class OtherVendor:
    """The default connection as the reservation module sees it, named ``vendor``; all else is the real one."""

    def __init__(self, vendor: str) -> None:
        self.vendor = vendor

    def __getattr__(self, name):
        return getattr(connection, name)


@pytest.fixture(params=["database", "python"])
def path(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(reservations, "connection", OtherVendor("sqlite"))
    return request.param


def test_the_python_path_through_the_public_functions_writes_what_the_database_function_writes(monkeypatch):
    def run() -> dict:
        try:
            with transaction.atomic():
                found = snapshot(scenario())
                raise Rollback
        except Rollback:
            return found

    in_database = run()
    with monkeypatch.context() as patch:
        patch.setattr(reservations, "connection", OtherVendor("sqlite"))
        in_python = run()
    assert in_database["violations"] == []
    for part in in_database:
        assert in_python[part] == in_database[part], part


def test_an_unknown_sku_is_refused_with_its_message_on_both_paths(path):
    IngredientFactory(sku="ham")
    with pytest.raises(services.UnknownSku) as refused:
        services.reserve_stock(transaction_id="u", items=[Item("caviar", 1), Item("ham", 1)])
    assert str(refused.value) == "Unknown sku in the request."
    assert refused.value.errors == {"items.0.sku": ["Unknown sku."]}


def test_a_hold_lasts_hold_seconds_from_now_and_the_document_shows_it(path):
    IngredientFactory(sku="ham")
    receive("ham.csv", f"sku,quantity,best_before,lot\nham,5,{day(3)},H1\n")
    before = timezone.now()
    reservation = services.reserve_stock(transaction_id="held", items=[Item("ham", 1)], hold_seconds=90)
    stored = Reservation.objects.get(transaction_id="held")
    assert before + timedelta(seconds=90) <= stored.hold_until <= timezone.now() + timedelta(seconds=90)
    assert reservation.response["hold_until"] == stored.hold_until.isoformat()
    assert services.reservation_document(stored)["hold_until"] == stored.hold_until.isoformat()


def test_batches_of_one_best_before_are_taken_in_the_order_they_came(path):
    IngredientFactory(sku="ham")
    receive("ham.csv", f"sku,quantity,best_before,lot\nham,3,{day(9)},FIRST\nham,3,{day(9)},SECOND\n")
    move_to_the_end_of_the_table(Batch.objects.get(lot="FIRST"))
    services.reserve_stock(transaction_id="r", items=[Item("ham", 4)])
    assert list(Allocation.objects.order_by("id").values_list("batch__lot", "quantity")) == [
        ("FIRST", D(3)),
        ("SECOND", D(1)),
    ]


def test_a_release_without_a_note_leaves_the_ledger_note_empty(path):
    IngredientFactory(sku="ham")
    receive("ham.csv", f"sku,quantity,best_before,lot\nham,5,{day(3)},H1\n")
    services.reserve_stock(transaction_id="r", items=[Item("ham", 2)])
    services.release_reservation(transaction_id="r")
    assert list(Movement.objects.filter(kind="release").values_list("note", flat=True)) == [""]
    assert selectors.invariant_violations() == []


def _queries(call) -> int:
    with CaptureQueriesContext(connection) as captured:
        call()
    return len(captured.captured_queries)


def test_the_python_path_reads_no_row_per_batch(monkeypatch):
    """Reserve, the document and release cost the same queries for one batch as for three (suppliers and ingredients
    loaded with their allocations; no primary keys read back after the events are written)."""
    monkeypatch.setattr(reservations, "connection", OtherVendor("sqlite"))
    IngredientFactory(sku="ham")
    IngredientFactory(sku="egg")
    receive(
        "k.csv",
        "sku,quantity,best_before,lot,supplier\n"
        f"ham,9,{day(3)},H1,Farm A\n"
        f"egg,1,{day(3)},E1,Farm A\negg,1,{day(4)},E2,Farm B\negg,9,{day(5)},E3,Farm C\n",
    )
    costs = {}
    for sku in ("ham", "egg"):
        held = Reservation.objects.filter(transaction_id=f"c-{sku}")
        costs[sku] = [
            _queries(functools.partial(services.reserve_stock, transaction_id=f"c-{sku}", items=[Item(sku, 3)])),
            _queries(lambda held=held: services.reservation_document(held.get())),
            _queries(functools.partial(services.commit_reservation, transaction_id=f"c-{sku}")),
        ]
        services.reserve_stock(transaction_id=f"r-{sku}", items=[Item(sku, 3)])
        costs[sku].append(_queries(functools.partial(services.release_reservation, transaction_id=f"r-{sku}")))
    assert Allocation.objects.filter(reservation__transaction_id="c-egg").count() == 3
    assert costs["ham"] == [10, 2, 11, 11]
    assert costs["egg"] == [10, 2, 13, 11]  # a commit updates each batch it takes from: one UPDATE per batch
    assert selectors.invariant_violations() == []


def test_on_postgresql_a_close_is_one_database_call_whose_events_are_counted(django_capture_on_commit_callbacks):
    IngredientFactory(sku="ham")
    receive("ham.csv", f"sku,quantity,best_before,lot\nham,5,{day(3)},H1\n")
    services.reserve_stock(transaction_id="c", items=[Item("ham", 2)])
    services.reserve_stock(transaction_id="r", items=[Item("ham", 2)])
    for close, transaction_id, event_type in [
        (services.commit_reservation, "c", "stock.reservation_committed"),
        (services.release_reservation, "r", "stock.reservation_released"),
    ]:
        counter = metrics.EVENTS_PUBLISHED.labels(event_type)
        before = counter._value.get()
        with CaptureQueriesContext(connection) as captured, django_capture_on_commit_callbacks(execute=True):
            close(transaction_id=transaction_id)
        calls = [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]
        assert len(calls) == 2 and calls[0].startswith("SELECT stock_close(")  # the call, then the row read
        assert counter._value.get() == before + 1


# release_expired_holds: which holds, how many, and a commit that comes first.


def test_expired_holds_are_released_oldest_first_up_to_the_limit_and_counted():
    """A committed reservation whose hold had passed first takes no place in the batch; every release is counted."""
    IngredientFactory(sku="ham")
    receive("ham.csv", f"sku,quantity,best_before,lot\nham,10,{day(3)},H1\n")
    services.reserve_stock(transaction_id="picked", items=[Item("ham", 1)], hold_seconds=5)
    services.commit_reservation(transaction_id="picked")
    for transaction_id, seconds in [("third", 30), ("first", 10), ("second", 20)]:
        services.reserve_stock(transaction_id=transaction_id, items=[Item("ham", 1)], hold_seconds=seconds)
    later = timezone.now() + timedelta(seconds=31)

    assert services.release_expired_holds(now=later, limit=2) == 2

    assert dict(Reservation.objects.values_list("transaction_id", "status")) == {
        "picked": "committed",
        "first": "released",
        "second": "released",
        "third": "reserved",
    }
    assert services.release_expired_holds(now=later, limit=2) == 1
    assert services.release_expired_holds(now=later, limit=2) == 0
    assert selectors.invariant_violations() == []


def test_a_hold_committed_while_the_holds_are_released_is_skipped_and_the_rest_still_released(monkeypatch):
    IngredientFactory(sku="ham")
    receive("ham.csv", f"sku,quantity,best_before,lot\nham,10,{day(3)},H1\n")
    for transaction_id, seconds in [("committed-meanwhile", 10), ("lapsed", 20)]:
        services.reserve_stock(transaction_id=transaction_id, items=[Item("ham", 1)], hold_seconds=seconds)
    release = reservations.release_reservation

    def commit_first(*, transaction_id, note=""):
        if transaction_id == "committed-meanwhile":  # the kitchen picks it between the read and its release
            services.commit_reservation(transaction_id=transaction_id)
        return release(transaction_id=transaction_id, note=note)

    monkeypatch.setattr(reservations, "release_reservation", commit_first)

    assert services.release_expired_holds(now=timezone.now() + timedelta(seconds=21)) == 1

    assert dict(Reservation.objects.values_list("transaction_id", "status")) == {
        "committed-meanwhile": "committed",
        "lapsed": "released",
    }
    assert selectors.invariant_violations() == []


# What a reservation stores and answers: the canonical request and its hash, the refusal of repeated skus.


def test_the_stored_request_is_the_canonical_one_and_re_hashes_to_the_stored_hash(path):
    """The request is kept in jsonb, which reorders its keys: a hash over sorted keys still matches it."""
    IngredientFactory(sku="ham")
    receive("ham.csv", f"sku,quantity,best_before,lot\nham,20,{day(9)},H1\n")
    services.reserve_stock(transaction_id="canon", items=[Item("ham", D("10.0"))], needed_by=day(2), hold_seconds=60)
    stored = Reservation.objects.get(transaction_id="canon")
    assert stored.request == {
        "transaction_id": "canon",
        "items": [{"sku": "ham", "quantity": "10"}],  # normalized, in plain notation (not 1E+1)
        "needed_by": day(2).isoformat(),
        "hold_seconds": 60,
    }
    assert list(stored.request) != ["transaction_id", "items", "needed_by", "hold_seconds"]  # jsonb's own order
    assert reservations.request_digest(stored.request) == stored.request_hash


def test_repeated_skus_are_refused_each_named_once_in_the_message_and_the_field_error():
    IngredientFactory(sku="ham")
    IngredientFactory(sku="egg")
    items = [Item("ham", 1), Item("egg", 1), Item("ham", 2), Item("egg", 3)]
    with pytest.raises(services.InvalidItems) as refused:
        services.reserve_stock(transaction_id="twice", items=items)
    assert str(refused.value) == "items: Each sku once; repeated: egg, ham."
    assert refused.value.errors == {"items": ["Each sku once; repeated: egg, ham."]}
    assert not Reservation.objects.exists()


@pytest.mark.parametrize("quantity", [D(2), D(50)], ids=["reserved", "rejected"])
def test_on_postgresql_a_reservation_is_one_database_call_answered_as_the_stored_row(
    quantity, django_capture_on_commit_callbacks
):
    IngredientFactory(sku="ham")
    receive("ham.csv", f"sku,quantity,best_before,lot\nham,5,{day(3)},H1\n")
    event_type = "stock.reservation_created" if quantity == 2 else "stock.reservation_rejected"
    counter = metrics.EVENTS_PUBLISHED.labels(event_type)
    before = counter._value.get()
    with CaptureQueriesContext(connection) as captured, django_capture_on_commit_callbacks(execute=True):
        answered = services.reserve_stock(
            transaction_id="one-call", items=[Item("ham", quantity)], needed_by=day(1), hold_seconds=30
        )
    calls = [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(calls) == 1 and calls[0].lower().startswith("select stock_reserve(")
    assert counter._value.get() == before + 1

    stored = Reservation.objects.get(transaction_id="one-call")
    fields = [f.attname for f in Reservation._meta.concrete_fields]
    assert {f: getattr(answered, f) for f in fields} == {f: getattr(stored, f) for f in fields}
    assert (stored.closed_at is None) == (quantity == 2)
    answered.validate_unique()  # known as the stored row, not as a new one clashing with it


def test_on_the_python_path_a_rejection_reads_no_event_keys_back(monkeypatch):
    monkeypatch.setattr(reservations, "connection", OtherVendor("sqlite"))
    IngredientFactory(sku="ham")
    receive("ham.csv", f"sku,quantity,best_before,lot\nham,5,{day(3)},H1\n")
    with CaptureQueriesContext(connection) as captured:
        rejected = services.reserve_stock(transaction_id="no", items=[Item("ham", 50)])
    assert rejected.response_status == 409
    outbox = OutboxEvent._meta.db_table
    assert [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT") and outbox in q["sql"]] == []
    assert OutboxEvent.objects.filter(type="stock.reservation_rejected").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_request_racing_the_first_with_its_transaction_id_replays_it_inside_the_callers_transaction():
    """The second request waits on the first's locks, then hits the unique transaction id: inside its caller's
    transaction (a savepoint keeps that usable) it answers as a replay of the first."""
    IngredientFactory(sku="ham")
    receive("ham.csv", f"sku,quantity,best_before,lot\nham,5,{day(3)},H1\n")

    def second():
        with transaction.atomic():
            reservation = services.reserve_stock(transaction_id="same", items=[Item("ham", 2)])
            return reservation, Reservation.objects.count()  # the caller's transaction is still usable

    first_reservation, (second_reservation, after) = while_the_other_waits(
        lambda: services.reserve_stock(transaction_id="same", items=[Item("ham", 2)]),
        second,
        waiting="the second request",
    )
    assert (second_reservation.pk, second_reservation.response) == (first_reservation.pk, first_reservation.response)
    assert after == 1
    assert StockLevel.objects.get(ingredient__sku="ham").reserved == D(2)
    assert selectors.invariant_violations() == []
