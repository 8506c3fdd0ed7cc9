"""Database helpers for hot paths: bulk inserts through PostgreSQL's COPY.

``bulk_create`` on PostgreSQL turns each column into an array parameter that psycopg quotes in
Python, and prepares every value through its field; for JSON-heavy append-only rows (outbox, audit)
that was most of the cost of publishing. COPY streams plain tuples instead (measured with
bench/events.py). Other databases fall back to ``bulk_create``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from decimal import Decimal

from django.db import DEFAULT_DB_ALIAS, connection, connections, models

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_BLOCK_ROWS = 2000


def copy_text(value) -> str:
    """One value in COPY's text format (``\\N`` for NULL, backslash escapes in text)."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if value is True or value is False:
        return "t" if value else "f"
    if isinstance(value, date):  # datetime too: ISO 8601 with its offset
        return value.isoformat()
    return str(value)


_PLAIN_TYPES = frozenset({int, Decimal, float})


def _plain(value) -> str:
    if value is None:
        return "\\N"
    return str(value) if type(value) in _PLAIN_TYPES else copy_text(value)  # a str or a bool goes the long way


def _text(value) -> str:
    return value.translate(_COPY_ESCAPES) if type(value) is str else copy_text(value)


def _moment(value) -> str:
    return value.isoformat() if isinstance(value, date) else copy_text(value)


def _formatter(column: models.Field):
    """The COPY text formatter for one column's values, picked once per call instead of per value."""
    if isinstance(column, models.BooleanField | models.JSONField):
        return copy_text  # JSON arrives here already dumped to text
    if isinstance(column, models.ForeignKey | models.IntegerField | models.DecimalField | models.FloatField):
        return _plain
    if isinstance(column, models.CharField | models.TextField):
        return _text
    if isinstance(column, models.DateField):  # DateTimeField too
        return _moment
    return copy_text


def copy_rows(model: type[models.Model], fields: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Insert plain value tuples (in ``fields`` order) into ``model``'s table; keys are not read back.

    Values must already be what the column stores: JSON fields take Python objects (dumped here),
    others their plain Python value (str, int, float, Decimal, date, UUID, aware datetime, None).
    On PostgreSQL the rows go as blocks of COPY text, formatted here: psycopg's ``write_row`` costs
    about four times as much per row (measured on the 200,000-row receipt in bench/stock.py).
    """
    columns = [model._meta.get_field(name) for name in fields]
    if connection.vendor != "postgresql":
        attnames = [column.attname for column in columns]
        model.objects.bulk_create([model(**dict(zip(attnames, row, strict=True))) for row in rows], batch_size=1000)
        return
    json_positions = [i for i, column in enumerate(columns) if isinstance(column, models.JSONField)]
    formatters = [_formatter(column) for column in columns]
    names = ", ".join(connection.ops.quote_name(column.column) for column in columns)
    table = connection.ops.quote_name(model._meta.db_table)
    block: list[str] = []
    # Errors as Django's (IntegrityError for a unique violation), as for any query through the ORM's cursor.
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy,
    ):
        for row in rows:
            if json_positions:
                row = list(row)
                for position in json_positions:
                    row[position] = json.dumps(row[position], separators=(",", ":"))
            block.append("\t".join([format_(value) for format_, value in zip(formatters, row, strict=True)]))
            if len(block) >= _COPY_BLOCK_ROWS:
                copy.write("\n".join(block) + "\n")
                block.clear()
        if block:
            copy.write("\n".join(block) + "\n")


def copy_insert(model: type[models.Model], instances: Sequence[models.Model], fields: Sequence[str]) -> None:
    """Insert unsaved ``instances`` writing only ``fields`` (see ``copy_rows``)."""
    attnames = [model._meta.get_field(name).attname for name in fields]
    copy_rows(model, fields, ([getattr(instance, name) for name in attnames] for instance in instances))


class SqlFunctions:
    """Database functions whose text lives in ``.sql`` files only, installed and dropped by migrations.

    ``install`` runs every file with CREATE OR REPLACE, so a later migration that calls it again brings an
    existing database up to the files; ``drop`` removes ``signatures``. Both do nothing off PostgreSQL.
    """

    def __init__(self, folder, files: Sequence[str], signatures: Sequence[str]):
        self.folder, self.files, self.signatures = folder, tuple(files), tuple(signatures)

    def install(self, apps, schema_editor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            for name in self.files:  # no parameters: the bodies' % signs stay as they are
                schema_editor.execute((self.folder / name).read_text(), params=None)

    def drop(self, apps, schema_editor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            for signature in self.signatures:
                schema_editor.execute(f"DROP FUNCTION IF EXISTS {signature}", params=None)


def on_postgresql(sql: str):
    """A ``RunPython`` step that executes ``sql`` on PostgreSQL and does nothing elsewhere (SQLite)."""

    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class ConnectionWorker:
    """One background thread that works on the caller's database connection, inside its transaction.

    For pipelines: the caller parses the next chunk of a file (pure Python) while this thread writes the
    previous one, so the database's work and the parsing overlap instead of taking turns. Only one of
    the two may use the connection at a time: the caller must not touch the database until the work it
    submitted is done (``Future.result()``). Leaving the ``with`` block waits for submitted work, so a
    failing caller never rolls back under a write still running. The thread adopts the connection as
    Django's own live-server thread does (``inc_thread_sharing`` and a per-thread ``connections`` entry).
    """

    def __init__(self, alias: str = DEFAULT_DB_ALIAS):
        self.alias = alias
        self.wrapper = connections[alias]
        self._executor: ThreadPoolExecutor | None = None

    def _adopt(self) -> None:
        connections[self.alias] = self.wrapper

    def __enter__(self) -> ConnectionWorker:
        self.wrapper.inc_thread_sharing()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="db-worker", initializer=self._adopt)
        return self

    def __exit__(self, *exc_info) -> None:
        self._executor.shutdown(wait=True)
        self.wrapper.dec_thread_sharing()

    def submit(self, function: Callable, *args) -> Future:
        return self._executor.submit(function, *args)
