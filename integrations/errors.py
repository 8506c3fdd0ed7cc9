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


class UnknownPartner(NotFound):
    type = "unknown_partner"
    title = "No partner with this name."


class PartnerDisabled(DomainError):
    status = 403
    type = "partner_disabled"
    title = "This partner has no webhook secret configured, so its webhooks are refused."


class WebhookRejected(DomainError):
    status = 401
    type = "webhook_signature_rejected"
    title = "The webhook's signature is bad, missing or stale."


class InvalidPartnerMessage(DomainError):
    status = 400
    type = "validation_error"
    title = "The partner message cannot be read."


class PartnerMessageNotFound(NotFound):
    type = "partner_message_not_found"
    title = "No partner message with this id."


class NotParked(Conflict):
    type = "not_parked"
    title = "Only a parked message can be replayed."


class InvalidPurchaseOrder(DomainError):
    status = 400
    type = "validation_error"
    title = "The request is not valid."


class PurchaseOrderIdReused(Unprocessable):
    type = "purchase_order_id_reused"
    title = "This purchase order id was already used with a different purchase order."
