"""Orders with real workers, beat, Redis and PostgreSQL: reserved in batches, nothing lost when a worker dies."""

from __future__ import annotations

import json
import re
import signal
import threading
from decimal import Decimal

import psycopg
import pytest
from django.db import connection, connections

from integrations import services
from integrations.models import Order
from stock import selectors as stock_selectors
from stock.models import Reservation, StockLevel
from supplychain.celery import app
from tests.integrations.factories import order_doc, platform_client, stock_catalogue
from tests.processes import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
QUEUE = "dispatch"  # where settings route integrations.process_orders
TASK_RECEIVED = re.compile(r"Task integrations\.process_orders\[[^\]]+\] received")


def post_bulk(client, documents) -> None:
    response = client.post("/api/v1/orders/bulk/", json.dumps({"orders": documents}), content_type="application/json")
    assert response.status_code == 202, response.content


def statuses() -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in Order.objects.values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


def test_orders_posted_are_reserved_end_to_end_in_batches_without_a_task_per_order(celery_worker):
    stock_catalogue(ham=200000, mushroom=200000)
    client = platform_client()
    log_before = len(celery_worker.output())
    post_bulk(client, [order_doc(f"bulk-{n}") for n in range(400)])
    for n in range(5):
        response = client.post("/api/v1/orders/", json.dumps(order_doc(f"one-{n}")), content_type="application/json")
        assert response.status_code == 202

    wait_for(lambda: statuses() == {"reserved": 405}, 90, "all 405 orders to be reserved by the worker")
    assert Reservation.objects.filter(status="reserved").count() == 405
    assert StockLevel.objects.get(ingredient__sku="ham").reserved == Decimal(405 * 120)
    detail = client.get("/api/v1/orders/bulk-7/").json()
    assert [step["to_status"] for step in detail["timeline"]] == ["received", "reserved"]
    assert detail["lines"][0]["ingredients"][0]["batches"][0]["lot"] == "H2"
    tasks = len(TASK_RECEIVED.findall(celery_worker.output()[log_before:]))
    assert 1 <= tasks <= 20, f"{tasks} processing tasks for 405 orders"
    assert stock_selectors.invariant_violations() == []


def _waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def test_a_worker_killed_mid_batch_loses_no_order_and_reserves_none_twice(
    celery_worker, start_worker, celery_beat, real_services
):
    stock_catalogue(ham=200000, mushroom=200000)
    ham_level = StockLevel.objects.get(ingredient__sku="ham").pk
    # Only the workers of this test take the orders' queue.
    app.control.cancel_consumer(QUEUE, destination=[celery_worker.node_name], reply=True, timeout=5)
    locker = psycopg.connect(real_services["DATABASE_URL"])
    try:
        victim = start_worker(QUEUE, label="victim")
        # Hold ham's level row: the victim claims a batch, expands it and blocks inside its group reservation.
        locker.execute("SELECT 1 FROM stock_stocklevel WHERE ingredient_id = %s FOR UPDATE", [ham_level])
        post_bulk(platform_client(), [order_doc(f"kill-{n}") for n in range(250)])
        wait_for(_waiting_on_a_lock, 60, "the victim to block mid-batch on the level lock")

        victim.signal(signal.SIGKILL)  # parent and pool child, with 200 orders claimed and the group half done
        victim.popen.wait(timeout=10)
        locker.rollback()
        wait_for(lambda: _waiting_on_a_lock() == 0, 30, "the dead worker's transaction to end")
        assert statuses() == {"received": 250}
        assert Reservation.objects.count() == 0
        assert StockLevel.objects.get(ingredient__sku="ham").reserved == 0

        start_worker(QUEUE, label="restarted")  # the killed message stays unacked: beat's sweep finds the orders
        wait_for(lambda: statuses() == {"reserved": 250}, 90, "the orders to be reserved after the restart")
    finally:
        locker.close()
        app.control.add_consumer(QUEUE, destination=[celery_worker.node_name], reply=True, timeout=5)
    assert Reservation.objects.filter(status="reserved").count() == 250
    assert StockLevel.objects.get(ingredient__sku="ham").reserved == Decimal(250 * 120)
    for order in Order.objects.all():
        assert [step.to_status for step in order.timeline.all()] == ["received", "reserved"]
    assert stock_selectors.invariant_violations() == []


def test_processors_racing_over_the_same_orders_claim_each_once(celery_worker):
    stock_catalogue(ham=200000, mushroom=200000)
    # Only the three processors of this test take the orders: the session worker leaves the queue for now.
    app.control.cancel_consumer(QUEUE, destination=[celery_worker.node_name], reply=True, timeout=5)
    try:
        services.receive_orders(documents=[order_doc(f"race-{n}") for n in range(600)])
        reports, errors = race_three_processors()
    finally:
        app.control.add_consumer(QUEUE, destination=[celery_worker.node_name], reply=True, timeout=5)
    assert errors == []
    assert sum(report.claimed for report in reports) == 600
    assert statuses() == {"reserved": 600}
    assert Reservation.objects.count() == 600
    assert StockLevel.objects.get(ingredient__sku="ham").reserved == Decimal(600 * 120)
    assert stock_selectors.invariant_violations() == []


def race_three_processors() -> tuple[list, list]:
    """Three threads, each its own database connection, draining received orders 50 at a time at once."""
    reports, errors = [], []

    def drain():
        try:
            reports.append(services.process_received_orders(batch_size=50, time_budget=60))
        except Exception as exc:  # reported below: a processor must never fail on another's claim
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=drain) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return reports, errors
