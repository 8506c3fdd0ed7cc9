"""App configs of the platform core, and of the admin as operations staff see it (``OperationsAdminSite``)."""

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class CoreConfig(AppConfig):
    name = "supplychain.core"
    label = "core"
    verbose_name = "Platform"


class OperationsAdminConfig(admin_apps.AdminConfig):
    """``django.contrib.admin`` with the project's site as ``admin.site`` (in INSTALLED_APPS in its place)."""

    default = False  # ``supplychain.core``'s own config stays CoreConfig
    default_site = "supplychain.core.admin_site.OperationsAdminSite"
