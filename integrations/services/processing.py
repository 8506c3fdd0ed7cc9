"""Batch processing of received orders: claim a batch, expand recipes, reserve them with one group call.

No message per order: a task claims up to ``ORDERS_BATCH`` received orders (``FOR UPDATE SKIP LOCKED``),
expands each through the recipes' bills of materials, reserves the whole batch with one
``stock.services.reserve_many`` call (transaction id = order id, needed by the delivery date, each order
all or nothing) and moves every order to ``reserved`` or ``short``, all in one transaction: a worker
killed mid-batch rolls everything back and the orders stay ``received`` for the next claim.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from integrations.models import Order
from integrations.selectors import bill_of_materials
from integrations.services.lifecycle import Move, transition_orders
from stock import services as stock_services
from stock.services import Item, ReservationRequest
from supplychain.core.api.errors import domain_error_body
from supplychain.events import selectors as event_selectors
from supplychain.events import services as events

S = Order.Status
WORKER = "worker"
PICK_REQUESTS = "partner-wms"  # the handler subscription that sends pick lists (integrations/handlers.py)
PICKS_SLOW_SECONDS = 1.0
PICKS_PAUSE_SECONDS = 60.0
# What one order may ask of one sku after expansion: the quantity columns hold 14 digits with 3 decimals,
# and a level must still be able to add it up; beyond this the order is short by itself, never a failing batch.
MAX_EXPANDED_QUANTITY = Decimal("1e9")


def _setting(name: str, default):
    return getattr(settings, name, default)


@dataclass
class ProcessingReport:
    batches: int = 0
    claimed: int = 0
    reserved: int = 0
    short: int = 0
    more_waiting: bool = False


class Expanded:
    """One order's needs per sku, and which of its lines asked for each sku."""

    def __init__(self) -> None:
        self.quantities: dict[str, Decimal] = defaultdict(Decimal)
        self.lines: dict[str, list[int]] = defaultdict(list)

    def add(self, sku: str, quantity: Decimal, line: int) -> None:
        self.quantities[sku] += quantity
        if line not in self.lines[sku]:
            self.lines[sku].append(line)

    def items(self) -> list[Item]:
        return [Item(sku, quantity) for sku, quantity in sorted(self.quantities.items())]


def expand(lines: list[dict], recipes: dict[str, list[tuple[str, Decimal]]]) -> Expanded:
    """An order's lines as quantities per sku: quantity per portion times portions, summed per sku."""
    expanded = Expanded()
    for index, line in enumerate(lines):
        if "recipe" in line:
            for sku, per_portion in recipes.get(line["recipe"], []):
                expanded.add(sku, per_portion * line["portions"], index)
        else:
            expanded.add(line["sku"], Decimal(line["quantity"]), index)
    return expanded


def process_order_batch(*, limit: int | None = None) -> tuple[int, int, int]:
    """Claim up to ``limit`` received orders and reserve them in one transaction: (claimed, reserved, short)."""
    limit = min(limit or _setting("ORDERS_BATCH", 200), stock_services.GROUP_LIMIT)
    with transaction.atomic():
        orders = list(
            Order.objects.select_for_update(skip_locked=True)
            .filter(status=S.RECEIVED)
            .order_by("id")
            .only("id", "order_id", "delivery_date", "lines")[:limit]
        )
        if not orders:
            return 0, 0, 0
        recipes = bill_of_materials({line["recipe"] for o in orders for line in o.lines if "recipe" in line})
        moves: dict[str, Move] = {}
        requests: list[ReservationRequest] = []
        expansions: dict[str, Expanded] = {}
        for order in orders:
            expanded = expand(order.lines, recipes)
            expansions[order.order_id] = expanded
            problem = _unreservable(expanded)
            if problem:
                moves[order.order_id] = Move(order.order_id, S.SHORT, {"error": problem})
                continue
            requests.append(_request(order.order_id, expanded, order.delivery_date))
        for result in stock_services.reserve_many(requests=requests) if requests else []:
            moves[result.transaction_id] = _move_for(result, expansions[result.transaction_id])
        ordered = [moves[order.order_id] for order in orders]
        transition_orders(moves=ordered, source=WORKER)
    reserved = sum(1 for move in ordered if move.to_status == S.RESERVED)
    return len(orders), reserved, len(orders) - reserved


def _request(order_id: str, expanded: Expanded, delivery_date: date) -> ReservationRequest:
    return ReservationRequest(transaction_id=order_id, items=expanded.items(), needed_by=delivery_date)


