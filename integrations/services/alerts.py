"""Alerts grouped the way Prometheus Alertmanager groups them: by kind and partner, with database state.

Alerts come in two ways. Events (a rejected webhook, a parked message, an order short, a reservation at
risk, a failed or returned delivery, a pipeline run that failed) join their group through ``observe_alerts``
(the handlers in ``integrations.handlers``). The backbone's own state (dead deliveries per subscription,
deliveries failing attempt after attempt) is read by the sweep. The sweep (beat, every
ALERTS_SWEEP_SECONDS) resolves what has cleared and decides each message: the first after ``group_wait``,
one about what joined since after ``group_interval``, a repeat after ``repeat_interval``, a resolved one when
the group clears. A message is an ``integration.alert_notified`` event, so the backbone delivers it to the
Slack or email handler with retries, dead letters, redrive and the audit log: an outage of a thousand dead
deliveries is a handful of messages.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F
from django.utils import timezone

from integrations.models import ALERT_SAMPLES_KEPT, AlertGroup, AlertNotification, AlertRule
from supplychain.events.models import Delivery
from supplychain.events.services import OPEN, publish

logger = logging.getLogger(__name__)
Kind = AlertRule.Kind
Channel = AlertRule.Channel

ALERT_EVENT = "integration.alert_notified"
# The handlers that send the messages: their own dead letters are logged, never alerted through themselves.
NOTIFIER_HANDLERS = ("alerts-slack", "alerts-email")
# Kinds whose group follows the backbone's state (resolved when the state clears); the rest resolve once no
# alert joined for the rule's resolve_after.
STATE_KINDS = (Kind.DEAD_LETTERS, Kind.PARTNER_FAILING)
# Alertmanager's inhibit rule: while a partner's dead letters fire, its "failing" group says nothing more.
INHIBITED_BY = {Kind.PARTNER_FAILING: Kind.DEAD_LETTERS}
TEXT_LIMIT = 2900  # Slack refuses section text past 3,000 characters
SAMPLES_IN_MESSAGE = 10

# Defaults per kind: integration issues to Slack, logistics issues by email; logistics groups do not "clear"
# (an order short stays short), so they send no resolved message unless staff switch it on.
DEFAULT_RULES: dict[str, dict] = {
    Kind.DEAD_LETTERS: {"channel": Channel.SLACK},
    Kind.PARTNER_FAILING: {"channel": Channel.SLACK},
    Kind.WEBHOOK_REJECTED: {"channel": Channel.SLACK},
    Kind.MESSAGE_PARKED: {"channel": Channel.SLACK},
    Kind.ORDER_SHORT: {"channel": Channel.EMAIL, "send_resolved": False},
    Kind.RESERVATION_AT_RISK: {"channel": Channel.EMAIL, "send_resolved": False},
    Kind.DELIVERY_FAILED: {"channel": Channel.EMAIL, "send_resolved": False},
    Kind.RETURNED: {"channel": Channel.EMAIL, "send_resolved": False},
    # A failed run stays failed until someone redrives it: to Slack, no "resolved" message.
    Kind.PIPELINE_FAILED: {"channel": Channel.SLACK, "send_resolved": False},
}


def _setting(name: str, default):
    return getattr(settings, name, default)


@dataclass(frozen=True)
class Observation:
    """One alert joining its group: what kind, from which partner, about what (``ref``), in a line."""

    kind: str
    partner: str
    ref: str
    summary: str


def rules() -> dict[str, AlertRule]:
    """Every kind's rule; a kind whose row was deleted gets it back with the defaults."""
    found = {rule.kind: rule for rule in AlertRule.objects.all()}
    for kind in Kind.values:
        if kind not in found:
            found[kind], _ = AlertRule.objects.get_or_create(kind=kind, defaults=DEFAULT_RULES[kind])
    return found


# ---- Alerts joining groups ------------------------------------------------------------------------


