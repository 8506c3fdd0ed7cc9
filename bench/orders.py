"""Benchmark of orders end to end on PostgreSQL, Redis, gunicorn and Celery workers; prints JSON.

    .venv/bin/python bench/orders.py [--quick] [--seconds 10] [--burst-seconds 60] [--burst-rate 3000]

In one run, against its own database (BENCH_DATABASE_URL, default supplychain_bench_orders):
- intake: orders accepted/s through ``POST /api/v1/orders/bulk/`` (1,000 per call, each committed before its
  202) and through ``POST /api/v1/orders/``, with no worker running;
- the no-op Celery task rate of the same workers, the reference the end-to-end rate is a ratio to;
- sustained end to end: orders/s from the POST to the pick request received by a WMS stand-in (an HTTP server
  in this process that answers 200, as ``PARTNER_WMS_URL``; the ERP mirror goes to it too);
- latency from the POST to the pick request received at a steady 100 orders/s (single POSTs): p50, p99;
- a burst at 3,000 orders/s for 60 s: nothing lost, nothing reserved twice, and the time the backlog takes
  to drain after the last POST.
``--quick`` shortens every part (a few minutes in all). Progress goes to stderr. The machine is shared:
read the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Workers, broker_idle, configure, progress

DATABASE = "postgres://supplychain:supplychain@127.0.0.1:5432/supplychain_bench_orders"
QUEUES = "events,dispatch,default"
TARGETS = {"bulk_orders_per_s": 3000, "end_to_end_ratio_to_noop": 1.0, "p99_seconds": 2.0}


class WmsStandIn:
    """Takes the WMS adapter's pick lists (and the ERP mirror) and notes when each order's pick request came."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.first_seen: dict[str, float] = {}
        self.requests = 0
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                now = time.time()
                if self.path.endswith("/pick-lists"):
                    refs = [pick["client_order_ref"] for pick in json.loads(body)["pick_lists"]]
                    with stand_in.lock:
                        stand_in.requests += 1
                        for ref in refs:
                            stand_in.first_seen.setdefault(ref, now)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self, prefix: str) -> dict[str, float]:
        with self.lock:
            return {ref: at for ref, at in self.first_seen.items() if ref.startswith(prefix)}

    def wait(self, prefix: str, expected: int, timeout: float) -> float:
        """Until ``expected`` pick requests of ``prefix`` came; the monotonic time the last one did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received(prefix)) >= expected:
                return time.monotonic()
            time.sleep(0.05)
        raise RuntimeError(f"{prefix}: {len(self.received(prefix))} pick requests of {expected} after {timeout}s")


WMS = None


def setup_catalogue() -> None:
    from django.utils import timezone

    from stock import services
    from stock.models import Ingredient, Recipe, RecipeIngredient

    for sku in ("ham", "mushroom"):
        Ingredient.objects.get_or_create(sku=sku, defaults={"name": sku})
    recipe, _ = Recipe.objects.get_or_create(code="ham-pasta", defaults={"name": "Ham pasta"})
    for sku, grams in (("ham", 60), ("mushroom", 80)):
        RecipeIngredient.objects.get_or_create(
            recipe=recipe, ingredient=Ingredient.objects.get(sku=sku), defaults={"quantity_per_portion": grams}
        )
    best_before = timezone.localdate() + timedelta(days=30)
    text = f"sku,quantity,best_before,lot\nham,999999999,{best_before},H1\nmushroom,999999999,{best_before},M1\n"
    services.ingest_receipt(
        key=f"bench/orders-{time.time_ns()}.csv", open_stream=lambda: _stream(text), source="upload"
    )


class _stream:
    def __init__(self, text: str):
        import io

        self.buffer = io.BytesIO(text.encode())

    def __enter__(self):
        return self.buffer

    def __exit__(self, *exc):
        return False


def order(order_id: str) -> dict:
    from django.utils import timezone

    return {
        "order_id": order_id,
        "customer_reference": "bench",
        "delivery_date": (timezone.localdate() + timedelta(days=5)).isoformat(),
        "delivery_address": {"name": "A", "line1": "1 Road", "city": "London", "postcode": "N1", "country": "GB"},
        "lines": [{"recipe": "ham-pasta", "portions": 1}],
    }


def session(token: str):
    import requests

    http = requests.Session()
    http.headers.update({"Authorization": f"Token {token}", "Content-Type": "application/json"})
    return http


def post_bulk(http, base: str, ids: list[str]) -> None:
    response = http.post(f"{base}/api/v1/orders/bulk/", data=json.dumps({"orders": [order(i) for i in ids]}))
    if response.status_code != 202:
        raise RuntimeError(f"bulk answered {response.status_code}: {response.text[:300]}")


def post_one(http, base: str, order_id: str) -> None:
    response = http.post(f"{base}/api/v1/orders/", data=json.dumps(order(order_id)))
    if response.status_code != 202:
        raise RuntimeError(f"single answered {response.status_code}: {response.text[:300]}")


def in_threads(count: int, work) -> list:
    errors: list = []

    def run(index: int) -> None:
        try:
            work(index)
        except Exception as exc:  # reported: a benchmark that lost requests must say so
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return errors


def intake_rate(base: str, token: str, prefix: str, seconds: float, clients: int, per_call: int) -> float:
    """Orders accepted per second with ``clients`` concurrent callers, ``per_call`` orders per POST."""
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def work(index: int) -> None:
        http = session(token)
        n = 0
        while time.monotonic() < stop:
            if per_call == 1:
                post_one(http, base, f"{prefix}-{index}-{n}")
            else:
                post_bulk(http, base, [f"{prefix}-{index}-{n}-{k}" for k in range(per_call)])
            n += 1
            counts[index] += per_call

    started = time.monotonic()
    in_threads(clients, work)
    return sum(counts) / (time.monotonic() - started)


def noop_rate(count: int) -> float:
    from supplychain.core.tasks import noop

    started = time.monotonic()
    with noop.app.producer_or_acquire() as producer:
        for _ in range(count):
            noop.apply_async(producer=producer)
    while not broker_idle(["default"]):
        time.sleep(0.02)
    return count / (time.monotonic() - started)


def counts(prefix: str) -> dict[str, int]:
    from django.db.models import Count

    from integrations.models import Order

    rows = Order.objects.filter(order_id__startswith=prefix).values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


def wait_reserved(prefix: str, expected: int, timeout: float) -> float:
    """Wait until ``expected`` orders of ``prefix`` left ``received``; the monotonic time it happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = counts(prefix)
        if sum(found.values()) >= expected and found.get("received", 0) == 0:
            return time.monotonic()
        time.sleep(0.1)
    raise RuntimeError(f"{prefix}: {counts(prefix)} after {timeout}s, {expected} expected")


