"""Data and invariants of integrations: customer orders, their lifecycle table and their timeline."""

from __future__ import annotations

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