def observe_alerts(*, observations: list[Observation]) -> list[AlertGroup]:
    """Add each observation to the firing group of its kind and partner (opened if none fires).

    One locked update per group, whatever the number of alerts: a burst of a thousand parked messages
    is one row changed a thousand times over, not a thousand messages.
    """
    now = timezone.now()
    by_group: dict[tuple[str, str], list[Observation]] = defaultdict(list)
    for observation in observations:
        by_group[(observation.kind, observation.partner[:100])].append(observation)
    groups = []
    with transaction.atomic():
        for (kind, partner), joined in sorted(by_group.items()):
            group = _firing_group(kind, partner, now)
            samples = [{"ref": o.ref[:200], "summary": o.summary[:300], "at": now.isoformat()} for o in joined]
            group.samples = (list(group.samples) + samples)[-ALERT_SAMPLES_KEPT:]
            group.count += len(joined)
            group.last_seen_at = now
            group.save(update_fields=["samples", "count", "last_seen_at"])
            groups.append(group)
    return groups


def _firing_group(kind: str, partner: str, now: datetime) -> AlertGroup:
    """The firing group of (kind, partner), locked; opened now when there is none."""
    group = AlertGroup.objects.select_for_update().filter(kind=kind, partner=partner, status="firing").first()
    if group is not None:
        return group
    try:
        with transaction.atomic():
            return AlertGroup.objects.create(kind=kind, partner=partner, started_at=now, last_seen_at=now)
    except IntegrityError:  # opened by another worker meanwhile: join it
        return AlertGroup.objects.select_for_update().get(kind=kind, partner=partner, status="firing")


# ---- The sweep --------------------------------------------------------------------------------------


@dataclass
class SweepReport:
    opened: int = 0
    resolved: int = 0
    sent: list[str] = field(default_factory=list)


def sweep_alerts(*, now: datetime | None = None) -> SweepReport:
    """Bring the backbone's groups up to date, resolve what cleared, send what is due (idempotent)."""
    now = now or timezone.now()
    report = SweepReport()
    all_rules = rules()
    _sync_backbone_groups(now, report)
    _resolve_quiet_groups(now, all_rules, report)
    candidates = list(AlertGroup.objects.filter(status="firing").values_list("id", flat=True).order_by("id")) + list(
        AlertGroup.objects.filter(status="resolved", resolved_notified=False, notifications__gt=0)
        .values_list("id", flat=True)
        .order_by("id")
    )
    for group_id in candidates:
        notification = _notify_if_due(group_id, all_rules, now)
        if notification is not None:
            report.sent.append(notification.title)
    return report


def backbone_state() -> dict[tuple[str, str], int]:
    """(kind, subscription name) → how many: dead deliveries, and deliveries still pending after
    ALERTS_FAILING_ATTEMPTS failed attempts in a row (a partner failing repeatedly). A subscription is one
    partner's outbound channel (an HTTP endpoint or an adapter's handler), so its name is the group's partner."""
    threshold = _setting("ALERTS_FAILING_ATTEMPTS", 3)
    state: dict[tuple[str, str], int] = {}
    dead = (
        Delivery.objects.filter(status=Delivery.Status.DEAD)
        .exclude(subscription__handler__in=NOTIFIER_HANDLERS)
        .values("subscription__name")
        .annotate(n=Count("id"))
    )
    for row in dead:
        state[(Kind.DEAD_LETTERS, row["subscription__name"])] = row["n"]
    failing = (
        Delivery.objects.filter(status__in=OPEN, attempts__gte=threshold)
        .exclude(last_error="")
        .exclude(subscription__handler__in=NOTIFIER_HANDLERS)
        .values("subscription__name")
        .annotate(n=Count("id"))
    )
    for row in failing:
        state[(Kind.PARTNER_FAILING, row["subscription__name"])] = row["n"]
    notifier_dead = Delivery.objects.filter(status=Delivery.Status.DEAD, subscription__handler__in=NOTIFIER_HANDLERS)
    if notifier_dead.exists():
        logger.error(
            "%d alert messages are dead letters (Slack or email unreachable): redrive them from the admin",
            notifier_dead.count(),
        )
    return state


