"""Writes of the forecast: publishing one forecast (rows, reports in object storage, events).

``publish_forecast`` is idempotent by run name: a redriven or repeated publish of the same run returns the
forecast already stored and publishes nothing again.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from datetime import date
from decimal import Decimal

from django.db import transaction

from forecasting.forecast.models import Forecast, ForecastPoint, PurchaseSuggestion
from supplychain.core.storage import get_storage
from supplychain.events.services import NewEvent, publish_many

REPORT_PREFIX = "forecasts"


@transaction.atomic
def publish_forecast(*, run_name: str, state: dict) -> Forecast:
    """Store the forecast of a pipeline run (``state``: the Publish state's input), write its CSV and JSON
    report to object storage under ``forecasts/<as_of>/<run_name>.{csv,json}``, and publish
    ``forecast.published`` and one ``forecast.purchase_order_suggested`` per supplier, in this transaction."""
    existing = Forecast.objects.filter(run_name=run_name).first()
    if existing is not None:
        return existing
    plan, models_ = state["plan"], state["models"]
    volume = models_["volume"]
    history = state["history"]
    history_pairs = _history_pairs(history)
    projection = state["projection"]["ingredients"]
    forecast = Forecast.objects.create(
        run_name=run_name,
        as_of=date.fromisoformat(plan["as_of"]),
        horizon_days=plan["horizon_days"],
        model=volume["model"],
        interval=plan["interval"],
        history=history_pairs,
        recipe_mix=models_["mix"],
        ingredient_demand=state["demand"]["totals"],
        stock_projection=projection,
        details={
            "network": state.get("network", {}),
            "flags": plan.get("flags", {}),
            "fit": volume.get("fit", {}),
            "comparison": models_.get("comparison"),
            "unknown_recipes": state["demand"].get("unknown_recipes", []),
        },
    )
    ForecastPoint.objects.bulk_create(
        ForecastPoint(
            forecast=forecast,
            day=date.fromisoformat(p["day"]),
            orders=p["orders"],
            lower=p["lower"],
            upper=p["upper"],
        )
        for p in volume["points"]
    )
    suggestions = state["purchasing"]["suggestions"]
    PurchaseSuggestion.objects.bulk_create(
        PurchaseSuggestion(
            forecast=forecast,
            supplier_code=s["supplier_code"],
            sku=s["sku"],
            quantity=Decimal(s["quantity"]),
            packs=s["packs"],
            shortfall=Decimal(s["shortfall"]),
            order_by=date.fromisoformat(s["order_by"]),
            arrives=date.fromisoformat(s["arrives"]),
            needed_by=date.fromisoformat(s["needed_by"]),
            late=s["late"],
        )
        for s in suggestions
    )
    forecast.report_keys = write_reports(forecast, volume["points"], suggestions, projection)
    forecast.save(update_fields=["report_keys"])
    publish_many(_events(forecast, volume["points"], suggestions), with_keys=False)
    return forecast


def _history_pairs(history: dict) -> list[list]:
    if not history.get("start"):
        return []
    start = date.fromisoformat(history["start"])
    return [[date.fromordinal(start.toordinal() + i).isoformat(), n] for i, n in enumerate(history["orders"])]


def write_reports(forecast: Forecast, points: list[dict], suggestions: list[dict], projection: dict) -> list[str]:
    """The forecast as JSON (everything) and CSV (one row per forecast day, then one per suggestion)."""
    storage = get_storage()
    base = f"{REPORT_PREFIX}/{forecast.as_of.isoformat()}/{forecast.run_name}"
    document = {
        "forecast_id": forecast.pk,
        "run_name": forecast.run_name,
        "as_of": forecast.as_of.isoformat(),
        "model": forecast.model,
        "interval": forecast.interval,
        "points": points,
        "recipe_mix": forecast.recipe_mix,
        "ingredient_demand": forecast.ingredient_demand,
        "stock_projection": projection,
        "suggestions": suggestions,
        "details": forecast.details,
    }
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(
        [
            "section",
            "day",
            "orders",
            "lower",
            "upper",
            "sku",
            "supplier",
            "quantity",
            "packs",
            "order_by",
            "arrives",
            "needed_by",
            "late",
        ]
    )
    for p in points:
        writer.writerow(["forecast", p["day"], p["orders"], p["lower"], p["upper"], "", "", "", "", "", "", "", ""])
    for s in suggestions:
        writer.writerow(
            [
                "suggestion",
                "",
                "",
                "",
                "",
                s["sku"],
                s["supplier_code"],
                s["quantity"],
                s["packs"],
                s["order_by"],
                s["arrives"],
                s["needed_by"],
                str(s["late"]).lower(),
            ]
        )
    keys = [f"{base}.json", f"{base}.csv"]
    storage.put(keys[0], json.dumps(document, indent=1, sort_keys=True).encode(), "application/json")
    storage.put(keys[1], text.getvalue().encode(), "text/csv")
    return keys


def _events(forecast: Forecast, points: list[dict], suggestions: list[dict]) -> list[NewEvent]:
    events = [
        NewEvent(
            "forecast.published",
            {
                "forecast_id": forecast.pk,
                "run_name": forecast.run_name,
                "as_of": forecast.as_of.isoformat(),
                "model": forecast.model,
                "interval": forecast.interval,
                "points": points,
                "suggestions": len(suggestions),
                "report_keys": forecast.report_keys,
            },
            key=forecast.run_name,
        )
    ]
    by_supplier: dict[str, list[dict]] = defaultdict(list)
    for s in suggestions:
        by_supplier[s["supplier_code"]].append(s)
    for supplier_code, lines in sorted(by_supplier.items()):
        events.append(
            NewEvent(
                "forecast.purchase_order_suggested",
                {
                    "forecast_id": forecast.pk,
                    "supplier_code": supplier_code,
                    "order_by": min(line["order_by"] for line in lines),
                    "lines": [
                        {k: line[k] for k in ("sku", "quantity", "packs", "arrives", "needed_by", "late")}
                        for line in lines
                    ],
                },
                key=f"{forecast.run_name}:{supplier_code or '-'}",
            )
        )
    return events
