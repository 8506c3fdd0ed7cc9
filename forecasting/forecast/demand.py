"""From forecast orders to purchase suggestions: recipe mix, ingredient demand, stock projection, orders.

Pure functions of plain data. Quantities that end in a purchase are ``Decimal`` (and travel as strings);
forecast demand is a float rounded to 3 places (the stock unit's precision).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import NamedTuple

PLACES = Decimal("0.001")


def recipe_mix(portions: list[dict], orders: list[float], *, window_days: int = 28) -> dict:
    """Share of each recipe in the portions of the last ``window_days`` days, and portions per order."""
    recent_portions, recent_orders = portions[-window_days:], orders[-window_days:]
    totals: dict[str, float] = defaultdict(float)
    for day in recent_portions:
        for code, count in day.items():
            totals[code] += count
    all_portions = sum(totals.values())
    all_orders = sum(recent_orders)
    return {
        "window_days": len(recent_portions),
        "portions_per_order": round(all_portions / all_orders, 4) if all_orders else 0.0,
        "shares": {code: round(count / all_portions, 6) for code, count in sorted(totals.items())}
        if all_portions
        else {},
    }


def ingredient_demand(
    *, days: list[str], orders: list[float], mix: dict, bill_of_materials: dict[str, dict[str, float]]
) -> dict:
    """Ingredient quantities per day: orders * portions per order * recipe share * quantity per portion.

    Recipes of the mix without a bill of materials are listed in ``unknown_recipes`` (their demand is not
    counted, and says so)."""
    per_day: dict[str, dict[str, float]] = {}
    totals: dict[str, float] = defaultdict(float)
    unknown = sorted(code for code in mix.get("shares", {}) if code not in bill_of_materials)
    for day, day_orders in zip(days, orders, strict=True):
        needs: dict[str, float] = defaultdict(float)
        portions = day_orders * mix.get("portions_per_order", 0.0)
        for code, share in mix.get("shares", {}).items():
            for sku, per_portion in bill_of_materials.get(code, {}).items():
                needs[sku] += portions * share * per_portion
        per_day[day] = {sku: round(quantity, 3) for sku, quantity in sorted(needs.items())}
        for sku, quantity in needs.items():
            totals[sku] += quantity
    return {
        "days": per_day,
        "totals": {sku: round(q, 3) for sku, q in sorted(totals.items())},
        "unknown_recipes": unknown,
    }


def project_stock(*, as_of: date, demand_days: dict[str, dict[str, float]], stock: dict[str, dict]) -> dict:
    """Day by day over the forecast days, per ingredient: batches are used first-expiring-first (a batch
    is usable through its best-before day), what passes its best-before unused is waste, what demand
    finds no stock for is a shortfall.

    ``stock[sku]`` is ``{"batches": [{"lot", "best_before", "available"}], "reservations": {day: qty}}``:
    ``available`` is what remains on the batch less what open reservations hold on it; the reserved
    quantities by needed-by day are orders already taken, so they are taken off that day's forecast
    demand (they are part of it) instead of being counted twice.
    """
    skus = sorted(set(stock) | {sku for needs in demand_days.values() for sku in needs})
    days = sorted(demand_days)
    projection = {}
    for sku in skus:
        item = stock.get(sku, {})
        batches = sorted(
            (
                [date.fromisoformat(b["best_before"]), str(b.get("lot", "")), Decimal(str(b["available"]))]
                for b in item.get("batches", [])
                if Decimal(str(b["available"])) > 0
            ),
            key=lambda b: (b[0], b[1]),
        )
        reserved_by_day = {day: Decimal(str(q)) for day, q in item.get("reservations", {}).items()}
        expired: list[dict] = []
        short: dict[str, Decimal] = {}
        on_hand = sum((b[2] for b in batches), Decimal(0))
        for day_text in days:
            day = date.fromisoformat(day_text)
            for batch in batches:
                if batch[0] < day and batch[2] > 0:
                    expired.append({"lot": batch[1], "best_before": batch[0].isoformat(), "quantity": str(batch[2])})
                    batch[2] = Decimal(0)
            # Reservations due on or before this day (including past-due ones) are already counted
            # in stock; the forecast covers only what they do not.
            reserved_today = sum(
                (q for d, q in reserved_by_day.items() if d <= day_text or d == "unscheduled"), Decimal(0)
            )
            for d in [d for d in reserved_by_day if d <= day_text or d == "unscheduled"]:
                del reserved_by_day[d]
            need = Decimal(str(demand_days[day_text].get(sku, 0))).quantize(PLACES) - reserved_today
            for batch in batches:
                if need <= 0:
                    break
                used = min(batch[2], need)
                batch[2] -= used
                need -= used
            if need > 0:
                short[day_text] = need.quantize(PLACES)
        left = sum((b[2] for b in batches), Decimal(0))
        projection[sku] = {
            "available": str(on_hand),
            "reserved": str(sum((Decimal(str(q)) for q in item.get("reservations", {}).values()), Decimal(0))),
            "expiring_unused": expired,
            "expiring_unused_total": str(sum((Decimal(e["quantity"]) for e in expired), Decimal(0))),
            "shortfall_by_day": {day: str(q) for day, q in short.items()},
            "shortfall_total": str(sum(short.values(), Decimal(0))),
            "first_short_day": min(short) if short else None,
            "left_at_end": str(left),
        }
    return {"as_of": as_of.isoformat(), "ingredients": projection}


class Terms(NamedTuple):
    supplier_code: str
    pack_size: Decimal
    minimum_order_quantity: Decimal
    lead_time_days: int
    preferred: bool = False


def orderable_quantity(
    shortfall: Decimal, *, pack_size: Decimal, minimum_order_quantity: Decimal
) -> tuple[Decimal, int]:
    """The smallest quantity of whole packs that covers ``shortfall`` and is at least the minimum order:
    ``(quantity, packs)``. Nothing short, nothing ordered."""
    if shortfall <= 0:
        return Decimal(0), 0
    if pack_size <= 0:
        raise ValueError("pack_size is positive")
    wanted = max(shortfall, minimum_order_quantity)
    packs = int((wanted / pack_size).to_integral_value(rounding=ROUND_CEILING))
    return (pack_size * packs).quantize(PLACES), packs


def choose_terms(options: list[Terms]) -> Terms | None:
    """The preferred supplier first, then the shortest lead time, then the code (a stable choice)."""
    return min(options, key=lambda t: (not t.preferred, t.lead_time_days, t.supplier_code), default=None)


def purchase_suggestions(*, as_of: date, projection: dict, terms: dict[str, list[Terms]]) -> list[dict]:
    """One suggestion per short ingredient, from its chosen supplier: the whole horizon's shortfall rounded
    up to whole packs and the minimum order, to place ``lead_time_days`` before the first short day (today
    at the earliest; then ``late`` says it arrives after it is needed). An ingredient no supplier sells is
    suggested with an empty supplier, so the gap is seen."""
    suggestions = []
    for sku, item in sorted(projection["ingredients"].items()):
        shortfall = Decimal(item["shortfall_total"])
        if shortfall <= 0:
            continue
        chosen = choose_terms(terms.get(sku, []))
        if chosen is None:
            chosen = Terms("", Decimal(1), Decimal(0), 0)
        quantity, packs = orderable_quantity(
            shortfall, pack_size=chosen.pack_size, minimum_order_quantity=chosen.minimum_order_quantity
        )
        needed_by = date.fromisoformat(item["first_short_day"])
        order_by = max(as_of, needed_by - timedelta(days=chosen.lead_time_days))
        arrives = order_by + timedelta(days=chosen.lead_time_days)
        suggestions.append(
            {
                "sku": sku,
                "supplier_code": chosen.supplier_code,
                "quantity": str(quantity),
                "packs": packs,
                "pack_size": str(chosen.pack_size),
                "minimum_order_quantity": str(chosen.minimum_order_quantity),
                "shortfall": str(shortfall),
                "lead_time_days": chosen.lead_time_days,
                "order_by": order_by.isoformat(),
                "arrives": arrives.isoformat(),
                "needed_by": needed_by.isoformat(),
                "late": arrives > needed_by,
            }
        )
    return sorted(suggestions, key=lambda s: (s["order_by"], s["sku"]))


def forecast_days(as_of: date, horizon: int) -> list[str]:
    return [(as_of + timedelta(days=k)).isoformat() for k in range(1, horizon + 1)]
