"""Diagnostic tasks: the smallest real work that proves workers, chords, retries and beat run.

Operations use them through ``POST /api/v1/diagnostics/ping/`` and ``manage.py selfcheck``.
"""

from __future__ import annotations

import os
import socket
import time

from celery import shared_task
from django_guid import get_guid


@shared_task(name="supplychain.ping")
def ping(marker: str | None = None) -> dict:
    """Answer who ran the task and under which correlation id."""
    return {
        "pong": True,
        "marker": marker,
        "correlation_id": get_guid(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
    }


@shared_task(name="supplychain.add")
def add(x: int, y: int) -> int:
    return x + y


@shared_task(name="supplychain.total")
def total(values: list[int]) -> int:
    """Chord body: sums the header's results."""
    return sum(values)


@shared_task(name="supplychain.flaky", bind=True, max_retries=10)
def flaky(self, failures: int, countdown: float = 1.0, attempt_times: list[float] | None = None) -> dict:
    """Fail ``failures`` times, each retried after ``countdown`` seconds, then succeed.

    Returns the wall-clock time of every attempt so the caller can see the delays really happened.
    """
    attempt_times = [*(attempt_times or []), time.time()]
    if self.request.retries < failures:
        raise self.retry(
            countdown=countdown,
            kwargs={"failures": failures, "countdown": countdown, "attempt_times": attempt_times},
            exc=RuntimeError(f"planned failure {self.request.retries + 1} of {failures}"),
        )
    return {"attempts": len(attempt_times), "attempt_times": attempt_times, "worker_pid": os.getpid()}


@shared_task(name="supplychain.noop", ignore_result=True)
def noop() -> None:
    """Does nothing: the reference for what one Celery message costs (bench/events.py)."""
