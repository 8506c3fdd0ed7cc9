"""Domain errors of the event backbone that the API maps to the one error shape."""

from __future__ import annotations

from supplychain.core.errors import DomainError, NotFound


class PublishNotAllowed(DomainError):
    """The caller may not publish this event type: an internal fact, or a permission it lacks."""

    status = 403
    type = "permission_denied"
    title = "You do not have permission to do this."


class SubscriptionInvalid(DomainError):
    """A subscription's fields break their rules or bounds; ``errors`` names each field."""

    status = 400
    type = "validation_error"
    title = "The request is not valid."


class SubscriptionGone(NotFound):
    """The subscription was deleted while this change waited for it (a concurrent DELETE won)."""

    type = "not_found"
    title = "Not found."
