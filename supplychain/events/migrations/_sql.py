"""Installs the backbone's database functions (supplychain/events/sql/*.sql) for the migrations that need them."""

from pathlib import Path

from supplychain.core.db import SqlFunctions

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
FILES = ("events_publish.sql",)
SIGNATURES = ("events_publish(jsonb, text, text, text, jsonb)",)
FUNCTIONS = SqlFunctions(SQL_DIR, FILES, SIGNATURES)
install, drop = FUNCTIONS.install, FUNCTIONS.drop

# events_outbox_mark and events_unpublish (0009): taking back, in its own transaction, what a caller published.
UNPUBLISH = SqlFunctions(SQL_DIR, ("events_unpublish.sql",), ("events_unpublish(bigint, text[])", "events_outbox_mark()"))
