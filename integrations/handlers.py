"""Event subscribers of integrations: the calls out to partners, as deliveries of the backbone.

Each is a handler subscription (created on migrate, its retry policy editable in the admin): a partner
that fails makes the handler raise, and ``supplychain.events`` retries with backoff and jitter, dead-letters,
alarms and redrives; what the call changes (the order's status, the outbound message) commits with the
delivery's success, so it happens once.
"""

from __future__ import annotations

from integrations.adapters import couriers
from integrations.services import partners
from supplychain.events.registry import subscriber
from supplychain.events.transport import batch_message_id

# What a partner call may take: a handful of fast retries, then minutes, then a dead letter.
RETRY = {"max_attempts": 6, "initial_interval": 2.0, "backoff_rate": 2.0, "max_interval": 300.0, "jitter": "full"}


@subscriber("partner-wms", event_types=["order.reserved"], batch=True, **RETRY)
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
