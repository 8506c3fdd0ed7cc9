"""Writes of stock: the only place that changes levels, batches, reservations and receipts.

One module per job, re-exported here so callers write ``from stock import services``:
``levels`` (the locked levels and the ledger), ``reservations`` (reserve, commit, release, holds),
``groups`` (many reservations in one transaction), ``picking`` (the batches the warehouse took, then commit),
``expiry`` (batches past best-before), ``master_data`` (ingredients, recipes and suppliers upserted by
natural key), ``receipts`` (CSV files to batches; the parser itself is
``stock.receipt_parser``). The domain errors live in ``stock.errors``.
"""

from stock.errors import (
    InvalidItems,
    MasterDataConflict,
    PickMismatch,
    ReceiptConflict,
    ReservationClosed,
    ReservationNotFound,
    TransactionIdRepeated,
    TransactionIdReused,
    UnknownSku,
)
from stock.receipt_parser import MAX_REPORTED_ERRORS, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, file_sha256
from stock.services.expiry import expire_batches
from stock.services.groups import GROUP_LIMIT, ReservationRequest, ReservationResult, reserve_many
from stock.services.levels import MILLI, ZERO, LevelBook
from stock.services.master_data import (
    MAX_BULK,
    MAX_RECIPE_LINES,
    Change,
    IngredientData,
    RecipeData,
    RecipeLine,
    SupplierData,
    Upserted,
    suppliers_named,
    upsert_ingredient,
    upsert_ingredients,
    upsert_recipe,
    upsert_recipes,
    upsert_supplier,
    upsert_suppliers,
)
from stock.services.picking import MovedAllocation, PickedLine, confirm_pick
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
    RESERVE_EVENT_TYPES,
    Item,
    commit_reservation,
    release_expired_holds,
    release_reservation,
    reservation_document,
    reserve_stock,
)

__all__ = [
    "BATCH_FIELDS",
    "CHUNK_ROWS",
    "GROUP_LIMIT",
    "MAX_BULK",
    "MAX_RECIPE_LINES",
    "MAX_REPORTED_ERRORS",
    "MILLI",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "RESERVE_EVENT_TYPES",
    "ZERO",
    "Change",
    "IngredientData",
    "InvalidItems",
    "Item",
    "LevelBook",
    "MasterDataConflict",
    "MovedAllocation",
    "PickMismatch",
    "PickedLine",
    "ReceiptConflict",
    "ReceiptOutcome",
    "RecipeData",
    "RecipeLine",
    "ReservationClosed",
    "ReservationNotFound",
    "ReservationRequest",
    "ReservationResult",
    "SupplierData",
    "TransactionIdRepeated",
    "TransactionIdReused",
    "UnknownSku",
    "Upserted",
    "commit_reservation",
    "confirm_pick",
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
    "suppliers_named",
    "upsert_ingredient",
    "upsert_ingredients",
    "upsert_recipe",
    "upsert_recipes",
    "upsert_supplier",
    "upsert_suppliers",
]