def _sync_backbone_groups(now: datetime, report: SweepReport) -> None:
    state = backbone_state()
    with transaction.atomic():
        firing = {
            (group.kind, group.partner): group
            for group in AlertGroup.objects.select_for_update().filter(status="firing", kind__in=STATE_KINDS)
        }
        for (kind, partner), count in sorted(state.items()):
            group = firing.get((kind, partner))
            if group is None:
                try:
                    with transaction.atomic():
                        AlertGroup.objects.create(
                            kind=kind, partner=partner[:100], started_at=now, last_seen_at=now, count=count
                        )
                    report.opened += 1
                except IntegrityError:  # another sweep opened it: the next sweep counts it
                    pass
                continue
            if count != group.count:
                group.count = count
                if count > group.notified_count:
                    group.last_seen_at = now
                group.save(update_fields=["count", "last_seen_at"])
        cleared = [group.id for key, group in firing.items() if key not in state]
        if cleared:
            report.resolved += AlertGroup.objects.filter(id__in=cleared).update(status="resolved", resolved_at=now)


def _resolve_quiet_groups(now: datetime, all_rules: dict[str, AlertRule], report: SweepReport) -> None:
    for kind, rule in all_rules.items():
        if kind in STATE_KINDS:
            continue
        quiet_since = now - timedelta(seconds=rule.resolve_after)
        report.resolved += AlertGroup.objects.filter(status="firing", kind=kind, last_seen_at__lt=quiet_since).update(
            status="resolved", resolved_at=now
        )


def _reason_due(group: AlertGroup, rule: AlertRule, now: datetime) -> str | None:
    """Which message, if any, the group is owed now (Alertmanager's flush decision)."""
    if group.status == AlertGroup.Status.RESOLVED:
        if group.notifications and not group.resolved_notified and rule.send_resolved:
            return AlertNotification.Reason.RESOLVED
        return None
    if group.last_notified_at is None:
        if now >= group.started_at + timedelta(seconds=rule.group_wait):
            return AlertNotification.Reason.FIRING
        return None
    since = now - group.last_notified_at
    if group.count > group.notified_count and since >= timedelta(seconds=rule.group_interval):
        return AlertNotification.Reason.UPDATE
    if since >= timedelta(seconds=rule.repeat_interval):
        return AlertNotification.Reason.REPEAT
    return None


def _inhibited(group: AlertGroup) -> bool:
    by = INHIBITED_BY.get(group.kind)
    return bool(by) and AlertGroup.objects.filter(kind=by, partner=group.partner, status="firing").exists()


def _notify_if_due(group_id: int, all_rules: dict[str, AlertRule], now: datetime) -> AlertNotification | None:
    """Send the group's due message, if any; the group row is locked, so two sweeps never both send it."""
    with transaction.atomic():
        group = AlertGroup.objects.select_for_update(skip_locked=True).filter(pk=group_id).first()
        if group is None:
            return None
        rule = all_rules[group.kind]
        reason = _reason_due(group, rule, now)
        if reason is None:
            return None
        if not rule.active or (reason != AlertNotification.Reason.RESOLVED and _inhibited(group)):
            if group.status == AlertGroup.Status.RESOLVED:
                AlertGroup.objects.filter(pk=group.pk).update(resolved_notified=True)
            return None
        notification = _message(group, rule, reason, now)
        notification.save()
        event = publish(
            ALERT_EVENT,
            {
                "notification_id": notification.id,
                "kind": group.kind,
                "partner": group.partner,
                "channel": rule.channel,
                "reason": reason,
                "count": notification.count,
                "new_since_last": notification.new_since_last,
                "title": notification.title,
                "text": notification.text,
                "recipients": notification.recipients,
            },
            key=f"alert-{group.id}",
        )
        AlertNotification.objects.filter(pk=notification.pk).update(event_id=event.event_id)
        if reason == AlertNotification.Reason.RESOLVED:
            AlertGroup.objects.filter(pk=group.pk).update(resolved_notified=True, notifications=F("notifications") + 1)
        else:
            AlertGroup.objects.filter(pk=group.pk).update(
                notified_count=group.count, last_notified_at=now, notifications=F("notifications") + 1
            )
    logger.info("alert %s: %s", reason, notification.title)
    return notification


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"


