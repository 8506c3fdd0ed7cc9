"""The demo platform that make run starts: orders sent over real HTTP to a live server, accepted as sent."""

import io
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from integrations.models import Order
from stock import services as stock_services
from stock.demo import RECIPES, load_catalogue
from supplychain.core.bootstrap import bootstrap
from tests.integrations.factories import day
from tests.stock.factories import csv_opener

pytestmark = pytest.mark.django_db(transaction=True)


def test_demo_orders_are_sent_over_http_and_accepted_as_the_platform_sends_them(live_server):
    bootstrap(demo=False)
    load_catalogue()
    stock_services.ingest_receipt(
        key="demo.csv", open_stream=csv_opener(f"sku,quantity,best_before,lot\nham,500,{day(9)},H1\n"), source="upload"
    )
    out = io.StringIO()
    call_command("demo_orders", "--url", live_server.url, "--count", "3", "--rate", "6000", "--seed", "7", stdout=out)
    lines = out.getvalue().splitlines()
    assert not [line for line in lines if "waiting for stock" in line], lines  # stock is on hand: no wait
    assert len([line for line in lines if "→ 202 accepted" in line]) == 3, lines
    assert lines[-1] == "demo orders: 3 sent"
    orders = list(Order.objects.order_by("order_id"))
    # committed on the answer; a worker of the session may have processed them since (reserved or short)
    assert len(orders) == 3
    assert {o.status for o in orders} <= {Order.Status.RECEIVED, Order.Status.RESERVED, Order.Status.SHORT}
    assert all(line["recipe"] in RECIPES and 1 <= line["portions"] <= 4 for o in orders for line in o.lines)
    assert all(o.order_id in out.getvalue() for o in orders)


def test_demo_orders_wait_for_stock_on_hand_so_the_first_orders_are_not_all_short(live_server):
    bootstrap(demo=False)
    load_catalogue()  # ingredients and recipes, no stock yet (make run's receipt is taken in by the ingest poll)
    out = io.StringIO()
    started = time.monotonic()
    call_command(
        "demo_orders", "--url", live_server.url, "--count", "1", "--rate", "6000", "--wait-for-stock", "2", stdout=out
    )
    lines = out.getvalue().splitlines()
    assert time.monotonic() - started >= 2
    assert lines[0] == "waiting for stock on hand (the demo receipt is taken in by the ingest poll)"
    assert lines[1] == "no stock on hand after 2 s: sending orders anyway (they will be short)"
    assert Order.objects.count() == 1


def test_demo_orders_says_what_is_missing_without_recipes_or_a_token():
    with pytest.raises(CommandError, match="No token"):
        call_command("demo_orders", "--count", "1")
    bootstrap(demo=False)
    with pytest.raises(CommandError, match="No recipes"):
        call_command("demo_orders", "--count", "1")
    with pytest.raises(CommandError, match="--rate"):
        call_command("demo_orders", "--rate", "0")
