"""On PostgreSQL, 50 concurrent clients reserving the same 3 SKUs: never oversold, never deadlocked."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from stock import selectors, services
from stock.models import Movement, Reservation, StockLevel
from stock.services import Item
from tests.stock.factories import IngredientFactory, csv_opener

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_fifty_concurrent_reservations_get_exactly_what_stock_allows(real_services):
    best_before = (timezone.localdate() + timedelta(days=7)).isoformat()
    lines = ["sku,quantity,best_before,lot"]
    for sku in ("ham", "mushroom", "cheese"):
        IngredientFactory(sku=sku)
        lines += [f"{sku},40,{best_before},{sku}-a", f"{sku},60,{best_before},{sku}-b"]  # 100 each, two batches
    services.ingest_receipt(key="stock.csv", open_stream=csv_opener("\n".join(lines)), source="upload")

    clients, per_item = 50, Decimal(7)  # 14 x 7 = 98 fits in 100; the 15th would oversell
    barrier = threading.Barrier(clients)
    outcomes, errors = [], []

    def client(number: int) -> None:
        try:
            barrier.wait()
            items = [Item(sku, per_item) for sku in ("cheese", "ham", "mushroom")[number % 3 :]]
            items += [Item(sku, per_item) for sku in ("cheese", "ham", "mushroom")[: number % 3]]  # any order
            reservation = services.reserve_stock(transaction_id=f"client-{number}", items=items)
            outcomes.append(reservation.response_status)
        except Exception as exc:  # a deadlock or serialization error would land here
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert outcomes.count(201) == 14
    assert outcomes.count(409) == clients - 14
    for level in StockLevel.objects.all():
        assert level.reserved == Decimal(98)
        assert level.on_hand == Decimal(100)
    assert Reservation.objects.filter(status="reserved").count() == 14
    assert selectors.invariant_violations() == []


def test_racing_commits_releases_and_new_reservations_settle_each_reservation_once(real_services):
    """Commit and release race on the same reservations while new ones are made: one wins per reservation."""
    best_before = (timezone.localdate() + timedelta(days=7)).isoformat()
    lines = ["sku,quantity,best_before,lot"]
    for sku in ("ham", "mushroom", "cheese"):
        IngredientFactory(sku=sku)
        lines += [f"{sku},40,{best_before},{sku}-a", f"{sku},60,{best_before},{sku}-b"]
    services.ingest_receipt(key="race.csv", open_stream=csv_opener("\n".join(lines)), source="upload")
    held = [f"held-{n}" for n in range(10)]
    for transaction_id in held:  # 10 x 5 = 50 of each sku reserved
        services.reserve_stock(transaction_id=transaction_id, items=[Item("ham", 5), Item("mushroom", 5)])
        services.reserve_stock(transaction_id=f"{transaction_id}-c", items=[Item("cheese", 5)])

    jobs = []
    for transaction_id in held:  # per reservation: two commits and a release race
        jobs += [("commit", transaction_id), ("commit", transaction_id), ("release", transaction_id)]
        jobs += [("release", f"{transaction_id}-c"), ("commit", f"{transaction_id}-c")]
    jobs += [("reserve", f"new-{n}") for n in range(12)]  # 12 x 5 = 60 more wanted: 50 are free
    barrier = threading.Barrier(len(jobs))
    results, errors = [], []

    def client(kind: str, transaction_id: str) -> None:
        try:
            barrier.wait()
            if kind == "reserve":
                items = [Item("mushroom", 5), Item("ham", 5), Item("cheese", 5)]
                reservation = services.reserve_stock(transaction_id=transaction_id, items=items)
                results.append((kind, transaction_id, reservation.status))
            else:
                close = services.commit_reservation if kind == "commit" else services.release_reservation
                results.append((kind, transaction_id, close(transaction_id=transaction_id).status))
        except services.ReservationClosed:
            results.append((kind, transaction_id, "lost"))  # the other way won the race
        except Exception as exc:  # a deadlock or serialization error would land here
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    for transaction_id in [*held, *(f"{t}-c" for t in held)]:
        final = Reservation.objects.get(transaction_id=transaction_id).status
        assert final in ("committed", "released")
        answers = [status for _, t, status in results if t == transaction_id]
        assert all(status in (final, "lost") for status in answers), (transaction_id, answers)
        assert any(status == final for status in answers)
    # The 50 free of each sku fit 10 new ones at least; releases racing them may free room for the other 2.
    assert 10 <= sum(1 for kind, _, status in results if kind == "reserve" and status == "reserved") <= 12
    assert selectors.invariant_violations() == []
    closings = Movement.objects.filter(kind__in=["consume", "release"])
    assert closings.count() == 10 * 3  # one ledger row per allocation, each settled once
