"""Writes of the platform core: sending diagnostic work to the workers."""

from __future__ import annotations

from celery.result import AsyncResult

from supplychain.core import tasks


def send_ping(*, marker: str | None = None) -> AsyncResult:
    """Queue a ping on the default queue; the caller's correlation id travels with it."""
    return tasks.ping.delay(marker=marker)
