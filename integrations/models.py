"""Data and invariants of integrations: customer orders, their lifecycle table and their timeline; alerts."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, validate_email
from django.db import models
from django.db.models import Q

from supplychain.core.identifiers import IDENTIFIER_MAX_LENGTH, identifier_validator


class Order(models.Model):
    """A customer order from the platform, keyed by the platform's ``order_id`` (the idempotency key).

    The order as received (``lines``, ``delivery_address``) is kept as sent, canonicalised; the
    reservation that serves it is the stock reservation whose transaction id is the order id.
    """

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        RESERVED = "reserved", "Reserved"
        SHORT = "short", "Short of stock"
        SENT_TO_WMS = "sent_to_wms", "Sent to the WMS"
        PICKED = "picked", "Picked"
        DISPATCHED = "dispatched", "Dispatched"
        IN_TRANSIT = "in_transit", "In transit"
        OUT_FOR_DELIVERY = "out_for_delivery", "Out for delivery"
        DELIVERED = "delivered", "Delivered"
        DELIVERY_FAILED = "delivery_failed", "Delivery failed"
        RETURNED = "returned", "Returned"
        CANCELLED = "cancelled", "Cancelled"

    order_id = models.CharField(max_length=IDENTIFIER_MAX_LENGTH, unique=True, validators=[identifier_validator])
    customer_reference = models.CharField(max_length=100)
    delivery_date = models.DateField()
    delivery_address = models.JSONField()
    lines = models.JSONField(help_text="As received: [{recipe, portions}] or [{sku, quantity}].")
    request_hash = models.CharField(max_length=64, help_text="A repeat must match it to be answered as the first.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RECEIVED)
    received_at = models.DateTimeField()
    status_changed_at = models.DateTimeField()

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            # The batch claim: received orders, oldest first.
            models.Index(fields=["id"], condition=Q(status="received"), name="order_received_idx"),
            models.Index(fields=["status", "delivery_date"], name="order_status_date_idx"),
            models.Index(fields=["customer_reference"], name="order_customer_idx"),
            models.Index(fields=["delivery_date"], name="order_delivery_date_idx"),
        ]

    def __str__(self) -> str:
        return self.order_id


S = Order.Status

# The one table of legal transitions: from each status, the statuses an order may move to. Anything else
# is refused (logged, audited, never applied), so a late message never moves an order backwards.
# Cancelling releases the reservation, so it is legal only while nothing is picked.
LEGAL_TRANSITIONS: dict[str, frozenset[str]] = {
    S.RECEIVED: frozenset({S.RESERVED, S.SHORT, S.CANCELLED}),
    S.RESERVED: frozenset({S.SENT_TO_WMS, S.CANCELLED}),
    S.SHORT: frozenset({S.CANCELLED}),
    S.SENT_TO_WMS: frozenset({S.PICKED, S.CANCELLED}),
    S.PICKED: frozenset({S.DISPATCHED}),
    S.DISPATCHED: frozenset({S.IN_TRANSIT, S.OUT_FOR_DELIVERY, S.DELIVERED, S.DELIVERY_FAILED, S.RETURNED}),
    S.IN_TRANSIT: frozenset({S.OUT_FOR_DELIVERY, S.DELIVERED, S.DELIVERY_FAILED, S.RETURNED}),
    S.OUT_FOR_DELIVERY: frozenset({S.DELIVERED, S.DELIVERY_FAILED, S.RETURNED}),
    S.DELIVERY_FAILED: frozenset({S.OUT_FOR_DELIVERY, S.DELIVERED, S.RETURNED}),
    S.DELIVERED: frozenset(),
    S.RETURNED: frozenset(),
    S.CANCELLED: frozenset(),
}


class OrderTransition(models.Model):
    """One step of an order's timeline: the move, when, who said so, and what came with it."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="timeline")
    from_status = models.CharField(max_length=20, choices=Order.Status.choices, blank=True)
    to_status = models.CharField(max_length=20, choices=Order.Status.choices)
    occurred_at = models.DateTimeField()
    source = models.CharField(max_length=50, help_text="platform, worker, operations, or a partner's name.")
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        indexes = [models.Index(fields=["order", "id"], name="order_timeline_idx")]

    def __str__(self) -> str:
        return f"{self.from_status or '∅'} → {self.to_status}"