def _unreservable(expanded: Expanded) -> str:
    if not expanded.quantities:
        return "The order's recipes have no ingredients."
    too_much = [sku for sku, quantity in expanded.quantities.items() if quantity > MAX_EXPANDED_QUANTITY]
    if too_much:
        return f"More than {MAX_EXPANDED_QUANTITY:f} of {', '.join(sorted(too_much))}."
    return ""


def _move_for(result: stock_services.ReservationResult, expanded: Expanded) -> Move:
    """``reserved`` or ``short`` from one group result, with which lines are short and by how much."""
    order_id = result.transaction_id
    if result.status == "refused":
        return Move(order_id, S.SHORT, {"error": domain_error_body(result.error)})
    reservation = result.reservation
    if reservation.status == "rejected" or reservation.response_status == 409:
        shortages = [
            {**shortage, "lines": expanded.lines.get(shortage["sku"], [])}
            for shortage in reservation.response.get("shortages", [])
        ]
        return Move(order_id, S.SHORT, {"shortages": shortages})
    if reservation.status != "reserved":  # released or committed earlier under this id: it serves nothing now
        return Move(order_id, S.SHORT, {"error": f"The reservation {order_id} is {reservation.status}."})
    return Move(order_id, S.RESERVED, {"reservation": order_id})


def process_received_orders(
    *, batch_size: int | None = None, time_budget: float | None = None, relay: bool = False, worker: str = ""
) -> ProcessingReport:
    """Process batches until no received order is left or the time budget is spent.

    ``relay=True`` (the worker's task) fans each batch's events out at once, in this process, instead of
    leaving them to a relay task: one Celery message and its wait fewer between a reservation and the
    WMS delivery (the relay is the backbone's own service, so the events go out exactly as it sends them).
    It also relays the intake's ``order.received`` events, which kick this task and no relay of their own.
    Then it runs the batch's pick requests, the ``partner-wms`` deliveries, here too (``PickRequests``),
    leased under ``worker`` like any delivery task's.
    """
    report = ProcessingReport()
    deadline = time.monotonic() + (time_budget or _setting("ORDERS_TIME_BUDGET", 5.0))
    batch_size = batch_size or _setting("ORDERS_BATCH", 200)
    picks = PickRequests(worker) if relay else None
    while True:
        claimed, reserved, short = process_order_batch(limit=batch_size)
        if relay:  # this batch's events, and the intake's (which sends no relay kick of its own)
            events.relay_pending()
            if reserved:
                picks.deliver(deadline)
        if claimed:
            report.batches += 1
            report.claimed += claimed
            report.reserved += reserved
            report.short += short
        if claimed < batch_size:
            return report
        if time.monotonic() >= deadline:
            report.more_waiting = True
            return report


class PickRequests:
    """The reserved orders' pick lists sent from the task that reserved them, through the backbone.

    The ``partner-wms`` handler subscription's due deliveries are run here with ``process_deliveries``, the
    backbone's own claim, lease, retry and audit, right after the relay made them: no delivery message, and
    no wait for a free worker behind other subscriptions' drains (the ERP mirror's, three per order), between
    a reservation and its pick request. The kick the relay sent still goes out and finds less to do.
    A WMS that fails, or answers slower than ``PICKS_SLOW_SECONDS``, is left to the delivery tasks and their
    backoff by this worker process for ``PICKS_PAUSE_SECONDS``: a partner down or slow costs the reservations
    one call per pause, not one per batch.
    """

    paused_until = 0.0  # per worker process (time.monotonic)

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.subscription_id: int | None = None
        self.enabled = _setting("ORDERS_DELIVER_PICKS", True)

    def deliver(self, deadline: float) -> None:
        started = time.monotonic()
        if not self.enabled or started < PickRequests.paused_until:
            return
        if self.subscription_id is None:
            self.subscription_id = event_selectors.active_subscription_id(PICK_REQUESTS)
            if self.subscription_id is None:  # switched off in the admin
                self.enabled = False
                return
        budget = max(deadline - started, 0.5)
        done = events.process_deliveries(subscription_id=self.subscription_id, worker=self.worker, time_budget=budget)
        calls = max(1, -(-done.claimed // _setting("EVENTS_DELIVERY_BATCH", 200)))  # one WMS call per batch claimed
        if done.retrying or done.dead or (time.monotonic() - started) / calls > PICKS_SLOW_SECONDS:
            PickRequests.paused_until = time.monotonic() + PICKS_PAUSE_SECONDS