def _message(group: AlertGroup, rule: AlertRule, reason: str, now: datetime) -> AlertNotification:
    what = AlertRule.Kind(group.kind).label
    who = group.partner or "stock"
    new = max(0, group.count - group.notified_count)
    when = timezone.localtime(group.started_at).strftime("%Y-%m-%d %H:%M:%S %Z")
    if reason == AlertNotification.Reason.RESOLVED:
        title = f"[RESOLVED] {what}: {who}"
        lines = [f"Cleared after {_duration(now - group.started_at)} (since {when}); {group.count} in all."]
    else:
        label = {"firing": "FIRING", "update": "FIRING", "repeat": "STILL FIRING"}[reason]
        title = f"[{label}] {what}: {who} ({group.count})"
        if reason == AlertNotification.Reason.FIRING:
            lines = [f"{group.count} since {when}."]
        elif reason == AlertNotification.Reason.UPDATE:
            lines = [f"{group.count} in all, {new} new since the last message; firing since {when}."]
        else:
            lines = [f"Still firing since {when}: {group.count} in all, nothing new since the last message."]
        latest = group.samples[-SAMPLES_IN_MESSAGE:]
        if latest:
            lines.append("Latest:")
            lines += [f"• {sample['ref']}: {sample['summary']}" for sample in reversed(latest)]
        if group.kind in STATE_KINDS:
            lines.append(f"Dead letters and retries: admin > Events > Deliveries, subscription {group.partner}.")
    text = "\n".join(lines)
    if len(text) > TEXT_LIMIT:
        text = text[: TEXT_LIMIT - 1] + "…"
    recipients = rule.recipient_list() if rule.channel == Channel.EMAIL else []
    return AlertNotification(
        group=group,
        kind=group.kind,
        partner=group.partner,
        channel=rule.channel,
        reason=reason,
        count=group.count,
        new_since_last=new if reason != AlertNotification.Reason.RESOLVED else 0,
        title=title[:300],
        text=text,
        recipients=recipients,
        created_at=now,
    )


# ---- Sending (the handlers call these) --------------------------------------------------------------


def mark_notification(*, notification_id: int, outcome: str) -> None:
    AlertNotification.objects.filter(pk=notification_id).update(outcome=outcome, sent_at=timezone.now())


def send_slack(*, payload: dict, post) -> str:
    """Post one message to the incoming webhook (SLACK_WEBHOOK_URL); log it when the URL is unset.

    ``post(url, json=..., timeout=...)`` is ``requests.post``; a non-2xx answer raises, so the backbone
    retries the delivery with backoff (a 429 included) and dead-letters it after its attempts.
    """
    url = _setting("SLACK_WEBHOOK_URL", "")
    text = f"*{payload['title']}*\n{payload['text']}"
    if not url:
        logger.warning("Slack alert (SLACK_WEBHOOK_URL unset): %s", text.replace("\n", " | "))
        return AlertNotification.Outcome.LOGGED
    body = {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}]}
    response = post(url, json=body, timeout=_setting("ALERTS_SLACK_TIMEOUT", 10.0))
    if not 200 <= response.status_code < 300:
        raise SlackRefused(f"Slack answered HTTP {response.status_code}: {response.text[:300]}")
    return AlertNotification.Outcome.SENT


class SlackRefused(Exception):
    """Slack did not take the message (the delivery is retried)."""


def send_email(*, payload: dict) -> str:
    """Send one message through Django's email backend to the rule's recipients (logged when none)."""
    from django.core.mail import send_mail

    recipients = payload.get("recipients") or []
    if not recipients:
        logger.warning("Email alert with no recipients configured (admin > Alert rules): %s", payload["title"])
        return AlertNotification.Outcome.LOGGED
    subject = f"[supplychain] {payload['title']}"[:200]
    send_mail(subject, payload["text"], None, recipients, fail_silently=False)
    return AlertNotification.Outcome.SENT
