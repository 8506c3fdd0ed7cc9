"""On PostgreSQL, 50 concurrent clients reserving the same 3 SKUs: never oversold, never deadlocked."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from stock import selectors, services
from stock.models import Reservation, StockLevel
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
