"""Data and invariants of forecasting: the forecast's own models live in ``forecasting/forecast/models.py``."""

from forecasting.forecast.models import Forecast, ForecastPoint, HistoryDay, PurchaseSuggestion

__all__ = ["Forecast", "ForecastPoint", "HistoryDay", "PurchaseSuggestion"]
