"""Admin registrations of forecasting: published forecasts with their chart, suggestions, the history."""

from forecasting.forecast.admin import ForecastAdmin, HistoryDayAdmin, PurchaseSuggestionAdmin

__all__ = ["ForecastAdmin", "HistoryDayAdmin", "PurchaseSuggestionAdmin"]
