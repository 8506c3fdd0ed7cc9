"""Reads about the platform itself: database and broker readiness, queue depths."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import connection


def database_status() -> dict:
    """Run ``SELECT 1``; answer ok, the round trip in ms and the engine's vendor."""
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # readiness reports any failure rather than raising
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "vendor": connection.vendor, "ms": round((time.perf_counter() - started) * 1000, 2)}


def queue_depths(conn) -> dict[str, int]:
    """Messages waiting in each of the project's queues (works on Redis and RabbitMQ)."""
    channel = conn.default_channel
    depths = {}
    for name in settings.CELERY_QUEUES:
        try:
            depths[name] = channel.queue_declare(queue=name, passive=True).message_count
        except Exception:  # a queue nobody declared yet is empty
            depths[name] = 0
    return depths


def broker_status(timeout: float = 2.0) -> dict:
    """Connect to the broker; answer ok, round trip in ms, transport and queue depths."""
    from supplychain.celery import app

    started = time.perf_counter()
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
            depths = queue_depths(conn)
            transport = conn.transport_cls
    except Exception as exc:  # readiness reports any failure rather than raising
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "ok": True,
        "transport": str(transport),
        "embedded": settings.USES_EMBEDDED_BROKER,
        "ms": round((time.perf_counter() - started) * 1000, 2),
        "queues": depths,
    }