def sustained(base: str, token: str, prefix: str, seconds: float, clients: int) -> dict:
    """Bulk POSTs as fast as the callers go for ``seconds``; orders/s from the first POST to the last reserved."""
    started = time.monotonic()
    posted_per_s = intake_rate(base, token, prefix, seconds, clients, 1000)
    total = sum(counts(prefix).values())
    finished = WMS.wait(prefix, total, 600)
    return {"orders": total, "orders_per_s": total / (finished - started), "posted_per_s": posted_per_s}


def latency(base: str, token: str, prefix: str, rate: float, seconds: float) -> dict:
    """Single POSTs at ``rate`` orders/s; seconds from each POST's start to its pick request at the WMS."""
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}  # seconds each POST took to its 202: the web's share of the latency
    total = int(rate * seconds)
    clients = 8
    start = time.time() + 0.5

    def work(index: int) -> None:
        http = session(token)
        for n in range(index, total, clients):
            due = start + n / rate
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            order_id = f"{prefix}-{n}"
            sent[order_id] = time.time()
            post_one(http, base, order_id)
            answered[order_id] = time.time() - sent[order_id]

    in_threads(clients, work)
    WMS.wait(prefix, total, 300)
    seconds_each = sorted(at - sent[order_id] for order_id, at in WMS.received(prefix).items())
    late = sum(1 for when, n in ((sent[f"{prefix}-{n}"], n) for n in range(total)) if when - (start + n / rate) > 0.5)
    return {
        "orders": total,
        "p50_seconds": round(statistics.median(seconds_each), 3),
        "p99_seconds": round(seconds_each[int(0.99 * (len(seconds_each) - 1))], 3),
        "max_seconds": round(seconds_each[-1], 3),
        "post_answer_p50_seconds": round(statistics.median(answered.values()), 3),
        "post_answer_p99_seconds": round(sorted(answered.values())[int(0.99 * (len(answered) - 1))], 3),
        "posts_more_than_half_a_second_late": late,
    }


