"""Stock services: receipts, all-or-nothing FEFO reservations, commit/release, expiry; invariants hold."""

import hashlib
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from stock import selectors, services
from stock.models import Batch, Movement, Receipt, Reservation, StockLevel
from stock.services import Item, receipts
from supplychain.events.models import OutboxEvent
from tests.stock.factories import IngredientFactory, csv_opener

pytestmark = pytest.mark.django_db
D = Decimal


def day(offset: int) -> str:
    return (timezone.localdate() + timedelta(days=offset)).isoformat()


def receive(key: str, text: str) -> services.ReceiptOutcome:
    return services.ingest_receipt(key=key, open_stream=csv_opener(text), source="upload")


@pytest.fixture
def pantry():
    ham = IngredientFactory(sku="ham", low_stock_threshold=D(5))
    mushroom = IngredientFactory(sku="mushroom")
    receive(
        "drop/2026-11-22.csv",
        "sku,quantity,best_before,lot,supplier\n"
        f"ham,10,{day(3)},H1,Farm A\n"
        f"ham,10,{day(10)},H2,Farm A\n"
        f"mushroom,20,{day(5)},M1,Woods\n",
    )
    return ham, mushroom


def level(sku):
    return StockLevel.objects.get(ingredient__sku=sku)


def assert_invariants():
    assert selectors.invariant_violations() == []


def test_receipt_ingests_good_rows_and_reports_each_bad_one():
    IngredientFactory(sku="ham")
    outcome = receive(
        "drop/mixed.csv",
        "sku,quantity,best_before,lot\n"
        f"ham,5,{day(4)},A\n"
        f"ghost,5,{day(4)},B\n"
        f"ham,-1,{day(4)},C\n"
        f"ham,abc,{day(4)},D\n"
        f"ham,5,2001-01-01,E\n"
        f"ham,5,tomorrow,F\n"
        f"ham,5,{day(4)},A\n"
        f"ham,7,{day(6)}\n",
    )
    receipt = outcome.receipt
    assert outcome.outcome == "processed"
    assert receipt.rows_total == 8
    assert receipt.rows_ingested == 2
    assert [(e["line"], e["column"]) for e in receipt.errors] == [  # in line order
        (3, "sku"),
        (4, "quantity"),
        (5, "quantity"),
        (6, "best_before"),
        (7, "best_before"),
        (8, "lot"),
    ]
    assert level("ham").on_hand == D(12)
    assert Batch.objects.get(lot="mixed").quantity_received == D(7)  # a missing lot is the file's name
    assert_invariants()


def test_same_file_again_is_a_duplicate_and_changes_nothing(pantry):
    text = f"sku,quantity,best_before,lot,supplier\nham,10,{day(3)},H1,Farm A\nham,10,{day(10)},H2,Farm A\n"
    text += f"mushroom,20,{day(5)},M1,Woods\n"
    outcome = receive("drop/2026-11-22.csv", text)
    assert outcome.outcome == "duplicate"
    assert level("ham").on_hand == D(20)
    assert Receipt.objects.count() == 1


def test_same_key_with_other_content_is_a_conflict(pantry):
    with pytest.raises(services.ReceiptConflict):
        receive("drop/2026-11-22.csv", f"sku,quantity,best_before\nham,1,{day(3)}\n")


def test_a_file_with_a_bad_header_fails_whole_and_says_why():
    outcome = receive("drop/bad.csv", "sku,qty,best_before\nham,1,2030-01-01\n")
    assert outcome.receipt.status == "failed"
    assert "missing column(s): quantity" in outcome.receipt.errors[0]["reason"]


def receive_bytes(key: str, data: bytes) -> services.ReceiptOutcome:
    return services.ingest_receipt(key=key, open_stream=lambda: io.BytesIO(data), source="upload")


def test_a_header_that_is_not_utf8_fails_the_file_and_says_why():
    outcome = receive_bytes("drop/latin.csv", "sku,quantity,best_before,Qualität\n".encode("latin-1"))
    assert outcome.receipt.status == "failed"
    assert outcome.receipt.errors == [
        {"line": 1, "column": "header", "reason": "not UTF-8 text (save the file as UTF-8)"}
    ]
    assert Receipt.objects.get(key="drop/latin.csv").errors == outcome.receipt.errors  # stored as JSON


