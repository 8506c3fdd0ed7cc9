"""Data of the forecast: the daily order history it learns from, the forecasts it published, their
points and the purchase suggestions they led to.

``HistoryDay`` is a compact history (one row per delivery date: orders and portions per recipe), written by
``manage.py demo_history`` (a roll-up of old orders into it is planned, not built), so months of history
cost hundreds of rows instead of hundreds of thousands of ``Order`` rows; live orders are read from
``integrations`` for dates it lacks.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q

QUANTITY = {"max_digits": 14, "decimal_places": 3}


class HistoryDay(models.Model):
    day = models.DateField(primary_key=True)
    orders = models.PositiveIntegerField()
    portions = models.JSONField(default=dict, help_text="Portions delivered per recipe code: {code: portions}.")
    source = models.CharField(max_length=20, default="demo", help_text="demo, or rollup (from orders).")

    class Meta:
        ordering = ["day"]
        verbose_name = "history day"

    def __str__(self) -> str:
        return f"{self.day}: {self.orders} orders"


class Forecast(models.Model):
    """One published forecast: a run of the forecast pipeline (or ``manage.py run_forecast``)."""

    run_name = models.CharField(max_length=100, unique=True, help_text="Idempotency key of the run.")
    created_at = models.DateTimeField(auto_now_add=True)
    as_of = models.DateField(help_text="The first forecast day is the day after.")
    horizon_days = models.PositiveSmallIntegerField()
    model = models.CharField(max_length=40, help_text="holt_winters, seasonal_naive or mean.")
    interval = models.FloatField(help_text="Coverage of the prediction interval, such as 0.8.")
    history = models.JSONField(default=list, help_text="[[day, orders]] the model was fitted on (for the chart).")
    recipe_mix = models.JSONField(default=dict)
    ingredient_demand = models.JSONField(default=dict, help_text="{sku: total quantity over the horizon}.")
    stock_projection = models.JSONField(default=dict, help_text="Per sku: on hand, reserved, expiring unused, short.")
    details = models.JSONField(default=dict, blank=True, help_text="Factory, flags, compared models, fit summary.")
    report_keys = models.JSONField(default=list, blank=True, help_text="Object-storage keys of the reports.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.run_name} ({self.model}, from {self.as_of})"


class ForecastPoint(models.Model):
    forecast = models.ForeignKey(Forecast, on_delete=models.CASCADE, related_name="points")
    day = models.DateField()
    orders = models.FloatField()
    lower = models.FloatField()
    upper = models.FloatField()

    class Meta:
        ordering = ["forecast", "day"]
        constraints = [
            models.UniqueConstraint(fields=["forecast", "day"], name="forecast_point_once"),
            models.CheckConstraint(condition=Q(lower__lte=models.F("upper")), name="forecast_interval_ordered"),
        ]

    def __str__(self) -> str:
        return f"{self.day}: {self.orders:.1f} [{self.lower:.1f}, {self.upper:.1f}]"


class PurchaseSuggestion(models.Model):
    forecast = models.ForeignKey(Forecast, on_delete=models.CASCADE, related_name="suggestions")
    supplier_code = models.CharField(max_length=64, blank=True, help_text="Empty: no supplier sells it.")
    sku = models.CharField(max_length=64)
    quantity = models.DecimalField(**QUANTITY, help_text="Whole packs, at least the minimum order.")
    packs = models.PositiveIntegerField(default=0)
    shortfall = models.DecimalField(**QUANTITY, help_text="What the projection lacks before rounding.")
    order_by = models.DateField(help_text="Latest day to place it so it arrives in time.")
    arrives = models.DateField()
    needed_by = models.DateField(help_text="First day stock would run short.")
    late = models.BooleanField(default=False, help_text="Even ordered today it arrives after it is needed.")

    class Meta:
        ordering = ["forecast", "order_by", "sku"]
        constraints = [
            models.UniqueConstraint(fields=["forecast", "sku", "supplier_code"], name="suggestion_once"),
            models.CheckConstraint(condition=Q(quantity__gte=Decimal(0)), name="suggestion_quantity_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} {self.sku} from {self.supplier_code or '?'} by {self.order_by}"
