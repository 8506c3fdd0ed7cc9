"""App config for the platform core; brands the admin for operations staff."""

from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "supplychain.core"
    label = "core"
    verbose_name = "Platform"

    def ready(self) -> None:
        from django.contrib import admin

        admin.site.site_header = "supplychain operations"
        admin.site.site_title = "supplychain operations"
        admin.site.index_title = "Stock, orders, integrations and pipelines"
