"""Writes of the event backbone: publish, relay, deliver, redrive, subscriptions.

One module per job, re-exported here so callers write ``from supplychain.events import services``:
``publishing`` (the outbox in the caller's transaction, the relay kick, inbound messages on record),
``relay`` (committed events to deliveries; the sweep and redrive), ``deliveries`` (claim, run, record,
retry, dead-letter, leases) and ``subscriptions`` (created and changed only there, within bounds).
"""

from supplychain.events.services.deliveries import (
    ATTEMPT_FIELDS,
    DELIVER_TASK,
    OPEN,
    DeliveryReport,
    kick_deliveries,
    process_deliveries,
    take_back_leases,
)
from supplychain.events.services.publishing import (
    AUDIT_FIELDS,
    OUTBOX_FIELDS,
    RELAY_TASK,
    Kicker,
    NewEvent,
    announce_published,
    current_correlation_id,
    publish,
    publish_as_caller,
    publish_many,
    record_received,
    relay_kicker,
)
from supplychain.events.services.relay import NothingToRedrive, redrive_deliveries, relay_pending, sweep
from supplychain.events.services.subscriptions import (
    EVENT_TYPE_PATTERNS_MAX,
    SECRET_GRACE_SECONDS_DEFAULT,
    SECRET_GRACE_SECONDS_MAX,
    SUBSCRIPTION_FIELDS,
    check_subscription,
    create_subscription,
    delete_subscription,
    rotate_subscription_secret,
    sync_handler_subscriptions,
    update_subscription,
)

__all__ = [
    "ATTEMPT_FIELDS",
    "AUDIT_FIELDS",
    "DELIVER_TASK",
    "EVENT_TYPE_PATTERNS_MAX",
    "OPEN",
    "OUTBOX_FIELDS",
    "RELAY_TASK",
    "SECRET_GRACE_SECONDS_DEFAULT",
    "SECRET_GRACE_SECONDS_MAX",
    "SUBSCRIPTION_FIELDS",
    "DeliveryReport",
    "Kicker",
    "NewEvent",
    "NothingToRedrive",
    "announce_published",
    "check_subscription",
    "create_subscription",
    "current_correlation_id",
    "delete_subscription",
    "kick_deliveries",
    "process_deliveries",
    "publish",
    "publish_as_caller",
    "publish_many",
    "record_received",
    "redrive_deliveries",
    "relay_kicker",
    "relay_pending",
    "rotate_subscription_secret",
    "sweep",
    "sync_handler_subscriptions",
    "take_back_leases",
    "update_subscription",
]
