"""Subscriptions: created and changed only here, every field checked against its bounds; handler subscriptions
from code.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from supplychain.events import registry, signing
from supplychain.events.errors import SubscriptionGone, SubscriptionInvalid
from supplychain.events.models import Subscription

logger = logging.getLogger(__name__)

# ---- Subscriptions ------------------------------------------------------------------------------

# What a caller may set; alarm_state, the previous secret and the timestamps belong to the backbone.
SUBSCRIPTION_FIELDS = (
    "name",
    "description",
    "active",
    "event_types",
    "filter_policy",
    "target",
    "handler",
    "url",
    "secret",
    "max_batch_size",
    "timeout_seconds",
    "queue",
    "max_attempts",
    "initial_interval",
    "backoff_rate",
    "max_interval",
    "jitter",
)
SECRET_GRACE_SECONDS_DEFAULT = 86400  # a rotated-out secret keeps verifying for a day
SECRET_GRACE_SECONDS_MAX = 7 * 86400
EVENT_TYPE_PATTERNS_MAX = 50


def check_subscription(subscription: Subscription, *, new_secret: bool) -> None:
    """Every field rule and bound at once, each under its field name: ``SubscriptionInvalid`` (400)."""
    from django.core.exceptions import ValidationError

    from supplychain.core.identifiers import identifier_validator

    errors: dict[str, list[str]] = {}
    try:
        subscription.full_clean()
    except ValidationError as exc:
        errors.update(exc.message_dict)
    try:
        identifier_validator(subscription.name)
    except ValidationError as exc:
        errors.setdefault("name", []).extend(exc.messages)
    patterns = subscription.event_types
    if isinstance(patterns, list) and (len(patterns) > EVENT_TYPE_PATTERNS_MAX or any(len(p) > 100 for p in patterns)):
        errors.setdefault("event_types", []).append(f"At most {EVENT_TYPE_PATTERNS_MAX} patterns of 100 characters.")
    if new_secret and subscription.secret:
        problem = signing.secret_problem(subscription.secret)
        if problem:
            errors.setdefault("secret", []).append(problem)
    if errors:
        detail = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in errors.items())
        raise SubscriptionInvalid(detail, errors=errors)


@transaction.atomic
def create_subscription(
    *,
    name: str,
    event_types: list[str],
    target: str,
    description: str = "",
    active: bool = True,
    filter_policy: dict | None = None,
    handler: str = "",
    url: str = "",
    secret: str = "",
    max_batch_size: int = 1,
    timeout_seconds: float = 10.0,
    queue: str = "events",
    max_attempts: int = 5,
    initial_interval: float = 1.0,
    backoff_rate: float = 2.0,
    max_interval: float = 3600.0,
    jitter: str = Subscription.Jitter.FULL,
) -> Subscription:
    """Create a subscription after checking every field against its rules and bounds.

    An HTTP subscription without a secret gets a generated ``whsec_`` one (read it from the returned
    object: the API shows it once, in the answer to the creation); a given secret must be
    ``whsec_<base64>`` of 24 to 64 bytes.
    """
    if target == Subscription.Target.HTTP and not secret:
        secret = signing.generate_secret()
    subscription = Subscription(
        name=name,
        description=description,
        active=active,
        event_types=event_types,
        filter_policy={} if filter_policy is None else filter_policy,
        target=target,
        handler=handler,
        url=url,
        secret=secret,
        max_batch_size=max_batch_size,
        timeout_seconds=timeout_seconds,
        queue=queue,
        max_attempts=max_attempts,
        initial_interval=initial_interval,
        backoff_rate=backoff_rate,
        max_interval=max_interval,
        jitter=jitter,
    )
    check_subscription(subscription, new_secret=True)
    _save_unique_name(subscription)
    return subscription


@transaction.atomic
def update_subscription(
    *, subscription: Subscription, secret_grace_seconds: float = SECRET_GRACE_SECONDS_DEFAULT, **changes
) -> Subscription:
    """Change the named fields of a subscription, checked like a new one; the others stay.

    A new ``secret`` is a rotation: the old one stays valid (deliveries are signed with both) for
    ``secret_grace_seconds``. Turning a subscription into an HTTP one without a secret generates one.
    """
    unknown = sorted(set(changes) - set(SUBSCRIPTION_FIELDS))
    if unknown:
        raise SubscriptionInvalid(
            f"Not a field of a subscription: {', '.join(unknown)}.", errors={f: ["Unknown field."] for f in unknown}
        )
    if not 0 <= secret_grace_seconds <= SECRET_GRACE_SECONDS_MAX:
        raise SubscriptionInvalid(
            f"secret_grace_seconds: between 0 and {SECRET_GRACE_SECONDS_MAX}.",
            errors={"secret_grace_seconds": [f"Between 0 and {SECRET_GRACE_SECONDS_MAX} seconds."]},
        )
    locked = _locked_subscription(subscription)
    if changes.get("secret") == "" and changes.get("target", locked.target) == Subscription.Target.HTTP:
        raise SubscriptionInvalid(
            "secret: an HTTP subscription keeps a secret; rotate-secret generates a new one and shows it.",
            errors={"secret": ["An HTTP subscription keeps a secret; use rotate-secret to generate a new one."]},
        )
    old_secret = locked.secret
    for name, value in changes.items():
        setattr(locked, name, {} if name == "filter_policy" and value is None else value)
    if locked.target == Subscription.Target.HTTP and not locked.secret:
        locked.secret = signing.generate_secret()
    rotated = bool(locked.secret) and locked.secret != old_secret
    check_subscription(locked, new_secret=rotated)
    if rotated and old_secret:
        locked.previous_secret = old_secret
        locked.previous_secret_expires_at = timezone.now() + timedelta(seconds=secret_grace_seconds)
    _save_unique_name(locked)
    return locked


def _save_unique_name(subscription: Subscription) -> None:
    """Save; a name taken meanwhile (two requests at once both passed the API's uniqueness check, the
    unique index let one in) is the same validation error as the check's, not a database error."""
    try:
        with transaction.atomic():
            subscription.save()
    except IntegrityError:
        if not Subscription.objects.filter(name=subscription.name).exclude(pk=subscription.pk).exists():
            raise
        raise SubscriptionInvalid(
            f"A subscription named {subscription.name!r} already exists.",
            errors={"name": ["A subscription with this name already exists."]},
        ) from None