class PartnerMessage(models.Model):
    """One message that crossed the boundary with a partner, in or out, kept raw beside its translation.

    Inbound messages are deduplicated by the partner's message id: the first one with an id is the one
    applied (or parked, or rejected); a repeat is stored as ``duplicate`` and changes nothing. A parked
    message (unknown status, unknown order) is replayed once the vocabulary or the order is fixed.
    """

    class Direction(models.TextChoices):
        INBOUND = "in", "Inbound"
        OUTBOUND = "out", "Outbound"

    class Status(models.TextChoices):
        APPLIED = "applied", "Applied"
        PARKED = "parked", "Parked (replayable)"
        DUPLICATE = "duplicate", "Duplicate (ignored)"
        REJECTED = "rejected", "Rejected (refused transition)"
        SENT = "sent", "Sent"

    class Reason(models.TextChoices):
        NONE = "", "—"
        UNKNOWN_STATUS = "unknown_status", "Unknown status"
        UNKNOWN_ORDER = "unknown_order", "Unknown order"
        ILLEGAL_TRANSITION = "illegal_transition", "Illegal transition"
        INVALID = "invalid", "Invalid content"
        EARLY = "early", "Early: the order is not there yet (applied when it is)"

    partner = models.CharField(max_length=50)
    direction = models.CharField(max_length=3, choices=Direction.choices)
    message_id = models.CharField(max_length=200, help_text="The partner's message id (ours for outbound).")
    kind = models.CharField(max_length=50, help_text="pick_request, pick_confirmation, shipment, tracking_update…")
    received_at = models.DateTimeField()
    headers = models.JSONField(default=dict, blank=True)
    body = models.TextField(help_text="As it was sent or received, byte for byte (UTF-8).")
    translated = models.JSONField(default=dict, blank=True, help_text="The message in our own terms.")
    raw_status = models.CharField(max_length=200, blank=True, help_text="The partner's status word, as sent.")
    canonical_status = models.CharField(max_length=20, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices)
    reason = models.CharField(max_length=20, choices=Reason.choices, blank=True, default="")
    error = models.TextField(blank=True)
    order_reference = models.CharField(max_length=200, blank=True, help_text="The order as the partner named it.")
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="partner_messages")
    replays = models.PositiveIntegerField(default=0)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            # The dedupe key: one first message per partner message id (repeats are stored as duplicates).
            models.UniqueConstraint(
                fields=["partner", "direction", "message_id"],
                condition=~Q(status="duplicate"),
                name="one_partner_message_per_id",
            )
        ]
        indexes = [
            models.Index(fields=["status", "partner"], name="partner_message_status_idx"),
            models.Index(fields=["order", "received_at"], name="partner_message_order_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.partner} {self.direction} {self.message_id} ({self.status})"


class StatusVocabulary(models.Model):
    """How one partner's status word translates to ours (``Delivered`` → ``delivered``); editable in the admin.

    ``ignore`` marks a word that moves nothing (``InfoReceived``): the message is applied as a no-op.
    A word without a row parks its message until a row is added and the message replayed.
    """

    class Canonical(models.TextChoices):
        IN_TRANSIT = "in_transit", "In transit"
        OUT_FOR_DELIVERY = "out_for_delivery", "Out for delivery"
        DELIVERED = "delivered", "Delivered"
        DELIVERY_FAILED = "delivery_failed", "Delivery failed"
        RETURNED = "returned", "Returned"
        IGNORE = "ignore", "Ignore (moves nothing)"

    partner = models.CharField(max_length=50)
    raw_status = models.CharField(max_length=200)
    canonical_status = models.CharField(max_length=20, choices=Canonical.choices)
    description = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["partner", "raw_status"]
        verbose_name_plural = "status vocabulary"
        constraints = [models.UniqueConstraint(fields=["partner", "raw_status"], name="one_word_per_partner")]

    def __str__(self) -> str:
        return f"{self.partner}: {self.raw_status} → {self.canonical_status}"


# ---- Alerts ---------------------------------------------------------------------------------------

ALERT_SAMPLES_KEPT = 20  # the latest alerts of a group shown in its messages and in the admin


class AlertRule(models.Model):
    """How one kind of alert is routed and grouped (Alertmanager's route): channel, recipients and timers.

    One row per kind, created by the migration with Alertmanager's defaults; operations staff change them
    in the admin. Timers are seconds: ``group_wait`` before a new group's first message, ``group_interval``
    before a message about alerts that joined since, ``repeat_interval`` before repeating an unchanged
    group, ``resolve_after`` without a new alert before an event-driven group counts as cleared.
    """

    class Kind(models.TextChoices):
        DEAD_LETTERS = "dead_letters", "Dead letters"
        PARTNER_FAILING = "partner_failing", "Partner failing repeatedly"
        WEBHOOK_REJECTED = "webhook_rejected", "Webhook rejected (bad or stale signature)"
        MESSAGE_PARKED = "message_parked", "Partner message parked (unknown status or order)"
        ORDER_SHORT = "order_short", "Order short of stock"
        RESERVATION_AT_RISK = "reservation_at_risk", "Reservation at risk from expiry"
        DELIVERY_FAILED = "delivery_failed", "Delivery failed"
        RETURNED = "returned", "Order returned"
        PIPELINE_FAILED = "pipeline_failed", "Pipeline run failed"

    class Channel(models.TextChoices):
        SLACK = "slack", "Slack (SLACK_WEBHOOK_URL)"
        EMAIL = "email", "Email"

    kind = models.CharField(max_length=30, choices=Kind.choices, unique=True)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    recipients = models.TextField(
        blank=True, help_text="Email addresses, one per line or separated by commas (email channel)."
    )
    active = models.BooleanField(default=True, help_text="Off: groups are still kept, no message is sent.")
    group_wait = models.FloatField(default=30.0, validators=[MinValueValidator(0), MaxValueValidator(86400)])
    group_interval = models.FloatField(default=300.0, validators=[MinValueValidator(0), MaxValueValidator(86400)])
    repeat_interval = models.FloatField(
        default=14400.0, validators=[MinValueValidator(1), MaxValueValidator(30 * 86400)]
    )
    resolve_after = models.FloatField(default=300.0, validators=[MinValueValidator(0), MaxValueValidator(30 * 86400)])
    send_resolved = models.BooleanField(default=True, help_text="Send a message when the group clears.")

    class Meta:
        ordering = ["kind"]

    def __str__(self) -> str:
        return self.get_kind_display()

    def recipient_list(self) -> list[str]:
        return [address for address in re.split(r"[\s,;]+", self.recipients) if address]

    def clean(self) -> None:
        bad = []
        for address in self.recipient_list():
            try:
                validate_email(address)
            except ValidationError:
                bad.append(address)
        if bad:
            raise ValidationError({"recipients": f"Not an email address: {', '.join(bad)}."})


class AlertGroup(models.Model):
    """Alerts of one kind from one partner while the condition lasts (an Alertmanager group).

    ``count`` is how many alerts joined (for dead letters and failing partners: how many there are now);
    ``notified_count`` what the last message reported, so the next one says how many joined since.
    """

    class Status(models.TextChoices):
        FIRING = "firing", "Firing"
        RESOLVED = "resolved", "Resolved"

    kind = models.CharField(max_length=30, choices=AlertRule.Kind.choices)
    partner = models.CharField(max_length=100, blank=True, help_text="The group's partner; blank for stock.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.FIRING)
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)
    notified_count = models.PositiveIntegerField(default=0)
    notifications = models.PositiveIntegerField(default=0)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_notified = models.BooleanField(default=False)
    samples = models.JSONField(default=list, blank=True, help_text="The latest alerts: [{ref, summary, at}].")

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "partner"], condition=Q(status="firing"), name="one_firing_group_per_kind_partner"
            )
        ]
        indexes = [models.Index(fields=["status", "kind"], name="alertgroup_status_kind_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.partner or '—'} ({self.status})"


class AlertNotification(models.Model):
    """One message sent (or logged) for a group: a backbone event delivered by the Slack or email handler."""

    class Reason(models.TextChoices):
        FIRING = "firing", "First message"
        UPDATE = "update", "Alerts joined since"
        REPEAT = "repeat", "Repeat: still firing"
        RESOLVED = "resolved", "Resolved"

    class Outcome(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        LOGGED = "logged", "Logged (no Slack URL or no recipients)"

    group = models.ForeignKey(AlertGroup, on_delete=models.CASCADE, related_name="messages")
    kind = models.CharField(max_length=30, choices=AlertRule.Kind.choices)
    partner = models.CharField(max_length=100, blank=True)
    channel = models.CharField(max_length=10, choices=AlertRule.Channel.choices)
    reason = models.CharField(max_length=10, choices=Reason.choices)
    count = models.PositiveIntegerField()
    new_since_last = models.PositiveIntegerField()
    title = models.CharField(max_length=300)
    text = models.TextField()
    recipients = models.JSONField(default=list, blank=True)
    event_id = models.UUIDField(null=True, blank=True, help_text="The integration.alert_notified event.")
    created_at = models.DateTimeField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PENDING)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["kind", "created_at"], name="alertnotification_kind_idx")]

    def __str__(self) -> str:
        return self.title


# ---- ERP ------------------------------------------------------------------------------------------


class PurchaseOrder(models.Model):
    """A purchase order to a supplier, sent to the ERP (``integrations.adapters.erp``) as a backbone delivery.

    Keyed by the caller's ``purchase_order_id`` (the idempotency key); ``lines`` are [{sku, quantity}] as
    received, canonicalised. ``sent_at`` is when the ERP took it.
    """

    class Status(models.TextChoices):
        PLACED = "placed", "Placed"
        SENT = "sent", "Sent to the ERP"

    purchase_order_id = models.CharField(
        max_length=IDENTIFIER_MAX_LENGTH, unique=True, validators=[identifier_validator]
    )
    supplier = models.CharField(max_length=100)
    expected_date = models.DateField()
    lines = models.JSONField(help_text="[{sku, quantity}] as received, quantities as decimal strings.")
    notes = models.CharField(max_length=500, blank=True)
    request_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PLACED)
    erp_reference = models.CharField(max_length=100, blank=True, help_text="The ERP's document number.")
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.purchase_order_id