def test_a_csv_syntax_error_ends_the_file_there_keeping_the_rows_before_it():
    IngredientFactory(sku="ham")
    runaway = "x" * 200_000  # an unbalanced quote swallows what follows past the field size limit
    text = f'sku,quantity,best_before,lot\nham,5,{day(4)},A\nham,6,{day(4)},"B\n{runaway}\nham,7,{day(4)},C\n'
    outcome = receive_bytes("drop/runaway.csv", text.encode())
    receipt = outcome.receipt
    assert (receipt.status, receipt.rows_total, receipt.rows_ingested) == ("processed", 2, 1)
    [error] = receipt.errors
    assert error["line"] >= 3 and "not readable as CSV" in error["reason"]
    assert "the rest of the file was not read" in error["reason"]
    assert level("ham").on_hand == D(5)
    assert receipt.sha256 == hashlib.sha256(text.encode()).hexdigest()  # the whole file was still fingerprinted


def test_chunks_written_while_the_next_is_parsed_keep_file_order_and_report_errors_in_line_order(monkeypatch):
    monkeypatch.setattr(receipts, "CHUNK_ROWS", 3)  # 11 rows: four chunks, three of them overlapping a parse
    IngredientFactory(sku="ham")
    IngredientFactory(sku="mushroom")
    lines = ["sku,quantity,best_before,lot,supplier"]
    for n in range(11):
        sku = "ghost" if n in (1, 7) else ("ham", "mushroom")[n % 2]  # refused by the writer
        quantity = "x" if n in (4, 9) else str(n + 1)  # refused by the parser
        lines.append(f"{sku},{quantity},{day(3)},L{n},Farm {n % 3}")
    progress = []
    outcome = services.ingest_receipt(
        key="drop/chunks.csv",
        open_stream=csv_opener("\n".join(lines)),
        source="upload",
        progress=lambda rows, ingested: progress.append((rows, ingested)),
    )
    receipt = outcome.receipt
    assert (receipt.rows_total, receipt.rows_ingested) == (11, 7)
    assert [(e["line"], e["column"]) for e in receipt.errors] == [
        (3, "sku"),
        (6, "quantity"),
        (9, "sku"),
        (11, "quantity"),
    ]
    assert sorted(Batch.objects.values_list("source_line", flat=True)) == [2, 4, 5, 7, 8, 10, 12]
    assert level("ham").on_hand == D(1 + 3 + 7 + 9 + 11)
    assert level("mushroom").on_hand == D(4 + 6)
    # After each chunk written: rows read so far (parsing runs a chunk ahead of the writes), rows ingested.
    assert progress == [(7, 2), (11, 5), (11, 7)]
    assert_invariants()


def test_a_failing_write_rolls_the_whole_receipt_back(monkeypatch):
    monkeypatch.setattr(receipts, "CHUNK_ROWS", 2)
    IngredientFactory(sku="ham")
    written = []
    real_chunk = receipts._ingest_chunk

    def failing_second_chunk(receipt, rows, *args):
        if written:
            raise RuntimeError("disk full")
        written.append(rows)
        return real_chunk(receipt, rows, *args)

    monkeypatch.setattr(receipts, "_ingest_chunk", failing_second_chunk)
    text = "sku,quantity,best_before,lot\n" + "".join(f"ham,1,{day(3)},L{n}\n" for n in range(6))
    with pytest.raises(RuntimeError, match="disk full"):
        receive("drop/failing.csv", text)
    assert (Receipt.objects.count(), Batch.objects.count(), Movement.objects.count()) == (0, 0, 0)
    monkeypatch.setattr(receipts, "_ingest_chunk", real_chunk)
    assert receive("drop/failing.csv", text).receipt.rows_ingested == 6  # nothing half-done holds the key


def test_reservation_takes_first_expiring_batches_first(pantry):
    reservation = services.reserve_stock(transaction_id="abc123", items=[Item("ham", D(12)), Item("mushroom", D(10))])
    assert reservation.response_status == 201
    ham_line = next(line for line in reservation.response["items"] if line["sku"] == "ham")
    assert [(b["lot"], b["quantity"]) for b in ham_line["batches"]] == [("H1", "10.000"), ("H2", "2.000")]
    assert level("ham").reserved == D(12)
    assert level("ham").available == D(8)
    assert_invariants()


