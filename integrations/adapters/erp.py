"""The ERP adapter: its document formats, its HTTP client, and the translation both ways.

Outbound (backbone deliveries, see ``integrations.handlers``): purchase orders (``purchase_order.placed``)
to ``POST {ERP_URL}/purchase-orders``, and the sales-order mirror (every ``order.*`` event) to
``POST {ERP_URL}/sales-orders`` in batches. Inbound: a goods receipt in the ERP's format becomes the
platform-agnostic lines the stock receipt ingest takes (``goods_receipt_lines``).

The ERP speaks in SAP-like documents: ``DocumentNo``, ``Vendor``, ``Items`` of ``Material`` and
``Quantity``. Its URL, secret and timeout are ``PARTNER_ERP_URL`` / ``_SECRET`` / ``_TIMEOUT`` (``settings.PARTNERS``,
the simulator's ERP in development). Every request carries ``Authorization: Bearer <secret>`` and an
``Idempotency-Key`` (the event id, the same on every retry), so the ERP can drop a repeat.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass

from integrations.adapters import Client, partner_settings

logger = logging.getLogger(__name__)
PARTNER = "erp"
NAME = PARTNER
_client = Client(PARTNER, "supplychain-erp/1")

# Canonical order status → the ERP's sales-order status.
SALES_ORDER_STATUS = {
    "received": "OPEN",
    "reserved": "CONFIRMED",
    "short": "BLOCKED",
    "sent_to_wms": "IN_PICKING",
    "picked": "PICKED",
    "dispatched": "SHIPPED",
    "in_transit": "SHIPPED",
    "out_for_delivery": "SHIPPED",
    "delivered": "COMPLETED",
    "delivery_failed": "SHIPPED",
    "returned": "RETURNED",
    "cancelled": "CANCELLED",
}


class ErpDocumentInvalid(ValueError):
    """An inbound ERP document that cannot be translated; ``errors`` name the fields."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{path}: {' '.join(messages)}" for path, messages in errors.items()))


# ---- Translation out --------------------------------------------------------------------------------


def purchase_order_document(payload: dict) -> dict:
    """``purchase_order.placed`` as the ERP's purchase order."""
    return {
        "PurchaseOrder": {
            "DocumentNo": payload["purchase_order_id"],
            "Vendor": payload["supplier"],
            "DeliveryDate": payload["expected_date"],
            "Note": payload.get("notes", ""),
            "Items": [
                {"Position": (index + 1) * 10, "Material": line["sku"], "Quantity": line["quantity"]}
                for index, line in enumerate(payload["lines"])
            ],
        }
    }


def sales_order_document(envelope: dict) -> dict:
    """One ``order.*`` event as the ERP's sales-order upsert (the first, ``order.received``, has the lines)."""
    payload = envelope["payload"]
    status = payload.get("to_status") or "received"
    document = {
        "ExternalId": payload["order_id"],
        "Status": SALES_ORDER_STATUS.get(status, "OPEN"),
        "ChangedAt": envelope["occurred_at"],
        "EventId": envelope["id"],
    }
    if envelope["type"] == "order.received":
        document["Customer"] = payload["customer_reference"]
        document["RequestedDate"] = payload["delivery_date"]
        document["Items"] = [
            {"Position": (index + 1) * 10, **_sales_item(line)} for index, line in enumerate(payload["lines"])
        ]
    return document


def _sales_item(line: dict) -> dict:
    if "recipe" in line:
        return {"Kit": line["recipe"], "Quantity": line["portions"], "Unit": "PORTION"}
    return {"Material": line["sku"], "Quantity": line["quantity"]}


# ---- Translation in ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoodsReceiptLine:
    sku: str
    quantity: str
    best_before: str
    lot: str
    supplier: str


