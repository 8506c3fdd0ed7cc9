"""The receipt CSV parser: bytes in, good rows and reported bad ones out; no database access.

Each row is checked on its own (line, column, reason), so one bad row never fails the file. A row that
leaves the parser fits the columns it goes into: the bounds are read from the model fields (``limits()``).
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import io
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import BinaryIO, NamedTuple

from django.db import models
from django.utils import timezone

REQUIRED_COLUMNS = ("sku", "quantity", "best_before")
OPTIONAL_COLUMNS = ("lot", "supplier")
MAX_REPORTED_ERRORS = 1000
MAX_REASON_CHARS = 500  # a reason quotes the caller's text; 1,000 of them must stay a small JSON document
MAX_QUOTED_CHARS = 40  # how much of a bad value a reason quotes
UNDECODED = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" makes of bytes that are not UTF-8


class Row(NamedTuple):
    """A row that passed every check of its own: it fits the columns it is written to."""

    line: int
    sku: str
    quantity: Decimal
    best_before: date
    lot: str
    supplier: str


class Limits(NamedTuple):
    """What the columns a receipt row is written to can hold (from the model fields, the one place)."""

    sku_chars: int
    lot_chars: int
    supplier_chars: int
    quantity_places: int
    row_quantity_max: Decimal  # one batch's quantity columns
    level_max: Decimal  # a level's on hand, and the file's ledger row per ingredient


def decimal_max(column: models.DecimalField) -> Decimal:
    """The largest value a ``DecimalField`` column holds (``numeric(14, 3)``: 99,999,999,999.999)."""
    return Decimal(1).scaleb(column.max_digits - column.decimal_places) - Decimal(1).scaleb(-column.decimal_places)


@cache
def limits() -> Limits:
    from stock.models import Batch, Ingredient, Movement, StockLevel, Supplier

    quantities = [Batch._meta.get_field(name) for name in ("quantity_received", "quantity_remaining")]
    levels = [StockLevel._meta.get_field("on_hand"), Movement._meta.get_field("on_hand_delta")]
    return Limits(
        sku_chars=Ingredient._meta.get_field("sku").max_length,
        lot_chars=Batch._meta.get_field("lot").max_length,
        supplier_chars=Supplier._meta.get_field("name").max_length,
        quantity_places=min(column.decimal_places for column in quantities + levels),
        row_quantity_max=min(decimal_max(column) for column in quantities),
        level_max=min(decimal_max(column) for column in levels),
    )


def quoted(value: str) -> str:
    """The caller's value as a reason quotes it: escaped (NUL and all), cut short."""
    if len(value) > MAX_QUOTED_CHARS:
        return repr(value[:MAX_QUOTED_CHARS]) + f" (… {len(value):,} characters)"
    return repr(value)


@dataclass
class Tally:
    rows: int = 0
    ingested: int = 0
    errors: list = field(default_factory=list)
    error_count: int = 0

    def error(self, line: int, column: str, reason: str) -> None:
        if not reason.isascii():  # bytes that were not UTF-8 must not reach the JSON column as lone surrogates
            reason = reason.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        reason = reason.replace("\x00", "\\x00")[:MAX_REASON_CHARS]  # PostgreSQL's JSON refuses \u0000
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"line": line, "column": column, "reason": reason})

    def absorb(self, other: Tally) -> None:
        """Add another tally's rows ingested and errors; the errors stay in line order, the first ones kept."""
        self.ingested += other.ingested
        self.error_count += other.error_count
        merged = heapq.merge(self.errors, other.errors, key=lambda error: error["line"])
        self.errors = list(itertools.islice(merged, MAX_REPORTED_ERRORS))


class HashingReader(io.RawIOBase):
    """Reads a binary stream while hashing it, so a file is parsed and fingerprinted in one pass."""

    def __init__(self, stream: BinaryIO):
        self.stream, self.sha256 = stream, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        self.sha256.update(data)
        buffer[: len(data)] = data
        return len(data)


def csv_reader(stream: BinaryIO):
    """A CSV reader over a binary stream of UTF-8 text (a BOM is dropped).

    Bytes that are not UTF-8 become lone surrogates, so the row holding them is refused on its own.
    """
    text = io.TextIOWrapper(
        io.BufferedReader(stream, 1 << 20), encoding="utf-8-sig", errors="surrogateescape", newline=""
    )
    return csv.reader(text)