def burst(base: str, token: str, prefix: str, rate: float, seconds: float) -> dict:
    """``rate`` orders/s in bulk calls of 1,000 for ``seconds``; then drained; every order checked."""
    from django.db.models import Count

    from integrations.models import Order
    from stock.models import Reservation
    from stock.selectors import invariant_violations

    calls = int(rate * seconds / 1000)
    interval = 1000 / rate
    clients = 6
    start = time.monotonic() + 0.5
    behind = [0.0]

    def work(index: int) -> None:
        http = session(token)
        for n in range(index, calls, clients):
            wait = start + n * interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                behind[0] = max(behind[0], -wait)
            post_bulk(http, base, [f"{prefix}-{n}-{k}" for k in range(1000)])

    in_threads(clients, work)
    posted_at = time.monotonic()
    total = calls * 1000
    wait_reserved(prefix, total, 1800)
    drained_at = WMS.wait(prefix, total, 1800)
    found = counts(prefix)
    twice = (
        Reservation.objects.filter(transaction_id__startswith=prefix)
        .values("transaction_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    reserved = Order.objects.filter(order_id__startswith=prefix, status="reserved").count()
    return {
        "orders_posted": total,
        "orders_stored": sum(found.values()),
        "statuses": found,
        "post_seconds": round(posted_at - start, 2),
        "posting_fell_behind_seconds": round(behind[0], 2),
        "drain_seconds_after_last_post": round(drained_at - posted_at, 2),
        "reservations": Reservation.objects.filter(transaction_id__startswith=prefix).count(),
        "orders_reserved": reserved,
        "reserved_twice": twice,
        "lost": total - sum(found.values()),
        "pick_requests_received": len(WMS.received(prefix)),
        "invariant_violations": len(invariant_violations()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Short parts: a few minutes in all.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Length of the intake and sustained parts.")
    parser.add_argument("--burst-seconds", type=float, default=60.0)
    parser.add_argument("--burst-rate", type=float, default=3000.0)
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (-P solo).")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.burst_seconds, args.latency_seconds = 5.0, 10.0, 10.0

    global WMS
    WMS = WmsStandIn()
    os.environ.update({"PARTNER_WMS_URL": WMS.url, "PARTNER_ERP_URL": WMS.url})
    env = configure(database_url=os.environ.get("BENCH_DATABASE_URL", DATABASE))
    from bench.stock import WebServer
    from supplychain.core.bootstrap import bootstrap
    from tests.processes import free_port

    setup_catalogue()
    token = bootstrap(demo=False).api_token
    port = free_port()
    run = str(int(time.time()))
    result: dict = {"measured": "on a shared, loaded 2-core machine: read the ratios", "quick": args.quick}
    web = WebServer(env, port, args.web_workers, args.web_threads)
    base = f"http://127.0.0.1:{port}"
    workers = None
    try:
        progress("intake, bulk (no worker running)")
        result["bulk_orders_per_s"] = round(intake_rate(base, token, f"b{run}", args.seconds, args.clients, 1000))
        progress("intake, single")
        result["single_orders_per_s"] = round(intake_rate(base, token, f"s{run}", args.seconds, args.clients, 1))
        progress("workers: draining the intake backlog")
        workers = Workers(env, args.workers, QUEUES)
        WMS.wait(f"b{run}", sum(counts(f"b{run}").values()), 1800)
        WMS.wait(f"s{run}", sum(counts(f"s{run}").values()), 600)
        while not broker_idle(QUEUES.split(",")):
            time.sleep(0.2)
        progress("no-op Celery tasks")
        result["noop_tasks_per_s"] = round(noop_rate(2000 if args.quick else 5000))
        progress("sustained end to end: POST to pick request received")
        result["end_to_end"] = sustained(base, token, f"e{run}", args.seconds, args.clients)
        result["end_to_end"]["stop"] = "pick request received by the WMS stand-in"
        result["end_to_end_ratio_to_noop"] = round(result["end_to_end"]["orders_per_s"] / result["noop_tasks_per_s"], 2)
        result["end_to_end"]["orders_per_s"] = round(result["end_to_end"]["orders_per_s"])
        result["end_to_end"]["posted_per_s"] = round(result["end_to_end"]["posted_per_s"])
        progress("latency at 100 orders/s")
        result["latency_at_100_per_s"] = latency(base, token, f"l{run}", 100.0, args.latency_seconds)
        progress(f"burst at {args.burst_rate:.0f} orders/s for {args.burst_seconds:.0f} s")
        result["burst"] = burst(base, token, f"u{run}", args.burst_rate, args.burst_seconds)
        result["burst"]["rate"] = args.burst_rate
    finally:
        if workers is not None:
            workers.stop()
        web.stop()
    result["targets"] = TARGETS
    result["targets_met"] = {
        "bulk_orders_per_s": result["bulk_orders_per_s"] >= TARGETS["bulk_orders_per_s"],
        "end_to_end_ratio_to_noop": result["end_to_end_ratio_to_noop"] >= TARGETS["end_to_end_ratio_to_noop"],
        "p99_seconds": result["latency_at_100_per_s"]["p99_seconds"] < TARGETS["p99_seconds"],
        "burst_nothing_lost_nothing_twice": result["burst"]["lost"] == 0 and result["burst"]["reserved_twice"] == 0,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
