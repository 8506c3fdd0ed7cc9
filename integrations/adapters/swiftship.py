"""SwiftShip, a courier that speaks AfterShip-like tags (``InTransit``, ``OutForDelivery``, ``AttemptFail``,
``Delivered``) and signs per Standard Webhooks (the ``standardwebhooks`` package) both ways.

Out: ``POST /v1/shipments`` ``{"shipment": {"order_id", "destination": {...}, "parcel_count"}}`` with an
``Idempotency-Key`` (the event id: a retried booking gets the same tracking number) → ``{"data":
{"tracking_number"}}``. In: a ``tracking_update`` webhook ``{"event", "msg": {"tracking_number", "order_id",
"tag", "subtag", "updated_at"}}``; the tag is translated by the vocabulary table, raw tag kept beside it.
"""

from __future__ import annotations

import json
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
from supplychain.events import signing

NAME = "swiftship"
KIND = "courier"
SIGNATURE = "Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature), whsec_ secret"

client = Client(NAME, "supplychain-swiftship-adapter/1")


def shipment_body(order: dict) -> bytes:
    """Our order (order_id, delivery_address, delivery_date) as a SwiftShip shipment."""
    address = order["delivery_address"]
    shipment = {
        "order_id": order["order_id"],
        "delivery_date": order["delivery_date"],
        "destination": {
            "contact_name": address.get("name", ""),
            "street": address.get("line1", ""),
            "city": address.get("city", ""),
            "postal_code": address.get("postcode", ""),
            "country_iso2": address.get("country", ""),
        },
        "parcel_count": 1,
    }
    return json.dumps({"shipment": shipment}, separators=(",", ":")).encode()


def book_shipment(order: dict, *, message_id: str, secret: str) -> tuple[str, bytes]:
    """Book the shipment; returns (tracking number, body sent)."""
    body = shipment_body(order)
    headers = {**signing.headers(message_id=message_id, body=body, secrets=[secret]), "Idempotency-Key": message_id}
    response = client.post("/v1/shipments", body, headers)
    try:
        tracking = response.json()["data"]["tracking_number"]
    except (ValueError, KeyError, TypeError):
        raise PartnerUnavailable(f"{NAME}: the booking answer has no data.tracking_number") from None
    if not isinstance(tracking, str) or not tracking:
        raise PartnerUnavailable(f"{NAME}: the booking answer has no data.tracking_number")
    return tracking[:100], body


def verify(body: bytes, headers: Mapping[str, str], secret: str, now: float | None = None) -> str:
    lowered = {name.lower(): value for name, value in headers.items()}
    message_id = lowered.get(signing.ID_HEADER) or None
    if not signing.verify(secret, body, lowered, now=now):
        raise SignatureRejected("bad, missing or stale Standard Webhooks signature", message_id)
    return message_id


def parse(body: bytes, headers: Mapping[str, str]) -> Inbound:
    lowered = {name.lower(): value for name, value in headers.items()}
    data = load_json(body)
    if not isinstance(data, dict):
        raise InvalidMessage("The body must be a JSON object.")
    if data.get("event") != "tracking_update":
        raise InvalidMessage("event: only tracking_update is understood.", {"event": ["Must be tracking_update."]})
    message = data.get("msg")
    if not isinstance(message, dict):
        raise InvalidMessage("msg: an object is required.", {"msg": ["An object."]})
    message_id = lowered.get(signing.ID_HEADER, "")
    if not message_id or len(message_id) > 200:
        raise InvalidMessage("webhook-id: required.", {"webhook-id": ["Required, at most 200 characters."]})
    return Inbound(
        message_id=message_id,
        kind="tracking_update",
        order_reference=text_at(message, "order_id", max_length=100, where="msg"),
        raw_status=text_at(message, "tag", max_length=200, where="msg"),
        occurred_at=text_at(message, "updated_at", required=False, where="msg") or None,
        data={
            "tracking_id": text_at(message, "tracking_number", max_length=100, where="msg"),
            "subtag": text_at(message, "subtag", required=False, where="msg"),
        },
    )
