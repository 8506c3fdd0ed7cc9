"""Partner messages: webhooks in (verified, deduplicated, stored raw, translated, applied or parked), calls out.

Inbound, ``receive_webhook``: the adapter checks the partner's own signature and timestamp (a bad or stale one
is a 401, audited, ``integration.webhook_rejected`` published); a repeat of a partner message id is stored as a
duplicate and changes nothing; otherwise the raw message is stored, translated and applied through the
lifecycle (a refused transition is ``rejected``: audited, never applied). What cannot be applied yet (a status
word without a vocabulary row, an order we do not know, a pick that does not match) is ``parked`` with
``integration.message_parked`` and replayed by ``replay_messages`` once fixed.

Outbound, ``send_pick_requests`` and ``book_shipment`` run inside the backbone's handler deliveries
(``integrations.handlers``): a partner that fails raises, and the delivery is retried, dead-lettered and
redriven by ``supplychain.events``; the order moves in the same transaction as the delivery's success.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations import adapters
from integrations.adapters import Inbound, InvalidMessage, SignatureRejected
from integrations.errors import (
    InvalidPartnerMessage,
    NotParked,
    PartnerDisabled,
    PartnerMessageNotFound,
    UnknownPartner,
    WebhookRejected,
)
from integrations.models import Order, PartnerMessage, StatusVocabulary
from integrations.services.lifecycle import Move, is_legal, transition_orders
from stock import services as stock_services
from stock.errors import PickMismatch, ReservationClosed, ReservationNotFound
from stock.selectors import AllocatedLot, open_allocations
from supplychain.events.services import publish, record_received

logger = logging.getLogger(__name__)
S = Order.Status
M = PartnerMessage.Status
R = PartnerMessage.Reason
# Headers worth keeping with a raw message (the signature ones and what says what the body is).
KEPT_HEADERS = ("content-type", "user-agent", "webhook-id", "webhook-timestamp", "webhook-signature")
WEBHOOK_MESSAGE = "partner.webhook"  # the audit log's message type for inbound webhooks


@dataclass
class WebhookAnswer:
    message_id: str
    status: str
    reason: str = ""
    order_id: str | None = None
    detail: str = ""

    def body(self) -> dict:
        return {
            "message_id": self.message_id,
            "status": self.status,
            "reason": self.reason or None,
            "order_id": self.order_id,
            "detail": self.detail,
        }


def _kept_headers(headers) -> dict:
    lowered = {name.lower(): value for name, value in headers.items()}
    kept = {name: lowered[name][:500] for name in KEPT_HEADERS if name in lowered}
    for name, value in lowered.items():
        if name.endswith("-signature") and name not in kept:
            kept[name] = value[:500]
    return kept


def _reject(partner: str, reason: str, message_id: str | None, remote_addr: str | None) -> None:
    """The refusal stays on record: audit entry and ``integration.webhook_rejected``, in their own transaction."""
    logger.warning("webhook from %s rejected: %s", partner, reason)
    with transaction.atomic():
        record_received(
            partner=partner,
            message_type=WEBHOOK_MESSAGE,
            entity_key=message_id or "",
            outcome="rejected",
            error=reason,
            data={"remote_addr": remote_addr},
        )
        publish(
            "integration.webhook_rejected",
            {
                "partner": partner[:100],
                "reason": reason[:500],
                "message_id": (message_id or None) and message_id[:200],
                "remote_addr": remote_addr and remote_addr[:100],
            },
            key=partner,
        )


def receive_webhook(*, partner: str, body: bytes, headers, remote_addr: str | None = None) -> WebhookAnswer:
    """Verify, deduplicate, store, translate and apply one inbound webhook; see the module docstring.

    Raises ``UnknownPartner`` (404), ``PartnerDisabled`` (403: no secret configured), ``WebhookRejected`` (401)
    and ``InvalidPartnerMessage`` (400: authentic but unreadable; it is stored parked, ``invalid``).
    """
    adapter = adapters.adapter(partner)
    if adapter is None:
        _reject(partner, "unknown partner", None, remote_addr)
        raise UnknownPartner(f"No partner {partner!r}: one of {', '.join(sorted(adapters.adapters()))}.")
    secret = adapters.partner_settings(partner)["secret"]
    if not secret:
        _reject(partner, "no webhook secret configured", None, remote_addr)
        raise PartnerDisabled(f"PARTNER_{partner.upper()}_SECRET is not set: {partner}'s webhooks are refused.")
    try:
        adapter.verify(body, headers, secret)
    except SignatureRejected as exc:
        _reject(partner, exc.reason, exc.message_id, remote_addr)
        raise WebhookRejected(f"{partner}: {exc.reason}.") from None
    try:
        inbound = adapter.parse(body, headers)
    except InvalidMessage as exc:
        answer = _store_unreadable(partner, body, headers, exc)
        raise InvalidPartnerMessage(
            f"{partner}: {exc.detail} (stored as message {answer.message_id}, parked)", errors=exc.errors
        ) from None
    return _receive(partner, inbound, body, headers)


def _fallback_id(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()[:40]


def _store_unreadable(partner: str, body: bytes, headers, error: InvalidMessage) -> WebhookAnswer:
    lowered = {name.lower(): value for name, value in headers.items()}
    message_id = (lowered.get("webhook-id") or "")[:200] or _fallback_id(body)
    inbound = Inbound(message_id=message_id, kind="unreadable", order_reference="")
    return _receive(partner, inbound, body, headers, unreadable=error)


def _receive(partner: str, inbound: Inbound, body: bytes, headers, unreadable: InvalidMessage | None = None):
    now = timezone.now()
    message = PartnerMessage(
        partner=partner,
        direction=PartnerMessage.Direction.INBOUND,
        message_id=inbound.message_id,
        kind=inbound.kind,
        received_at=now,
        headers=_kept_headers(headers),
        body=body.decode("utf-8", "replace").replace("\x00", "\ufffd"),
        translated=inbound.as_dict(),
        raw_status=inbound.raw_status,
        order_reference=inbound.order_reference,
        status=M.PARKED,
    )
    try:
        with transaction.atomic():
            if _first_of(partner, inbound.message_id) is not None:
                raise IntegrityError("duplicate")
            message.save()
            if unreadable is not None:
                _park(message, R.INVALID, unreadable.detail)
            else:
                _apply(message, inbound)
    except IntegrityError:
        return _store_duplicate(message)
    record_received(
        partner=partner,
        message_type=f"{partner}.{inbound.kind}",
        entity_key=inbound.order_reference or inbound.message_id,
        outcome=message.status,
        error=message.error,
        data={"message_id": inbound.message_id, "reason": message.reason, "raw_status": inbound.raw_status},
    )
    return _answer(message)


def _first_of(partner: str, message_id: str) -> PartnerMessage | None:
    return (
        PartnerMessage.objects.filter(
            partner=partner, direction=PartnerMessage.Direction.INBOUND, message_id=message_id
        )
        .exclude(status=M.DUPLICATE)
        .first()
    )


def _store_duplicate(message: PartnerMessage) -> WebhookAnswer:
    """A partner message id seen before: kept as a duplicate (raw, for the record), nothing applied."""
    first = _first_of(message.partner, message.message_id)
    message.pk = None
    message.status = M.DUPLICATE
    message.reason = ""
    message.order = first.order if first else None
    message.error = f"Repeat of message {first.pk}." if first else "Repeat."
    message.save()
    record_received(
        partner=message.partner,
        message_type=f"{message.partner}.{message.kind}",
        entity_key=message.order_reference or message.message_id,
        outcome="duplicate",
        data={"message_id": message.message_id},
    )
    return _answer(message)


def _answer(message: PartnerMessage) -> WebhookAnswer:
    return WebhookAnswer(
        message_id=message.message_id,
        status=message.status,
        reason=message.reason,
        order_id=message.order.order_id if message.order_id else None,
        detail=message.error,
    )


def _park(message: PartnerMessage, reason: str, error: str) -> None:
    message.status = M.PARKED
    message.reason = reason
    message.error = error[:2000]
    message.save(update_fields=["status", "reason", "error", "order", "canonical_status", "translated"])
    if reason == R.EARLY:
        return  # not an incident: it is applied when the order gets there (``_apply_early``)
    publish(
        "integration.message_parked",
        {
            "partner": message.partner,
            "message_id": message.message_id[:200],
            "reason": reason,
            "raw_status": message.raw_status or None,
            "order_id": (message.order_reference or None) and message.order_reference[:100],
        },
        key=message.partner,
    )


def _done(message: PartnerMessage, status: str, error: str = "", reason: str = "") -> None:
    message.status = status
    message.reason = reason
    message.error = error[:2000]
    message.applied_at = timezone.now() if status == M.APPLIED else None
    message.save(update_fields=["status", "reason", "error", "applied_at", "order", "canonical_status", "translated"])


def _apply(message: PartnerMessage, inbound: Inbound) -> None:
    """Apply a translated message in the caller's transaction: applied, rejected or parked (never dropped)."""
    order = Order.objects.filter(order_id=inbound.order_reference).first()
    if inbound.kind == "tracking_update":
        word = StatusVocabulary.objects.filter(partner=message.partner, raw_status=inbound.raw_status).first()
        if word is None:
            _park(message, R.UNKNOWN_STATUS, f"No vocabulary row for {message.partner} {inbound.raw_status!r}.")
            return
        message.canonical_status = word.canonical_status
    if order is None:
        _park(message, R.UNKNOWN_ORDER, f"No order {inbound.order_reference!r}.")
        return
    message.order = order
    waits_for = _WAITS_FOR.get(inbound.kind)
    if waits_for is not None:
        order = Order.objects.select_for_update().get(pk=order.pk)  # the move that lets it in holds this lock
        if order.status in waits_for[0]:
            _park(message, R.EARLY, f"Order {order.order_id} is {order.status}; applied once it is {waits_for[1]}.")
            return
    if inbound.kind == "pick_confirmation":
        _apply_pick(message, inbound, order)
        return
    if message.canonical_status == StatusVocabulary.Canonical.IGNORE:
        _done(message, M.APPLIED, f"{inbound.raw_status} moves nothing.")
        return
    detail = {
        "courier": message.partner,
        "tracking_id": inbound.data.get("tracking_id"),
        "raw_status": inbound.raw_status,
        "message_id": message.message_id,
        "partner_time": inbound.occurred_at,
    }
    outcome = transition_orders(moves=[Move(order.order_id, message.canonical_status, detail)], source=message.partner)[
        0
    ]
    if outcome.outcome == "refused":
        _done(message, M.REJECTED, outcome.error.detail, R.ILLEGAL_TRANSITION)
    else:
        _done(message, M.APPLIED, "" if outcome.outcome == "applied" else f"Already {outcome.to_status}.")


