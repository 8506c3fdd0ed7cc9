"""First-run set-up for ``make run``: the admin user, the role groups, API users with tokens, what each app
installs (``<app>.bootstrap.install()``: the forecast pipeline and its schedule), demo data.

The roles (``ROLES``) are the one place that says what each kind of API caller may do; ``issue_token``
gives a user a role and a token (``manage.py issue_token``).

Every step is idempotent: running it again changes nothing and reports the same credentials.
"""

from __future__ import annotations

import importlib
import os
import secrets
from dataclasses import dataclass
from typing import NamedTuple

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.db import transaction
from rest_framework.authtoken.models import Token

from supplychain.core.errors import InvalidUsername, UnknownRole, UnknownUser
from supplychain.core.models import Milestone

ADMIN_USERNAME = "admin"
# What each role may do, as "app_label.codename"; later capabilities add theirs.
PLATFORM_PERMISSIONS = (
    "events.add_outboxevent",
    "events.view_outboxevent",
    "events.publish_platform_event",
    "stock.add_reservation",
    "stock.change_reservation",
    "stock.view_reservation",
    "stock.add_receipt",
    "stock.view_receipt",
    "stock.view_ingredient",
    "stock.view_recipe",
    "integrations.add_order",
    "integrations.change_order",
    "integrations.view_order",
)
# Upserting master data through the API needs add and change (an upsert may do either); reading needs view.
MASTER_DATA_PERMISSIONS = tuple(
    f"stock.{action}_{model}" for model in ("ingredient", "recipe", "supplier") for action in ("view", "add", "change")
)
OPERATIONS_PERMISSIONS = (
    "events.view_outboxevent",
    "events.view_subscription",
    "events.change_subscription",
    "events.view_delivery",
    "events.change_delivery",
    "events.view_auditentry",
    "events.view_auditarchive",
    *MASTER_DATA_PERMISSIONS,
    "stock.view_batch",
    "stock.view_receipt",
    "stock.add_receipt",
    "stock.view_reservation",
    "stock.change_reservation",
    "stock.view_movement",
    "integrations.view_order",
    "integrations.add_purchaseorder",
    "integrations.view_purchaseorder",
    "integrations.view_alertrule",
    "integrations.change_alertrule",
    "integrations.view_alertgroup",
    "integrations.view_alertnotification",
    "django_celery_beat.view_periodictask",
    "django_celery_beat.change_periodictask",
    "django_celery_results.view_taskresult",
    *(f"forecasting.view_{model}" for model in ("pipeline", "run", "forecast", "purchasesuggestion")),
)
# Demand planners run the forecast: start runs (``add_run``), redrive and cancel them, schedule them.
PLANNER_PERMISSIONS = (
    *(f"forecasting.view_{model}" for model in ("pipeline", "run", "forecast", "purchasesuggestion", "historyday")),
    "forecasting.add_run",
    "forecasting.redrive_run",
    "forecasting.cancel_run",
    "django_celery_beat.view_periodictask",
    "django_celery_beat.change_periodictask",
    "integrations.view_purchaseorder",
)
ERP_PERMISSIONS = (
    *MASTER_DATA_PERMISSIONS,
    "stock.add_receipt",
    "stock.view_receipt",
    "integrations.view_purchaseorder",
)


class Role(NamedTuple):
    """A role group: who it is for, what it may do (printed with its tokens), and its permissions."""

    name: str
    may: str
    permissions: tuple[str, ...]


ROLES = {
    role.name: role
    for role in (
        Role(
            "platform",
            "publish events, reserve/commit/release stock, upload receipts, read levels, batches, ingredients "
            "and recipes; not subscriptions, deliveries, the audit log or master-data changes",
            PLATFORM_PERMISSIONS,
        ),
        Role(
            "operations",
            "everything platform may read, plus subscriptions, deliveries and redrive, the audit log, "
            "master data (ingredients, recipes, suppliers), receipts, purchase orders and alert rules, "
            "pipelines, runs and forecasts (read); not publishing events, reserving, or starting runs",
            OPERATIONS_PERMISSIONS,
        ),
        Role(
            "planner",
            "pipelines, runs and forecasts: read them, start, redrive and cancel runs, change their schedules "
            "(periodic tasks); read purchase orders",
            PLANNER_PERMISSIONS,
        ),
        Role(
            "erp",
            "master data (list, read and upsert ingredients, recipes, suppliers, also in bulk), receipts and goods "
            "receipts, read purchase orders",
            ERP_PERMISSIONS,
        ),
    )
}
API_USERNAME = "platform"
OPERATIONS_USERNAME = "operations"