def _locked_subscription(subscription: Subscription) -> Subscription:
    locked = Subscription.objects.select_for_update().filter(pk=subscription.pk).first()
    if locked is None:  # deleted since the caller read it
        raise SubscriptionGone(f"Subscription {subscription.name!r} no longer exists.")
    return locked


@transaction.atomic
def delete_subscription(*, subscription: Subscription) -> None:
    """Remove a subscription with its deliveries; their attempts stay in the audit log."""
    Subscription.objects.filter(pk=subscription.pk).delete()


def rotate_subscription_secret(
    *, subscription: Subscription, secret: str = "", grace_seconds: float = SECRET_GRACE_SECONDS_DEFAULT
) -> Subscription:
    """Give a subscription a new signing secret (generated unless given); the old one verifies for
    ``grace_seconds`` more, so a receiver can switch without losing a delivery."""
    return update_subscription(
        subscription=subscription, secret=secret or signing.generate_secret(), secret_grace_seconds=grace_seconds
    )


# ---- Subscriptions from code --------------------------------------------------------------------


def sync_handler_subscriptions() -> list[str]:
    """Create the subscription of each ``@subscriber(auto_subscribe=True)`` handler that lacks one."""
    created = []
    for spec in registry.handlers().values():
        if not spec.auto_subscribe:
            continue
        _, was_created = Subscription.objects.get_or_create(
            name=spec.name,
            defaults={
                "description": (spec.function.__doc__ or "").strip().split("\n")[0][:300],
                "event_types": spec.event_types,
                "filter_policy": spec.filter_policy,
                "target": Subscription.Target.HANDLER,
                "handler": spec.name,
                "queue": spec.queue,
                "max_attempts": spec.max_attempts,
                "initial_interval": spec.initial_interval,
                "backoff_rate": spec.backoff_rate,
                "max_interval": spec.max_interval,
                "jitter": spec.jitter,
            },
        )
        if was_created:
            created.append(spec.name)
    return created