# A partner may answer faster than our own commit: the WMS confirms a pick before the order is marked sent
# to it, a courier reports a parcel moving before the booking's dispatched commits (or after a booking
# whose answer was lost and is retried). Such a message is parked ``early`` and applied by the move that
# brings the order to the status it follows (``_apply_early``), never refused as going backwards.
_WAITS_FOR: dict[str, tuple[frozenset[str], str]] = {
    "pick_confirmation": (frozenset({S.RECEIVED, S.RESERVED}), S.SENT_TO_WMS),
    "tracking_update": (frozenset({S.RECEIVED, S.RESERVED, S.SENT_TO_WMS, S.PICKED}), S.DISPATCHED),
}


def _apply_early(order_ids: list[str], kind: str) -> None:
    """Apply the messages parked ``early`` for these orders (now moved on), in the order they arrived."""
    waiting = (
        PartnerMessage.objects.filter(
            status=M.PARKED,
            reason=R.EARLY,
            kind=kind,
            order__order_id__in=order_ids,
            direction=PartnerMessage.Direction.INBOUND,
        )
        .order_by("received_at", "id")
        .values_list("pk", flat=True)
    )
    for message_id in list(waiting):
        replay_message(message_id=message_id, actor="early")


def _apply_pick(message: PartnerMessage, inbound: Inbound, order: Order) -> None:
    order = Order.objects.select_for_update().get(pk=order.pk)
    if order.status == S.PICKED or not is_legal(order.status, S.PICKED):
        if order.status in (S.PICKED, S.DISPATCHED, S.IN_TRANSIT, S.OUT_FOR_DELIVERY, S.DELIVERED):
            _done(message, M.APPLIED, f"Already {order.status}.")
            return
        outcome = transition_orders(moves=[Move(order.order_id, S.PICKED, {})], source=message.partner)[0]
        _done(message, M.REJECTED, outcome.error.detail if outcome.error else "", R.ILLEGAL_TRANSITION)
        return
    lines = [stock_services.PickedLine(line["sku"], line["lot"], line["quantity"]) for line in inbound.data["lines"]]
    try:
        with transaction.atomic():
            moved = stock_services.confirm_pick(transaction_id=order.order_id, picked=lines)
    except (PickMismatch, ReservationNotFound, ReservationClosed) as exc:
        _park(message, R.INVALID, exc.detail)
        return
    detail = {
        "lines": inbound.data["lines"],
        "moved": [
            {"sku": m.sku, "from_batch_id": m.from_batch_id, "to_batch_id": m.to_batch_id, "quantity": str(m.quantity)}
            for m in moved
        ],
        "courier": adapters.courier_for(order.order_id),
        "message_id": message.message_id,
    }
    transition_orders(moves=[Move(order.order_id, S.PICKED, detail)], source=message.partner)
    _done(message, M.APPLIED)


