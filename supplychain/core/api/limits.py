"""What every value that reaches the API must fit: text PostgreSQL can store, numbers its columns hold, bounded depth.

One place for the checks the parsers, the query and path guard and the bounded fields share, so a
bad value is refused as a 400 naming where it was, before it reaches a serializer or the database.
"""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple

BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1
JSON_MAX_DEPTH = 32  # arrays and objects nested in each other; no endpoint takes more than a few levels

NUL_MESSAGE = "Text may not contain NUL (\\u0000) characters."
SURROGATE_MESSAGE = "Text may not contain lone surrogates (\\ud800-\\udfff): it is not valid Unicode."


class BadValue(NamedTuple):
    """Where a value is refused (a dotted path: ``items.0.sku``) and why."""

    where: str
    message: str


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None when it can."""
    if "\x00" in value:
        return NUL_MESSAGE
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_MESSAGE
    return None


def shown_key(key: str) -> str:
    """A key as it can be shown in an error path (escaped, so a NUL or surrogate in it is visible)."""
    return json.dumps(key)[1:-1]


def first_bad_value(data: Any, *, root: str = "") -> BadValue | None:
    """The first value in parsed JSON that no column can hold: bad text (values and keys), an integer
    past 64 bits, a non-finite number, or nesting deeper than ``JSON_MAX_DEPTH``.

    Walks with an explicit stack (no recursion), so it is safe on any input the parser produced.
    """
    stack: list[tuple[Any, str, int]] = [(data, root, 0)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, str):
            problem = text_problem(value)
            if problem:
                return BadValue(where or "non_field_errors", problem)
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not BIGINT_MIN <= value <= BIGINT_MAX:
                return BadValue(where or "non_field_errors", "This number is larger than the server can store.")
        elif isinstance(value, float):
            if not math.isfinite(value):
                return BadValue(where or "non_field_errors", "Numbers must be finite (no NaN or Infinity).")
        elif isinstance(value, (dict, list)):
            if depth >= JSON_MAX_DEPTH:
                return BadValue(where or "non_field_errors", f"JSON may nest at most {JSON_MAX_DEPTH} levels.")
            children = []
            if isinstance(value, dict):
                for key, item in value.items():
                    path = f"{where}.{shown_key(key)}" if where else shown_key(key)
                    problem = text_problem(key)
                    if problem:
                        return BadValue(path, f"Key: {problem}")
                    children.append((item, path, depth + 1))
            else:
                for index, item in enumerate(value):
                    children.append((item, f"{where}.{index}" if where else str(index), depth + 1))
            stack.extend(reversed(children))  # in document order
    return None
