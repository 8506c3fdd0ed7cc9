"""Kick guards: at most one pending kick per drain (a subscription's deliveries, the relay), across processes.

A kick is a Celery message that wakes a drain. Without a guard every web process and every worker sent its
own, and under load the queues filled with kicks that found nothing left to do (each costs a worker 3 to 4 ms
and queues the next real one behind it). Before sending, ``claim`` sets ``SET key NX PX`` in Redis: only
the first kick goes out until that drain starts; the drain calls ``clear`` before it claims anything, so an
event committed after that sends a kick of its own and is never stranded. The guard expires after
``EVENTS_KICK_PENDING_SECONDS`` so a lost message only delays until the next kick (the beat sweep is the
safety net). A broker that is not Redis, or a Redis that does not answer, means no guard: every kick is sent.
"""

from __future__ import annotations

import logging

from django.conf import settings

logger = logging.getLogger(__name__)

PREFIX = "supplychain:kick:"
_client = None
_client_url = None


def _redis():
    """The broker's Redis (a client per process; redis-py makes a new pool after a fork), or None."""
    global _client, _client_url
    url = settings.CELERY_BROKER_URL
    if _client is not None and _client_url == url:
        return _client
    import redis

    if url.startswith(("redis://", "rediss://")):
        client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    elif url.startswith("redis+socket://"):
        client = redis.Redis(unix_socket_path=url[len("redis+socket://") :].split("?")[0], socket_timeout=0.5)
    else:
        return None
    _client, _client_url = client, url
    return client


def _pending_ms() -> int:
    return max(1, int(getattr(settings, "EVENTS_KICK_PENDING_SECONDS", 10.0) * 1000))


def claim(name: str) -> bool:
    """True when the caller should send the kick for ``name``: none is pending (or there is no guard)."""
    client = _redis()
    if client is None:
        return True
    try:
        return bool(client.set(PREFIX + name, b"1", nx=True, px=_pending_ms()))
    except Exception as exc:  # no guard is better than no kick
        logger.debug("kick guard %s unavailable (%s): sending", name, exc)
        return True


def clear(name: str) -> None:
    """The drain of ``name`` starts (or a kick was not sent): the next kick must go out."""
    client = _redis()
    if client is None:
        return
    try:
        client.delete(PREFIX + name)
    except Exception as exc:  # the guard expires by itself
        logger.debug("kick guard %s not cleared (%s)", name, exc)


def deliveries_key(subscription_id: int) -> str:
    return f"deliver:{subscription_id}"


RELAY = "relay"