def goods_receipt_lines(document: dict) -> tuple[str, str, list[GoodsReceiptLine]]:
    """The ERP's goods receipt → (receipt id, purchase order id or "", lines); ``ErpDocumentInvalid`` names
    what is missing. Values are checked by the receipt ingest, row by row, like any receipt file."""
    errors: dict[str, list[str]] = {}
    body = document.get("GoodsReceipt") if isinstance(document, dict) else None
    if not isinstance(body, dict):
        raise ErpDocumentInvalid({"GoodsReceipt": ["Required: an object."]})
    number = body.get("DocumentNo")
    if not isinstance(number, str) or not number:
        errors["GoodsReceipt.DocumentNo"] = ["Required: a string."]
    elif not re.fullmatch(r"[-A-Za-z0-9_.]{1,100}", number):
        errors["GoodsReceipt.DocumentNo"] = ["Letters, digits, '-', '_' and '.', at most 100."]
    items = body.get("Items")
    if not isinstance(items, list) or not items:
        errors["GoodsReceipt.Items"] = ["Required: a non-empty list."]
        items = []
    lines = []
    for index, item in enumerate(items):
        where = f"GoodsReceipt.Items.{index}"
        if not isinstance(item, dict):
            errors[where] = ["Must be an object."]
            continue
        values = {}
        for field, name in (("Material", "sku"), ("Quantity", "quantity"), ("BestBefore", "best_before")):
            value = item.get(field)
            if isinstance(value, int | float) and not isinstance(value, bool) and field == "Quantity":
                value = str(value)
            if not isinstance(value, str) or not value:
                errors.setdefault(f"{where}.{field}", []).append("Required.")
            elif not _printable(value):
                errors.setdefault(f"{where}.{field}", []).append("Control characters are not allowed.")
            values[name] = value
        lot = item.get("Batch") or ""
        supplier = item.get("Vendor") or body.get("Vendor") or ""
        if not isinstance(lot, str) or not isinstance(supplier, str) or not _printable(lot + supplier):
            errors.setdefault(where, []).append("Batch and Vendor are strings without control characters.")
            continue
        if not errors:
            lines.append(GoodsReceiptLine(values["sku"], values["quantity"], values["best_before"], lot, supplier))
    if errors:
        raise ErpDocumentInvalid(errors)
    purchase_order = body.get("PurchaseOrder") or ""
    if not isinstance(purchase_order, str) or not _printable(purchase_order):
        purchase_order = ""
    return number, purchase_order[:100], lines


def _printable(text: str) -> bool:
    """No control character (NUL included) and no lone surrogate: what a CSV row and PostgreSQL can hold."""
    return not any(ord(character) < 32 or 0xD800 <= ord(character) <= 0xDFFF for character in text)


# ---- The HTTP client --------------------------------------------------------------------------------


def post(path: str, body, *, idempotency_key: str) -> dict:
    """POST a document to the ERP and return its JSON answer ({} when it has none).

    No URL configured (``PartnerNotConfigured``), a transport error or a non-2xx answer raises a
    ``PartnerUnavailable``, so the delivery is retried and, in the end, dead-lettered and alerted.
    """
    headers = {"Idempotency-Key": idempotency_key}
    secret = partner_settings(PARTNER).get("secret", "")
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    response = _client.post(path, json.dumps(body, separators=(",", ":")).encode(), headers)
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def send_purchase_order(envelope: dict) -> str:
    """Send one purchase order: the ERP's document number ("" when it gives none)."""
    answer = post("/purchase-orders", purchase_order_document(envelope["payload"]), idempotency_key=envelope["id"])
    return str(answer.get("DocumentNo", ""))[:100]


def send_sales_orders(envelopes: list[dict]) -> None:
    """Mirror a batch of order events as one request; the key is derived from the event ids."""
    ids = sorted(envelope["id"] for envelope in envelopes)
    key = ids[0] if len(ids) == 1 else "batch_" + hashlib.sha256(",".join(ids).encode()).hexdigest()[:32]
    post("/sales-orders", {"SalesOrders": [sales_order_document(e) for e in envelopes]}, idempotency_key=key)
