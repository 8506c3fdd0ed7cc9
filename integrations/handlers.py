"""Event subscribers of integrations: the calls out to partners, as deliveries of the backbone.

Each is a handler subscription (created on migrate, its retry policy editable in the admin): a partner
that fails makes the handler raise, and ``supplychain.events`` retries with backoff and jitter, dead-letters,
alarms and redrives; what the call changes (the order's status, the outbound message) commits with the
delivery's success, so it happens once. Alerts are handlers too: alerts join their groups (``alerts-observe``;
failed pipeline runs, ``forecasting.run_failed``, through ``alerts-pipelines``)
and alert messages go to Slack and email (``alerts-slack``, ``alerts-email``); the ERP gets purchase orders
and the sales-order mirror.
"""

from __future__ import annotations

import requests

from integrations.adapters import couriers, erp
from integrations.services import alerts, partners, processing, purchasing
from integrations.services.alerts import Observation
from supplychain.events.registry import subscriber
from supplychain.events.transport import batch_message_id

# What a partner call may take: a handful of fast retries, then minutes, then a dead letter.
RETRY = {"max_attempts": 6, "initial_interval": 2.0, "backoff_rate": 2.0, "max_interval": 300.0, "jitter": "full"}


@subscriber(processing.PICK_REQUESTS, event_types=["order.reserved"], batch=True, **RETRY)
def send_pick_requests(envelopes: list[dict]) -> None:
    """Send reserved orders to the WMS as pick lists, many in one call."""
    ids = [envelope["id"] for envelope in envelopes]
    message_id = ids[0] if len(ids) == 1 else batch_message_id(ids)
    partners.send_pick_requests(order_ids=[e["payload"]["order_id"] for e in envelopes], message_id=message_id)


def _courier_handler(name: str):
    def book(envelope: dict) -> None:
        partners.book_shipment(partner=name, order_id=envelope["payload"]["order_id"], message_id=envelope["id"])

    book.__doc__ = f"Book {name} for picked orders it carries; the order is dispatched with its tracking id."
    book.__name__ = f"book_{name}"
    return subscriber(
        f"partner-{name}",
        event_types=["order.picked"],
        filter_policy={"detail": {"courier": [name]}},
        **RETRY,
    )(book)


for _courier in couriers():
    _courier_handler(_courier)

Kind = alerts.Kind

# Event type → alert kind, and the fields that name the partner (blank: the group is the kind alone).
ALERTING_EVENTS = {
    "integration.webhook_rejected": Kind.WEBHOOK_REJECTED,
    "integration.message_parked": Kind.MESSAGE_PARKED,
    "order.short": Kind.ORDER_SHORT,
    "stock.reservation_at_risk": Kind.RESERVATION_AT_RISK,
    "order.delivery_failed": Kind.DELIVERY_FAILED,
    "order.returned": Kind.RETURNED,
}
# Facts of other apps that alert: their own handler subscription (a subscription made on migrate keeps the event
# types it was made with, so a new source gets a new subscription rather than a change to alerts-observe).
PIPELINE_EVENTS = {"forecasting.run_failed": Kind.PIPELINE_FAILED}
_session = requests.Session()
_session.headers["User-Agent"] = "supplychain-alerts/1"


def observation(envelope: dict) -> Observation | None:
    """The alert an event carries, in the words an operator reads."""
    kind = ALERTING_EVENTS.get(envelope["type"]) or PIPELINE_EVENTS.get(envelope["type"])
    payload = envelope["payload"]
    if kind == Kind.PIPELINE_FAILED:  # grouped by pipeline: a nightly failing every night is one group
        cause = f": {payload['cause'][:200]}" if payload.get("cause") else ""
        return Observation(kind, payload["pipeline"], payload["name"], f"{payload['error'] or 'failed'}{cause}")
    if kind == Kind.WEBHOOK_REJECTED:
        ref = payload.get("message_id") or payload.get("remote_addr") or envelope["id"]
        return Observation(kind, payload["partner"], ref, payload["reason"])
    if kind == Kind.MESSAGE_PARKED:
        about = [f"{name} {payload[name]}" for name in ("raw_status", "order_id") if payload.get(name)]
        summary = payload["reason"].replace("_", " ") + (f" ({', '.join(about)})" if about else "")
        return Observation(kind, payload["partner"], payload["message_id"], summary)
    if kind == Kind.ORDER_SHORT:
        detail = payload.get("detail") or {}
        shortages = detail.get("shortages") or []
        if shortages:
            summary = "; ".join(
                f"{s.get('sku')}: {s.get('requested')} requested, {s.get('available')} available" for s in shortages
            )
        else:
            summary = str((detail.get("error") or {}).get("detail", detail.get("error", "not reservable")))
        return Observation(kind, "", payload["order_id"], summary)
    if kind == Kind.RESERVATION_AT_RISK:
        summary = "; ".join(f"{item['sku']}: {item['missing']} missing after batch {item['batch_id']} expired"
                            for item in payload["items"])  # fmt: skip
        return Observation(kind, "", payload["transaction_id"], summary)
    if kind in (Kind.DELIVERY_FAILED, Kind.RETURNED):
        detail = payload.get("detail") or {}
        raw = detail.get("raw_status") or detail.get("reason") or ""
        summary = f"{payload['from_status']} → {payload['to_status']}" + (f" ({raw})" if raw else "")
        return Observation(kind, payload.get("source") or "", payload["order_id"], summary)
    return None


