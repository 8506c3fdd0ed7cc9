"""Stage benchmark of orders, in one process and without Celery: where an order's time goes; prints JSON.

    .venv/bin/python bench/orders_stages.py [--orders 2000] [--repeat 3]

Against its own database (BENCH_DATABASE_URL, default supplychain_bench_orders_stages), each stage run by
its service the way a worker runs it, timed per order: intake (``receive_orders``, 1,000 per call), batch
processing (``process_received_orders``: claim, expand, reserve, move), the relay (``relay_pending``) and the
partner-wms delivery (``process_deliveries`` of the handler subscription: pick lists built and POSTed to a
WMS stand-in in this process, orders moved to ``sent_to_wms``), the relay of the ``order.sent_to_wms`` events
and every other subscription's deliveries (the ERP sales-order mirror: three per order; their count per order
goes to stderr). The figures are medians over ``--repeat``.
What ``bench/orders.py`` measures end to end is these plus Celery's messages and the waits between them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import configure, progress

DATABASE = "postgres://supplychain:supplychain@127.0.0.1:5432/supplychain_bench_orders_stages"


def drain(subscription_id: int) -> int:
    """Run one subscription's due deliveries until none is left; how many succeeded."""
    from supplychain.events import services as events

    succeeded = 0
    while True:
        done = events.process_deliveries(subscription_id=subscription_id, time_budget=600)
        succeeded += done.succeeded
        if not done.claimed:
            return succeeded


def run_once(prefix: str, count: int) -> dict[str, float]:
    from bench.orders import order
    from integrations import services
    from integrations.services import processing
    from supplychain.events import services as events
    from supplychain.events.models import Subscription

    wms = Subscription.objects.get(name=processing.PICK_REQUESTS)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    for start in range(0, count, 1000):
        ids = [f"{prefix}-{n}" for n in range(start, min(start + 1000, count))]
        services.receive_orders(documents=[order(order_id) for order_id in ids])
    timings["intake"] = time.perf_counter() - started
    events.relay_pending()  # the order.received events: not part of the processing stage

    started = time.perf_counter()
    report = services.process_received_orders(time_budget=600)
    timings["processing"] = time.perf_counter() - started
    assert report.claimed >= count, report

    started = time.perf_counter()
    events.relay_pending()
    timings["relay"] = time.perf_counter() - started

    started = time.perf_counter()
    delivered = drain(wms.id)
    timings["partner_wms_delivery"] = time.perf_counter() - started
    assert delivered >= count, (delivered, count)

    started = time.perf_counter()
    events.relay_pending()  # the order.sent_to_wms events
    timings["relay_sent_to_wms"] = time.perf_counter() - started

    started = time.perf_counter()
    others = Subscription.objects.exclude(id=wms.id).filter(active=True)
    mirrored = sum(drain(subscription.id) for subscription in others)
    timings["other_deliveries"] = time.perf_counter() - started
    print(f"other deliveries: {mirrored / count:.2f} per order", file=sys.stderr)
    return {stage: seconds * 1000 / count for stage, seconds in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from bench.orders import WmsStandIn

    wms = WmsStandIn()
    os.environ.update({"PARTNER_WMS_URL": wms.url, "PARTNER_ERP_URL": wms.url})
    configure(database_url=os.environ.get("BENCH_DATABASE_URL", DATABASE))
    from bench.orders import setup_catalogue
    from supplychain.core.bootstrap import bootstrap

    setup_catalogue()
    bootstrap(demo=False)
    runs = []
    run = str(int(time.time()))
    for index in range(args.repeat):
        progress(f"run {index + 1} of {args.repeat}: {args.orders} orders")
        runs.append(run_once(f"st{run}-{index}", args.orders))
    result = {
        "orders_per_run": args.orders,
        "ms_per_order": {stage: round(statistics.median(r[stage] for r in runs), 3) for stage in runs[0]},
        "runs": runs,
        "wms_pick_requests_received": len(wms.first_seen),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
