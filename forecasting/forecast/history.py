"""The order history the forecast learns from: a deterministic demo generator, and reads of the stored history.

A history day is ``{"day": "YYYY-MM-DD", "orders": int, "portions": {recipe_code: int}}``. Stored days
(``HistoryDay``: the demo's) win; for days without one, live orders are counted from
``integrations.Order`` by delivery date (cancelled ones left out).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import date, timedelta

# Weekday factors of a meal-kit business (Monday first): weekends and Mondays deliver most.
WEEKLY = (1.15, 0.95, 0.85, 0.8, 0.9, 1.05, 1.3)
# Fixed-date holidays with few deliveries, and the factor they keep; the days either side keep DIP_SIDE.
HOLIDAYS = {(1, 1): 0.3, (12, 25): 0.15, (12, 26): 0.35, (5, 1): 0.6, (8, 31): 0.6}
DIP_SIDE = 0.8


def holiday_factor(day: date) -> float:
    if (day.month, day.day) in HOLIDAYS:
        return HOLIDAYS[(day.month, day.day)]
    for neighbour in (day - timedelta(days=1), day + timedelta(days=1)):
        if (neighbour.month, neighbour.day) in HOLIDAYS:
            return DIP_SIDE
    return 1.0


def demo_days(
    *,
    end: date,
    days: int,
    recipes: list[str],
    seed: int = 0,
    base_orders: float = 300.0,
    yearly_growth: float = 0.3,
    noise: float = 0.06,
) -> list[dict]:
    """``days`` history days ending on ``end``: a level of ``base_orders`` at the start growing by
    ``yearly_growth`` a year (linear trend), times the weekday factor, times a holiday dip, times
    log-normal noise of about ``noise``; each order holds 1 to 4 portions (2.5 on average) of recipes whose
    shares drift slowly. The same arguments give the same days."""
    if days < 1:
        raise ValueError("days is at least 1")
    if not recipes:
        raise ValueError("the demo history needs at least one recipe")
    rng = random.Random(seed)  # noqa: S311 (demo data, not secrets)
    recipes = sorted(recipes)
    phases = [rng.uniform(0, 2 * math.pi) for _ in recipes]
    start = end - timedelta(days=days - 1)
    out = []
    for index in range(days):
        day = start + timedelta(days=index)
        level = base_orders * (1 + yearly_growth * index / 365)
        expected = level * WEEKLY[day.weekday()] * holiday_factor(day)
        orders = max(0, round(expected * math.exp(rng.gauss(0, noise))))
        weights = [1 + 0.5 * math.sin(2 * math.pi * index / 91 + phase) for phase in phases]
        portions: dict[str, int] = defaultdict(int)
        total_weight = sum(weights)
        # Portions in aggregate: 2.5 per order, split by the day's shares (one multinomial-like draw per recipe).
        total_portions = round(orders * rng.uniform(2.4, 2.6))
        remaining = total_portions
        for position, (code, weight) in enumerate(zip(recipes, weights, strict=True)):
            if position == len(recipes) - 1:
                share = remaining
            else:
                share = min(remaining, max(0, round(total_portions * weight / total_weight + rng.gauss(0, 2))))
            remaining -= share
            if share:
                portions[code] = share
        out.append({"day": day.isoformat(), "orders": orders, "portions": dict(sorted(portions.items()))})
    return out


def store_demo_history(*, days: list[dict], replace: bool = True) -> int:
    """Write demo days into ``HistoryDay`` (replacing stored days of the same dates unless ``replace`` is
    false); returns the number written."""
    from django.db import transaction

    from forecasting.forecast.models import HistoryDay

    rows = [
        HistoryDay(day=date.fromisoformat(d["day"]), orders=d["orders"], portions=d["portions"], source="demo")
        for d in days
    ]
    with transaction.atomic():
        if replace:
            HistoryDay.objects.filter(day__in=[row.day for row in rows]).delete()
        HistoryDay.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=not replace)
    return len(rows)


def load_days(start: date, end: date) -> list[dict]:
    """The history days from ``start`` to ``end`` inclusive that have any data, in date order."""
    from forecasting.forecast.models import HistoryDay
    from integrations.models import Order

    found: dict[date, dict] = {
        row.day: {"day": row.day.isoformat(), "orders": row.orders, "portions": dict(row.portions)}
        for row in HistoryDay.objects.filter(day__gte=start, day__lte=end)
    }
    live = (
        Order.objects.filter(delivery_date__gte=start, delivery_date__lte=end)
        .exclude(status=Order.Status.CANCELLED)
        .exclude(delivery_date__in=list(found))
        .values_list("delivery_date", "lines")
    )
    counted: dict[date, dict] = {}
    for delivery_date, lines in live.iterator(chunk_size=2000):
        day = counted.setdefault(delivery_date, {"day": delivery_date.isoformat(), "orders": 0, "portions": {}})
        day["orders"] += 1
        for line in lines or []:
            if isinstance(line, dict) and "recipe" in line:
                day["portions"][line["recipe"]] = day["portions"].get(line["recipe"], 0) + int(line["portions"])
    found.update(counted)
    return [found[day] for day in sorted(found)]


def contiguous(days: list[dict], *, end: date | None = None) -> dict:
    """Days (any order, possibly from several batches) as one gap-free series from the first day with data
    to ``end`` (default: the last day with data); days without data in between count zero orders."""
    by_day: dict[str, dict] = {}
    for day in days:
        by_day[day["day"]] = day
    if not by_day:
        return {"start": None, "end": None, "orders": [], "portions": []}
    first = date.fromisoformat(min(by_day))
    last = end or date.fromisoformat(max(by_day))
    orders, portions = [], []
    for index in range((last - first).days + 1):
        day = by_day.get((first + timedelta(days=index)).isoformat())
        orders.append(day["orders"] if day else 0)
        portions.append(day["portions"] if day else {})
    return {"start": first.isoformat(), "end": last.isoformat(), "orders": orders, "portions": portions}
