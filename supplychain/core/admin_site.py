"""The admin site operations staff use (the project's ``admin.site``, see ``OperationsAdminConfig``)."""

from __future__ import annotations

from django.contrib import admin

# What operations staff open most comes first; every other app follows in alphabetical order.
APP_ORDER = ["stock", "events", "integrations", "forecasting", "core"]


class OperationsAdminSite(admin.AdminSite):
    site_header = "supplychain operations"
    site_title = "supplychain operations"
    index_title = "Stock, orders, integrations and pipelines"
    site_url = "/api/docs/"  # "View site": the API's own documentation (there is no public site)

    def get_app_list(self, request, app_label=None):
        apps = super().get_app_list(request, app_label)
        rank = {label: n for n, label in enumerate(APP_ORDER)}
        return sorted(apps, key=lambda app: (rank.get(app["app_label"], len(rank)), app["name"].lower()))
