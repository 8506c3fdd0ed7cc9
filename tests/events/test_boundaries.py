"""The backbone's own boundaries: no import circle between its modules, and only it writes its tables."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.apps import apps
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "supplychain" / "events"


def _sibling_imports(path: Path) -> set[str]:
    """The supplychain.events modules ``path`` imports anywhere in it, inside functions included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("supplychain.events"):
            if node.module == "supplychain.events":
                found |= {alias.name for alias in node.names}
            else:
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("supplychain.events.")}
    return found - {path.stem}


def test_events_modules_import_each_other_without_a_circle():
    graph = {path.stem: _sibling_imports(path) for path in EVENTS.glob("*.py")}

    def cycle_from(start: str, node: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for target in sorted(graph.get(node, ())):
            if target == start:
                return (*seen, target)
            if target not in seen:
                found = cycle_from(start, target, (*seen, target))
                if found:
                    return found
        return None

    circles = {module: cycle_from(module, module, (module,)) for module in graph}
    assert {module: circle for module, circle in circles.items() if circle} == {}


def test_stock_sql_and_migrations_write_no_events_table():
    """The stock functions publish through the events app's ``events_publish``; its tables are its own."""
    tables = [model._meta.db_table for model in apps.get_app_config("events").get_models()]
    events_table = re.compile(r"\b(" + "|".join(tables) + r")\b")
    sources = [*(ROOT / "stock" / "sql").glob("*.sql"), *(ROOT / "stock" / "migrations").glob("*.py")]
    named = {path.name: sorted(set(events_table.findall(path.read_text()))) for path in sources}
    assert {name: tables for name, tables in named.items() if tables} == {}


@pytest.mark.django_db
def test_the_outbox_txid_index_is_built_once_and_stock_publishes_through_events_publish():
    if connection.vendor != "postgresql":
        pytest.skip("the txid column, its index and the database functions are PostgreSQL's")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'events_outboxevent' AND indexdef LIKE '%%(txid)%%'"
        )
        assert [row[0] for row in cursor.fetchall()] == ["outbox_level_changed_txid_idx"]
        cursor.execute(
            "SELECT proname FROM pg_proc WHERE proname IN"
            " ('events_publish', 'events_unpublish', 'events_outbox_mark', 'stock_publish_events') ORDER BY 1"
        )
        assert [row[0] for row in cursor.fetchall()] == ["events_outbox_mark", "events_publish", "events_unpublish"]
