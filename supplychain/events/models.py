"""Data of the event backbone: the outbox, subscriptions, deliveries and the immutable audit log."""

from __future__ import annotations

import fnmatch
import math
import random
import uuid

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

# Bounds of a subscription's target and retry policy (README, "Subscriptions"). Wide enough for any real
# endpoint, narrow enough that every delay, timeout and claim computed from them fits a ``timedelta``
# and the delivery lease (EVENTS_LEASE_SECONDS, 60 s, covers at least two POSTs at the longest timeout).
MAX_ATTEMPTS_RANGE = (1, 100)
INITIAL_INTERVAL_RANGE = (0.0, 3600.0)  # seconds
MAX_INTERVAL_RANGE = (0.0, 86400.0)  # seconds: a day
BACKOFF_RATE_RANGE = (1.0, 10.0)
TIMEOUT_SECONDS_RANGE = (0.1, 30.0)
MAX_BATCH_SIZE_RANGE = (1, 100)
# The fields every delivery attempt computes with: a row whose values break them is dead-lettered.
POLICY_FIELDS = (
    "max_attempts",
    "initial_interval",
    "backoff_rate",
    "max_interval",
    "jitter",
    "timeout_seconds",
    "max_batch_size",
)


def validate_finite(value) -> None:
    """Refuse NaN and infinities, which pass every ``<`` and ``>`` comparison test unnoticed."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError("Must be a finite number.", code="not_finite")


def bounded(low, high) -> list:
    return [validate_finite, MinValueValidator(low), MaxValueValidator(high)]


class OutboxEvent(models.Model):
    """An event, written in the same transaction as the change it reports; relayed after commit."""

    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    type = models.CharField(max_length=100)
    version = models.PositiveSmallIntegerField(default=1)
    source = models.CharField(max_length=100)
    occurred_at = models.DateTimeField()
    correlation_id = models.CharField(max_length=100, blank=True)
    key = models.CharField(max_length=200, blank=True, help_text="Entity reference: order id, batch id, file key.")
    payload = models.JSONField()
    relayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("publish_platform_event", "Can publish platform.* events through the API")]
        # Plain b-tree indexes, without the LIKE-pattern copies Django adds for db_index=True on PostgreSQL:
        # nothing searches these columns by prefix, and every event paid for two more index entries.
        # (type, id) serves the events API's type filter, newest first, and the live stock stream's
        # "level changes after id N".
        indexes = [
            models.Index(fields=["id"], condition=Q(relayed_at__isnull=True), name="outbox_unrelayed_idx"),
            models.Index(fields=["type", "id"], name="outbox_type_id_idx"),
            models.Index(fields=["correlation_id"], name="outbox_correlation_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"

    def envelope(self) -> dict:
        """The platform-agnostic JSON every subscriber receives."""
        return {
            "id": str(self.event_id),
            "type": self.type,
            "version": self.version,
            "occurred_at": self.occurred_at.isoformat(),
            "source": self.source,
            "correlation_id": self.correlation_id or None,
            "key": self.key or None,
            "payload": self.payload,
        }


class Subscription(models.Model):
    """A subscriber: which events it wants, where they go, and how failures are retried."""

    class Target(models.TextChoices):
        HANDLER = "handler", "Internal handler"
        HTTP = "http", "HTTP endpoint"

    class Jitter(models.TextChoices):
        FULL = "full", "Full: random between 0 and the backoff delay"
        EQUAL = "equal", "Equal: half the delay plus a random half"
        NONE = "none", "None: exactly the backoff delay"

    class Alarm(models.TextChoices):
        OK = "ok", "OK"
        ALARM = "alarm", "Dead letters present"

    name = models.SlugField(max_length=100, unique=True)
    description = models.CharField(max_length=300, blank=True)
    active = models.BooleanField(default=True)
    event_types = models.JSONField(
        default=list, help_text='Patterns matched against the event type, e.g. ["stock.*", "order.dispatched"].'
    )
    filter_policy = models.JSONField(
        default=dict,
        blank=True,
        help_text='SNS-style filter on payload attributes, e.g. {"sku": ["ham"], "quantity": [{"numeric": [">", 0]}]}.',
    )
    target = models.CharField(max_length=10, choices=Target.choices)
    handler = models.CharField(max_length=200, blank=True, help_text="Registered handler name (internal target).")
    url = models.URLField(max_length=500, blank=True, help_text="Endpoint for the HTTP target.")
    secret = models.CharField(
        max_length=200,
        blank=True,
        help_text="Standard Webhooks signing secret, whsec_<base64> (HTTP target); generated when not given.",
    )
    previous_secret = models.CharField(
        max_length=200, blank=True, editable=False, help_text="The secret before the last rotation."
    )
    previous_secret_expires_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Until then deliveries are signed with both secrets."
    )
    max_batch_size = models.PositiveIntegerField(
        default=1,
        validators=bounded(*MAX_BATCH_SIZE_RANGE),
        help_text="HTTP endpoints that accept batches: events per POST.",
    )
    timeout_seconds = models.FloatField(default=10.0, validators=bounded(*TIMEOUT_SECONDS_RANGE))
    queue = models.CharField(max_length=50, default="events")
    max_attempts = models.PositiveIntegerField(default=5, validators=bounded(*MAX_ATTEMPTS_RANGE))
    initial_interval = models.FloatField(default=1.0, validators=bounded(*INITIAL_INTERVAL_RANGE), help_text="Seconds.")
    backoff_rate = models.FloatField(default=2.0, validators=bounded(*BACKOFF_RATE_RANGE))
    max_interval = models.FloatField(default=3600.0, validators=bounded(*MAX_INTERVAL_RANGE), help_text="Seconds.")
    jitter = models.CharField(max_length=10, choices=Jitter.choices, default=Jitter.FULL)
    alarm_state = models.CharField(max_length=10, choices=Alarm.choices, default=Alarm.OK, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=~Q(target="http") | ~Q(url=""), name="subscription_http_needs_url"),
            models.CheckConstraint(
                condition=~Q(target="handler") | ~Q(handler=""), name="subscription_handler_needs_name"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Check every field and report all problems at once, each under its field name."""
        from django.conf import settings

        from supplychain.events import filters, registry

        errors: dict[str, str] = {}
        if not isinstance(self.event_types, list) or not all(isinstance(p, str) and p for p in self.event_types):
            errors["event_types"] = "A list of type patterns such as 'stock.*'."
        try:
            filters.validate_policy(self.filter_policy)
        except ValueError as exc:
            errors["filter_policy"] = str(exc)
        if self.target == self.Target.HANDLER and self.handler not in registry.handlers():
            errors["handler"] = f"No handler named {self.handler!r} is registered."
        if self.target == self.Target.HTTP and not self.url:
            errors["url"] = "An HTTP subscription needs a URL."
        if self.queue not in settings.CELERY_QUEUES:
            errors["queue"] = f"One of {', '.join(settings.CELERY_QUEUES)}."
        if errors:
            raise ValidationError(errors)

    def policy_problems(self) -> dict[str, list[str]]:
        """What is wrong with the fields attempts are computed from (a row written past validation)."""
        from supplychain.events import signing

        problems: dict[str, list[str]] = {}
        try:
            self.clean_fields(exclude=[f.name for f in self._meta.fields if f.name not in POLICY_FIELDS])
        except ValidationError as exc:
            problems.update(exc.message_dict)
        if self.target == self.Target.HTTP and self.secret:
            problem = signing.secret_problem(self.secret, check_length=False)
            if problem:
                problems["secret"] = [problem]
        return problems

    def matches_type(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.event_types)

    def backoff_ceiling(self, attempt: int) -> float:
        """The delay before retry number ``attempt`` (1 = after the first failure), before jitter."""
        return min(self.max_interval, self.initial_interval * self.backoff_rate ** (attempt - 1))

    def retry_delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = self.backoff_ceiling(attempt)
        rng = rng or random
        if self.jitter == self.Jitter.FULL:
            return rng.uniform(0, ceiling)
        if self.jitter == self.Jitter.EQUAL:
            return ceiling / 2 + rng.uniform(0, ceiling / 2)
        return ceiling


