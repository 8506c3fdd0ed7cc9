"""Pipeline steps for the engine's tests: they count and time their calls in Redis, so tests see them across
worker processes (keys under ``probe:steps:``, in the test broker's Redis database)."""

from __future__ import annotations

import time

import redis
from django.conf import settings

from forecasting.engine import StepError, step

PREFIX = "probe:steps:"


def store() -> redis.Redis:
    url = settings.CELERY_BROKER_URL
    if url.startswith("redis+socket://"):  # the embedded broker's unix socket
        url = "unix://" + url.removeprefix("redis+socket://")
    return redis.Redis.from_url(url)


def calls(key: str) -> int:
    return int(store().get(PREFIX + "calls:" + key) or 0)


def call_times(key: str) -> list[float]:
    return [float(value) for value in store().lrange(PREFIX + "times:" + key, 0, -1)]


def peak(key: str) -> int:
    return int(store().get(PREFIX + "peak:" + key) or 0)


def _count(key: str) -> int:
    client = store()
    client.rpush(PREFIX + "times:" + key, repr(time.time()))
    return client.incr(PREFIX + "calls:" + key)


@step("probe.echo")
def echo(payload):
    return payload


@step("probe.noop")
def noop(payload):
    return None


@step("probe.fail_until")
def fail_until(payload):
    """Fail with ``error`` the first ``failures`` calls for ``key``, then answer ``{"attempts": n}``."""
    n = _count(payload["key"])
    if n <= payload["failures"]:
        raise StepError(payload.get("error", "ResourcePending"), f"attempt {n} of {payload['key']}")
    return {"attempts": n}


@step("probe.flaky_item")
def flaky_item(payload):
    """Fail while Redis holds no ``fixed:<key>`` flag for a ``bad`` item; count calls per item."""
    _count(f"{payload['key']}:{payload['item']}")
    if payload.get("bad") and not store().get(PREFIX + "fixed:" + payload["key"]):
        raise ValueError(f"item {payload['item']} is bad")
    return {"item": payload["item"], "ok": True}


@step("probe.sleep")
def sleep(payload):
    """Sleep ``seconds``, counting how many run at once for ``key`` (the peak is kept)."""
    client = store()
    key = payload.get("key", "sleep")
    _count(key)
    running = client.incr(PREFIX + "running:" + key)
    try:
        client.eval(
            "local p = tonumber(redis.call('get', KEYS[1]) or '0'); "
            "if tonumber(ARGV[1]) > p then redis.call('set', KEYS[1], ARGV[1]) end",
            1,
            PREFIX + "peak:" + key,
            running,
        )
        time.sleep(payload.get("seconds", 0.1))
    finally:
        client.decr(PREFIX + "running:" + key)
    return {"slept": payload.get("seconds", 0.1), "index": payload.get("index")}


@step("probe.boom")
def boom(payload):
    raise KeyError(payload.get("what", "boom"))
