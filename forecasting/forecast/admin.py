"""Admin of the forecast: each published forecast with its chart (SVG drawn on the server), its points,
purchase suggestions, ingredient demand and stock projection; all read-only (they are what a run produced)."""

from __future__ import annotations

from django.contrib import admin
from django.utils.safestring import mark_safe

from forecasting.forecast.chart import forecast_svg
from forecasting.forecast.models import Forecast, ForecastPoint, HistoryDay, PurchaseSuggestion
from supplychain.core.admin import ReadOnlyAdmin, json_table


class PointInline(admin.TabularInline):
    model = ForecastPoint
    fields = ["day", "orders", "lower", "upper"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class SuggestionInline(admin.TabularInline):
    model = PurchaseSuggestion
    fields = ["sku", "supplier_code", "quantity", "packs", "shortfall", "order_by", "arrives", "needed_by", "late"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Forecast)
class ForecastAdmin(ReadOnlyAdmin):
    list_display = ["run_name", "as_of", "model", "horizon_days", "created_at"]
    list_filter = ["model"]
    search_fields = ["run_name"]
    fields = [
        "chart",
        "run_name",
        "as_of",
        "horizon_days",
        "model",
        "interval",
        "created_at",
        "report_keys",
        "mix",
        "demand",
        "projection",
        "detail",
    ]
    readonly_fields = fields
    inlines = [SuggestionInline, PointInline]

    @admin.display(description="Chart")
    def chart(self, obj):
        points = list(obj.points.values("day", "orders", "lower", "upper"))
        for point in points:
            point["day"] = point["day"].isoformat()
        # The SVG is built by forecast_svg from numbers and escaped text only.
        return mark_safe(forecast_svg(history=obj.history, points=points, title=f"{obj.run_name} ({obj.model})"))  # noqa: S308

    @admin.display(description="Recipe mix")
    def mix(self, obj):
        return json_table(obj.recipe_mix)

    @admin.display(description="Ingredient demand over the horizon")
    def demand(self, obj):
        return json_table(obj.ingredient_demand)

    @admin.display(description="Stock projection")
    def projection(self, obj):
        rows = [
            {
                "sku": sku,
                "available": item["available"],
                "reserved": item["reserved"],
                "expiring unused": item["expiring_unused_total"],
                "short": item["shortfall_total"],
                "first short day": item["first_short_day"],
            }
            for sku, item in sorted(obj.stock_projection.items())
        ]
        return json_table(rows)

    @admin.display(description="Details")
    def detail(self, obj):
        return json_table(obj.details)


@admin.register(PurchaseSuggestion)
class PurchaseSuggestionAdmin(ReadOnlyAdmin):
    list_display = ["sku", "supplier_code", "quantity", "packs", "order_by", "arrives", "needed_by", "late", "forecast"]
    list_filter = ["late", "supplier_code"]
    search_fields = ["sku", "supplier_code", "forecast__run_name"]


@admin.register(HistoryDay)
class HistoryDayAdmin(ReadOnlyAdmin):
    list_display = ["day", "orders", "source"]
    list_filter = ["source"]
    date_hierarchy = "day"
