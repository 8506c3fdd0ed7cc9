"""Installs the backbone's database functions (supplychain/events/sql/*.sql) for the migrations that need them.

The functions' text lives in those files only; each install runs every file with CREATE OR REPLACE,
so a later migration that calls ``install`` again brings an existing database up to the files.
"""

from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
FILES = ("events_publish.sql",)
SIGNATURES = ("events_publish(jsonb, text, text, text, jsonb)",)


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name in FILES:  # no parameters: the bodies' % signs stay as they are
            schema_editor.execute((SQL_DIR / name).read_text(), params=None)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for signature in SIGNATURES:
            schema_editor.execute(f"DROP FUNCTION IF EXISTS {signature}", params=None)
