"""Metrics of the backbone in Prometheus format (the CloudWatch part of the seeds).

Counters and histograms are written by whichever process does the work (web, workers) into the
multiprocess folder; gauges that describe the backlog are read from the database and broker at
scrape time, so they are right whichever process answers ``/metrics``.
"""

from __future__ import annotations

import time

from celery.signals import task_postrun, task_prerun
from django.conf import settings
from django.db.models import Count, Min
from django.http import HttpResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

EVENTS_PUBLISHED = Counter("supplychain_events_published_total", "Events published, by type.", ["type"])
DELIVERY_ATTEMPTS = Counter(
    "supplychain_delivery_attempts_total",
    "Delivery attempts, by subscription and outcome.",
    ["subscription", "outcome"],
)
DELIVERY_LATENCY = Histogram(
    "supplychain_delivery_latency_seconds",
    "From publish to successfully handled, by subscription.",
    ["subscription"],
    buckets=LATENCY_BUCKETS,
)
ATTEMPT_DURATION = Histogram(
    "supplychain_delivery_attempt_duration_seconds",
    "Duration of one delivery attempt (handler run or HTTP call).",
    ["subscription"],
    buckets=LATENCY_BUCKETS,
)
TASK_RUNTIME = Histogram("supplychain_task_runtime_seconds", "Celery task runtime, by task.", ["task"])


def count_published(counts: dict[str, int]) -> None:
    for event_type, count in counts.items():
        EVENTS_PUBLISHED.labels(event_type).inc(count)


def observe_attempts(subscription: str, durations: list[float], results: list[bool], latencies: list[float]) -> None:
    succeeded = sum(results)
    if succeeded:
        DELIVERY_ATTEMPTS.labels(subscription, "succeeded").inc(succeeded)
    if len(results) > succeeded:
        DELIVERY_ATTEMPTS.labels(subscription, "failed").inc(len(results) - succeeded)
    duration_histogram = ATTEMPT_DURATION.labels(subscription)
    for duration in durations:
        duration_histogram.observe(duration)
    latency_histogram = DELIVERY_LATENCY.labels(subscription)
    for latency in latencies:
        latency_histogram.observe(latency)


_task_started: dict[str, float] = {}


@task_prerun.connect
def _task_prerun(task_id=None, **kwargs) -> None:
    _task_started[task_id] = time.perf_counter()


@task_postrun.connect
def _task_postrun(task_id=None, task=None, **kwargs) -> None:
    started = _task_started.pop(task_id, None)
    if started is not None and task is not None:
        TASK_RUNTIME.labels(task.name).observe(time.perf_counter() - started)


class BacklogCollector:
    """Gauges read at scrape time: deliveries by status, dead letters, oldest due, unrelayed, queues."""

    def collect(self):
        from supplychain.core.selectors import broker_status
        from supplychain.events.models import Delivery, OutboxEvent

        deliveries = GaugeMetricFamily(
            "supplychain_deliveries", "Deliveries by subscription and status.", labels=["subscription", "status"]
        )
        dead = GaugeMetricFamily(
            "supplychain_dead_letters", "Dead deliveries, by subscription.", labels=["subscription"]
        )
        for row in Delivery.objects.values("subscription__name", "status").annotate(n=Count("id")).order_by():
            deliveries.add_metric([row["subscription__name"], row["status"]], row["n"])
            if row["status"] == Delivery.Status.DEAD:
                dead.add_metric([row["subscription__name"]], row["n"])
        yield deliveries
        yield dead

        oldest = GaugeMetricFamily(
            "supplychain_oldest_due_delivery_seconds",
            "Age of the oldest delivery waiting to be attempted, by subscription.",
            labels=["subscription"],
        )
        now = timezone.now()
        waiting = (
            Delivery.objects.filter(status__in=("pending", "in_flight"), visible_at__lte=now)
            .values("subscription__name")
            .annotate(oldest=Min("created_at"))
            .order_by()
        )
        for row in waiting:
            oldest.add_metric([row["subscription__name"]], (now - row["oldest"]).total_seconds())
        yield oldest

        yield GaugeMetricFamily(
            "supplychain_outbox_unrelayed",
            "Events committed but not yet fanned out.",
            value=OutboxEvent.objects.filter(relayed_at__isnull=True).count(),
        )
        depth = GaugeMetricFamily("supplychain_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"])
        broker = broker_status()
        for queue, count in broker.get("queues", {}).items():
            depth.add_metric([queue], count)
        yield depth
        yield GaugeMetricFamily("supplychain_broker_up", "1 when the broker answers.", value=1 if broker["ok"] else 0)


def render() -> HttpResponse:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(settings.PROMETHEUS_MULTIPROC_DIR))
    registry.register(BacklogCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