def file_sha256(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def read_header(reader, state: Tally) -> dict[str, int] | None:
    try:
        header = [column.strip().lower() for column in next(reader)]
    except StopIteration:
        state.error(1, "", "the file is empty")
        return None
    except csv.Error as exc:
        state.error(1, "header", f"not readable as CSV: {exc}")
        return None
    if UNDECODED.search("".join(header)):
        state.error(1, "header", "not UTF-8 text (save the file as UTF-8)")
        return None
    if "\x00" in "".join(header):
        state.error(1, "header", "contains a NUL byte (not a text file?)")
        return None
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    unknown = [column for column in header if column not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        reason = "; ".join(
            filter(
                None,
                [
                    f"missing column(s): {', '.join(missing)}" if missing else "",
                    f"unknown column(s): {', '.join(map(quoted, unknown))}" if unknown else "",
                ],
            )
        )
        state.error(1, "header", f"{reason}; expected sku,quantity,best_before[,lot][,supplier]")
        return None
    if len(set(header)) < len(header):
        state.error(1, "header", "a column appears twice")
        return None
    return {column: header.index(column) for column in header}


def records(reader, state: Tally) -> Iterator[tuple[int, list[str]]]:
    """``(line, fields)`` of each record after the header; a CSV syntax error ends the file there, reported.

    After such an error (an unbalanced quote running into the field size limit, say) where the next record
    starts is unknowable, so nothing after it is guessed at; the rows before it are ingested as usual.
    """
    records = enumerate(reader, start=2)
    while True:
        try:
            yield next(records)
        except StopIteration:
            return
        except csv.Error as exc:
            state.rows += 1
            state.error(reader.line_num, "", f"not readable as CSV ({exc}); the rest of the file was not read")
            return


def parse_rows(reader, header, default_lot, state: Tally) -> Iterator[Row]:
    """Good rows, each fitting its columns; each bad one reported once, with line, column and reason."""
    today = timezone.localdate()
    bounds = limits()
    smallest = Decimal(1).scaleb(-bounds.quantity_places)
    seen_lots: set[tuple[str, str]] = set()
    width = len(header)
    names = sorted(header, key=header.get)  # column names in file order
    at_sku, at_quantity, at_best_before = header["sku"], header["quantity"], header["best_before"]
    at_lot, at_supplier = header.get("lot"), header.get("supplier")
    for number, values in records(reader, state):
        if len(values) != width:
            if not values or all(not value.strip() for value in values):
                continue
            if len(values) > width:
                state.rows += 1
                state.error(number, "", f"expected {width} fields, found {len(values)}")
                continue
            values = values + [""] * (width - len(values))  # trailing optional fields (lot, supplier) left out
        joined = "".join(values)
        if not joined.isascii() and UNDECODED.search(joined):
            state.rows += 1
            state.error(number, "", "not UTF-8 text (save the file as UTF-8)")
            continue
        sku, text_quantity, text_date = (
            values[at_sku].strip(),
            values[at_quantity].strip(),
            values[at_best_before].strip(),
        )
        lot = values[at_lot].strip() if at_lot is not None else ""
        supplier = values[at_supplier].strip() if at_supplier is not None else ""
        if not (sku and text_quantity and text_date):
            if not (sku or text_quantity or text_date or lot or supplier):
                continue  # a blank row
            state.rows += 1
            state.error(number, "sku" if not sku else "quantity" if not text_quantity else "best_before", "missing")
            continue
        state.rows += 1
        if "\x00" in joined:  # PostgreSQL's text refuses NUL
            at = next(index for index, value in enumerate(values) if "\x00" in value)
            state.error(number, names[at], "contains a NUL byte")
            continue
        if len(sku) > bounds.sku_chars:
            state.error(number, "sku", f"longer than {bounds.sku_chars} characters")
            continue
        try:
            quantity = Decimal(text_quantity)
            if not quantity.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            state.error(number, "quantity", f"not a number: {quoted(text_quantity)}")
            continue
        if quantity <= 0:
            state.error(number, "quantity", f"must be positive, got {quoted(text_quantity)}")
            continue
        if quantity > bounds.row_quantity_max:
            state.error(number, "quantity", f"at most {bounds.row_quantity_max}, got {quoted(text_quantity)}")
            continue
        exponent = quantity.as_tuple().exponent
        if exponent < -bounds.quantity_places:
            state.error(number, "quantity", f"at most {bounds.quantity_places} decimal places")
            continue
        if exponent > -bounds.quantity_places:
            quantity = quantity.quantize(smallest)  # the column's own form: 1E+1 becomes 10.000
        try:
            best_before = date.fromisoformat(text_date)
        except ValueError:
            state.error(number, "best_before", f"not a date (YYYY-MM-DD): {quoted(text_date)}")
            continue
        if best_before < today:
            state.error(number, "best_before", f"{best_before} is already past")
            continue
        lot = lot or default_lot
        if len(lot) > bounds.lot_chars:
            state.error(number, "lot", f"longer than {bounds.lot_chars} characters")
            continue
        if len(supplier) > bounds.supplier_chars:
            state.error(number, "supplier", f"longer than {bounds.supplier_chars} characters")
            continue
        if (sku, lot) in seen_lots:
            state.error(number, "lot", f"lot {quoted(lot)} appears twice for {sku} in this file")
            continue
        seen_lots.add((sku, lot))
        yield Row(number, sku, quantity, best_before, lot, supplier)


def chunks(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
