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
