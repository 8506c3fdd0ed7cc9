"""The receipt parser alone (no database): whatever bytes arrive, every row is parsed or reported, and each
row that leaves the parser fits the columns it is written to."""

import io
from datetime import timedelta

from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stock.receipt_parser import (
    MAX_REASON_CHARS,
    MAX_REPORTED_ERRORS,
    HashingReader,
    Tally,
    csv_reader,
    limits,
    parse_rows,
    read_header,
)

HEADER = "sku,quantity,best_before,lot,supplier"


def parse(data: bytes) -> tuple[Tally, list, bool]:
    state = Tally()
    reader = csv_reader(HashingReader(io.BytesIO(data)))
    header = read_header(reader, state)
    rows = list(parse_rows(reader, header, "default-lot", state)) if header is not None else []
    state.ingested = len(rows)
    return state, rows, header is not None


def assert_every_row_accounted_for_and_fitting(data: bytes) -> None:
    state, rows, header_ok = parse(data)
    bounds = limits()
    today = timezone.localdate()
    if not header_ok:  # the file fails whole, with one reason for it
        assert (state.rows, rows, state.error_count) == (0, [], 1)
        assert state.errors[0]["line"] == 1
    else:
        assert state.rows == len(rows) + state.error_count
    assert len(state.errors) == min(state.error_count, MAX_REPORTED_ERRORS)
    for error in state.errors:
        reason = error["reason"]
        assert len(reason) <= MAX_REASON_CHARS
        assert "\x00" not in reason
        reason.encode("utf-8")  # no lone surrogate can reach the JSON column
    for row in rows:
        assert 0 < row.quantity <= bounds.row_quantity_max
        assert row.quantity.as_tuple().exponent == -bounds.quantity_places
        assert row.best_before >= today
        assert 0 < len(row.sku) <= bounds.sku_chars
        assert 0 < len(row.lot) <= bounds.lot_chars
        assert len(row.supplier) <= bounds.supplier_chars
        for text in (row.sku, row.lot, row.supplier):
            assert "\x00" not in text
            text.encode("utf-8")


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_are_parsed_or_reported(data):
    assert_every_row_accounted_for_and_fitting(data)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=1000))
def test_arbitrary_bytes_after_a_good_header_are_parsed_or_reported(data):
    assert_every_row_accounted_for_and_fitting(HEADER.encode() + b"\n" + data)


def near_csv_rows():
    """Rows that are almost receipts: the values a spreadsheet, a bug or an attacker puts in each column."""
    today = timezone.localdate()
    quantities = st.one_of(
        st.decimals(allow_nan=True, allow_infinity=True).map(str),
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.sampled_from(["1e400", "-1e400", "1E+10", "99999999999.999", "100000000000", "0.0001", "NaN", "sNaN"]),
        st.sampled_from(
            ["Infinity", "-0", "1_000", "\uff11\uff12", "0x10", "", " 5 ", "5\x00", "1e999999999999999999"]
        ),
        st.text(max_size=20),
    )
    dates = st.one_of(
        st.dates().map(str),
        st.integers(-5, 400).map(lambda days: str(today + timedelta(days=days))),
        st.sampled_from(["tomorrow", "2026-02-30", "20301231", "9999-12-31", "", "2030-01-01\x00"]),
        st.text(max_size=12),
    )
    text = st.one_of(
        st.text(max_size=8),
        st.text(min_size=60, max_size=250),
        st.sampled_from(["ham", "cheese", "", 'quo"te', "a,b", "line\nbreak", "tab\t", "nul\x00", "x" * 300]),
    )
    return st.lists(st.tuples(text, quantities, dates, text, text), max_size=12)


def as_csv_bytes(rows, encoding_errors: bool) -> bytes:
    import csv

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER.split(","))
    writer.writerows(rows)
    data = out.getvalue().encode("utf-8", "surrogatepass")
    return data + (b"ham,1,2099-01-01,\xff\xfe,latin \xe9\n" if encoding_errors else b"")


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(near_csv_rows(), st.booleans())
def test_near_csv_rows_are_each_parsed_or_reported(rows, encoding_errors):
    assert_every_row_accounted_for_and_fitting(as_csv_bytes(rows, encoding_errors))
