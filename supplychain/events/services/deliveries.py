"""Deliveries: claimed in batches (``FOR UPDATE SKIP LOCKED``, like SQS receive with a visibility timeout), run,
every attempt recorded in the audit log, retried by policy, dead-lettered, alarmed; leases taken back on restart.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from supplychain.celery import app as celery_app
from supplychain.core.db import copy_rows
from supplychain.events import kicks, metrics, registry, signals, transport
from supplychain.events.models import AuditEntry, Delivery, Subscription
from supplychain.events.services.publishing import AUDIT_FIELDS, event_setting, publish
from supplychain.events.transport import Outcome

logger = logging.getLogger(__name__)

# The delivery task, sent by name (tasks.py registers it under this name; settings route it).
DELIVER_TASK = "events.deliver"
OPEN = (Delivery.Status.PENDING, Delivery.Status.IN_FLIGHT)
ATTEMPT_FIELDS = [*AUDIT_FIELDS, "delivery_id", "attempt", "http_status", "duration_ms", "delay_seconds"]


def kick_deliveries(subscriptions: Iterable[Subscription], countdown: float | None = None) -> None:
    """Ask a worker on each subscription's queue to drain its due deliveries.

    An immediate kick is sent only when none is pending for that subscription (``kicks``: one ``SET NX``
    in Redis, shared by every process; the drain clears it before it claims). A countdown kick (a retry
    due later) always goes out: it must not hold back the kicks of new events meanwhile.
    """
    for subscription in subscriptions:
        guard = kicks.deliveries_key(subscription.id)
        if countdown is None and not kicks.claim(guard):
            continue  # a drain is already on its way and will claim this event too
        try:
            celery_app.send_task(
                DELIVER_TASK, (subscription.id,), queue=subscription.queue, countdown=countdown, retry=False
            )
        except Exception as exc:  # the deliveries are in the database; the sweep kicks again
            if countdown is None:
                kicks.clear(guard)
            logger.warning("delivery kick for %s not sent (%s); the sweep will", subscription.name, exc)


# ---- Deliver ------------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    claimed: int = 0
    succeeded: int = 0
    retrying: int = 0
    dead: int = 0
    next_retry_in: float | None = field(default=None, repr=False)


def process_deliveries(
    *, subscription_id: int, batch_size: int | None = None, time_budget: float | None = None, worker: str = ""
):
    """Claim and run due deliveries of one subscription until none are due or the budget is spent.

    ``worker`` (the Celery node name) is recorded on each claim: see ``take_back_leases``.
    """
    # Cleared first, before any claim or early return: an event committed from now on sends a kick of its
    # own, and one committed before is seen by the claims below, so none is left waiting for the sweep.
    kicks.clear(kicks.deliveries_key(subscription_id))
    report = DeliveryReport()
    subscription = Subscription.objects.filter(pk=subscription_id, active=True).first()
    if subscription is None:
        return report
    batch_size = batch_size or event_setting("EVENTS_DELIVERY_BATCH", 200)
    problems = subscription.policy_problems()
    if problems:  # a row written past validation (the database, an old row): no attempt can be computed
        _dead_letter_due(subscription, problems, batch_size, report)
        return report
    deadline = time.monotonic() + (time_budget or event_setting("EVENTS_TIME_BUDGET", 5.0))
    out_of_time = False
    while True:
        if time.monotonic() >= deadline:
            out_of_time = True
            break
        claimed = _claim(subscription, batch_size, worker)
        if not claimed:
            break
        report.claimed += len(claimed)
        if subscription.target == Subscription.Target.HANDLER:
            _run_handlers(subscription, claimed, report)
        else:
            outcomes = transport.post_deliveries(subscription, claimed)
            with transaction.atomic():
                _record(subscription, claimed, outcomes, report)
        if len(claimed) < batch_size:
            break  # drained: free the worker for the relay and other subscriptions; new events kick anew
    if out_of_time:  # more may be due: the next drain goes behind whatever else waits on this queue
        kick_deliveries([subscription])
    if report.next_retry_in is not None and report.next_retry_in <= event_setting("EVENTS_COUNTDOWN_MAX", 300):
        kick_deliveries([subscription], countdown=report.next_retry_in + 0.1)
    return report


def _dead_letter_due(subscription: Subscription, problems: dict, batch_size: int, report: DeliveryReport) -> None:
    """Record one attempt with the policy's error on every due delivery and dead-letter it (alarm raised).

    Fix the subscription, then redrive: nothing is attempted, or crashes and comes back, meanwhile.
    """
    error = "The subscription's delivery settings are invalid, so no attempt can be computed: " + "; ".join(
        f"{name}: {' '.join(messages)}" for name, messages in sorted(problems.items())
    )
    while True:
        with transaction.atomic():
            rows = list(
                Delivery.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("event")
                .filter(subscription=subscription, status__in=OPEN, visible_at__lte=timezone.now())
                .order_by("visible_at", "id")[:batch_size]
            )
            if not rows:
                return
            Delivery.objects.filter(id__in=[d.id for d in rows]).update(
                attempts=F("attempts") + 1, total_attempts=F("total_attempts") + 1
            )
            for delivery in rows:
                delivery.attempts += 1
                delivery.total_attempts += 1
            report.claimed += len(rows)
            _record(subscription, rows, [Outcome(False, 0.0, error[:2000])] * len(rows), report, final=True)


def _lease_seconds() -> float:
    return event_setting("EVENTS_LEASE_SECONDS", 60)


def _claim(subscription: Subscription, limit: int, worker: str = "") -> list[Delivery]:
    """Take up to ``limit`` due deliveries and hide them for the lease (SQS receive), leased by ``worker``."""
    if subscription.target == Subscription.Target.HTTP:
        # Never claim more than the lease can cover at the endpoint's timeout.
        posts = max(1, int(_lease_seconds() // max(subscription.timeout_seconds, 0.1)))
        limit = min(limit, posts * subscription.max_batch_size)
    with transaction.atomic():
        now = timezone.now()
        rows = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("event")
            .filter(subscription=subscription, status__in=OPEN, visible_at__lte=now)
            .order_by("visible_at", "id")[:limit]
        )
        if not rows:
            return []
        spent = [d for d in rows if d.attempts >= subscription.max_attempts]
        live = [d for d in rows if d.attempts < subscription.max_attempts]
        if spent:  # a worker died during their last attempt
            lost = [Outcome(ok=False, duration_ms=0.0, error="worker lost during the final attempt")] * len(spent)
            _record(subscription, spent, lost, DeliveryReport(), count_attempt=False)
        visible_at = now + timedelta(seconds=_lease_seconds())
        Delivery.objects.filter(id__in=[d.id for d in live]).update(
            status=Delivery.Status.IN_FLIGHT,
            attempts=F("attempts") + 1,
            total_attempts=F("total_attempts") + 1,
            visible_at=visible_at,
            leased_by=worker[:200],
        )
    for delivery in live:
        delivery.status = Delivery.Status.IN_FLIGHT
        delivery.attempts += 1
        delivery.total_attempts += 1
        delivery.visible_at = visible_at
    return live


def take_back_leases(*, worker: str) -> int:
    """End now the leases ``worker`` holds, and kick their subscriptions; returns how many were taken back.

    For a worker starting under the node name it had: whatever it held then was lost with its process
    (a node name is one live worker), so waiting out the lease would only delay those deliveries. Their
    attempts are redone, so a subscriber may get such a delivery twice (at-least-once).
    """
    if not worker:
        return 0
    with transaction.atomic():
        now = timezone.now()
        held = Delivery.objects.filter(status=Delivery.Status.IN_FLIGHT, leased_by=worker, visible_at__gt=now)
        subscription_ids = set(held.values_list("subscription_id", flat=True))
        taken = held.update(visible_at=now)
        subscriptions = list(
            Subscription.objects.filter(id__in=subscription_ids, active=True).only("id", "queue", "name")
        )
        transaction.on_commit(lambda: kick_deliveries(subscriptions))
    if taken:
        logger.info("took back %d delivery leases held by %s before its restart", taken, worker)
    return taken


def _run_handlers(subscription: Subscription, deliveries: list[Delivery], report: DeliveryReport) -> None:
    """Run an internal handler on the deliveries; their database effects commit with the success marks.

    A batch handler gets all envelopes in one call; if that raises, every event is run on its own
    (each in a savepoint) so only the bad ones fail.
    """
    spec = registry.handlers().get(subscription.handler)
    with transaction.atomic():
        if spec is None:
            missing = Outcome(False, 0.0, f"no handler named {subscription.handler!r} in this worker")
            outcomes = [missing] * len(deliveries)
        elif spec.batch and len(deliveries) > 1:
            started = time.perf_counter()
            try:
                with transaction.atomic():
                    spec.function([delivery.event.envelope() for delivery in deliveries])
            except Exception:  # find the bad ones one by one
                outcomes = [_run_one(spec, delivery) for delivery in deliveries]
            else:
                each = _ms_since(started) / len(deliveries)
                outcomes = [Outcome(True, each)] * len(deliveries)
        else:
            outcomes = [_run_one(spec, delivery) for delivery in deliveries]
        _record(subscription, deliveries, outcomes, report)


def _run_one(spec: registry.HandlerSpec, delivery: Delivery) -> Outcome:
    started = time.perf_counter()
    envelope = delivery.event.envelope()
    try:
        with transaction.atomic():
            spec.function([envelope] if spec.batch else envelope)
    except Exception as exc:  # a failing handler is an attempt outcome, retried by policy
        return Outcome(False, _ms_since(started), f"{type(exc).__name__}: {exc}"[:2000])
    return Outcome(True, _ms_since(started))


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _record(
    subscription: Subscription,
    deliveries: list[Delivery],
    outcomes: list[Outcome],
    report: DeliveryReport,
    *,
    count_attempt: bool = True,
    final: bool = False,
) -> None:
    """Write each attempt's outcome: succeeded, retry at a backoff delay, or dead; audit every attempt.

    ``final`` dead-letters every failure whatever attempts remain; so does a retry delay that cannot
    be computed (its error is added to the attempt's), rather than crashing the task to come back forever.
    """
    now = timezone.now()
    audit = []
    latencies = []
    newly_dead = 0
    for delivery, outcome in zip(deliveries, outcomes, strict=True):
        delay = None
        delivery.last_error = outcome.error
        delivery.last_http_status = outcome.http_status
        if outcome.ok:
            delivery.status = Delivery.Status.SUCCEEDED
            delivery.completed_at = now
            report.succeeded += 1
            latencies.append((now - delivery.event.occurred_at).total_seconds())
            dead = False
        else:
            dead = final or delivery.attempts >= subscription.max_attempts
            if not dead:
                try:
                    delay = subscription.retry_delay(delivery.attempts)
                    visible_at = now + timedelta(seconds=delay)
                except (ArithmeticError, ValueError, TypeError) as exc:
                    delivery.last_error = f"{outcome.error}; no retry delay can be computed ({exc}): dead-lettered"
                    delay, dead = None, True
        if dead:
            delivery.status = Delivery.Status.DEAD
            delivery.dead_at = now
            report.dead += 1
            newly_dead += 1
        elif not outcome.ok:
            delivery.status = Delivery.Status.PENDING
            delivery.visible_at = visible_at
            report.retrying += 1
            report.next_retry_in = delay if report.next_retry_in is None else min(report.next_retry_in, delay)
        event = delivery.event
        audit.append(
            (
                now,
                AuditEntry.Kind.ATTEMPT,
                event.event_id,
                event.type,
                event.correlation_id,
                event.key,
                subscription.name,
                "",
                "succeeded" if outcome.ok else ("dead" if delivery.status == Delivery.Status.DEAD else "failed"),
                delivery.last_error,
                {"counted": count_attempt, "attempt_in_round": delivery.attempts},
                delivery.id,
                delivery.total_attempts,
                outcome.http_status,
                outcome.duration_ms,
                delay,
            )
        )
    _save_outcomes(deliveries, now)
    copy_rows(AuditEntry, ATTEMPT_FIELDS, audit)
    if newly_dead:
        _raise_alarm(subscription)
    elif report.succeeded and subscription.alarm_state == Subscription.Alarm.ALARM:
        _clear_alarm_if_no_dead(subscription)
    durations = [outcome.duration_ms / 1000 for outcome in outcomes]
    results = [outcome.ok for outcome in outcomes]
    transaction.on_commit(lambda: metrics.observe_attempts(subscription.name, durations, results, latencies))


def _save_outcomes(deliveries: list[Delivery], now) -> None:
    """One UPDATE per HTTP status for the successes (the common case), one per row for the rest."""
    succeeded: dict[int | None, list[int]] = defaultdict(list)
    for delivery in deliveries:
        if delivery.status == Delivery.Status.SUCCEEDED:
            succeeded[delivery.last_http_status].append(delivery.id)
        else:
            Delivery.objects.filter(pk=delivery.pk).update(
                status=delivery.status,
                visible_at=delivery.visible_at,
                last_error=delivery.last_error,
                last_http_status=delivery.last_http_status,
                dead_at=delivery.dead_at,
            )
    for http_status, ids in succeeded.items():
        Delivery.objects.filter(id__in=ids).update(
            status=Delivery.Status.SUCCEEDED, completed_at=now, last_error="", last_http_status=http_status
        )


def _raise_alarm(subscription: Subscription) -> None:
    """Fire once when a subscription goes from no dead letters to some (the alarm Slack will hear)."""
    raised = Subscription.objects.filter(pk=subscription.pk, alarm_state=Subscription.Alarm.OK).update(
        alarm_state=Subscription.Alarm.ALARM
    )
    if not raised:
        return
    subscription.alarm_state = Subscription.Alarm.ALARM
    dead = Delivery.objects.filter(subscription=subscription, status=Delivery.Status.DEAD).count()
    publish(
        "events.dead_letters_raised",
        {"subscription": subscription.name, "dead_count": dead, "target": subscription.target},
        key=subscription.name,
    )
    transaction.on_commit(
        lambda: signals.dead_letters_raised.send(sender=Subscription, subscription=subscription, dead_count=dead)
    )


def _clear_alarm_if_no_dead(subscription: Subscription) -> None:
    if not Delivery.objects.filter(subscription=subscription, status=Delivery.Status.DEAD).exists():
        Subscription.objects.filter(pk=subscription.pk).update(alarm_state=Subscription.Alarm.OK)
        subscription.alarm_state = Subscription.Alarm.OK