@subscriber("alerts-observe", event_types=list(ALERTING_EVENTS), batch=True, queue="default", max_attempts=10)
def observe(envelopes: list[dict]) -> None:
    """Alerting: integration and logistics issues join their group (kind, partner)."""
    found = [o for o in (observation(envelope) for envelope in envelopes) if o is not None]
    if found:
        alerts.observe_alerts(observations=found)


@subscriber("alerts-pipelines", event_types=list(PIPELINE_EVENTS), batch=True, queue="default", max_attempts=10)
def observe_pipelines(envelopes: list[dict]) -> None:
    """Alerting: failed pipeline runs join their group (pipeline_failed, the pipeline's name)."""
    found = [o for o in (observation(envelope) for envelope in envelopes) if o is not None]
    if found:
        alerts.observe_alerts(observations=found)


@subscriber(
    "alerts-slack",
    event_types=[alerts.ALERT_EVENT],
    filter_policy={"channel": ["slack"]},
    queue="default",
    max_attempts=8,
    initial_interval=2.0,
    max_interval=600.0,
)
def send_to_slack(envelope: dict) -> None:
    """Alert messages to Slack through the incoming webhook SLACK_WEBHOOK_URL (logged when unset)."""
    payload = envelope["payload"]
    outcome = alerts.send_slack(payload=payload, post=_session.post)
    alerts.mark_notification(notification_id=payload["notification_id"], outcome=outcome)


@subscriber(
    "alerts-email",
    event_types=[alerts.ALERT_EVENT],
    filter_policy={"channel": ["email"]},
    queue="default",
    max_attempts=8,
    initial_interval=5.0,
    max_interval=600.0,
)
def send_by_email(envelope: dict) -> None:
    """Alert messages by email (Django's email backend) to the recipients of the kind's rule."""
    payload = envelope["payload"]
    outcome = alerts.send_email(payload=payload)
    alerts.mark_notification(notification_id=payload["notification_id"], outcome=outcome)


# ---- The ERP (integrations.adapters.erp) ------------------------------------------------------------


@subscriber(
    "erp-purchase-orders",
    event_types=["purchase_order.placed"],
    queue="dispatch",
    max_attempts=10,
    initial_interval=5.0,
    max_interval=1800.0,
)
def send_purchase_order_to_erp(envelope: dict) -> None:
    """ERP: purchase orders sent to the ERP (its format, its client: integrations/adapters/erp.py)."""
    reference = erp.send_purchase_order(envelope)
    purchasing.mark_purchase_order_sent(
        purchase_order_id=envelope["payload"]["purchase_order_id"], erp_reference=reference
    )


@subscriber(
    "erp-forecast-purchases",
    event_types=["forecast.purchase_order_suggested"],
    queue="dispatch",
    max_attempts=10,
    initial_interval=5.0,
    max_interval=1800.0,
)
def place_forecast_purchase_order(envelope: dict) -> None:
    """The forecast drives purchasing: each supplier's suggestion becomes a purchase order for the ERP."""
    purchasing.place_suggested_purchase_order(suggestion=envelope["payload"])


@subscriber(
    "erp-sales-orders",
    event_types=["order.*"],
    queue="dispatch",
    batch=True,
    max_attempts=10,
    initial_interval=5.0,
    max_interval=1800.0,
)
def mirror_sales_orders_to_erp(envelopes: list[dict]) -> None:
    """ERP: every order event mirrored to the ERP's sales order, many per request."""
    erp.send_sales_orders(envelopes)
