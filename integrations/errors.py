"""The integrations app's domain errors; the API maps each to the one JSON error shape by ``status`` and ``type``."""

from __future__ import annotations

from supplychain.core.errors import Conflict, DomainError, NotFound, Unprocessable


class InvalidOrder(DomainError):
    status = 400
    type = "validation_error"  # the API's shape for a request that is not valid
    title = "The request is not valid."


class OrderIdReused(Unprocessable):
    type = "order_id_reused"
    title = "This order id was already used with a different order."


class OrderNotFound(NotFound):
    type = "order_not_found"
    title = "No order with this order id."


class IllegalTransition(Conflict):
    type = "illegal_transition"
    title = "The order cannot move to this status from its current one."
