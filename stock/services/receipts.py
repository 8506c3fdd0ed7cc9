"""Receipts: a CSV file (upload, drop folder or S3) becomes batches, ledger rows and events, once per key."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import PurePosixPath
from typing import BinaryIO, NamedTuple

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from stock.errors import InvalidReceiptKey, LevelOverflow, ReceiptConflict
from stock.models import Batch, Ingredient, Movement, Receipt, StockLevel
from stock.receipt_parser import (
    HashingReader,
    Row,
    Tally,
    chunks,
    csv_reader,
    file_sha256,
    limits,
    parse_rows,
    read_header,
)
from stock.services.levels import ZERO, LevelBook
from stock.services.master_data import suppliers_named
from supplychain.core.db import ConnectionWorker, copy_rows
from supplychain.core.storage import InvalidObjectKey, ObjectNotFound, validate_key
from supplychain.events.services import NewEvent, publish_many

logger = logging.getLogger(__name__)

CHUNK_ROWS = 5000
OBJECT_NOT_FOUND = "object not found"
BATCH_FIELDS = [
    "ingredient",
    "lot",
    "supplier",
    "receipt",
    "source_line",
    "received_at",
    "best_before",
    "quantity_received",
    "quantity_remaining",
    "quantity_reserved",
    "status",
]


@dataclass
class ReceiptOutcome:
    receipt: Receipt
    outcome: str  # "processed", "duplicate", or "missing" (a notified object that is not in storage)


def validate_receipt_key(key: object) -> str:
    """A receipt key as every source must give it: a relative object key (no ``..`` segment, no leading
    ``/``, no NUL or other control character) that fits ``Receipt.key``; else ``InvalidReceiptKey``."""
    longest = Receipt._meta.get_field("key").max_length
    if isinstance(key, str) and len(key) > longest:
        raise InvalidReceiptKey(f"A receipt key is at most {longest} characters.", errors={"key": ["Too long."]})
    try:
        return validate_key(key)
    except InvalidObjectKey as exc:
        raise InvalidReceiptKey(exc.detail, errors={"key": [exc.detail]}) from exc


def ingest_upload(*, upload, key: str | None = None) -> ReceiptOutcome:
    """Ingest an uploaded file (API or admin); its key defaults to ``upload_key(file name)``."""

    @contextmanager
    def reopen():
        upload.seek(0)  # read twice when it is a duplicate: once to hash, never closed in between
        yield upload

    return ingest_receipt(key=key or upload_key(upload.name), open_stream=reopen, source="upload")


def upload_key(file_name: str) -> str:
    return f"uploads/{file_name}"


def ingest_receipt(
    *, key: str, open_stream: Callable[[], BinaryIO], source: str, progress: Callable[[int, int], None] | None = None
) -> ReceiptOutcome:
    """Ingest one CSV receipt (``sku,quantity,best_before,lot,supplier``), streaming, all-or-nothing per file.

    The same key and content again is a duplicate and changes nothing; the same key with other content
    is refused (``ReceiptConflict``). Each row is checked on its own: good rows are ingested, bad ones
    reported on the receipt with line, column and reason, and only the rows ingested have effects
    (batches, suppliers, levels). A key recorded as missing in storage does not hold the key: the file
    that turns up later under it is ingested as new.
    """
    validate_receipt_key(key)
    existing = Receipt.objects.filter(key=key).first()
    if existing is None or existing.content_missing:
        try:
            with transaction.atomic():
                if existing is not None:  # a notified object that was not there yet; a 2nd worker waits here
                    Receipt.objects.filter(pk=existing.pk).delete()
                return _ingest_new(key, open_stream, source, progress)
        except IntegrityError:
            existing = Receipt.objects.get(key=key)  # another worker ingested it meanwhile
    with open_stream() as stream:
        digest = file_sha256(stream)
    if digest != existing.sha256:
        raise ReceiptConflict(
            f"{key} was already received with different content.",
            errors={"key": ["Already received with different content."]},
        )
    return ReceiptOutcome(existing, "duplicate")


def _ingest_new(key, open_stream, source, progress) -> ReceiptOutcome:
    receipt = Receipt.objects.create(key=key, sha256="", source=source)  # holds the key against a 2nd worker
    default_lot = PurePosixPath(key).stem or key
    state = Tally()
    deltas: dict[int, Decimal] = defaultdict(lambda: ZERO)
    with open_stream() as raw:
        hashing = HashingReader(raw)
        reader = csv_reader(hashing)
        header = read_header(reader, state)
        if header is not None:
            _ingest_rows(receipt, parse_rows(reader, header, default_lot, state), state, deltas, progress)
        for _ in iter(lambda: hashing.read(1 << 20), b""):
            pass  # hash the rest even if the header was bad
    receipt.sha256 = hashing.sha256.hexdigest()
    receipt.rows_total = state.rows
    receipt.rows_ingested = state.ingested
    receipt.errors = state.errors
    receipt.status = Receipt.Status.PROCESSED if header is not None else Receipt.Status.FAILED
    receipt.save()
    # The ledger gets one receipt row per ingredient and file; each batch keeps its file, line and quantity.
    book = LevelBook(deltas)
    _check_levels_hold(book, deltas)
    for ingredient_id, delta in deltas.items():
        book.move(Movement.Kind.RECEIPT, ingredient_id, on_hand=delta, note=key[:200])
    events = book.save()
    events.append(
        NewEvent(
            "stock.receipt_processed",
            {
                "key": key,
                "source": source,
                "status": receipt.status,
                "rows": state.rows,
                "ingested": state.ingested,
                "errors": state.error_count,
            },
            key=key,
        )
    )
    publish_many(events, with_keys=False)
    return ReceiptOutcome(receipt, "processed")


def _ingest_rows(receipt: Receipt, rows: Iterator[Row], state: Tally, deltas, progress) -> None:
    """Write the parsed rows chunk by chunk while the next chunk is parsed (a pipeline of two threads).

    Parsing is Python; the lookups and the COPY of a chunk are mostly the database's time, which here
    overlaps the parsing of the next chunk instead of following it. The writes run in a thread of their
    own on this connection and transaction (``ConnectionWorker``), one chunk at a time and in file order.
    """
    written = Tally()  # the writer's own tally: rows ingested, rows the database refused
    known = _Known()

    def written_down(pending) -> None:
        pending.result()
        if progress:
            progress(state.rows, written.ingested)

    pending = None
    with ConnectionWorker() as writer:
        for chunk in chunks(rows, CHUNK_ROWS):
            if pending is not None:
                written_down(pending)
            pending = writer.submit(_ingest_chunk, receipt, chunk, written, deltas, known)
        if pending is not None:
            written_down(pending)
    state.absorb(written)


@dataclass
class _Known:
    """Ingredient and supplier ids, and levels on hand before this file, looked up while ingesting one file."""

    ingredients: dict[str, int | None] = field(default_factory=dict)
    suppliers: dict[str, int] = field(default_factory=dict)
    on_hand: dict[int, Decimal] = field(default_factory=dict)


def _ingest_chunk(receipt: Receipt, rows: list[Row], state: Tally, deltas: dict[int, Decimal], known: _Known) -> None:
    """Check each row against the database (sku, lot, what its level holds), then write the rows that pass.

    Rows are taken in file order, so when a level would overflow, the rows that would push it past what
    its column holds are the ones refused; a refused row leaves nothing behind (not even its supplier).
    """
    new_skus = {row.sku for row in rows} - known.ingredients.keys()
    if new_skus:
        found = dict(Ingredient.objects.filter(sku__in=new_skus).values_list("sku", "id"))
        known.ingredients.update({sku: found.get(sku) for sku in new_skus})
        new_ids = [i for i in found.values() if i not in known.on_hand]
        levels = dict(StockLevel.objects.filter(ingredient_id__in=new_ids).values_list("ingredient_id", "on_hand"))
        known.on_hand.update({i: levels.get(i, ZERO) for i in new_ids})
    ingredients = known.ingredients
    existing = _received_lots({(ingredients[row.sku], row.lot) for row in rows if ingredients[row.sku] is not None})
    level_max = limits().level_max
    accepted: list[tuple[int, Row]] = []
    for row in rows:
        ingredient_id = ingredients[row.sku]
        if ingredient_id is None:
            state.error(row.line, "sku", f"unknown sku {row.sku!r}")
            continue
        if (ingredient_id, row.lot) in existing:
            state.error(row.line, "lot", f"lot {row.lot!r} of {row.sku} was already received")
            continue
        level = known.on_hand[ingredient_id] + deltas.get(ingredient_id, ZERO)
        if level + row.quantity > level_max:
            state.error(
                row.line,
                "quantity",
                f"would take the level of {row.sku} past {level_max}, the most it holds (it would hold {level}"
                " with the rows before)",
            )
            continue
        deltas[ingredient_id] += row.quantity
        accepted.append((ingredient_id, row))
    new_suppliers = {row.supplier for _, row in accepted if row.supplier} - known.suppliers.keys()
    if new_suppliers:
        known.suppliers.update(_suppliers(new_suppliers))
    suppliers = known.suppliers
    now = timezone.now()
    batches = [
        (
            ingredient_id,
            row.lot,
            suppliers.get(row.supplier),
            receipt.id,
            row.line,
            now,
            row.best_before,
            row.quantity,
            row.quantity,
            ZERO,
            Batch.Status.ACTIVE,
        )
        for ingredient_id, row in accepted
    ]
    copy_rows(Batch, BATCH_FIELDS, batches)  # COPY on PostgreSQL
    state.ingested += len(batches)


def _check_levels_hold(book: LevelBook, deltas: dict[int, Decimal]) -> None:
    """Under the level locks: the rows were checked against levels read before, unlocked; another receipt
    committed meanwhile may have taken a level close to its limit. Then nothing of this file is written."""
    level_max = limits().level_max
    over = sorted(
        book.levels[i].ingredient.sku for i, delta in deltas.items() if book.levels[i].on_hand + delta > level_max
    )
    if over:
        raise LevelOverflow(
            f"The level of {', '.join(over)} grew close to the most it holds ({level_max}) while this file was"
            " read (another receipt); nothing was ingested. Send it again to have the rows that no longer fit"
            " refused.",
            skus=over,
        )


def _received_lots(pairs: set[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which (ingredient, lot) pairs already have a batch; on PostgreSQL one probe of the unique index each.

    The LATERAL ... LIMIT 1 keeps the planner from hashing the whole batch table instead (it did, once per
    5,000-row chunk, without fresh statistics: a fifth of the database's time on a 200,000-row file).
    """
    if not pairs:
        return set()
    if connection.vendor != "postgresql":
        found = Batch.objects.filter(
            ingredient_id__in={i for i, _ in pairs}, lot__in={lot for _, lot in pairs}
        ).values_list("ingredient_id", "lot")
        return set(found) & pairs
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT wanted.ingredient_id, wanted.lot"
            " FROM unnest(%s::bigint[], %s::text[]) AS wanted(ingredient_id, lot)"
            " CROSS JOIN LATERAL (SELECT 1 FROM stock_batch b"
            " WHERE b.ingredient_id = wanted.ingredient_id AND b.lot = wanted.lot LIMIT 1) hit",
            [[i for i, _ in pairs], [lot for _, lot in pairs]],
        )
        return set(cursor.fetchall())


