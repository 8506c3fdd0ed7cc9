"""Factories and helpers for stock tests."""

import io
from contextlib import contextmanager

import factory

from stock.models import Ingredient


class IngredientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Ingredient
        django_get_or_create = ("sku",)

    sku = factory.Sequence(lambda n: f"ing-{n}")
    name = factory.LazyAttribute(lambda o: o.sku.replace("-", " ").title())
    unit = "unit"


def csv_opener(text: str):
    data = text.encode()

    @contextmanager
    def opener():
        yield io.BytesIO(data)

    return opener


def move_to_the_end_of_the_table(batch) -> None:
    """Rewrite the row through an indexed column (not a HOT update) until its physical place (ctid) follows every
    other batch of its ingredient: PostgreSQL then returns it after the rows inserted after it, in a table scan
    and in the FEFO index alike (equal keys are kept in ctid order), as it does after real updates.

    A reused database has dead rows of earlier tests whose freed slots a new row version may take, so one rewrite
    is not always enough: it repeats until the place is checked."""
    from django.db import connection

    from stock.models import Batch

    assert connection.vendor == "postgresql"
    for _ in range(100):
        Batch.objects.filter(pk=batch.pk).update(lot=f"{batch.lot}~")
        Batch.objects.filter(pk=batch.pk).update(lot=batch.lot)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT b.ctid > ALL(SELECT o.ctid FROM stock_batch o WHERE o.ingredient_id = b.ingredient_id"
                " AND o.id <> b.id) FROM stock_batch b WHERE b.id = %s",
                [batch.pk],
            )
            if cursor.fetchone()[0]:
                return
    raise AssertionError(f"batch {batch.pk} never moved after the other batches of its ingredient")
