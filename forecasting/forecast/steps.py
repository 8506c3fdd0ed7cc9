"""The forecast pipeline's Task steps: each takes the Task's JSON input and returns JSON data.

Registered with the engine as ``forecast.<name>`` (see ``pipeline.py`` for the definition that wires them).
They read stock and orders through the ORM and write nothing, except ``forecast.publish``, which calls the
publishing service. Bad input raises ``ForecastInputInvalid`` (the Task's ``Error``) naming the field.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

from django.utils import timezone

from forecasting.engine import step
from forecasting.forecast import demand, history, series

DEFAULTS = {"history_days": 364, "batch_days": 28, "horizon_days": 28, "interval": 0.8, "model": "auto"}
LIMITS = {"history_days": (7, 3660), "batch_days": (1, 366), "horizon_days": (1, 366)}


class ForecastInputInvalid(ValueError):
    """A step's input is not what it takes; the message names the field."""


def _date(value, field: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ForecastInputInvalid(f"{field} is a date like 2026-12-01, got {value!r}") from None


def _whole(value, field: str) -> int:
    low, high = LIMITS[field]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ForecastInputInvalid(f"{field} is a whole number from {low} to {high}, got {value!r}")
    return value


@step("forecast.plan")
def plan(event: dict | None) -> dict:
    """Normalise the run's input and cut the history into date ranges (the Map's items).

    Input (all optional): ``as_of`` (the last history day, default yesterday; the forecast starts the day
    after), ``history_days``, ``batch_days``, ``horizon_days``, ``interval``, ``model``, ``flags``."""
    if event is None:
        event = {}
    if not isinstance(event, dict):
        raise ForecastInputInvalid("the input is a JSON object")
    unknown = sorted(set(event) - {*DEFAULTS, "as_of", "flags", "run_name"})
    if unknown:
        raise ForecastInputInvalid(f"unknown input field(s): {', '.join(unknown)}")
    settings = {**DEFAULTS, **{k: v for k, v in event.items() if k in DEFAULTS}}
    as_of = _date(event.get("as_of") or (timezone.localdate() - timedelta(days=1)).isoformat(), "as_of")
    for field in LIMITS:
        _whole(settings[field], field)
    if settings["model"] not in series.MODELS:
        raise ForecastInputInvalid(f"model is one of {', '.join(series.MODELS)}, got {settings['model']!r}")
    interval = settings["interval"]
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not 0 < interval < 1:
        raise ForecastInputInvalid(f"interval is a coverage between 0 and 1 such as 0.8, got {interval!r}")
    flags = event.get("flags") or {}
    if not isinstance(flags, dict) or not all(isinstance(v, bool) for v in flags.values()):
        raise ForecastInputInvalid("flags is an object of true/false values")
    start = as_of - timedelta(days=settings["history_days"] - 1)
    ranges = []
    cursor = start
    while cursor <= as_of:
        end = min(as_of, cursor + timedelta(days=settings["batch_days"] - 1))
        ranges.append({"start": cursor.isoformat(), "end": end.isoformat()})
        cursor = end + timedelta(days=1)
    return {
        **settings,
        "as_of": as_of.isoformat(),
        "weekday": as_of.strftime("%A"),
        "flags": {"volume_model_v2": False, **flags},
        "ranges": ranges,
    }


@step("forecast.load_history")
def load_history(event: dict) -> dict:
    """One batch of history: ``{"start", "end"}`` -> ``{"days": [{"day", "orders", "portions"}]}``."""
    start, end = _date(event.get("start"), "start"), _date(event.get("end"), "end")
    if end < start:
        raise ForecastInputInvalid(f"end {end} is before start {start}")
    return {"start": start.isoformat(), "end": end.isoformat(), "days": history.load_days(start, end)}


@step("forecast.merge_history")
def merge_history(event: dict) -> dict:
    """The Map's batches as one gap-free series up to ``as_of``: ``{"batches": [...], "as_of"}``."""
    days = [day for batch in event.get("batches") or [] for day in batch.get("days", [])]
    return history.contiguous(days, end=_date(event["as_of"], "as_of") if days else None)


@step("forecast.volume")
def volume(event: dict) -> dict:
    """Daily order volume for ``horizon_days`` after ``as_of``, with its interval."""
    as_of = _date(event.get("as_of"), "as_of")
    horizon = _whole(event.get("horizon_days"), "horizon_days")
    orders = (event.get("history") or {}).get("orders") or []
    try:
        result = series.forecast_volume(
            orders, horizon, interval=event.get("interval", 0.8), model=event.get("model", "auto")
        )
    except series.SeriesError as error:
        raise ForecastInputInvalid(str(error)) from None
    days = demand.forecast_days(as_of, horizon)
    return {
        "model": result.model,
        "fit": result.fit,
        "points": [
            {"day": d, "orders": m, "lower": lo, "upper": up}
            for d, m, lo, up in zip(days, result.mean, result.lower, result.upper, strict=True)
        ],
    }


@step("forecast.recipe_mix")
def recipe_mix(event: dict) -> dict:
    """Recipe shares and portions per order from the recent history."""
    history_ = event.get("history") or {}
    return demand.recipe_mix(
        history_.get("portions") or [], history_.get("orders") or [], window_days=event.get("window_days", 28)
    )


@step("forecast.compare_models")
def compare_models(event: dict) -> dict:
    """With the new-model flag on: both volume models' rolling-origin error on this history, side by side.
    The current model stays the published one; the comparison is stored with the forecast."""
    orders = (event.get("history") or {}).get("orders") or []
    out = {"current": event["volume"]["model"], "candidate": event["candidate"]["model"]}
    for role in ("current", "candidate"):
        try:
            result = series.backtest(orders, horizon=7, origins=2, model=out[role])
        except series.SeriesError as error:
            out[f"{role}_error"] = str(error)
            continue
        out[f"{role}_mase"] = result["mase"]
        out["seasonal_naive_mase"] = result["seasonal_naive_mase"]
    return out


def bill_of_materials() -> dict[str, dict[str, float]]:
    from stock.models import RecipeIngredient

    bom: dict[str, dict[str, float]] = defaultdict(dict)
    for code, sku, quantity in RecipeIngredient.objects.values_list(
        "recipe__code", "ingredient__sku", "quantity_per_portion"
    ):
        bom[code][sku] = float(quantity)
    return dict(bom)


@step("forecast.ingredient_demand")
def ingredient_demand(event: dict) -> dict:
    """Expand forecast orders through the recipe mix and the recipes' bills of materials."""
    points = event["volume"]["points"]
    return demand.ingredient_demand(
        days=[p["day"] for p in points],
        orders=[p["orders"] for p in points],
        mix=event["mix"],
        bill_of_materials=bill_of_materials(),
    )


def stock_on_hand(skus: set[str] | None = None) -> dict[str, dict]:
    """Per sku: active batches with what is free on them, and open reservations by needed-by day."""
    from stock.models import Allocation, Batch

    stock: dict[str, dict] = defaultdict(lambda: {"batches": [], "reservations": {}})
    batches = Batch.objects.filter(status=Batch.Status.ACTIVE, quantity_remaining__gt=0).values_list(
        "ingredient__sku", "lot", "best_before", "quantity_remaining", "quantity_reserved"
    )
    for sku, lot, best_before, remaining, reserved in batches:
        stock[sku]["batches"].append(
            {"lot": lot, "best_before": best_before.isoformat(), "available": str(remaining - reserved)}
        )
    held = Allocation.objects.filter(open=True).values_list("ingredient__sku", "reservation__needed_by", "quantity")
    for sku, needed_by, quantity in held:
        key = needed_by.isoformat() if needed_by else "unscheduled"
        reservations = stock[sku]["reservations"]
        reservations[key] = str(Decimal(reservations.get(key, "0")) + quantity)
    return {sku: value for sku, value in stock.items() if skus is None or sku in skus}


@step("forecast.project_stock")
def project_stock(event: dict) -> dict:
    """Stock on hand projected over the forecast days: what expires unused, what runs short and when."""
    return demand.project_stock(
        as_of=_date(event.get("as_of"), "as_of"), demand_days=event["demand"]["days"], stock=stock_on_hand()
    )


def supplier_terms() -> dict[str, list[demand.Terms]]:
    from stock.models import SupplierIngredient

    terms: dict[str, list[demand.Terms]] = defaultdict(list)
    for row in SupplierIngredient.objects.select_related("supplier", "ingredient"):
        terms[row.ingredient.sku].append(
            demand.Terms(
                row.supplier.code,
                row.pack_size,
                row.minimum_order_quantity,
                row.effective_lead_time_days,
                row.preferred,
            )
        )
    return dict(terms)


@step("forecast.purchase_suggestions")
def purchase_suggestions(event: dict) -> dict:
    """Orderable purchase suggestions per supplier and ingredient (pack size, minimum order, lead time)."""
    as_of = _date(event.get("as_of"), "as_of")
    return {
        "suggestions": demand.purchase_suggestions(as_of=as_of, projection=event["projection"], terms=supplier_terms())
    }


@step("forecast.publish")
def publish(event: dict) -> dict:
    """Store the forecast and its suggestions, write the reports, publish the events (idempotent by run)."""
    from forecasting.forecast import services

    forecast = services.publish_forecast(run_name=event["run_name"], state=event)
    return {
        "forecast_id": forecast.pk,
        "model": forecast.model,
        "suggestions": forecast.suggestions.count(),
        "report_keys": forecast.report_keys,
    }