# ---- Replay ---------------------------------------------------------------------------------------


def replay_message(*, message_id: int, actor: str = "") -> PartnerMessage:
    """Translate and apply a parked message again (after its vocabulary row or order was added)."""
    with transaction.atomic():
        message = PartnerMessage.objects.select_for_update().filter(pk=message_id).first()
        if message is None:
            raise PartnerMessageNotFound(f"No partner message {message_id}.")
        if message.status != M.PARKED:
            raise NotParked(f"Message {message_id} is {message.status}; only parked messages are replayed.")
        adapter = adapters.adapter(message.partner)
        message.replays += 1
        message.save(update_fields=["replays"])
        body = message.body.encode()
        try:
            inbound = adapter.parse(body, message.headers)
        except InvalidMessage as exc:
            _park(message, R.INVALID, exc.detail)
        else:
            message.kind = inbound.kind
            message.translated = inbound.as_dict()
            message.raw_status = inbound.raw_status
            message.order_reference = inbound.order_reference
            message.save(update_fields=["kind", "translated", "raw_status", "order_reference"])
            _apply(message, inbound)
        record_received(
            partner=message.partner,
            message_type=f"{message.partner}.replay",
            entity_key=message.order_reference or message.message_id,
            outcome=message.status,
            error=message.error,
            data={"message_id": message.message_id, "actor": actor, "replay": message.replays},
        )
    return message


