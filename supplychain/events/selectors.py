"""Reads of the backbone: subscriptions with their backlog, delivery history, the operations summary."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Min, Q
from django.db.models.functions import TruncMinute
from django.utils import timezone

from supplychain.events.models import AuditEntry, Delivery, OutboxEvent, Subscription


def subscriptions_with_counts():
    return Subscription.objects.annotate(
        dead_count=Count("deliveries", filter=Q(deliveries__status=Delivery.Status.DEAD)),
        pending_count=Count(
            "deliveries", filter=Q(deliveries__status__in=[Delivery.Status.PENDING, Delivery.Status.IN_FLIGHT])
        ),
    ).order_by("name")


def active_subscription_id(name: str) -> int | None:
    """The id of the active subscription called ``name``, or None when there is none or it is switched off."""
    return Subscription.objects.filter(name=name, active=True).values_list("id", flat=True).first()


def delivery_history(delivery_id: int):
    """Every attempt and redrive of one delivery, oldest first (kept across redrives)."""
    return AuditEntry.objects.filter(delivery_id=delivery_id).order_by("occurred_at", "id")


def operations_summary(*, minutes: int = 60) -> dict:
    """What the admin dashboard shows: counts, oldest pending, dead letters, per-minute activity."""
    now = timezone.now()
    since = now - timedelta(minutes=minutes)
    by_status = dict(Delivery.objects.values_list("status").annotate(n=Count("id")).order_by())
    oldest_due = Delivery.objects.filter(
        status__in=[Delivery.Status.PENDING, Delivery.Status.IN_FLIGHT], visible_at__lte=now
    ).aggregate(oldest=Min("created_at"))["oldest"]
    per_minute: dict = {}
    activity = (
        AuditEntry.objects.filter(occurred_at__gte=since, kind__in=[AuditEntry.Kind.PUBLISHED, AuditEntry.Kind.ATTEMPT])
        .annotate(minute=TruncMinute("occurred_at"))
        .values("minute", "kind", "outcome")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in activity:
        bucket = per_minute.setdefault(row["minute"], {"published": 0, "succeeded": 0, "failed": 0})
        if row["kind"] == AuditEntry.Kind.PUBLISHED:
            bucket["published"] += row["n"]
        elif row["outcome"] == "succeeded":
            bucket["succeeded"] += row["n"]
        else:
            bucket["failed"] += row["n"]
    start = since.replace(second=0, microsecond=0)
    series = []
    for step in range(minutes + 1):
        minute = start + timedelta(minutes=step)
        series.append({"minute": minute, **per_minute.get(minute, {"published": 0, "succeeded": 0, "failed": 0})})
    return {
        "deliveries": {status: by_status.get(status, 0) for status in Delivery.Status.values},
        "unrelayed": OutboxEvent.objects.filter(relayed_at__isnull=True).count(),
        "oldest_due_seconds": (now - oldest_due).total_seconds() if oldest_due else None,
        "dead_by_subscription": list(
            subscriptions_with_counts().filter(dead_count__gt=0).values("name", "dead_count", "alarm_state")
        ),
        "series": series,
    }
