"""Signals of the backbone, and the receiver that creates code-registered subscriptions on migrate."""

from django.dispatch import Signal

# Sent once when a subscription goes from no dead deliveries to some (after commit).
# Arguments: subscription (Subscription), dead_count (int). The alerting integration listens here.
dead_letters_raised = Signal()


def sync_after_migrate(sender, **kwargs) -> None:
    from supplychain.events.services import sync_handler_subscriptions

    sync_handler_subscriptions()
