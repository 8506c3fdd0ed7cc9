"""Installs the backbone's database functions (supplychain/events/sql/*.sql) for the migrations that need them."""

from pathlib import Path

from supplychain.core.db import SqlFunctions

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
FILES = ("events_publish.sql",)
SIGNATURES = ("events_publish(jsonb, text, text, text, jsonb)",)
FUNCTIONS = SqlFunctions(SQL_DIR, FILES, SIGNATURES)
install, drop = FUNCTIONS.install, FUNCTIONS.drop
