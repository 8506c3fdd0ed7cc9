"""ParcelPost, a courier with EasyPost-like status codes (``in_transit``, ``out_for_delivery``, ``delivered``,
``return_to_sender``) and its own HMAC header: ``X-ParcelPost-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>">``, refused when ``t`` is more than five minutes away from now. Signed so both ways.

Out: ``POST /v2/shipments`` ``{"shipment": {"reference", "to_address": {...}}}`` with an ``Idempotency-Key`` →
``{"id", "tracking_code"}``. In: a ``tracker.updated`` event ``{"id": "evt_…", "description",
"result": {"tracking_code", "status", "reference", "updated_at"}}``; the event id is the message id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping

from integrations.adapters import (
    Client,
    Inbound,
    InvalidMessage,
    PartnerUnavailable,
    SignatureRejected,
    load_json,
    text_at,
)

NAME = "parcelpost"
KIND = "courier"
SIGNATURE_HEADER = "X-ParcelPost-Signature"
SIGNATURE = f"{SIGNATURE_HEADER}: t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<body>'>"
TOLERANCE_SECONDS = 300

client = Client(NAME, "supplychain-parcelpost-adapter/1")


def signature(secret: str, *, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def check_signature(
    secret: str, header: str, body: bytes, *, now: float | None = None, tolerance: int = TOLERANCE_SECONDS
) -> bool:
    """True when one ``v1`` of ``header`` signs ``<t>.<body>`` with ``secret`` and ``t`` is within the tolerance."""
    if not secret or not isinstance(header, str):
        return False
    parts = [part.partition("=") for part in header.split(",")]
    stamps = [value for key, _, value in parts if key.strip() == "t"]
    offered = [value.strip() for key, _, value in parts if key.strip() == "v1"]
    if len(stamps) != 1 or not stamps[0].isascii() or not stamps[0].isdigit() or not offered:
        return False
    timestamp = int(stamps[0])
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp=timestamp, body=body).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected.encode(), value.encode("utf-8", "replace")) for value in offered)


def shipment_body(order: dict) -> bytes:
    address = order["delivery_address"]
    shipment = {
        "reference": order["order_id"],
        "deliver_by": order["delivery_date"],
        "to_address": {
            "name": address.get("name", ""),
            "street1": address.get("line1", ""),
            "city": address.get("city", ""),
            "zip": address.get("postcode", ""),
            "country": address.get("country", ""),
        },
    }
    return json.dumps({"shipment": shipment}, separators=(",", ":")).encode()


def book_shipment(order: dict, *, message_id: str, secret: str) -> tuple[str, bytes]:
    body = shipment_body(order)
    headers = {
        SIGNATURE_HEADER: signature(secret, timestamp=int(time.time()), body=body),
        "Idempotency-Key": message_id,
    }
    response = client.post("/v2/shipments", body, headers)
    try:
        tracking = response.json()["tracking_code"]
    except (ValueError, KeyError, TypeError):
        raise PartnerUnavailable(f"{NAME}: the booking answer has no tracking_code") from None
    if not isinstance(tracking, str) or not tracking:
        raise PartnerUnavailable(f"{NAME}: the booking answer has no tracking_code")
    return tracking[:100], body


def verify(body: bytes, headers: Mapping[str, str], secret: str, now: float | None = None) -> str | None:
    lowered = {name.lower(): value for name, value in headers.items()}
    if not check_signature(secret, lowered.get(SIGNATURE_HEADER.lower(), ""), body, now=now):
        raise SignatureRejected(f"bad, missing or stale {SIGNATURE_HEADER}")
    return None  # the message id is inside the body (its event id)


def parse(body: bytes, headers: Mapping[str, str]) -> Inbound:
    data = load_json(body)
    if not isinstance(data, dict):
        raise InvalidMessage("The body must be a JSON object.")
    if data.get("description") != "tracker.updated":
        raise InvalidMessage("description: only tracker.updated is understood.", {"description": ["tracker.updated."]})
    result = data.get("result")
    if not isinstance(result, dict):
        raise InvalidMessage("result: an object is required.", {"result": ["An object."]})
    return Inbound(
        message_id=text_at(data, "id"),
        kind="tracking_update",
        order_reference=text_at(result, "reference", max_length=100, where="result"),
        raw_status=text_at(result, "status", max_length=200, where="result"),
        occurred_at=text_at(result, "updated_at", required=False, where="result") or None,
        data={"tracking_id": text_at(result, "tracking_code", max_length=100, where="result")},
    )
