"""HTTP deliveries: signed JSON POSTs to subscriber endpoints, one event or a batch per request.

Headers: ``X-Supplychain-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` with the
subscription's secret, ``X-Supplychain-Event-Id`` (single events) or ``X-Supplychain-Batch-Size``.
A batch body is ``{"events": [envelope, ...]}``; any 2xx answer marks all of it delivered.
"""

from __future__ import annotations

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
            headers = {"X-Supplychain-Event-Id": body_object["id"], "X-Supplychain-Event-Type": body_object["type"]}
        else:
            body_object = {"events": [delivery.event.envelope() for delivery in chunk]}
            headers = {"X-Supplychain-Batch-Size": str(len(chunk))}
        body = json.dumps(body_object, separators=(",", ":")).encode()
        headers["Content-Type"] = "application/json"
        if subscription.secret:
            headers[signing.SIGNATURE_HEADER] = signing.sign(subscription.secret, body)
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


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
