"""App config of forecasting."""

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class ForecastingConfig(AppConfig):
    name = "forecasting"
    verbose_name = "Forecasting"

    def ready(self) -> None:
        # Task resources: every installed app's ``steps`` module registers its functions with ``@step``.
        autodiscover_modules("steps")