def _suppliers(names: set[str]) -> dict[str, int]:
    return suppliers_named(names=names)  # creates the missing ones, each with a code (stock.services.master_data)


# ---- Receipts from object storage -----------------------------------------------------------------


def ingest_object(*, key: str, storage=None) -> ReceiptOutcome:
    """Ingest one receipt file from object storage (S3, or the local drop folder by default).

    An object that is not there (a notification for a file deleted since, or never written) is recorded
    on a failed receipt ("object not found") and logged, not raised: retrying would not make it appear.
    That receipt does not hold the key: a file stored under it later is ingested when notified or polled.
    """
    from supplychain.core.storage import get_storage

    storage = storage or get_storage()
    source = "s3" if storage.describe().startswith("s3://") else "folder"
    try:
        return ingest_receipt(key=key, open_stream=lambda: storage.open_stream(key), source=source)
    except ObjectNotFound:
        logger.warning("Receipt %s: no such object in %s; recorded as failed (%s).", key, storage.describe(), source)
        return ReceiptOutcome(_record_missing(key=key, source=source), "missing")


@transaction.atomic
def _record_missing(*, key: str, source: str) -> Receipt:
    receipt, _ = Receipt.objects.get_or_create(
        key=key,
        defaults={
            "sha256": "",
            "source": source,
            "status": Receipt.Status.FAILED,
            "errors": [{"line": 0, "column": "", "reason": OBJECT_NOT_FOUND}],
        },
    )
    return receipt


