"""Purchasing with the ERP: purchase orders placed (idempotent on their id, sent as backbone deliveries) and
goods receipts from the ERP taken in as stock receipts through the existing ingest.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations.adapters import erp
from integrations.errors import InvalidPurchaseOrder, PurchaseOrderIdReused
from integrations.models import PurchaseOrder
from stock import services as stock_services
from stock.models import Ingredient, Supplier
from stock.services.receipts import validate_receipt_key
from supplychain.events.services import publish, record_received

GOODS_RECEIPT_PREFIX = "erp/goods-receipts/"
logger = logging.getLogger(__name__)


@dataclass
class Placed:
    purchase_order: PurchaseOrder
    created: bool


def _canonical(*, purchase_order_id, supplier, expected_date, lines, notes) -> dict:
    return {
        "purchase_order_id": purchase_order_id,
        "supplier": supplier,
        "expected_date": expected_date.isoformat(),
        "lines": [
            {"sku": line["sku"], "quantity": format(Decimal(line["quantity"]).normalize(), "f")} for line in lines
        ],
        "notes": notes,
    }


def place_purchase_order(
    *, purchase_order_id: str, supplier: str, expected_date: date, lines: list[dict], notes: str = ""
) -> Placed:
    """Place a purchase order; the ERP gets it through the ``erp-purchase-orders`` delivery.

    The same order again changes nothing and is answered as the first (``created`` False); the same id with
    another body raises ``PurchaseOrderIdReused`` (422); an unknown sku ``InvalidPurchaseOrder`` (400).
    """
    document = _canonical(
        purchase_order_id=purchase_order_id, supplier=supplier, expected_date=expected_date, lines=lines, notes=notes
    )
    digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
    existing = PurchaseOrder.objects.filter(purchase_order_id=purchase_order_id).first()
    if existing is None:
        skus = [line["sku"] for line in document["lines"]]
        known = set(Ingredient.objects.filter(sku__in=skus).values_list("sku", flat=True))
        unknown = {f"lines.{i}.sku": ["Unknown sku."] for i, sku in enumerate(skus) if sku not in known}
        if unknown:
            raise InvalidPurchaseOrder("; ".join(f"{k}: Unknown sku." for k in unknown), errors=unknown)
        try:
            with transaction.atomic():
                order = PurchaseOrder.objects.create(
                    purchase_order_id=purchase_order_id,
                    supplier=supplier,
                    expected_date=expected_date,
                    lines=document["lines"],
                    notes=notes,
                    request_hash=digest,
                    created_at=timezone.now(),
                )
                publish("purchase_order.placed", document, key=purchase_order_id)
            return Placed(order, True)
        except IntegrityError:  # placed by a concurrent call: answer it as a repeat
            existing = PurchaseOrder.objects.get(purchase_order_id=purchase_order_id)
    if existing.request_hash != digest:
        raise PurchaseOrderIdReused(
            f"Purchase order {purchase_order_id} was already placed with a different body.",
            errors={"purchase_order_id": ["Already used with a different body."]},
        )
    return Placed(existing, False)


def place_suggested_purchase_order(*, suggestion: dict) -> Placed | None:
    """The forecast drives purchasing: one ``forecast.purchase_order_suggested`` placed as a purchase order.

    Keyed ``forecast-<forecast id>-<supplier code>``, so a redelivered suggestion places nothing twice. The
    expected date is the earliest arrival of its lines. Nothing is placed when ``FORECAST_PLACE_PURCHASE_ORDERS``
    is off (buyers place them from the forecast's suggestions themselves), for a suggestion no supplier sells,
    or for a supplier no longer known (logged).
    """
    if not settings.FORECAST_PLACE_PURCHASE_ORDERS or not suggestion["supplier_code"]:
        return None
    supplier = Supplier.objects.filter(code=suggestion["supplier_code"]).first()
    if supplier is None:
        logger.warning("forecast %s suggests buying from unknown supplier %r", suggestion["forecast_id"], suggestion)
        return None
    lines = [line for line in suggestion["lines"] if Decimal(line["quantity"]) > 0]
    if not lines:
        return None
    late = sorted(line["sku"] for line in lines if line["late"])
    notes = f"Suggested by forecast {suggestion['forecast_id']}: order by {suggestion['order_by']}."
    if late:
        notes += f" Arrives after it is needed: {', '.join(late)}."
    return place_purchase_order(
        purchase_order_id=f"forecast-{suggestion['forecast_id']}-{supplier.code}"[:100],
        supplier=supplier.name,
        expected_date=min(date.fromisoformat(line["arrives"]) for line in lines),
        lines=[{"sku": line["sku"], "quantity": line["quantity"]} for line in lines],
        notes=notes[:1000],
    )


def mark_purchase_order_sent(*, purchase_order_id: str, erp_reference: str = "") -> None:
    PurchaseOrder.objects.filter(purchase_order_id=purchase_order_id).update(
        status=PurchaseOrder.Status.SENT, sent_at=timezone.now(), erp_reference=erp_reference
    )


def receive_goods_receipt(*, document: dict) -> stock_services.ReceiptOutcome:
    """A goods receipt in the ERP's format becomes a stock receipt through the CSV ingest, once per document.

    Its key is ``erp/goods-receipts/<DocumentNo>.csv``: the same document again is a duplicate that changes
    nothing; the same number with other content is refused (``ReceiptConflict``, 409). Rows are checked like
    any receipt file's (bad rows reported on the receipt, good ones ingested). The message is audited.
    """
    try:
        number, purchase_order_id, lines = erp.goods_receipt_lines(document)
    except erp.ErpDocumentInvalid as exc:
        raise InvalidPurchaseOrder(str(exc), errors=exc.errors) from exc
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["sku", "quantity", "best_before", "lot", "supplier"])
    for line in lines:
        writer.writerow([line.sku, line.quantity, line.best_before, line.lot, line.supplier])
    content = text.getvalue().encode()

    @contextmanager
    def opener():
        yield io.BytesIO(content)

    key = validate_receipt_key(f"{GOODS_RECEIPT_PREFIX}{number}.csv")
    outcome = stock_services.ingest_receipt(key=key, open_stream=opener, source=erp.PARTNER)
    record_received(
        partner=erp.PARTNER,
        message_type="erp.goods_receipt",
        entity_key=number,
        outcome=outcome.outcome,
        data={"purchase_order": purchase_order_id, "receipt": outcome.receipt.key, "lines": len(lines)},
    )
    return outcome
