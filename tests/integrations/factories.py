"""Helpers for order tests: a stocked catalogue, order documents and a platform API client."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone
from rest_framework.test import APIClient

from stock import services as stock_services
from stock.models import Recipe, RecipeIngredient
from supplychain.core.bootstrap import bootstrap
from tests.stock.factories import IngredientFactory, csv_opener


def day(offset: int):
    return timezone.localdate() + timedelta(days=offset)


def platform_client() -> APIClient:
    token = bootstrap(demo=False).api_token
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def stock_catalogue(*, ham: int = 1000, mushroom: int = 1000, cheese: int = 1000) -> None:
    """Three ingredients, two batches of ham (the earlier lot first), a pasta recipe and a cheese recipe."""
    ingredients = {sku: IngredientFactory(sku=sku) for sku in ("ham", "mushroom", "cheese")}
    pasta = Recipe.objects.create(code="ham-pasta", name="Ham pasta")
    RecipeIngredient.objects.create(recipe=pasta, ingredient=ingredients["ham"], quantity_per_portion=Decimal(60))
    RecipeIngredient.objects.create(recipe=pasta, ingredient=ingredients["mushroom"], quantity_per_portion=Decimal(80))
    toast = Recipe.objects.create(code="cheese-toast", name="Cheese toast")
    RecipeIngredient.objects.create(recipe=toast, ingredient=ingredients["cheese"], quantity_per_portion=Decimal(50))
    rows = ["sku,quantity,best_before,lot,supplier"]
    if ham:
        rows += [f"ham,{ham // 2},{day(4)},H1,Farm A", f"ham,{ham - ham // 2},{day(9)},H2,Farm B"]
    if mushroom:
        rows.append(f"mushroom,{mushroom},{day(6)},M1,Woods")
    if cheese:
        rows.append(f"cheese,{cheese},{day(12)},C1,Dairy")
    text = "\n".join(rows) + "\n"
    stock_services.ingest_receipt(
        key=f"seed-{ham}-{mushroom}-{cheese}.csv", open_stream=csv_opener(text), source="upload"
    )


def order_doc(order_id: str, *, lines=None, delivery=5, customer="cust-1") -> dict:
    return {
        "order_id": order_id,
        "customer_reference": customer,
        "delivery_date": day(delivery).isoformat(),
        "delivery_address": {
            "name": "Ada Lovelace",
            "line1": "12 Analytical Row",
            "city": "London",
            "postcode": "N1 9GU",
            "country": "GB",
        },
        "lines": lines if lines is not None else [{"recipe": "ham-pasta", "portions": 2}],
    }
