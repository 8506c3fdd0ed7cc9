"""The demo platform that make run starts: orders sent over real HTTP to a live server, accepted as sent."""

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from integrations.models import Order
from stock.demo import RECIPES, load_catalogue
from supplychain.core.bootstrap import bootstrap

pytestmark = pytest.mark.django_db(transaction=True)


def test_demo_orders_are_sent_over_http_and_accepted_as_the_platform_sends_them(live_server):
    bootstrap(demo=False)
    load_catalogue()
    out = io.StringIO()
    call_command("demo_orders", "--url", live_server.url, "--count", "3", "--rate", "6000", "--seed", "7", stdout=out)
    lines = out.getvalue().splitlines()
    assert len([line for line in lines if "→ 202 accepted" in line]) == 3, lines
    assert lines[-1] == "demo orders: 3 sent"
    orders = list(Order.objects.order_by("order_id"))
    # committed on the answer; a worker of the session may have processed them since (reserved or short)
    assert len(orders) == 3
    assert {o.status for o in orders} <= {Order.Status.RECEIVED, Order.Status.RESERVED, Order.Status.SHORT}
    assert all(line["recipe"] in RECIPES and 1 <= line["portions"] <= 4 for o in orders for line in o.lines)
    assert all(o.order_id in out.getvalue() for o in orders)


def test_demo_orders_says_what_is_missing_without_recipes_or_a_token():
    with pytest.raises(CommandError, match="No token"):
        call_command("demo_orders", "--count", "1")
    bootstrap(demo=False)
    with pytest.raises(CommandError, match="No recipes"):
        call_command("demo_orders", "--count", "1")
    with pytest.raises(CommandError, match="--rate"):
        call_command("demo_orders", "--rate", "0")
