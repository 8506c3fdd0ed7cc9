"""The backbone's own boundaries: no import circle between its modules, and only it writes its tables."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "supplychain" / "events"
EVENTS_TABLE = re.compile(r"\bevents_[a-z]+\b")


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
    sources = [*(ROOT / "stock" / "sql").glob("*.sql"), *(ROOT / "stock" / "migrations").glob("*.py")]
    named = {path.name: sorted(set(EVENTS_TABLE.findall(path.read_text()))) for path in sources}
    assert {name: tables for name, tables in named.items() if tables} == {}
