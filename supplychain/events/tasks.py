"""Celery entry points of the backbone: thin, idempotent, each calls one service."""

from datetime import timedelta

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import connections

from supplychain.events import archive, kicks, retention, services


@shared_task(name=services.RELAY_TASK, ignore_result=True, acks_late=True)
def relay() -> int:
    """Fan committed outbox events out into deliveries (kicked after commit, and by the sweep)."""
    kicks.clear(kicks.RELAY)  # before claiming: an event committed from now on kicks anew
    return services.relay_pending()


@shared_task(
    name=services.DELIVER_TASK, bind=True, ignore_result=True, acks_late=True, soft_time_limit=50, time_limit=55
)
def deliver(self, subscription_id: int) -> dict:
    """Drain due deliveries of one subscription for a few seconds, in batches, leased under this worker's name."""
    report = services.process_deliveries(subscription_id=subscription_id, worker=self.request.hostname or "")
    return {"claimed": report.claimed, "succeeded": report.succeeded, "retrying": report.retrying, "dead": report.dead}


# send_events=False: beat sends it every few seconds, and its task events flooded Flower's task list (beat
# itself sends no task-sent events: supplychain/celery.py). What it does shows in the tasks it kicks.
@shared_task(name="events.sweep", ignore_result=True, acks_late=True, send_events=False)
def sweep() -> dict:
    """Beat's safety net: relay missed events, kick subscriptions whose deliveries are due."""
    return services.sweep()


@shared_task(name="events.archive_audit", acks_late=True, ignore_result=True, time_limit=3600, soft_time_limit=3500)
def archive_audit() -> dict:
    """Nightly: move audit entries older than AUDIT_RETENTION_DAYS to object storage (verified first)."""
    report = archive.archive_audit(older_than=timedelta(days=settings.AUDIT_RETENTION_DAYS))
    return {"files": len(report.files), "entries": report.entries}


@shared_task(name="events.purge_finished", acks_late=True, ignore_result=True, time_limit=3600, soft_time_limit=3500)
def purge_finished() -> dict:
    """Nightly: remove succeeded deliveries and relayed events older than EVENTS_RETENTION_DAYS, once audited."""
    report = retention.purge_finished_events(
        older_than=timedelta(days=settings.EVENTS_RETENTION_DAYS), batch_size=settings.EVENTS_RETENTION_BATCH
    )
    return report.as_dict()


@worker_ready.connect
def take_back_own_leases(sender, **kwargs) -> None:
    """A worker starting under a node name it had before takes back that name's delivery leases at once."""
    try:
        services.take_back_leases(worker=sender.hostname)
    finally:
        connections.close_all()  # the worker's parent process keeps no connection of its own
