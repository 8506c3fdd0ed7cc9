"""Installs the stock database functions (stock/sql/*.sql) for the migrations that need them."""

from pathlib import Path

from supplychain.core.db import SqlFunctions

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
FILES = ("stock_events.sql", "stock_reserve.sql", "stock_close.sql", "stock_reserve_many.sql")
SIGNATURES = (
    "stock_close(text, text, text, text, text, jsonb)",
    "stock_reserve(text, jsonb, text, text[], numeric[], date, date, text, text, text, jsonb)",
    "stock_move_levels(bigint[], numeric[], numeric[], timestamptz)",
    "stock_reserve_many(jsonb, date, text, text, jsonb)",
)
# Functions the files no longer define: the events' writes moved to the events app's events_publish.
RETIRED = ("stock_publish_events(jsonb, text, text, jsonb)",)
FUNCTIONS = SqlFunctions(SQL_DIR, FILES, (*SIGNATURES, *RETIRED))
install, drop = FUNCTIONS.install, FUNCTIONS.drop
drop_retired = SqlFunctions(SQL_DIR, (), RETIRED).drop
