"""Retention of the backbone's working rows: old finished deliveries and relayed events go, in batches."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from supplychain.celery import app as celery_app
from supplychain.core.db import copy_rows
from supplychain.events import services
from supplychain.events.models import AuditArchive, AuditEntry, Delivery, OutboxEvent
from supplychain.events.retention import purge_finished_events
from tests.events.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db

THING = "probe.thing_happened"
WEEK = timedelta(days=7)


def delivered(subscription, n: int = 1) -> list[Delivery]:
    """``n`` events delivered to ``subscription`` for real (handler run, attempt audited)."""
    events = services.publish_many([services.NewEvent(THING, {"sku": "ham", "quantity": q + 1}) for q in range(n)])
    services.relay_pending()
    services.process_deliveries(subscription_id=subscription.id)
    deliveries = list(Delivery.objects.filter(event__in=events, subscription=subscription).order_by("id"))
    assert [d.status for d in deliveries] == ["succeeded"] * n
    return deliveries


def age(deliveries: list[Delivery], by: timedelta) -> None:
    """Move the deliveries and their events ``by`` into the past, as if that long had passed."""
    then = timezone.now() - by
    ids = [d.id for d in deliveries]
    Delivery.objects.filter(id__in=ids).update(created_at=then, visible_at=then, completed_at=then)
    OutboxEvent.objects.filter(deliveries__id__in=ids).update(occurred_at=then, relayed_at=then)


def exists(delivery: Delivery) -> tuple[bool, bool]:
    """(the delivery row is still there, its event row is still there)"""
    return (Delivery.objects.filter(pk=delivery.pk).exists(), OutboxEvent.objects.filter(pk=delivery.event_id).exists())


def test_old_finished_rows_go_and_young_dead_or_unaudited_ones_stay():
    subscription = SubscriptionFactory(name="retained", handler="probe-a")
    old, young, unaudited, dead = delivered(subscription, 4)
    age([old, unaudited, dead], by=WEEK + timedelta(days=1))
    age([young], by=WEEK - timedelta(hours=1))
    AuditEntry.objects.filter(delivery_id=unaudited.id).delete()  # its attempt not (or no longer) on record
    Delivery.objects.filter(pk=dead.pk).update(status="dead", completed_at=None, dead_at=timezone.now() - WEEK * 2)
    unrelayed = services.publish(THING, {"sku": "ham", "quantity": 9})
    OutboxEvent.objects.filter(pk=unrelayed.pk).update(occurred_at=timezone.now() - WEEK * 2)
    attempts_before = AuditEntry.objects.filter(delivery_id=old.id, kind="attempt").count()
    old_event_id = old.event.event_id

    report = purge_finished_events(older_than=WEEK)

    assert (report.deliveries, report.events) == (1, 1)
    assert exists(old) == (False, False)  # the delivery, and its event with it
    assert exists(young) == (True, True)
    assert exists(unaudited) == (True, True)
    assert exists(dead) == (True, True)  # dead letters are evidence: they stay until redriven
    assert OutboxEvent.objects.filter(pk=unrelayed.pk).exists()
    # The audit log still tells the whole story of what was removed (archive_audit is its retention).
    assert AuditEntry.objects.filter(delivery_id=old.id, kind="attempt").count() == attempts_before == 1
    assert AuditEntry.objects.filter(event_id=old_event_id, kind="published").exists()

    assert purge_finished_events(older_than=WEEK).as_dict() | {"cutoff": None} == {
        "cutoff": None,
        "deliveries": 0,
        "events": 0,
        "batches": 0,
    }  # a second run changes nothing


def test_an_event_goes_only_with_its_last_delivery():
    first, second = SubscriptionFactory(name="first", handler="probe-a"), SubscriptionFactory(name="second")
    (mine,) = delivered(first)
    theirs = Delivery.objects.get(event_id=mine.event_id, subscription=second)  # still pending
    age([mine], by=WEEK * 2)

    assert purge_finished_events(older_than=WEEK).as_dict()["deliveries"] == 1
    assert not Delivery.objects.filter(pk=mine.pk).exists()
    assert OutboxEvent.objects.filter(pk=mine.event_id).exists()  # its other delivery is still open
    assert Delivery.objects.filter(pk=theirs.pk, status="pending").exists()


def test_rows_whose_audit_entries_are_in_the_archive_go_too():
    subscription = SubscriptionFactory(name="archived", handler="probe-a")
    (delivery,) = delivered(subscription)
    age([delivery], by=WEEK * 5)
    AuditEntry.objects.filter(event_id=delivery.event.event_id).delete()  # as archive_audit does, after its file
    AuditArchive.objects.create(
        key="audit/x.jsonl.gz",
        storage="test",
        entries=2,
        first_occurred_at=timezone.now() - WEEK * 6,
        last_occurred_at=timezone.now() - WEEK * 4,
        sha256="0" * 64,
        size_bytes=1,
    )
    assert exists(delivery) == (True, True)

    purge_finished_events(older_than=WEEK)

    assert exists(delivery) == (False, False)


def test_a_large_backlog_is_removed_in_batches_of_at_most_batch_size_rows():
    subscription = SubscriptionFactory(name="backlog", handler="probe-b")
    services.publish_many([services.NewEvent(THING, {"sku": "ham", "quantity": q + 1}) for q in range(2500)])
    services.relay_pending()
    then = timezone.now() - WEEK * 2
    Delivery.objects.update(status="succeeded", created_at=then, completed_at=then, attempts=1, total_attempts=1)
    OutboxEvent.objects.update(occurred_at=then, relayed_at=then)
    copy_rows(  # each delivery's successful attempt on record, as _record writes it
        AuditEntry,
        services.ATTEMPT_FIELDS,
        (
            (
                then,
                "attempt",
                event_id,
                THING,
                "",
                "",
                "backlog",
                "",
                "succeeded",
                "",
                {},
                delivery_id,
                1,
                200,
                1.0,
                None,
            )
            for delivery_id, event_id in Delivery.objects.values_list("id", "event__event_id")
        ),
    )
    young = delivered(subscription, 3)

    with CaptureQueriesContext(connection) as queries:
        report = purge_finished_events(older_than=WEEK, batch_size=1000)

    assert (report.deliveries, report.events) == (2500, 2500)
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert len([sql for sql in deletes if "events_delivery" in sql]) == 3  # 1,000 + 1,000 + 500
    assert len([sql for sql in deletes if "events_outboxevent" in sql]) == 3
    assert report.batches == 6
    assert set(Delivery.objects.values_list("id", flat=True)) == {d.id for d in young}
    assert OutboxEvent.objects.count() == 3


def test_the_command_reports_progress_and_the_totals():
    subscription = SubscriptionFactory(name="by-hand", handler="probe-a")
    age(delivered(subscription, 3), by=timedelta(days=3))
    out = StringIO()

    call_command("purge_finished_events", "--older-than", "2d", "--batch-size", "2", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[:4] == ["2 deliveries removed", "3 deliveries removed", "2 events removed", "3 events removed"]
    assert json.loads(lines[-1]) | {"cutoff": None} == {"cutoff": None, "deliveries": 3, "events": 3, "batches": 4}


def test_retention_runs_every_night_on_the_events_queue_with_its_settings():
    entry = settings.CELERY_BEAT_SCHEDULE["events-purge-finished"]
    assert entry["task"] == "events.purge_finished"
    assert celery_app.amqp.router.route({}, "events.purge_finished", (), {})["queue"].name == "events"
    assert settings.EVENTS_RETENTION_DAYS == 7 and settings.EVENTS_RETENTION_BATCH == 1000
