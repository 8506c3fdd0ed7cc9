"""The invariant checker (stock/invariants.py): cases its surviving mutants showed untested (README, mutation)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from stock import invariants, selectors, services
from stock.models import Batch, StockLevel
from stock.services import Item
from tests.stock.factories import IngredientFactory, csv_opener

pytestmark = pytest.mark.django_db
D = Decimal


def day(offset: int):
    return timezone.localdate() + timedelta(days=offset)


def receive(key: str, text: str) -> None:
    services.ingest_receipt(key=key, open_stream=csv_opener(text), source="upload")


def test_selectors_re_export_the_checker():
    assert selectors.invariant_violations is invariants.invariant_violations


def test_checker_reports_an_expired_batch_still_holding_a_fraction():
    IngredientFactory(sku="salt", unit="kg")
    receive("salt.csv", f"sku,quantity,best_before,lot\nsalt,2,{day(3)},S1\n")
    services.reserve_stock(transaction_id="pinch", items=[Item("salt", D("0.005"))])
    batch = Batch.objects.get(lot="S1")
    Batch.objects.filter(pk=batch.pk).update(status="expired")
    assert f"batch {batch.pk}: remaining 2.000, reserved 0.005, expired" in selectors.invariant_violations()


def test_checker_is_quiet_on_a_level_reserved_to_the_last_unit():
    IngredientFactory(sku="ham")
    receive("ham.csv", f"sku,quantity,best_before,lot\nham,3,{day(3)},H1\nham,2,{day(9)},H2\n")
    services.reserve_stock(transaction_id="all", items=[Item("ham", D(5))])
    level = StockLevel.objects.get(ingredient__sku="ham")
    assert (level.on_hand, level.reserved) == (D(5), D(5))
    assert selectors.invariant_violations() == []


def test_checker_reads_a_fixed_number_of_queries_however_many_levels(django_assert_num_queries):
    """It runs after benchmarks over thousands of ingredients: no query per level."""
    lines = ["sku,quantity,best_before,lot"]
    for n in range(4):
        IngredientFactory(sku=f"i{n}")
        lines.append(f"i{n},5,{day(3)},L{n}")
    receive("many.csv", "\n".join(lines))
    StockLevel.objects.filter(ingredient__sku="i0").update(on_hand=D(4))
    with django_assert_num_queries(8):
        assert selectors.invariant_violations() == [
            "i0: on hand 4.000 != ledger on hand 5.000",
            "i0: on hand 4.000 != remaining on active batches 5.000",
        ]