class Delivery(models.Model):
    """One event for one subscriber (an SQS message in that subscriber's queue).

    ``visible_at`` works like SQS visibility: a claimed delivery is hidden until its lease ends, so a
    worker that dies mid-attempt leaves it to be claimed again, never lost. ``leased_by`` names the
    claiming worker, so that worker, restarted under the same name, takes its leases back at once.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        IN_FLIGHT = "in_flight", "In flight"
        SUCCEEDED = "succeeded", "Succeeded"
        DEAD = "dead", "Dead"

    # No index of their own: measured on the orders benchmark's tables (544,000 deliveries), neither was
    # ever scanned, each cost every relayed delivery an index entry (39 and 17 MB), and the unique
    # (event, subscription) and (subscription, status) indexes serve the same lookups and cascades.
    event = models.ForeignKey(OutboxEvent, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts in the current round.")
    total_attempts = models.PositiveIntegerField(default=0, help_text="Attempts across every redrive.")
    redrive_count = models.PositiveIntegerField(default=0)
    visible_at = models.DateTimeField(help_text="When the delivery may next be attempted.")
    leased_by = models.CharField(
        max_length=200,
        blank=True,
        default="",
        db_default="",  # also for the relay's raw INSERT
        help_text="The worker (Celery node name) that last claimed it.",
    )
    last_error = models.TextField(blank=True)
    last_http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    dead_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "subscription"], name="one_delivery_per_event_and_subscription"),
        ]
        indexes = [
            models.Index(
                fields=["subscription", "visible_at"],
                condition=Q(status__in=["pending", "in_flight"]),
                name="delivery_due_idx",
            ),
            models.Index(fields=["subscription", "status"], name="delivery_sub_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} → {self.subscription_id} ({self.status})"


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("Audit entries are immutable.")


class AuditEntry(models.Model):
    """One message that crossed the backbone: published, a delivery attempt, received, or redriven.

    Immutable: never updated (PostgreSQL also refuses UPDATE with a trigger); only the archive
    service removes rows, after they are safely in object storage.
    """

    class Kind(models.TextChoices):
        PUBLISHED = "published", "Published"
        ATTEMPT = "attempt", "Delivery attempt"
        RECEIVED = "received", "Received"
        REDRIVEN = "redriven", "Redriven"

    occurred_at = models.DateTimeField(db_index=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    event_id = models.UUIDField(null=True, blank=True, db_index=True)
    event_type = models.CharField(max_length=100, blank=True)
    correlation_id = models.CharField(max_length=100, blank=True)
    entity_key = models.CharField(max_length=200, blank=True)
    subscription = models.CharField(max_length=100, blank=True)
    partner = models.CharField(max_length=100, blank=True)
    delivery_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    attempt = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=20, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    delay_seconds = models.FloatField(null=True, blank=True, help_text="Retry delay chosen after this attempt.")
    error = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["correlation_id"], name="audit_correlation_idx"),
            models.Index(fields=["entity_key"], name="audit_entity_idx"),
            models.Index(fields=["event_type", "occurred_at"], name="audit_type_time_idx"),
            models.Index(fields=["subscription", "occurred_at"], name="audit_sub_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.event_type} {self.occurred_at:%Y-%m-%d %H:%M:%S}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise TypeError("Audit entries are immutable.")
        super().save(*args, **kwargs)

    def as_record(self) -> dict:
        """The JSON-lines form written to the archive."""
        return {
            "id": self.pk,
            "occurred_at": self.occurred_at.isoformat(),
            "kind": self.kind,
            "event_id": str(self.event_id) if self.event_id else None,
            "event_type": self.event_type,
            "correlation_id": self.correlation_id,
            "entity_key": self.entity_key,
            "subscription": self.subscription,
            "partner": self.partner,
            "delivery_id": self.delivery_id,
            "attempt": self.attempt,
            "outcome": self.outcome,
            "http_status": self.http_status,
            "duration_ms": self.duration_ms,
            "delay_seconds": self.delay_seconds,
            "error": self.error,
            "data": self.data,
        }


class AuditArchive(models.Model):
    """One archive file written to object storage by ``archive_audit``."""

    key = models.CharField(max_length=500, unique=True)
    storage = models.CharField(max_length=300, help_text="Bucket or local folder.")
    entries = models.PositiveIntegerField()
    first_occurred_at = models.DateTimeField()
    last_occurred_at = models.DateTimeField()
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.key
