"""The forecasting app's Task steps, found by the engine's autodiscovery (``autodiscover_modules("steps")``)."""

from forecasting.forecast import steps  # noqa: F401 (registers forecast.* steps)
