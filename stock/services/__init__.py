"""Writes of stock: the only place that changes levels, batches, reservations and receipts.

One module per job, re-exported here so callers write ``from stock import services``:
``levels`` (the locked levels and the ledger), ``reservations`` (reserve, commit, release, holds),
``expiry`` (batches past best-before), ``receipts`` (CSV files to batches; the parser itself is
``stock.receipt_parser``). The domain errors live in ``stock.errors``.
"""

from stock.errors import (
    InvalidItems,
    ReceiptConflict,
    ReservationClosed,
    ReservationNotFound,
    TransactionIdRepeated,
    TransactionIdReused,
    UnknownSku,
)
from stock.receipt_parser import MAX_REPORTED_ERRORS, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, file_sha256
from stock.services.expiry import expire_batches
from stock.services.levels import MILLI, ZERO, LevelBook
from stock.services.receipts import (
    BATCH_FIELDS,
    CHUNK_ROWS,
    ReceiptOutcome,
    ingest_object,
    ingest_receipt,
    ingest_upload,
    new_receipt_keys,
    queue_notified_receipts,
)
from stock.services.reservations import (
    GROUP_LIMIT,
    RESERVE_EVENT_TYPES,
    Item,
    ReservationRequest,
    ReservationResult,
    commit_reservation,
    release_expired_holds,
    release_reservation,
    reservation_document,
    reserve_many,
    reserve_stock,
)

__all__ = [
    "BATCH_FIELDS",
    "CHUNK_ROWS",
    "GROUP_LIMIT",
    "MAX_REPORTED_ERRORS",
    "MILLI",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "RESERVE_EVENT_TYPES",
    "ZERO",
    "InvalidItems",
    "Item",
    "LevelBook",
    "ReceiptConflict",
    "ReceiptOutcome",
    "ReservationClosed",
    "ReservationNotFound",
    "ReservationRequest",
    "ReservationResult",
    "TransactionIdRepeated",
    "TransactionIdReused",
    "UnknownSku",
    "commit_reservation",
    "expire_batches",
    "file_sha256",
    "ingest_object",
    "ingest_receipt",
    "ingest_upload",
    "new_receipt_keys",
    "queue_notified_receipts",
    "release_expired_holds",
    "release_reservation",
    "reservation_document",
    "reserve_many",
    "reserve_stock",
]
