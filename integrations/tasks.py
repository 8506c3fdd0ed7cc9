"""Celery entry points of integrations: the batch processing of received orders (kicked and swept), the alert sweep."""

from celery import shared_task

from integrations import services
from supplychain.events import kicks


@shared_task(
    bind=True, name="integrations.process_orders", acks_late=True, ignore_result=True, soft_time_limit=50, time_limit=55
)
def process_orders(self) -> dict:
    """Reserve received orders in batches for a few seconds; kicked after intake commits and swept by beat.

    Idempotent: it claims whatever is still received, so a repeat (a redelivered message, a sweep) only
    finds less to do. When the budget ran out with orders left, it kicks itself again.
    """
    kicks.clear(services.PROCESSING_KICK)  # before claiming: orders committed from now on kick anew
    report = services.process_received_orders(relay=True, worker=self.request.hostname or "")
    if report.more_waiting:
        services.orders_kicker.kick()
    return {"batches": report.batches, "claimed": report.claimed, "reserved": report.reserved, "short": report.short}


# send_events=False: beat sends it every few seconds (like events.sweep); the messages it decides show as
# integration.alert_notified events and their deliveries.
@shared_task(
    name="integrations.alerts_sweep",
    acks_late=True,
    ignore_result=True,
    send_events=False,
    soft_time_limit=50,
    time_limit=55,
)
def alerts_sweep() -> dict:
    """Alert groups up to date with the backbone, cleared ones resolved, due messages sent (idempotent)."""
    report = services.sweep_alerts()
    return {"opened": report.opened, "resolved": report.resolved, "sent": report.sent}
