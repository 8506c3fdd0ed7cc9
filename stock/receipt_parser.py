"""The receipt CSV parser: bytes in, good rows and reported bad ones out; no database access.

Each row is checked on its own (line, column, reason), so one bad row never fails the file.
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
from typing import BinaryIO

from django.utils import timezone

REQUIRED_COLUMNS = ("sku", "quantity", "best_before")
OPTIONAL_COLUMNS = ("lot", "supplier")
MAX_REPORTED_ERRORS = 1000
UNDECODED = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" makes of bytes that are not UTF-8


@dataclass
class Tally:
    rows: int = 0
    ingested: int = 0
    errors: list = field(default_factory=list)
    error_count: int = 0

    def error(self, line: int, column: str, reason: str) -> None:
        if not reason.isascii():  # bytes that were not UTF-8 must not reach the JSON column as lone surrogates
            reason = reason.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
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
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    unknown = [column for column in header if column not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        reason = "; ".join(
            filter(
                None,
                [
                    f"missing column(s): {', '.join(missing)}" if missing else "",
                    f"unknown column(s): {', '.join(unknown)}" if unknown else "",
                ],
            )
        )
        state.error(1, "header", f"{reason}; expected sku,quantity,best_before[,lot][,supplier]")
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


def parse_rows(reader, header, default_lot, state: Tally) -> Iterator[tuple]:
    """Good rows as ``(line, sku, quantity, best_before, lot, supplier)``; each bad one reported once."""
    today = timezone.localdate()
    seen_lots: set[tuple[str, str]] = set()
    width = len(header)
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
        try:
            quantity = Decimal(text_quantity)
            if not quantity.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            state.error(number, "quantity", f"not a number: {text_quantity!r}")
            continue
        if quantity <= 0:
            state.error(number, "quantity", f"must be positive, got {text_quantity}")
            continue
        if quantity.as_tuple().exponent < -3:
            state.error(number, "quantity", "at most 3 decimal places")
            continue
        try:
            best_before = date.fromisoformat(text_date)
        except ValueError:
            state.error(number, "best_before", f"not a date (YYYY-MM-DD): {text_date!r}")
            continue
        if best_before < today:
            state.error(number, "best_before", f"{best_before} is already past")
            continue
        lot = lot or default_lot
        if len(lot) > 100:
            state.error(number, "lot", "longer than 100 characters")
            continue
        if (sku, lot) in seen_lots:
            state.error(number, "lot", f"lot {lot!r} appears twice for {sku} in this file")
            continue
        seen_lots.add((sku, lot))
        yield number, sku, quantity, best_before, lot, supplier


def chunks(rows: Iterator[tuple], size: int) -> Iterator[list[tuple]]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
