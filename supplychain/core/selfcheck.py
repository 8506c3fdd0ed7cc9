"""End-to-end checks of the task machinery: a chord, a countdown retry and a beat-scheduled task.

Each check sends real messages through the configured broker and waits for real workers (and beat)
in other processes, so it proves a deployment, not just this process. Used by ``manage.py selfcheck``
and the integration tests, on the embedded default and on Redis + PostgreSQL alike.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid

from celery import chord
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_celery_results.models import TaskResult

from supplychain.core import tasks


class CheckFailed(Exception):
    pass


def check_chord(*, size: int = 10, timeout: float = 60) -> dict:
    started = time.monotonic()
    result = chord(tasks.add.s(i, i) for i in range(size))(tasks.total.s())
    value = result.get(timeout=timeout, propagate=True)
    expected = sum(2 * i for i in range(size))
    if value != expected:
        raise CheckFailed(f"chord of {size} returned {value}, expected {expected}")
    return {"ok": True, "size": size, "value": value, "seconds": round(time.monotonic() - started, 3)}


def check_retry(*, failures: int = 2, countdown: float = 1.0, timeout: float = 60) -> dict:
    started = time.monotonic()
    outcome = tasks.flaky.delay(failures=failures, countdown=countdown).get(timeout=timeout)
    times = outcome["attempt_times"]
    gaps = [round(later - earlier, 3) for earlier, later in itertools.pairwise(times)]
    if outcome["attempts"] != failures + 1:
        raise CheckFailed(f"expected {failures + 1} attempts, got {outcome['attempts']}")
    if any(gap < countdown * 0.9 for gap in gaps):
        raise CheckFailed(f"retry came sooner than its countdown of {countdown}s: gaps {gaps}")
    return {
        "ok": True,
        "attempts": outcome["attempts"],
        "gaps": gaps,
        "seconds": round(time.monotonic() - started, 3),
    }


def check_beat(*, timeout: float = 60) -> dict:
    """Schedule a ping every second in the database schedule and wait for beat to send one."""
    marker = f"selfcheck-{uuid.uuid4().hex}"
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    entry = PeriodicTask.objects.create(
        name=marker,
        task="supplychain.ping",
        interval=every_second,
        kwargs=json.dumps({"marker": marker}),
        description="Temporary entry of manage.py selfcheck; removed when the check ends.",
    )
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout:
            if TaskResult.objects.filter(task_name="supplychain.ping", result__contains=marker).exists():
                return {"ok": True, "seconds": round(time.monotonic() - started, 3)}
            time.sleep(0.25)
        raise CheckFailed(f"beat sent no scheduled task within {timeout}s: is beat running?")
    finally:
        entry.delete()


CHECKS = {"chord": check_chord, "retry": check_retry, "beat": check_beat}


def run_checks(names: list[str], *, timeout: float = 60) -> dict:
    report = {}
    for name in names:
        try:
            report[name] = CHECKS[name](timeout=timeout)
        except Exception as exc:  # each check reports its own failure; the others still run
            report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return report
