"""Hypothesis feeds the receipt ingest arbitrary bytes and near-CSV rows on real PostgreSQL: every row is
ingested or reported, nothing escapes, and afterwards levels, batches and the admin's batch list still read.

Bounded for CI: derandomized (the same examples every run), a few hundred files in about half a minute.
"""

import io
import itertools
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from stock import selectors, services
from stock.models import Batch, Receipt
from stock.receipt_parser import limits
from supplychain.core.bootstrap import bootstrap
from tests.stock.factories import IngredientFactory, csv_opener
from tests.stock.test_receipt_parser import as_csv_bytes, near_csv_rows

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
FUZZ = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
SKUS = ["ham", "cheese", "x" * 64]


@pytest.fixture
def stack(real_services):
    """Ingredients (cheese a hair under what its level holds), an API client and a logged-in admin."""
    for sku in SKUS:
        IngredientFactory(sku=sku)
    near_full = limits().level_max - Decimal(5)
    best_before = (timezone.localdate() + timedelta(days=30)).isoformat()
    services.ingest_receipt(
        key="fuzz/seed.csv",
        open_stream=csv_opener(f"sku,quantity,best_before\ncheese,{near_full},{best_before}\n"),
        source="upload",
    )
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {bootstrap(demo=False).api_token}")
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("fuzz", "fuzz@example.com", "pw"))
    return api, admin, itertools.count()


def ingest_and_check(stack, data: bytes) -> None:
    api, admin, numbers = stack
    key = f"fuzz/{next(numbers)}.csv"
    outcome = services.ingest_receipt(key=key, open_stream=lambda: io.BytesIO(data), source="upload")
    receipt = Receipt.objects.get(key=key)
    assert outcome.outcome == "processed"
    if receipt.status == Receipt.Status.FAILED:  # a header that is no header: the file fails whole, said why
        assert (receipt.rows_total, receipt.rows_ingested, len(receipt.errors)) == (0, 0, 1)
    else:
        assert receipt.rows_total == receipt.rows_ingested + len(receipt.errors)
    assert Batch.objects.filter(receipt=receipt).count() == receipt.rows_ingested
    assert api.get("/api/v1/stock/levels/", {"sku": ",".join(SKUS)}).status_code == 200
    assert api.get("/api/v1/stock/batches/", {"sku": "cheese"}).status_code == 200  # the one near its limit
    assert api.get("/api/v1/stock/batches/", {"ordering": "-id"}).status_code == 200
    assert api.get(f"/api/v1/stock/receipts/{receipt.pk}/").status_code == 200
    assert admin.get("/admin/stock/batch/").status_code == 200
    assert selectors.invariant_violations() == []


@settings(FUZZ, max_examples=50)  # most arbitrary bytes fail at the header: fewer examples reach as far
@given(st.binary(max_size=1500))
def test_arbitrary_bytes_are_ingested_or_reported(stack, data):
    ingest_and_check(stack, data)


@FUZZ
@given(near_csv_rows(), st.lists(st.sampled_from(SKUS), max_size=12), st.booleans())
def test_near_csv_rows_are_each_ingested_or_reported_and_levels_stay_readable(stack, rows, skus, encoding_errors):
    rows = [(skus[n] if n < len(skus) else row[0], *row[1:]) for n, row in enumerate(rows)]  # mostly known skus
    ingest_and_check(stack, as_csv_bytes(rows, encoding_errors))
