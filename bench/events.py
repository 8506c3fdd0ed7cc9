"""Benchmark of the event backbone on PostgreSQL + Redis; prints JSON.

    .venv/bin/python bench/events.py [--events 50000] [--per-transaction 100] [--workers 2]

Measures, in one run: the no-op Celery task rate on the same broker (the reference), events/s
published (producers publish ``--per-transaction`` events per transaction, as a bulk intake does),
events/s fully fanned out to 3 internal subscribers (each handler writes a row), and p50/p99
publish-to-handled latency, for the bulk run and for a steady 200 events/s of single-event
transactions. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Workers, broker_idle, configure, progress


def latency_percentiles(since_id: int = 0) -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lat), percentile_cont(0.99) WITHIN GROUP (ORDER BY lat),
                   max(lat), count(*)
            FROM (SELECT extract(epoch FROM d.completed_at - e.occurred_at) AS lat
                  FROM events_delivery d JOIN events_outboxevent e ON e.id = d.event_id
                  WHERE d.status = 'succeeded' AND e.id > %s) t
            """,
            [since_id],
        )
        p50, p99, worst, count = cursor.fetchone()
    p50, p99, worst = (float(value) for value in (p50, p99, worst))
    return {
        "p50_ms": round(p50 * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(worst * 1000, 1),
        "deliveries": count,
    }


def wait_delivered(expected: int, timeout: float) -> float:
    from supplychain.events.models import Delivery

    deadline = time.monotonic() + timeout
    last_report = 0.0
    while time.monotonic() < deadline:
        done = Delivery.objects.filter(status="succeeded").count()
        if time.monotonic() - last_report > 2:
            progress(f"  delivered {done}/{expected}")
            last_report = time.monotonic()
        if done >= expected:
            return time.monotonic()
        time.sleep(0.1)
    raise RuntimeError(f"only {done} of {expected} deliveries succeeded within {timeout}s")


def noop_rate(count: int) -> float:
    from supplychain.core.tasks import noop

    started = time.monotonic()
    for _ in range(count):
        noop.delay()
    while not broker_idle(["default"]):
        time.sleep(0.02)
    return count / (time.monotonic() - started)


def reset() -> None:
    """Empty the tables and let PostgreSQL settle so one run's aftermath does not skew the next."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE events_delivery, events_outboxevent, events_auditentry, events_subscription, probe_effect "
            "RESTART IDENTITY CASCADE"
        )
    try:
        with connection.cursor() as cursor:
            cursor.execute("CHECKPOINT")
    except Exception as exc:  # needs pg_checkpoint; without it, the pause alone
        progress(f"  (no CHECKPOINT: {exc})")
    time.sleep(5)
    from supplychain.events.models import Subscription

    for name in ("probe-a", "probe-b", "probe-c"):
        Subscription.objects.create(name=name, event_types=["probe.*"], target="handler", handler=name)


def _in_threads(count: int, work) -> None:
    """Run ``work(index)`` in ``count`` threads, each with its own database connection."""
    import threading

    from django.db import connection

    errors = []

    def run(index: int) -> None:
        try:
            work(index)
        except Exception as exc:  # reported after join
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def bulk_run(events: int, per_transaction: int, producers: int) -> dict:
    from django.db import transaction
    from django.db.models import Max, Min

    from supplychain.events.models import Delivery, OutboxEvent
    from supplychain.events.services import NewEvent, publish_many

    def produce(index: int) -> None:
        for start in range(index * per_transaction, events, per_transaction * producers):
            batch = [
                NewEvent("probe.thing_happened", {"sku": f"sku-{n % 1000}", "quantity": n + 1}, key=f"order-{n}")
                for n in range(start, min(events, start + per_transaction))
            ]
            with transaction.atomic():
                publish_many(batch)
            if index == 0 and start % (per_transaction * producers * 50) == 0:
                progress(f"  published about {start}/{events}")

    started = time.monotonic()
    _in_threads(producers, produce)
    publishing = time.monotonic() - started
    wait_delivered(events * 3, timeout=900)
    span = OutboxEvent.objects.aggregate(first=Min("occurred_at"))["first"]
    last = Delivery.objects.aggregate(last=Max("completed_at"))["last"]
    end_to_end = (last - span).total_seconds()
    return {
        "events": events,
        "events_per_transaction": per_transaction,
        "producer_threads": producers,
        "published_per_s": round(events / publishing),
        "fanned_out_events_per_s": round(events / end_to_end),
        "deliveries_per_s": round(events * 3 / end_to_end),
        "end_to_end_s": round(end_to_end, 2),
        "latency": latency_percentiles(),
    }


def paced_run(rate: float, seconds: float, producers: int) -> dict:
    from django.db import transaction

    from supplychain.events.models import OutboxEvent
    from supplychain.events.services import publish

    first_id = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    already = 3 * OutboxEvent.objects.count()
    total = int(rate * seconds)
    started = time.monotonic()

    def produce(index: int) -> None:
        for n in range(index, total, producers):
            pause = started + n / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            with transaction.atomic():
                publish("probe.thing_happened", {"sku": "ham", "quantity": n + 1}, key=f"paced-{n}")

    _in_threads(producers, produce)
    achieved = total / (time.monotonic() - started)
    wait_delivered(already + total * 3, timeout=300)
    return {
        "target_events_per_s": rate,
        "achieved_events_per_s": round(achieved, 1),
        "events": total,
        "events_per_transaction": 1,
        "producer_threads": producers,
        "latency": latency_percentiles(first_id),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50000)
    parser.add_argument("--per-transaction", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--noop", type=int, default=5000)
    parser.add_argument("--paced-rate", type=float, default=200)
    parser.add_argument("--paced-seconds", type=float, default=20)
    parser.add_argument("--producers", type=int, default=3, help="Producer threads in the bulk run.")
    parser.add_argument("--paced-producers", type=int, default=8, help="Producer threads in the paced run.")
    args = parser.parse_args()

    env = configure()
    progress("starting workers")
    workers = Workers(env, args.workers, "events,default")
    try:
        progress(f"no-op reference: {args.noop} tasks")
        reference = noop_rate(args.noop)
        reset()
        progress(f"bulk: {args.events} events, {args.per_transaction} per transaction, 3 subscribers")
        bulk = bulk_run(args.events, args.per_transaction, args.producers)
        reset()
        progress(f"paced: {args.paced_rate} events/s for {args.paced_seconds} s")
        paced = paced_run(args.paced_rate, args.paced_seconds, args.paced_producers)
    finally:
        workers.stop()
    from django.db import connection

    result = {
        "benchmark": "events",
        "machine_cores": __import__("os").cpu_count(),
        "database": connection.vendor,
        "broker": "redis",
        "workers": f"{args.workers} x celery -P solo",
        "noop_tasks_per_s": round(reference),
        "bulk": bulk,
        "paced": paced,
        "targets": {
            "published_per_s": 3000,
            "fanned_out_events_per_s": 1000,
            "paced_p99_ms": 1000,
        },
    }
    result["targets_met"] = {
        "published_per_s": bulk["published_per_s"] >= 3000,
        "fanned_out_events_per_s": bulk["fanned_out_events_per_s"] >= 1000,
        "paced_p99_ms": paced["latency"]["p99_ms"] < 1000,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
