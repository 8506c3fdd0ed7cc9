"""The stock app's domain errors; the API maps each to the one JSON error shape by its ``status`` and ``type``."""

from __future__ import annotations

from supplychain.core.errors import Conflict, DomainError, NotFound, Unprocessable


class UnknownSku(DomainError):
    status = 400
    type = "unknown_sku"
    title = "Unknown ingredient."


class IngredientNotFound(NotFound):
    type = "ingredient_not_found"
    title = "No ingredient with this sku."


class InvalidItems(DomainError):
    status = 400
    type = "validation_error"  # the API's shape for a request that is not valid
    title = "The request is not valid."


class TransactionIdReused(Unprocessable):
    type = "transaction_id_reused"
    title = "This transaction id was used with a different request."


class ReservationNotFound(NotFound):
    type = "reservation_not_found"
    title = "No reservation with this transaction id."


class ReservationClosed(Conflict):
    type = "reservation_closed"
    title = "The reservation is no longer open."


class ReceiptConflict(Conflict):
    type = "receipt_conflict"
    title = "A different file was already received under this key."


class TransactionIdRepeated(Unprocessable):
    type = "transaction_id_repeated"
    title = "This transaction id appears more than once in the group."


class MasterDataConflict(Conflict):
    type = "master_data_conflict"
    title = "The change conflicts with the master data as it is."


class InvalidReceiptKey(DomainError):
    status = 400
    type = "validation_error"  # the API's shape for a request that is not valid
    title = "Not a valid receipt key."


class LevelOverflow(Conflict):
    type = "level_overflow"
    title = "A level would pass the most its column holds."


class PickMismatch(Unprocessable):
    type = "pick_mismatch"
    title = "The picked batches do not add up to what the reservation holds."
