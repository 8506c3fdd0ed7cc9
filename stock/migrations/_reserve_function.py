"""Installs the stock database functions (stock/sql/*.sql) for the migrations that need them.

The functions' text lives in those files only; each install runs every file with CREATE OR REPLACE,
so a later migration that calls ``install`` again brings an existing database up to the files.
"""

from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
FILES = ("stock_events.sql", "stock_reserve.sql", "stock_close.sql")
SIGNATURES = (
    "stock_close(text, text, text, text, text, jsonb)",
    "stock_reserve(text, jsonb, text, text[], numeric[], date, date, text, text, text, jsonb)",
    "stock_move_levels(bigint[], numeric[], numeric[], timestamptz)",
)
# Functions the files no longer define: the events' writes moved to the events app's events_publish.
RETIRED = ("stock_publish_events(jsonb, text, text, jsonb)",)


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name in FILES:  # no parameters: the bodies' % signs stay as they are
            schema_editor.execute((SQL_DIR / name).read_text(), params=None)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for signature in (*SIGNATURES, *RETIRED):
            schema_editor.execute(f"DROP FUNCTION IF EXISTS {signature}", params=None)


def drop_retired(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for signature in RETIRED:
            schema_editor.execute(f"DROP FUNCTION IF EXISTS {signature}", params=None)
