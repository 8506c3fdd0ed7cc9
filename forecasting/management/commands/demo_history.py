"""``manage.py demo_history``: months of daily order history for the forecast, deterministic with ``--seed``."""

from __future__ import annotations

from datetime import date, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from forecasting.forecast.history import demo_days, store_demo_history


class Command(BaseCommand):
    help = (
        "Write demo order history (weekly seasonality, trend, noise, holiday dips) as one HistoryDay per day, "
        "and the demo catalogue and purchasing terms when missing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=364, help="days of history (default 364)")
        parser.add_argument("--end", type=date.fromisoformat, help="last day (default yesterday)")
        parser.add_argument("--seed", type=int, default=14, help="random seed (same seed, same history)")
        parser.add_argument("--base-orders", type=float, default=300.0, help="orders a day at the start")

    def handle(self, *args, days, end, seed, base_orders, **options):
        from stock.demo import load_catalogue, load_purchasing_terms
        from stock.models import Recipe

        if not 1 <= days <= 3660:
            raise CommandError("--days is from 1 to 3660")
        load_catalogue()
        load_purchasing_terms()
        recipes = list(Recipe.objects.values_list("code", flat=True))
        end = end or timezone.localdate() - timedelta(days=1)
        history = demo_days(end=end, days=days, recipes=recipes, seed=seed, base_orders=base_orders)
        written = store_demo_history(days=history)
        self.stdout.write(
            f"demo history: {written} days from {history[0]['day']} to {history[-1]['day']}, "
            f"{sum(d['orders'] for d in history)} orders of {len(recipes)} recipes (seed {seed})"
        )