def test_needed_by_skips_batches_that_expire_before_it(pantry):
    reservation = services.reserve_stock(
        transaction_id="late", items=[Item("ham", D(5))], needed_by=timezone.localdate() + timedelta(days=5)
    )
    ham_line = reservation.response["items"][0]
    assert [b["lot"] for b in ham_line["batches"]] == ["H2"]


def test_not_enough_stock_reserves_nothing_and_says_what_is_short(pantry):
    reservation = services.reserve_stock(transaction_id="greedy", items=[Item("ham", D(5)), Item("mushroom", D(21))])
    assert reservation.response_status == 409
    assert reservation.response["shortages"] == [{"sku": "mushroom", "requested": "21.000", "available": "20.000"}]
    assert level("ham").reserved == 0
    assert OutboxEvent.objects.filter(type="stock.reservation_rejected").count() == 1
    assert_invariants()


def test_repeat_replays_and_a_different_body_is_refused(pantry):
    first = services.reserve_stock(transaction_id="t1", items=[Item("ham", D(3))])
    again = services.reserve_stock(transaction_id="t1", items=[Item("ham", D(3))])
    assert again.pk == first.pk
    assert again.response == first.response
    assert level("ham").reserved == D(3)
    with pytest.raises(services.TransactionIdReused):
        services.reserve_stock(transaction_id="t1", items=[Item("ham", D(4))])


def test_commit_consumes_and_release_returns(pantry):
    services.reserve_stock(transaction_id="pick", items=[Item("ham", D(12))])
    services.reserve_stock(transaction_id="cancel", items=[Item("mushroom", D(4))])
    services.commit_reservation(transaction_id="pick")
    services.commit_reservation(transaction_id="pick")  # twice changes nothing
    services.release_reservation(transaction_id="cancel")
    assert (level("ham").on_hand, level("ham").reserved) == (D(8), D(0))
    assert (level("mushroom").on_hand, level("mushroom").reserved) == (D(20), D(0))
    assert Batch.objects.get(lot="H1").status == "depleted"
    with pytest.raises(services.ReservationClosed):
        services.release_reservation(transaction_id="pick")
    assert_invariants()


def test_low_stock_event_when_available_crosses_the_threshold(pantry):
    services.reserve_stock(transaction_id="big", items=[Item("ham", D(16))])
    low = OutboxEvent.objects.get(type="stock.low")
    assert low.payload == {"sku": "ham", "available": "4.000", "threshold": "5.000"}


def test_unknown_sku_is_refused_naming_the_item(pantry):
    with pytest.raises(services.UnknownSku) as caught:
        services.reserve_stock(transaction_id="x", items=[Item("ham", D(1)), Item("caviar", D(1))])
    assert caught.value.errors == {"items.1.sku": ["Unknown sku."]}
    assert not Reservation.objects.exists()


def test_expiry_moves_reservations_to_the_next_batch_or_flags_them_at_risk(pantry):
    services.reserve_stock(transaction_id="movable", items=[Item("ham", D(8))])  # from H1 (day 3)
    services.reserve_stock(transaction_id="stuck", items=[Item("mushroom", D(15))])  # M1 only (day 5)
    services.expire_batches(today=timezone.localdate() + timedelta(days=6))
    movable = services.reservation_document(Reservation.objects.get(transaction_id="movable"))
    open_lots = [b["lot"] for b in movable["items"][0]["batches"] if b["open"]]
    assert open_lots == ["H2"]
    assert level("ham").on_hand == D(10)
    assert level("ham").reserved == D(8)
    stuck = Reservation.objects.get(transaction_id="stuck")
    assert stuck.at_risk
    assert level("mushroom").on_hand == 0
    assert level("mushroom").reserved == 0
    at_risk = OutboxEvent.objects.get(type="stock.reservation_at_risk")
    assert at_risk.payload["items"][0]["missing"] == "15.000"
    assert OutboxEvent.objects.filter(type="stock.batch_expired").count() == 2
    assert Movement.objects.filter(kind="expire").count() == 2
    assert_invariants()


def test_expired_holds_are_released(pantry):
    services.reserve_stock(transaction_id="held", items=[Item("ham", D(2))], hold_seconds=60)
    assert services.release_expired_holds(now=timezone.now() + timedelta(seconds=30)) == 0
    assert services.release_expired_holds(now=timezone.now() + timedelta(seconds=61)) == 1
    assert Reservation.objects.get(transaction_id="held").status == "released"
    assert_invariants()
