"""What operations staff see in the admin: the index, the stock lists and pages, the dashboard's stock panel."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from stock import services
from stock.models import Reservation
from tests.stock.factories import IngredientFactory, csv_opener

pytestmark = pytest.mark.django_db


def day(n: int) -> str:
    return (timezone.localdate() + timedelta(days=n)).isoformat()


@pytest.fixture
def staff():
    user = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-for-tests-only")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def stocked():
    """Ham (low: 30 available, threshold 100) expiring in 2 days, cheese (plenty) in 10; one reservation."""
    IngredientFactory(sku="ham", low_stock_threshold=Decimal(100))
    IngredientFactory(sku="cheese", low_stock_threshold=Decimal(5))
    services.ingest_receipt(
        key="k.csv",
        open_stream=csv_opener(
            f"sku,quantity,best_before,lot,supplier\nham,40,{day(2)},LOT-HAM-7,Farm\ncheese,50,{day(10)},LOT-CH-9,Farm\n"
        ),
        source="upload",
    )
    return services.reserve_stock(
        transaction_id="order-77", items=[services.Item("ham", Decimal(10)), services.Item("cheese", Decimal(4))]
    )


def text(response) -> str:
    """The page as a person reads it: tags gone, whitespace collapsed."""
    return re.sub(r" ([,.])", r"\1", " ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split()))


def test_stock_comes_first_on_the_admin_index_and_in_the_sidebar(staff):
    def order(html: str) -> list[str]:
        return re.findall(r'<div class="app-([a-z_]+) module', html)

    index = order(staff.get("/admin/").content.decode())
    assert index[:2] == ["stock", "events"], index
    assert {"auth", "authtoken", "django_celery_results"} <= set(index[2:])
    assert order(staff.get("/admin/stock/batch/").content.decode())[:2] == ["stock", "events"]  # the sidebar


def test_view_site_leads_to_a_page_that_exists(staff):
    html = staff.get("/admin/").content.decode()
    [href] = re.findall(r'<a href="([^"]+)">View site</a>', html)
    assert staff.get(href, follow=True).status_code == 200


def test_batches_list_is_compact_remaining_of_received_in_one_column(staff, stocked):
    html = staff.get("/admin/stock/batch/").content.decode()
    header = html[html.index("<thead>") : html.index("</thead>")]
    assert header.count('scope="col"') <= 5  # fits a 1280-pixel page beside the filters (browser tier checks)
    assert "30.000 of 40.000" in text(staff.get("/admin/stock/batch/"))  # available of remaining


def test_at_risk_shows_nothing_when_not_at_risk_and_a_warning_when_it_is(staff, stocked):
    listing = staff.get("/admin/stock/reservation/").content.decode()
    row = listing[listing.index("order-77") :]
    row = row[: row.index("</tr>")]
    assert "icon-no" not in row and "at risk" not in row
    Reservation.objects.filter(transaction_id="order-77").update(at_risk=True)
    listing = staff.get("/admin/stock/reservation/").content.decode()
    row = listing[listing.index("order-77") :]
    assert "at risk" in row[: row.index("</tr>")]


def test_reservations_list_shows_what_each_reserves(staff, stocked):
    assert "10 ham, 4 cheese" in text(staff.get("/admin/stock/reservation/"))


def test_reservation_page_names_allocations_by_lot_and_best_before_and_shows_request_and_response_as_tables(
    staff, stocked
):
    page = staff.get(f"/admin/stock/reservation/{stocked.pk}/change/")
    html, seen = page.content.decode(), text(page)
    assert f"10.000 ham from lot LOT-HAM-7, best before {day(2)}" in seen  # each allocation's name
    assert '{"items"' not in html and "{&quot;items&quot;" not in html  # no raw JSON
    assert re.search(r"<td>\s*LOT-HAM-7\s*</td>", html)  # the response's nested batches, in a table
    assert re.search(r"<th>\s*transaction_id\s*</th>\s*<td>\s*order-77\s*</td>", html)  # the request


def test_movement_times_show_seconds(staff, stocked):
    now = timezone.localtime()
    assert now.strftime("%H:%M:") in text(staff.get("/admin/stock/movement/"))


def test_dashboard_stock_panel_shows_low_stock_and_batches_expiring_within_three_days(staff, stocked):
    page = text(staff.get("/admin/events/subscription/dashboard/"))
    panel = page[page.index("Low stock") :]
    assert "ham 30.000 available, threshold 100.000" in panel
    assert "cheese" not in panel[: panel.index("Expiring within 3 days")]  # plenty of cheese
    expiring = panel[panel.index("Expiring within 3 days") :]
    assert f"ham LOT-HAM-7 {day(2)} 40.000" in expiring
    assert "LOT-CH-9" not in expiring  # ten days away
