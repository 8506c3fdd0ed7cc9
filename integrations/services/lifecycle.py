"""The order lifecycle: every status change goes through ``transition_orders``, checked against the one table.

A legal move updates the order, adds a timeline step and publishes ``order.<status>`` in one transaction;
an illegal one (a late message that would move an order backwards, a cancel after picking) is refused,
logged and audited, and never applied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from django.db import connection, transaction
from django.utils import timezone

from integrations.errors import IllegalTransition, OrderNotFound
from integrations.models import LEGAL_TRANSITIONS, Order, OrderTransition
from stock import services as stock_services
from stock.errors import ReservationClosed, ReservationNotFound
from supplychain.core.db import copy_rows
from supplychain.events.services import NewEvent, publish_many, record_received

logger = logging.getLogger(__name__)
S = Order.Status

REFUSED_TRANSITION = "order.transition_refused"  # the audit log's message type for a refused move


class Move(NamedTuple):
    """One requested status change of one order."""

    order_id: str
    to_status: str
    detail: dict = {}


@dataclass
class MoveOutcome:
    """What became of a move: ``applied``, ``unchanged`` (already there), ``refused`` or ``not_found``."""

    order_id: str
    outcome: str
    from_status: str = ""
    to_status: str = ""
    error: IllegalTransition | OrderNotFound | None = field(default=None, repr=False)


def is_legal(from_status: str, to_status: str) -> bool:
    return to_status in LEGAL_TRANSITIONS.get(from_status, frozenset())


def _release_reservation(order: Order, detail: dict) -> None:
    """Entering ``cancelled``: give the reserved stock back (nothing is picked yet, the table says so)."""
    try:
        stock_services.release_reservation(transaction_id=order.order_id, note="order cancelled")
    except (ReservationNotFound, ReservationClosed):
        return  # never reserved (received, short): nothing to give back
    detail.setdefault("released", True)


# What entering a status does besides the status itself, from the statuses where it applies.
_ON_ENTER: dict[str, tuple[frozenset[str], Callable[[Order, dict], None]]] = {
    S.CANCELLED: (frozenset({S.RESERVED, S.SENT_TO_WMS}), _release_reservation),
}


def transition_orders(*, moves: list[Move], source: str) -> list[MoveOutcome]:
    """Apply each legal move and refuse each illegal one; one outcome per move, in order.

    The orders are locked (ascending id) for the check, so two callers never both move one order.
    Applied moves write the order, a timeline step (time, source, detail) and one ``order.<status>``
    event each, in the caller's transaction. Refused moves change nothing; each is logged and written
    to the audit log (``order.transition_refused``) when this transaction commits. Moving an order to
    the status it has is ``unchanged``, not an error: a repeated message changes nothing.
    """
    with transaction.atomic():
        orders = {
            order.order_id: order
            for order in Order.objects.select_for_update()
            .filter(order_id__in=[move.order_id for move in moves])
            .order_by("id")
        }
        outcomes: list[MoveOutcome] = []
        applied: list[tuple[Order, str, str, dict]] = []
        for move in moves:
            order = orders.get(move.order_id)
            if order is None:
                outcomes.append(
                    MoveOutcome(move.order_id, "not_found", error=OrderNotFound(f"No order {move.order_id!r}."))
                )
                continue
            current = order.status
            if move.to_status == current:
                outcomes.append(MoveOutcome(move.order_id, "unchanged", current, current))
                continue
            if not is_legal(current, move.to_status):
                error = IllegalTransition(
                    f"Order {move.order_id} is {current}; it cannot move to {move.to_status}.",
                    errors={"status": [f"{current} → {move.to_status} is not a legal transition."]},
                    order_id=move.order_id,
                    current_status=current,
                )
                outcomes.append(MoveOutcome(move.order_id, "refused", current, move.to_status, error))
                continue
            detail = dict(move.detail)
            hook = _ON_ENTER.get(move.to_status)
            if hook is not None and current in hook[0]:
                hook[1](order, detail)
            order.status = move.to_status
            applied.append((order, current, move.to_status, detail))
            outcomes.append(MoveOutcome(move.order_id, "applied", current, move.to_status))
        if applied:
            _write(applied, source)
        refused = [
            (outcome, move) for outcome, move in zip(outcomes, moves, strict=True) if outcome.outcome == "refused"
        ]
        if refused:
            transaction.on_commit(lambda: _audit_refused(refused, source))
    return outcomes


def transition_order(*, order_id: str, to_status: str, source: str, detail: dict | None = None) -> Order:
    """Move one order; raises ``IllegalTransition`` (409, audited) or ``OrderNotFound`` (404).

    The refusal is audited even when this call runs alone (its own transaction commits, the audit follows).
    """
    outcome = transition_orders(moves=[Move(order_id, to_status, detail or {})], source=source)[0]
    if outcome.error is not None:
        raise outcome.error
    return Order.objects.get(order_id=order_id)


def cancel_order(*, order_id: str, source: str = "platform", reason: str = "") -> Order:
    """Cancel an order while nothing is picked, releasing its reservation; cancelling twice changes nothing."""
    return transition_order(
        order_id=order_id, to_status=S.CANCELLED, source=source, detail={"reason": reason} if reason else {}
    )


def _write(applied: list[tuple[Order, str, str, dict]], source: str) -> None:
    now = timezone.now()
    final = {order.id: to_status for order, _, to_status, _ in applied}  # two moves of one order: the last one
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE integrations_order o SET status = v.status, status_changed_at = %s"
                " FROM unnest(%s::bigint[], %s::text[]) AS v(id, status) WHERE o.id = v.id",
                [now, list(final), list(final.values())],
            )
    else:
        for order_id, to_status in final.items():
            Order.objects.filter(pk=order_id).update(status=to_status, status_changed_at=now)
    copy_rows(
        OrderTransition,
        ["order", "from_status", "to_status", "occurred_at", "source", "detail"],
        ((order.id, current, to_status, now, source, detail) for order, current, to_status, detail in applied),
    )
    publish_many(
        [
            NewEvent(
                f"order.{to_status}",
                {
                    "order_id": order.order_id,
                    "from_status": current,
                    "to_status": to_status,
                    "source": source,
                    "detail": detail,
                },
                key=order.order_id,
            )
            for order, current, to_status, detail in applied
        ],
        with_keys=False,
    )


def _audit_refused(refused: list[tuple[MoveOutcome, Move]], source: str) -> None:
    for outcome, move in refused:
        logger.warning(
            "refused order transition %s: %s → %s (from %s)", move.order_id, outcome.from_status, move.to_status, source
        )
        record_received(
            partner=source,
            message_type=REFUSED_TRANSITION,
            entity_key=move.order_id,
            outcome="refused",
            error=outcome.error.detail,
            data={"from_status": outcome.from_status, "to_status": move.to_status, "detail": move.detail},
        )