class IssuedToken(NamedTuple):
    username: str
    role: str
    token: str
    may: str
    user_created: bool
    token_created: bool


@dataclass
class Credentials:
    admin_username: str
    admin_password: str | None
    api_username: str
    api_token: str
    operations_username: str
    operations_token: str
    demo_loaded_now: bool

    def tokens(self) -> list[dict]:
        """Both API tokens, with their role and what each may do (for printing)."""
        return [
            {"username": self.api_username, "role": "platform", "token": self.api_token, "may": ROLES["platform"].may},
            {
                "username": self.operations_username,
                "role": "operations",
                "token": self.operations_token,
                "may": ROLES["operations"].may,
            },
        ]


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


def _group(name: str, permissions: tuple[str, ...]) -> Group:
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


def install_apps() -> list[str]:
    """Run each app's ``<app>.bootstrap.install()`` (what an app sets up on every start: its built-in pipelines,
    its schedules); each must be idempotent and keep what staff changed. The names of the apps run."""
    done = []
    for config in apps.get_app_configs():
        if config.name == "supplychain.core":  # this module: the one that calls the others
            continue
        try:
            module = importlib.import_module(f"{config.name}.bootstrap")
        except ModuleNotFoundError as exc:
            if exc.name != f"{config.name}.bootstrap":
                raise
            continue
        module.install()
        done.append(config.name)
    return done


def bootstrap(*, demo: bool = True) -> Credentials:
    """The admin user, the platform and operations API users with their tokens, the role groups, each app's
    ``install()``, demo data."""
    User = get_user_model()
    password = _admin_password()
    with transaction.atomic():
        admin, created = User.objects.get_or_create(
            username=ADMIN_USERNAME, defaults={"is_staff": True, "is_superuser": True, "email": "admin@localhost"}
        )
        if created:
            admin.set_password(password)
            admin.save()
        for role in ROLES.values():
            _group(role.name, role.permissions)
        # API users are plain (non-staff) users holding only their role's permissions.
        platform = issue_token(username=API_USERNAME, role="platform", create_user=True)
        operations = issue_token(username=OPERATIONS_USERNAME, role="operations", create_user=True)
        install_apps()
    demo_loaded_now = load_demo_data() if demo else False
    shown_password = password if admin.check_password(password) else None
    return Credentials(
        ADMIN_USERNAME,
        shown_password,
        platform.username,
        platform.token,
        operations.username,
        operations.token,
        demo_loaded_now,
    )


@transaction.atomic
def issue_token(*, username: str, role: str, create_user: bool = False, rotate: bool = False) -> IssuedToken:
    """The API token of ``username``, who is given the role group ``role`` (kept up to date).

    The user must exist unless ``create_user`` (then a non-staff user without a password, who can only
    use the API). A user has one token: it is created once and kept, unless ``rotate`` replaces it
    (the old one stops working at once). Other groups the user holds are kept.
    """
    if role not in ROLES:
        raise UnknownRole(
            f"No role {role!r}; the roles are {', '.join(ROLES)}.", errors={"role": [f"One of {', '.join(ROLES)}."]}
        )
    User = get_user_model()
    try:
        User.username_validator(username)
        User._meta.get_field(User.USERNAME_FIELD).run_validators(username)
    except ValidationError as exc:
        raise InvalidUsername(
            f"Not a valid user name: {' '.join(exc.messages)}", errors={"user": exc.messages}
        ) from None
    user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
    user_created = False
    if user is None:
        if not create_user:
            raise UnknownUser(f"No user {username!r} (create it with --create).", errors={"user": ["No such user."]})
        user = User(**{User.USERNAME_FIELD: username}, is_staff=False)
        user.set_unusable_password()
        user.save()
        user_created = True
    user.groups.add(_group(role, ROLES[role].permissions))
    if rotate:
        Token.objects.filter(user=user).delete()
    token, token_created = Token.objects.get_or_create(user=user)
    return IssuedToken(username, role, token.key, ROLES[role].may, user_created, token_created)
