"""``manage.py simulate``: the seed's "all together now" — receipts arrive, orders reserve, batches expire.

It works on ingredients of its own, ``sim-<sku>`` for each real one (or each named), so it never
reserves, consumes or expires real stock: its simulated date runs ahead of the real one, and expiry by
that date is run over its own ingredients only.

Every ``--receipt-every`` simulated seconds a receipt file is dropped into object storage (under the
receipts prefix, as a partner would) and ingested; every few seconds a random reservation of 1 to 3
ingredients is made, and open ones are committed or released; simulated days pass so batches expire.
Run ``manage.py stockwatch sim-ham ...`` beside it to watch the levels move. ``--speed`` scales time.
"""

import random
import time
from datetime import timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from stock import services
from stock.models import Ingredient, Reservation
from supplychain.core.errors import DomainError
from supplychain.core.storage import get_storage

PREFIX = "sim-"  # the simulation's own ingredients and reservations


class Command(BaseCommand):
    help = "Simulate receipts, reservations, commits/releases and expiry (watch with manage.py stockwatch)."

    def add_arguments(self, parser):
        parser.add_argument("--speed", type=float, default=1.0, help="Simulated seconds per real second.")
        parser.add_argument("--receipt-every", type=float, default=60.0, help="Simulated seconds between files.")
        parser.add_argument("--reserve-every", type=float, default=3.0, help="Simulated seconds between orders.")
        parser.add_argument("--day-length", type=float, default=600.0, help="Simulated seconds per simulated day.")
        parser.add_argument("--duration", type=float, default=0, help="Stop after this many real seconds (0: never).")
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("skus", nargs="*", help="Real ingredients to mirror as sim-<sku> (all when none).")

    def handle(self, *args, speed, receipt_every, reserve_every, day_length, duration, seed, skus, **options):
        rng = random.Random(seed)  # noqa: S311 (a simulation, not cryptography)
        ingredients = self._own_ingredients(skus)
        own_skus = [ingredient.sku for ingredient in ingredients]
        storage = get_storage()
        started = time.monotonic()
        next_receipt = next_reserve = 0.0
        day = 0
        files = orders = 0
        while not duration or time.monotonic() - started < duration:
            simulated = (time.monotonic() - started) * speed
            today = timezone.localdate() + timedelta(days=int(simulated // day_length))
            if int(simulated // day_length) > day:
                day = int(simulated // day_length)
                expired = services.expire_batches(today=today, skus=own_skus)
                self.stdout.write(f"[day {day}] {today}: {expired} batch(es) expired")
            if simulated >= next_receipt:
                files += 1
                key = f"receipts/simulated-{int(time.time())}-{files}.csv"
                lines = ["sku,quantity,best_before,lot,supplier"]
                for ingredient in rng.sample(ingredients, k=max(1, len(ingredients) // 2)):
                    best_before = today + timedelta(days=rng.randint(1, 5))
                    quantity = Decimal(rng.randint(20, 200))
                    lot = f"SIM-{files}-{ingredient.sku}"
                    lines.append(f"{ingredient.sku},{quantity},{best_before},{lot},Sim Farm")
                storage.put(key, ("\n".join(lines) + "\n").encode(), "text/csv")
                outcome = services.ingest_object(key=key, storage=storage)
                self.stdout.write(f"receipt {key}: {outcome.receipt.rows_ingested} batches in")
                next_receipt += receipt_every
            if simulated >= next_reserve:
                orders += 1
                self._order(rng, ingredients, orders)
                next_reserve += reserve_every
            time.sleep(min(0.2, 1 / max(speed, 0.01)))
        self.stdout.write(self.style.SUCCESS(f"done: {files} receipts, {orders} orders"))

    @staticmethod
    def _own_ingredients(skus: list[str]) -> list[Ingredient]:
        """``sim-<sku>`` for each real ingredient named (all when none), made on first use like the demo data."""
        real = Ingredient.objects.exclude(sku__startswith=PREFIX)
        if skus:
            real = real.filter(sku__in=[sku.removeprefix(PREFIX) for sku in skus])
        real = list(real)
        if not real:
            raise CommandError("No ingredients: load the demo data (manage.py bootstrap) or name some skus.")
        length = Ingredient._meta.get_field("sku").max_length
        wanted = {f"{PREFIX}{ingredient.sku}"[:length]: ingredient for ingredient in real}
        have = set(Ingredient.objects.filter(sku__in=list(wanted)).values_list("sku", flat=True))
        services.upsert_ingredients(  # through the service, so each new one publishes stock.ingredient_changed
            items=[
                services.IngredientData(sku, f"{i.name} (simulated)", i.unit, i.low_stock_threshold)
                for sku, i in wanted.items()
                if sku not in have
            ]
        )
        own = list(Ingredient.objects.filter(sku__in=list(wanted)).order_by("sku"))
        return own

    def _order(self, rng, ingredients, number):
        chosen = rng.sample(ingredients, rng.randint(1, min(3, len(ingredients))))
        items = [services.Item(i.sku, Decimal(rng.randint(1, 30))) for i in chosen]
        transaction_id = f"{PREFIX}{int(time.time())}-{number}"
        reservation = services.reserve_stock(transaction_id=transaction_id, items=items, hold_seconds=600)
        what = ", ".join(f"{item.quantity} {item.sku}" for item in items)
        self.stdout.write(f"order {transaction_id}: {reservation.status} ({what})")
        open_ids = list(
            Reservation.objects.filter(status="reserved", transaction_id__startswith=PREFIX).values_list(
                "transaction_id", flat=True
            )[:50]
        )
        if open_ids and rng.random() < 0.7:
            chosen = rng.choice(open_ids)
            try:
                if rng.random() < 0.8:
                    services.commit_reservation(transaction_id=chosen)
                else:
                    services.release_reservation(transaction_id=chosen)
            except DomainError:
                pass  # closed meanwhile by the hold timer
