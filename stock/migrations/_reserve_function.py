"""Installs the ``stock_reserve`` database function (stock/sql/stock_reserve.sql) for the migrations that need it."""

from pathlib import Path

SQL = Path(__file__).resolve().parent.parent / "sql" / "stock_reserve.sql"


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(SQL.read_text(), params=None)  # no parameters: the body's % signs stay as they are


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "DROP FUNCTION IF EXISTS stock_reserve(text, jsonb, text, text[], numeric[], date, date, text, text, text,"
            " jsonb)",
            params=None,
        )
