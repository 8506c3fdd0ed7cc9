"""``manage.py demo_orders``: a demo e-commerce platform that sends orders to the API over HTTP.

What ``make run`` starts beside the stack, so the demo shows orders arriving and moving in the admin and
Flower. It places orders of the recipes in the catalogue (1 to 3 recipes, 1 to 4 portions, delivery in 2 to
5 days) through ``POST /api/v1/orders/`` with the platform user's token, at ``--rate`` orders a minute,
each announced on one line. It waits for the web server to answer and for stock to be on hand (the demo
receipt is taken in by the ingest poll shortly after start; orders before it would all be short), and goes on
after errors.
"""

from __future__ import annotations

import random
import signal
import time
import uuid
from datetime import timedelta

import requests
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from rest_framework.authtoken.models import Token

from stock.models import Recipe
from supplychain.core.bootstrap import API_USERNAME

CITIES = [("Leeds", "LS1 4AP"), ("Bristol", "BS1 5TR"), ("York", "YO1 7HH"), ("Bath", "BA1 1LZ")]
NAMES = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Tim Berners-Lee", "Karen Spärck Jones"]


def demo_order(rng: random.Random, recipes: list[str], today) -> dict:
    """One order as the platform sends it: recipes by portions, delivered to one of the demo addresses."""
    city, postcode = rng.choice(CITIES)
    number = rng.randrange(1, 200)
    return {
        "order_id": f"demo-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}",
        "customer_reference": f"cust-{rng.randrange(1, 500):04d}",
        "delivery_date": (today + timedelta(days=rng.randint(2, 5))).isoformat(),
        "delivery_address": {
            "name": rng.choice(NAMES),
            "line1": f"{number} High Street",
            "city": city,
            "postcode": postcode,
            "country": "GB",
        },
        "lines": [
            {"recipe": code, "portions": rng.randint(1, 4)}
            for code in rng.sample(recipes, rng.randint(1, min(3, len(recipes))))
        ],
    }


class Command(BaseCommand):
    help = "Send demo orders to the API over HTTP, as the e-commerce platform would (started by make run)."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="The API's base URL.")
        parser.add_argument("--token", default="", help="API token (default: the platform user's).")
        parser.add_argument("--rate", type=float, default=6.0, help="Orders a minute (default 6).")
        parser.add_argument("--count", type=int, default=0, help="Stop after this many orders (0: run until stopped).")
        parser.add_argument("--seed", type=int, default=None, help="Seed for repeatable orders.")
        parser.add_argument(
            "--wait-for-stock",
            type=float,
            default=120.0,
            help="Seconds to wait for stock on hand before the first order (0: do not wait; default 120).",
        )

    def handle(self, *args, url, token, rate, count, seed, wait_for_stock, **options):
        if not 0 < rate <= 60_000:
            raise CommandError("--rate: between 0 and 60000 orders a minute.")
        token = token or Token.objects.filter(user__username=API_USERNAME).values_list("key", flat=True).first()
        if not token:
            raise CommandError(
                f"No token: run manage.py bootstrap (it creates the {API_USERNAME!r} user) or pass --token."
            )
        recipes = list(Recipe.objects.order_by("code").values_list("code", flat=True))
        if not recipes:
            raise CommandError("No recipes: load the demo data (manage.py bootstrap) first.")
        self.stopping = False
        signal.signal(signal.SIGTERM, self._stop)
        rng = random.Random(seed)  # noqa: S311 (demo data, not secrets)
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        endpoint = f"{url.rstrip('/')}/api/v1/orders/"
        if wait_for_stock > 0:
            self._wait_for_stock(session, f"{url.rstrip('/')}/api/v1/stock/levels/", wait_for_stock)
        sent = waiting = 0
        interval = 60.0 / rate
        next_at = time.monotonic()
        try:
            while not self.stopping and (not count or sent < count):
                order = demo_order(rng, recipes, timezone.localdate())
                try:
                    response = session.post(endpoint, json=order, timeout=10)
                except requests.RequestException as error:
                    if not waiting:
                        self.stdout.write(f"waiting for the API at {endpoint} ({type(error).__name__})")
                    waiting += 1
                    time.sleep(1)
                    continue
                waiting = 0
                sent += 1
                portions = sum(line["portions"] for line in order["lines"])
                outcome = "accepted" if response.status_code in (200, 202) else f"refused: {response.text[:200]}"
                self.stdout.write(
                    f"order {order['order_id']} {len(order['lines'])} recipes, {portions} portions, "
                    f"for {order['delivery_date']} → {response.status_code} {outcome}"
                )
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
        except KeyboardInterrupt:
            pass
        self.stdout.write(f"demo orders: {sent} sent")

    def _wait_for_stock(self, session: requests.Session, levels_url: str, seconds: float) -> None:
        """Until some ingredient is on hand (read through the API, as the platform would), at most ``seconds``."""
        deadline = time.monotonic() + seconds
        said = False
        while not self.stopping and time.monotonic() < deadline:
            try:
                response = session.get(levels_url, params={"page_size": 100}, timeout=10)
                levels = response.json().get("results", []) if response.status_code == 200 else []
            except (requests.RequestException, ValueError):
                levels = []
            if any(float(level.get("on_hand") or 0) > 0 for level in levels):
                if said:
                    self.stdout.write("stock is on hand: sending orders")
                return
            if not said:
                self.stdout.write("waiting for stock on hand (the demo receipt is taken in by the ingest poll)")
                said = True
            time.sleep(2)
        if not self.stopping:
            self.stdout.write(f"no stock on hand after {seconds:.0f} s: sending orders anyway (they will be short)")

    def _stop(self, signum, frame):
        self.stopping = True
