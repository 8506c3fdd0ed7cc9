"""HTTP deliveries: JSON POSTs to subscriber endpoints signed per Standard Webhooks, one event or a batch.

Headers: ``webhook-id`` (the event id, the same on every retry; for a batch an id derived from its
event ids), ``webhook-timestamp`` and ``webhook-signature`` (see ``signing``), and
``X-Supplychain-Event-Type`` (single events) or ``X-Supplychain-Batch-Size``. A batch body is
``{"events": [envelope, ...]}``; any 2xx answer marks all of it delivered.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import requests

from supplychain.events import signing

_session = requests.Session()
_session.headers["User-Agent"] = "supplychain-events/1"
CONNECT_TIMEOUT = 3.05


@dataclass
class Outcome:
    """What one delivery attempt came to: HTTP posts here, internal handlers in the services."""

    ok: bool
    duration_ms: float
    error: str = ""
    http_status: int | None = None


def post_deliveries(subscription, deliveries) -> list[Outcome]:
    outcomes = []
    size = max(1, subscription.max_batch_size)
    for start in range(0, len(deliveries), size):
        chunk = deliveries[start : start + size]
        if size == 1:
            body_object = chunk[0].event.envelope()
            message_id = body_object["id"]
            headers = {"X-Supplychain-Event-Type": body_object["type"]}
        else:
            body_object = {"events": [delivery.event.envelope() for delivery in chunk]}
            message_id = batch_message_id([envelope["id"] for envelope in body_object["events"]])
            headers = {"X-Supplychain-Batch-Size": str(len(chunk))}
        body = json.dumps(body_object, separators=(",", ":")).encode()
        headers["Content-Type"] = "application/json"
        if subscription.secret:
            headers.update(signing.headers(message_id=message_id, body=body, secrets=signing_secrets(subscription)))
        else:  # a row written without a secret (the API and the admin always give one): unsigned, still identified
            headers[signing.ID_HEADER] = message_id
        started = time.perf_counter()
        try:
            response = _session.post(
                subscription.url, data=body, headers=headers, timeout=(CONNECT_TIMEOUT, subscription.timeout_seconds)
            )
        except requests.RequestException as exc:
            outcome = Outcome(False, _ms(started), f"{type(exc).__name__}: {exc}"[:2000])
        else:
            ok = 200 <= response.status_code < 300
            error = "" if ok else f"HTTP {response.status_code}: {response.text[:500]}"
            outcome = Outcome(ok, _ms(started), error, response.status_code)
        outcomes.extend([outcome] * len(chunk))
    return outcomes


def signing_secrets(subscription) -> list[str]:
    """The current secret, and the previous one while its grace period after a rotation lasts."""
    from django.utils import timezone

    secrets = [subscription.secret]
    expires = subscription.previous_secret_expires_at
    if subscription.previous_secret and expires is not None and expires > timezone.now():
        secrets.append(subscription.previous_secret)
    return secrets


def batch_message_id(event_ids: list[str]) -> str:
    """A batch's ``webhook-id``: the same for the same events, whatever their order (receivers dedupe
    each envelope on its ``id``; a retry may batch the events differently)."""
    digest = hashlib.sha256(",".join(sorted(event_ids)).encode()).hexdigest()[:32]
    return f"batch_{digest}"


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
