"""The warehouse management system: pick lists out (batched), pick confirmations in, per Standard Webhooks both ways.

Its format: a pick list is ``{"pick_id", "client_order_ref", "ship_date", "items": [{"item_code", "qty", "lot",
"expiry"}]}``, sent many at once as ``{"pick_lists": [...]}`` to ``POST /pick-lists``. A confirmation webhook is
``{"event": "pick.confirmed", "pick_id", "client_order_ref", "confirmed_at", "items": [{"item_code", "lot",
"qty"}]}``: the lot actually picked per line, which may differ from the one we allocated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from integrations.adapters import Client, Inbound, InvalidMessage, SignatureRejected, load_json, text_at
from supplychain.events import signing

NAME = "wms"
KIND = "wms"
SIGNATURE = "Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature), whsec_ secret"
MAX_LINES = 500

client = Client(NAME, "supplychain-wms-adapter/1")


# ---- Out ------------------------------------------------------------------------------------------


def pick_list(request: dict) -> dict:
    """One pick request in our terms (order_id, request_id, ship_by, lines of sku/quantity/lot/best_before)."""
    return {
        "pick_id": request["request_id"],
        "client_order_ref": request["order_id"],
        "ship_date": request["ship_by"],
        "items": [
            {"item_code": line["sku"], "qty": line["quantity"], "lot": line["lot"], "expiry": line["best_before"]}
            for line in request["lines"]
        ],
    }


def pick_lists_body(requests: list[dict]) -> bytes:
    return json.dumps({"pick_lists": [pick_list(request) for request in requests]}, separators=(",", ":")).encode()


def send_pick_requests(requests: list[dict], *, message_id: str, secret: str) -> bytes:
    """POST the pick lists in one call, signed; returns the body sent (kept as the outbound message)."""
    body = pick_lists_body(requests)
    client.post("/pick-lists", body, signing.headers(message_id=message_id, body=body, secrets=[secret]))
    return body


# ---- In -------------------------------------------------------------------------------------------


def verify(body: bytes, headers: Mapping[str, str], secret: str, now: float | None = None) -> str:
    lowered = {name.lower(): value for name, value in headers.items()}
    message_id = lowered.get(signing.ID_HEADER) or None
    if not signing.verify(secret, body, lowered, now=now):
        raise SignatureRejected("bad, missing or stale Standard Webhooks signature", message_id)
    return message_id


def _quantity(value, where: str) -> str:
    try:
        quantity = Decimal(str(value)) if isinstance(value, str | int) and not isinstance(value, bool) else None
    except InvalidOperation:
        quantity = None
    if quantity is None or not quantity.is_finite() or quantity <= 0 or quantity >= Decimal("1e11"):
        raise InvalidMessage(f"{where}: a positive quantity is required.", {where: ["A positive quantity."]})
    return format(quantity.quantize(Decimal("0.001")), "f")


def parse(body: bytes, headers: Mapping[str, str]) -> Inbound:
    lowered = {name.lower(): value for name, value in headers.items()}
    data = load_json(body)
    if not isinstance(data, dict):
        raise InvalidMessage("The body must be a JSON object.")
    if data.get("event") != "pick.confirmed":
        raise InvalidMessage("event: only pick.confirmed is understood.", {"event": ["Must be pick.confirmed."]})
    items = data.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_LINES:
        raise InvalidMessage(f"items: 1 to {MAX_LINES} lines.", {"items": [f"1 to {MAX_LINES} lines."]})
    lines = []
    for index, item in enumerate(items):
        where = f"items.{index}"
        if not isinstance(item, dict):
            raise InvalidMessage(f"{where}: an object is required.", {where: ["An object."]})
        lines.append(
            {
                "sku": text_at(item, "item_code", max_length=100, where=where),
                "lot": text_at(item, "lot", max_length=100, where=where),
                "quantity": _quantity(item.get("qty"), f"{where}.qty"),
            }
        )
    return Inbound(
        message_id=lowered.get(signing.ID_HEADER) or text_at(data, "pick_id"),
        kind="pick_confirmation",
        order_reference=text_at(data, "client_order_ref", max_length=100),
        occurred_at=text_at(data, "confirmed_at", required=False) or None,
        data={"pick_id": text_at(data, "pick_id"), "lines": lines},
    )
