"""Benchmark of the pipeline engine on PostgreSQL, Redis and Celery workers; prints JSON.

    .venv/bin/python bench/pipeline.py [--quick] [--items 1000] [--states 50] [--repeat 3] [--workers 2]

In one run, against its own database (BENCH_DATABASE_URL, default supplychain_bench_pipeline) and Redis db
(BENCH_BROKER_URL, default db 13, which is also the chord's result backend):
- fan-out: a Map of ``--items`` no-op Task items (MaxConcurrency 0), from ``start_run`` to the run observed
  SUCCEEDED, against a plain Celery chord of as many no-op tasks and a callback, from ``apply_async`` to the
  callback's result; both on the same workers (``-P solo``, queue ``forecast``), median of ``--repeat`` runs.
  A chord needs a result backend: the chord side uses Redis (the engine's tasks store no results);
- a sequence of ``--states`` Task states: the time per state beside one no-op Celery round trip
  (``apply_async`` + ``get()`` on the same workers and backend);
- a sequence of ``--states`` inline states (Pass and Choice): transitions/s on the real executor (each run
  started, advanced and persisted with its history by ``start_run``, in this process), and through
  ``run_local`` for reference.
The machine is shared: read the ratios, taken in the same run, not the absolute figures.
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

from bench.harness import Workers, broker_idle, configure, progress

DATABASE = "postgres://supplychain:supplychain@127.0.0.1:5432/supplychain_bench_pipeline"
BROKER = "redis://127.0.0.1:6379/13"
QUEUE = "forecast"
TARGETS = {"map_to_chord_ratio": 1.5, "inline_transitions_per_s": 2000}


def map_machine():
    from forecasting.engine.builder import Machine

    item = Machine().task("Noop", "probe.noop")
    return Machine().map("Items", item, items_path="$.items", max_concurrency=0, result_path=None)


def task_sequence(states: int):
    from forecasting.engine.builder import Machine

    machine = Machine()
    for n in range(states):
        machine.task(f"T{n:02d}", "probe.noop", result_path=None)
    return machine


def inline_sequence(states: int):
    """``states`` states alternating Pass and Choice (the last one a Pass that ends)."""
    from forecasting.engine.builder import Machine, when

    machine = Machine()
    for n in range(states):
        following = f"S{n + 1:02d}" if n + 1 < states else None
        if n % 2 == 1 and following:
            machine.choice(
                f"S{n:02d}", [when("$.n", NumericGreaterThanEquals=0, next=following)], default=f"S{states - 1:02d}"
            )
        else:
            machine.pass_(f"S{n:02d}", result={"step": n}, result_path="$.last", next=following, end=not following)
    return machine


def wait_run(run_id, timeout: float) -> tuple[float, str]:
    """Poll until the run has ended: (the monotonic time it was seen ended, its status)."""
    from forecasting.models import Run, RunStatus

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Run.objects.filter(id=run_id).values_list("status", flat=True).first()
        if status != RunStatus.RUNNING:
            return time.monotonic(), status
        time.sleep(0.01)
    raise RuntimeError(f"run {run_id} still running after {timeout}s")


def engine_seconds(pipeline: str, payload: dict, name: str, timeout: float) -> float:
    from forecasting import services

    started = time.monotonic()
    run, _ = services.start_run(pipeline=pipeline, input=payload, name=name)
    ended, status = wait_run(run.id, timeout)
    if status != "SUCCEEDED":
        raise RuntimeError(f"{name} ended {status}: {run.error} {run.cause}")
    return ended - started


def chord_seconds(items: int, timeout: float) -> float:
    from celery import chord

    from supplychain.core.tasks import add, total

    header = [add.si(0, 0).set(queue=QUEUE) for _ in range(items)]
    started = time.monotonic()
    result = chord(header)(total.s().set(queue=QUEUE))
    assert result.get(timeout=timeout) == 0
    return time.monotonic() - started


def round_trip_seconds(count: int) -> float:
    """Median of ``count`` no-op round trips: ``apply_async`` and ``get()`` of its result."""
    from supplychain.core.tasks import add

    took = []
    for _ in range(count):
        started = time.monotonic()
        assert add.apply_async((0, 0), queue=QUEUE).get(timeout=60) == 0
        took.append(time.monotonic() - started)
    return statistics.median(took)


def inline_engine_rate(pipeline: str, states: int, runs: int, label: str) -> float:
    """Transitions/s of ``runs`` runs of the inline sequence, each started and persisted by ``start_run``."""
    from forecasting import services
    from forecasting.models import HistoryEvent

    started = time.monotonic()
    ids = []
    for n in range(runs):
        run, _ = services.start_run(pipeline=pipeline, input={"n": n}, name=f"{label}-{n}")
        ids.append(run.id)
    elapsed = time.monotonic() - started
    ended = HistoryEvent.objects.filter(run_id__in=ids, type="ExecutionSucceeded").count()
    assert ended == runs, f"{ended} of {runs} inline runs succeeded"
    return states * runs / elapsed


def inline_local_rate(definition: dict, states: int, runs: int) -> float:
    from forecasting.engine import run_local

    started = time.monotonic()
    for n in range(runs):
        assert run_local(definition, {"n": n}).status == "SUCCEEDED"
    return states * runs / (time.monotonic() - started)


def drain() -> None:
    deadline = time.monotonic() + 120
    while not broker_idle([QUEUE]) and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Fewer items and runs: about a minute.")
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--states", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3, help="Runs per figure; the median is reported.")
    parser.add_argument("--workers", type=int, default=2, help="Worker processes (-P solo) for both sides.")
    parser.add_argument("--inline-runs", type=int, default=40)
    args = parser.parse_args()
    if args.quick:
        args.items, args.repeat, args.inline_runs = min(args.items, 200), 1, 10

    broker = os.environ.get("BENCH_BROKER_URL", BROKER)
    os.environ["CELERY_RESULT_BACKEND"] = os.environ.get("BENCH_RESULT_BACKEND", broker)
    env = configure(database_url=os.environ.get("BENCH_DATABASE_URL", DATABASE), broker_url=broker)
    from django.db import connection

    from forecasting import services

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE forecasting_pipeline, forecasting_run CASCADE")
    services.save_pipeline(name="bench-map", definition=map_machine().build())
    services.save_pipeline(name="bench-tasks", definition=task_sequence(args.states).build())
    inline = inline_sequence(args.states).build()
    services.save_pipeline(name="bench-inline", definition=inline)

    samples: dict[str, list[float]] = {}

    def keep(name: str, value: float) -> float:
        samples.setdefault(name, []).append(value)
        return value

    progress(f"inline sequence of {args.states} states, {args.inline_runs} runs (no worker needed)")
    for run in range(args.repeat):
        keep("inline_engine", inline_engine_rate("bench-inline", args.states, args.inline_runs, f"inline{run}"))
        keep("inline_local", inline_local_rate(inline, args.states, args.inline_runs))

    workers = Workers(env, args.workers, QUEUE)
    try:
        items = {"items": list(range(args.items))}
        # A warm-up of each side: imports, connections and the workers' first messages are not measured.
        engine_seconds("bench-map", {"items": list(range(20))}, "warm-map", 120)
        chord_seconds(20, 120)
        round_trip_seconds(5)
        for run in range(args.repeat):
            suffix = f" (run {run + 1} of {args.repeat})"
            progress(f"Map of {args.items} no-op items{suffix}")
            keep("map_seconds", engine_seconds("bench-map", items, f"map{run}", 600))
            drain()
            progress(f"chord of {args.items} no-op tasks{suffix}")
            keep("chord_seconds", chord_seconds(args.items, 600))
            drain()
            progress(f"sequence of {args.states} Task states and no-op round trips{suffix}")
            keep("task_sequence_seconds", engine_seconds("bench-tasks", {}, f"tasks{run}", 600))
            keep("round_trip_seconds", round_trip_seconds(20))
    finally:
        workers.stop()

    median = {name: statistics.median(values) for name, values in samples.items()}
    per_state = median["task_sequence_seconds"] / args.states
    results = {
        "items": args.items,
        "states": args.states,
        "repeat": args.repeat,
        "workers": args.workers,
        "pool": "solo",
        "queue": QUEUE,
        "chord_result_backend": "redis",
        "map": {
            "engine_seconds": round(median["map_seconds"], 3),
            "chord_seconds": round(median["chord_seconds"], 3),
            "engine_items_per_s": round(args.items / median["map_seconds"]),
            "chord_items_per_s": round(args.items / median["chord_seconds"]),
            "engine_to_chord_ratio": round(median["map_seconds"] / median["chord_seconds"], 3),
        },
        "task_sequence": {
            "seconds": round(median["task_sequence_seconds"], 3),
            "per_state_ms": round(per_state * 1000, 2),
            "noop_round_trip_ms": round(median["round_trip_seconds"] * 1000, 2),
            "per_state_to_round_trip_ratio": round(per_state / median["round_trip_seconds"], 3),
        },
        "inline_sequence": {
            "runs": args.inline_runs,
            "engine_transitions_per_s": round(median["inline_engine"]),
            "run_local_transitions_per_s": round(median["inline_local"]),
            "engine_to_run_local_ratio": round(median["inline_engine"] / median["inline_local"], 3),
        },
        "samples": {name: [round(value, 4) for value in values] for name, values in samples.items()},
        "targets": {
            "map_to_chord_ratio": f"<= {TARGETS['map_to_chord_ratio']}",
            "inline_transitions_per_s": f">= {TARGETS['inline_transitions_per_s']}",
        },
    }
    results["targets_met"] = {
        "map_to_chord_ratio": results["map"]["engine_to_chord_ratio"] <= TARGETS["map_to_chord_ratio"],
        "inline_transitions_per_s": median["inline_engine"] >= TARGETS["inline_transitions_per_s"],
    }
    print(json.dumps({"benchmark": "pipeline", **results}, indent=2))


if __name__ == "__main__":
    main()