def replay_messages(*, message_ids: list[int], actor: str = "") -> dict[str, int]:
    """Replay each parked message of ``message_ids`` on its own; returns how many ended in each status."""
    counts: dict[str, int] = defaultdict(int)
    for message_id in message_ids:
        try:
            counts[replay_message(message_id=message_id, actor=actor).status] += 1
        except (NotParked, PartnerMessageNotFound):
            counts["skipped"] += 1
    return dict(counts)


# ---- Out ------------------------------------------------------------------------------------------


def _record_sent(partner: str, kind: str, message_id: str, body: bytes, order: Order | None, translated: dict) -> None:
    PartnerMessage.objects.create(
        partner=partner,
        direction=PartnerMessage.Direction.OUTBOUND,
        message_id=message_id[:200],
        kind=kind,
        received_at=timezone.now(),
        body=body.decode(),
        translated=translated,
        status=M.SENT,
        order=order,
        order_reference=order.order_id if order else "",
    )


def pick_request(order: Order, lots: list[AllocatedLot]) -> dict:
    """The pick request for one reserved order, in our terms: per sku and batch, the quantity and its lot.

    ``lots`` are the order's open allocations (``stock.selectors.open_allocations``, read for a whole batch
    of orders at once).
    """
    per_batch: dict[tuple[str, str, str], object] = {}
    for lot in lots:
        key = (lot.sku, lot.lot, lot.best_before.isoformat())
        per_batch[key] = per_batch.get(key, 0) + lot.quantity
    return {
        "request_id": f"pick-{order.order_id}",
        "order_id": order.order_id,
        "ship_by": order.delivery_date.isoformat(),
        "lines": [
            {"sku": sku, "lot": lot, "best_before": best_before, "quantity": format(quantity, "f")}
            for (sku, lot, best_before), quantity in per_batch.items()
        ],
    }


