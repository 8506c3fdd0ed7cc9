"""Writes of integrations: the only place that changes orders.

One module per job, re-exported here so callers write ``from integrations import services``:
``intake`` (orders in from the platform), ``processing`` (batches of received orders reserved),
``lifecycle`` (the one checked way to change an order's status, cancel included), ``partners`` (webhooks
in, parked messages replayed, calls out to the WMS and the couriers), ``alerts`` (grouped alerts to Slack
and email), ``purchasing`` (purchase orders to the ERP, goods receipts from it).
The domain errors live in ``integrations.errors``.
"""

from integrations.services.alerts import Observation, observe_alerts, sweep_alerts
from integrations.services.intake import (
    BULK_LIMIT,
    PROCESSING_KICK,
    IntakeResult,
    order_schema,
    orders_kicker,
    receive_order,
    receive_orders,
)
from integrations.services.lifecycle import (
    REFUSED_TRANSITION,
    Move,
    MoveOutcome,
    cancel_order,
    is_legal,
    transition_order,
    transition_orders,
)
from integrations.services.partners import (
    WebhookAnswer,
    book_shipment,
    receive_webhook,
    replay_message,
    replay_messages,
    send_pick_requests,
)
from integrations.services.processing import (
    ProcessingReport,
    expand,
    process_order_batch,
    process_received_orders,
)
from integrations.services.purchasing import (
    mark_purchase_order_sent,
    place_purchase_order,
    receive_goods_receipt,
)

__all__ = [
    "BULK_LIMIT",
    "PROCESSING_KICK",
    "REFUSED_TRANSITION",
    "IntakeResult",
    "Move",
    "MoveOutcome",
    "Observation",
    "ProcessingReport",
    "WebhookAnswer",
    "book_shipment",
    "cancel_order",
    "expand",
    "is_legal",
    "mark_purchase_order_sent",
    "observe_alerts",
    "order_schema",
    "orders_kicker",
    "place_purchase_order",
    "process_order_batch",
    "process_received_orders",
    "receive_goods_receipt",
    "receive_order",
    "receive_orders",
    "receive_webhook",
    "replay_message",
    "replay_messages",
    "send_pick_requests",
    "sweep_alerts",
    "transition_order",
    "transition_orders",
]
