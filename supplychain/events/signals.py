"""Signals the backbone sends; the alerting integration listens here."""

from django.dispatch import Signal

# Sent once when a subscription goes from no dead deliveries to some (after commit).
# Arguments: subscription (Subscription), dead_count (int). The alerting integration listens here.
dead_letters_raised = Signal()
