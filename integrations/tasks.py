"""Celery entry points of integrations: the batch processing of received orders (kicked and swept)."""

from celery import shared_task

from integrations import services


@shared_task(name="integrations.process_orders", acks_late=True, ignore_result=True, soft_time_limit=50, time_limit=55)
def process_orders() -> dict:
    """Reserve received orders in batches for a few seconds; kicked after intake commits and swept by beat.

    Idempotent: it claims whatever is still received, so a repeat (a redelivered message, a sweep) only
    finds less to do. When the budget ran out with orders left, it kicks itself again.
    """
    report = services.process_received_orders()
    if report.more_waiting:
        services.orders_kicker.kick()
    return {"batches": report.batches, "claimed": report.claimed, "reserved": report.reserved, "short": report.short}