def new_receipt_keys(*, prefix: str, storage=None, limit: int = 100) -> list[str]:
    """CSV keys under ``prefix`` that were never received (the poll's to-do list)."""
    from supplychain.core.storage import get_storage

    storage = storage or get_storage()
    candidates = []
    for key in storage.list(prefix):
        if not key.lower().endswith(".csv"):
            continue
        try:
            candidates.append(validate_receipt_key(key))
        except InvalidReceiptKey as exc:  # never queued: the worker would refuse it on every poll
            logger.warning("Receipt file %r skipped: %s", key, exc.detail)
    received = Receipt.objects.filter(key__in=candidates).exclude(status=Receipt.Status.FAILED, sha256="")
    known = set(received.values_list("key", flat=True))
    return [key for key in candidates if key not in known][:limit]


class NotifiedObject(NamedTuple):
    """One record of an S3 event notification, its shape and key already checked at the API."""

    key: str  # URL-decoded
    bucket: str
    event_name: str
    record: dict  # as received, kept on the audit entry


@transaction.atomic
def queue_notified_receipts(*, objects: list[NotifiedObject]) -> list[str]:
    """Queue ingest of the CSV objects named in an S3 event notification; the rest is ignored, on record."""
    from django.conf import settings

    from stock import tasks
    from supplychain.events.services import record_received

    for notified in objects:
        validate_receipt_key(notified.key)  # before anything is recorded: the body is taken whole or not at all
    bucket = settings.OBJECT_STORAGE["BUCKET"]
    queued = []
    for notified in objects:
        key = notified.key
        wanted = (
            key.startswith(settings.STOCK_RECEIPTS_PREFIX)
            and key.lower().endswith(".csv")
            and (not bucket or notified.bucket == bucket)
            and notified.event_name.startswith("ObjectCreated")
        )
        record_received(
            partner="s3",
            message_type="s3.object_created",
            entity_key=key,
            outcome="queued" if wanted else "ignored",
            data=notified.record,
        )
        if wanted:
            transaction.on_commit(lambda key=key: tasks.ingest_object.delay(key))
            queued.append(key)
    return queued
