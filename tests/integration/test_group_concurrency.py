"""On PostgreSQL: 8 processes sending group reservations of 100 and 8 making single ones, over the same 10 SKUs."""

from datetime import timedelta

import pytest
from django.utils import timezone

from stock import services
from tests.stock import group_race
from tests.stock.factories import IngredientFactory, csv_opener

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
SUPPLY = 600  # three batches of 200 per sku; the clients ask for about 800 of each


def test_group_and_single_reservations_racing_never_deadlock_or_oversell(real_services):
    lines = ["sku,quantity,best_before,lot"]
    for sku in group_race.HOT:
        IngredientFactory(sku=sku)
        for batch, days in enumerate((3, 9, 6)):
            best_before = (timezone.localdate() + timedelta(days=days)).isoformat()
            lines.append(f"{sku},{SUPPLY // 3},{best_before},{sku}-{batch}")
    services.ingest_receipt(key="hot.csv", open_stream=csv_opener("\n".join(lines)), source="upload")

    found = group_race.race(group_clients=8, single_clients=8, calls=3, group_size=100, single_calls=40)
    reserved = group_race.check(found, SUPPLY)
    assert len(found["answers"]) == 8 * 3 * 100 + 8 * 40
    assert any(status == "rejected" for _, status, _ in found["answers"])  # demand exceeded supply
    assert max(reserved.values()) == SUPPLY  # some sku ran out, to the unit


def test_a_group_meeting_the_same_new_transaction_id_in_flight_elsewhere_answers_it_after_that_commits(real_services):
    """The other writer holds "x" uncommitted; the group's insert waits for it, fails, and the group is planned
    again: "x" is then answered as the single path would (here: reused with another body), "y" is reserved."""
    import threading
    import time

    from django.db import connection, transaction

    from stock.models import Reservation
    from stock.services import Item, ReservationRequest

    lines = ["sku,quantity,best_before,lot"]
    for sku in ("ham", "cheese"):
        IngredientFactory(sku=sku)
        lines.append(f"{sku},10,{(timezone.localdate() + timedelta(days=5)).isoformat()},{sku}-1")
    services.ingest_receipt(key="inflight.csv", open_stream=csv_opener("\n".join(lines)), source="upload")
    holding, release = threading.Event(), threading.Event()
    outcome = {}

    def other_writer():
        try:
            with transaction.atomic():
                services.reserve_stock(transaction_id="x", items=[Item("ham", 1)])
                holding.set()
                release.wait(30)
        finally:
            connection.close()

    def group():
        try:
            outcome["results"] = services.reserve_many(
                requests=[ReservationRequest("x", [Item("cheese", 1)]), ReservationRequest("y", [Item("cheese", 2)])]
            )
        except Exception as exc:
            outcome["error"] = repr(exc)
        finally:
            connection.close()

    writer = threading.Thread(target=other_writer)
    writer.start()
    assert holding.wait(30)
    grouping = threading.Thread(target=group)
    grouping.start()
    time.sleep(1.0)  # the group is now waiting on "x" in the unique index
    assert grouping.is_alive()
    release.set()
    writer.join(30)
    grouping.join(30)
    assert "error" not in outcome, outcome
    results = outcome["results"]
    assert [(r.transaction_id, r.status, r.http_status) for r in results] == [
        ("x", "refused", 422),
        ("y", "reserved", 201),
    ]
    assert results[0].error.type == "transaction_id_reused"
    assert sorted(Reservation.objects.values_list("transaction_id", flat=True)) == ["x", "y"]
