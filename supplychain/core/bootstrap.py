"""First-run set-up for ``make run``: the admin user, a least-privilege API user and token, demo data.

Every step is idempotent: running it again changes nothing and reports the same credentials.
"""

from __future__ import annotations

import importlib
import os
import secrets
from dataclasses import dataclass

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from rest_framework.authtoken.models import Token

from supplychain.core.models import Milestone

ADMIN_USERNAME = "admin"
# What each role may do, as "app_label.codename"; later capabilities add theirs.
PLATFORM_PERMISSIONS = [
    "events.add_outboxevent",
    "events.view_outboxevent",
    "stock.add_reservation",
    "stock.change_reservation",
    "stock.view_reservation",
    "stock.add_receipt",
    "stock.view_receipt",
    "integrations.add_order",
    "integrations.change_order",
    "integrations.view_order",
]
OPERATIONS_PERMISSIONS = [
    "events.view_outboxevent",
    "events.view_subscription",
    "events.change_subscription",
    "events.view_delivery",
    "events.change_delivery",
    "events.view_auditentry",
    "events.view_auditarchive",
    "stock.view_ingredient",
    "stock.change_ingredient",
    "stock.view_batch",
    "stock.view_receipt",
    "stock.add_receipt",
    "stock.view_reservation",
    "stock.change_reservation",
    "stock.view_movement",
    "integrations.view_order",
    "django_celery_beat.view_periodictask",
    "django_celery_beat.change_periodictask",
    "django_celery_results.view_taskresult",
]
API_USERNAME = "platform"


@dataclass
class Credentials:
    admin_username: str
    admin_password: str | None
    api_username: str
    api_token: str
    demo_loaded_now: bool


def _admin_password() -> str:
    """The admin password: ADMIN_PASSWORD if set, else a random one kept in var/ (mode 600)."""
    from_env = os.environ.get("ADMIN_PASSWORD", "")
    if from_env:
        return from_env
    path = settings.VAR_DIR / "admin-password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(12))
        path.chmod(0o600)
    return path.read_text().strip()


def _group(name: str, permissions: list[str]) -> Group:
    """The role group ``name`` holding exactly ``permissions`` (created or brought up to date)."""
    group, _ = Group.objects.get_or_create(name=name)
    wanted = []
    for dotted in permissions:
        app_label, codename = dotted.split(".", 1)
        wanted.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    group.permissions.set(wanted)
    return group


def load_demo_data() -> bool:
    """Load each app's demo data (``<app>.demo.load()``) once per database. True if loaded now."""
    with transaction.atomic():
        _, created = Milestone.objects.get_or_create(name="demo-data-loaded")
        if not created:
            return False
        for config in apps.get_app_configs():
            try:
                module = importlib.import_module(f"{config.name}.demo")
            except ModuleNotFoundError as exc:
                if exc.name != f"{config.name}.demo":
                    raise
                continue
            module.load()
    return True


def bootstrap(*, demo: bool = True) -> Credentials:
    User = get_user_model()
    password = _admin_password()
    with transaction.atomic():
        admin, created = User.objects.get_or_create(
            username=ADMIN_USERNAME, defaults={"is_staff": True, "is_superuser": True, "email": "admin@localhost"}
        )
        if created:
            admin.set_password(password)
            admin.save()
        # Platforms call the API as a plain (non-staff) user holding only the permissions they need.
        api_user, _ = User.objects.get_or_create(username=API_USERNAME, defaults={"is_staff": False})
        platform_group = _group("platform", PLATFORM_PERMISSIONS)
        api_user.groups.add(platform_group)
        _group("operations", OPERATIONS_PERMISSIONS)
        token, _ = Token.objects.get_or_create(user=api_user)
    demo_loaded_now = load_demo_data() if demo else False
    shown_password = password if admin.check_password(password) else None
    return Credentials(ADMIN_USERNAME, shown_password, API_USERNAME, token.key, demo_loaded_now)
