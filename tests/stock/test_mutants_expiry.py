"""Expiry: promises that mutants of stock/services/expiry.py broke unnoticed (README, mutation testing)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from stock import selectors, services
from stock.models import Allocation, Batch
from stock.services import Item
from tests.stock.factories import IngredientFactory, csv_opener

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


def _move_to_the_end_of_the_table(batch: Batch) -> None:
    """Rewrite the row twice through an indexed column (not a HOT update): PostgreSQL then returns it after
    the rows inserted after it, in a table scan and in the FEFO index alike, as it does after real updates."""
    assert connection.vendor == "postgresql"
    Batch.objects.filter(pk=batch.pk).update(lot=f"{batch.lot}~")
    Batch.objects.filter(pk=batch.pk).update(lot=batch.lot)


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
    _move_to_the_end_of_the_table(first)

    services.expire_batches(today=day(2))

    moved = Allocation.objects.filter(open=True).order_by("id")
    assert [(a.batch.lot, a.quantity) for a in moved] == [("FIRST", D(3)), ("SECOND", D(1))]
    assert selectors.invariant_violations() == []