def send_pick_requests(*, order_ids: list[str], message_id: str) -> int:
    """Send the reserved orders of ``order_ids`` to the WMS in one call and mark them sent; returns how many.

    Orders no longer reserved (cancelled, sent already) are left out; the WMS deduplicates on ``pick_id``.
    Raises ``PartnerUnavailable`` when the WMS does not take the call (nothing changes: the delivery retries).
    """
    with transaction.atomic():
        orders = list(
            Order.objects.select_for_update().filter(order_id__in=order_ids, status=S.RESERVED).order_by("id")
        )
        if not orders:
            return 0
        lots = open_allocations([order.order_id for order in orders])
        requests = [pick_request(order, lots[order.order_id]) for order in orders]
        body = adapters.adapter("wms").send_pick_requests(
            requests, message_id=message_id, secret=adapters.partner_settings("wms")["secret"]
        )
        _record_sent(
            "wms",
            "pick_request",
            message_id,
            body,
            orders[0] if len(orders) == 1 else None,
            {"orders": [order.order_id for order in orders]},
        )
        transition_orders(
            moves=[
                Move(r["order_id"], S.SENT_TO_WMS, {"pick_id": r["request_id"], "message_id": message_id})
                for r in requests
            ],
            source="wms",
        )
        _apply_early([order.order_id for order in orders], "pick_confirmation")
    return len(orders)


def book_shipment(*, partner: str, order_id: str, message_id: str) -> str | None:
    """Book the courier for a picked order and mark it dispatched (courier, tracking id); returns the tracking id.

    An order past ``picked`` is left as it is (a redriven booking changes nothing twice); the courier
    deduplicates on the ``Idempotency-Key`` (``message_id``), so a retried booking keeps its tracking id.
    """
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(order_id=order_id).first()
        if order is None or order.status != S.PICKED:
            return None
        document = {
            "order_id": order.order_id,
            "delivery_address": order.delivery_address,
            "delivery_date": order.delivery_date.isoformat(),
        }
        tracking_id, body = adapters.adapter(partner).book_shipment(
            document, message_id=message_id, secret=adapters.partner_settings(partner)["secret"]
        )
        _record_sent(partner, "shipment", message_id, body, order, {"tracking_id": tracking_id})
        transition_orders(
            moves=[Move(order_id, S.DISPATCHED, {"courier": partner, "tracking_id": tracking_id})], source=partner
        )
        _apply_early([order_id], "tracking_update")
    return tracking_id
