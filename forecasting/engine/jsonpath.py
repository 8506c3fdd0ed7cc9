"""The JSONPath subset of the States Language: ``$``, ``.name``, ``['name']``, ``[index]``, ``[*]`` / ``.*``.

Reference paths (``ResultPath``, and what ``set_path`` writes) allow names and non-negative indices only. A path
with a wildcard selects a list of matches. A path that selects nothing raises ``PathError``; callers turn that
into the States error the specification names for their field.
"""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from typing import Any

from forecasting.engine.errors import PathError

WILDCARD = object()
_NAME = re.compile(r"[^.\[\]\s'\"*]+")
_INDEX = re.compile(r"\[(-?\d+)\]")
_QUOTED = re.compile(r"""\[(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\]""")


@lru_cache(maxsize=4096)
def parse(path: str) -> tuple:
    """The segments of ``path`` (str names, int indices, ``WILDCARD``); raises ``PathError`` if it does not parse."""
    if not isinstance(path, str) or not path.startswith("$"):
        raise PathError(f"a path starts with '$': {path!r}")
    rest = path[1:]
    if rest.startswith("$"):
        raise PathError(f"'$$' is the context object, not a path into the input: {path!r}")
    segments: list = []
    position = 0
    while position < len(rest):
        char = rest[position]
        if rest.startswith(".*", position):
            segments.append(WILDCARD)
            position += 2
        elif char == ".":
            match = _NAME.match(rest, position + 1)
            if not match:
                raise PathError(f"expected a field name after '.' at position {position + 2} of {path!r}")
            segments.append(match.group(0))
            position = match.end()
        elif rest.startswith("[*]", position):
            segments.append(WILDCARD)
            position += 3
        elif match := _INDEX.match(rest, position):
            segments.append(int(match.group(1)))
            position = match.end()
        elif match := _QUOTED.match(rest, position):
            raw = match.group(1) if match.group(1) is not None else match.group(2)
            segments.append(re.sub(r"\\(.)", r"\1", raw))
            position = match.end()
        else:
            raise PathError(f"unexpected {char!r} at position {position + 2} of {path!r}")
    return tuple(segments)


def validate(path: str, *, reference: bool = False) -> None:
    """Raise ``PathError`` unless ``path`` parses (and, for a reference path, has no wildcard or negative index)."""
    segments = parse(path)
    if reference:
        for segment in segments:
            if segment is WILDCARD or (isinstance(segment, int) and segment < 0):
                raise PathError(f"a reference path selects one node: no wildcard or negative index in {path!r}")


def is_definite(path: str) -> bool:
    return WILDCARD not in parse(path)


def get(data: Any, path: str) -> Any:
    """The value ``path`` selects in ``data`` (a list of matches if the path has a wildcard)."""
    segments = parse(path)
    if WILDCARD not in segments:
        return _get_one(data, segments, path)
    return _get_many(data, segments, path)


def exists(data: Any, path: str) -> bool:
    try:
        get(data, path)
    except PathError:
        return False
    return True


def _get_one(data: Any, segments: tuple, path: str) -> Any:
    node = data
    for segment in segments:
        node = _step(node, segment, path)
    return node


def _step(node: Any, segment, path: str) -> Any:
    if isinstance(segment, str):
        if isinstance(node, dict) and segment in node:
            return node[segment]
        raise PathError(f"{path!r}: no field {segment!r} in {_short(node)}")
    if isinstance(node, list) and -len(node) <= segment < len(node):
        return node[segment]
    raise PathError(f"{path!r}: no index {segment} in {_short(node)}")


def _get_many(data: Any, segments: tuple, path: str) -> list:
    nodes = [data]
    for segment in segments:
        following = []
        for node in nodes:
            if segment is WILDCARD:
                if isinstance(node, dict):
                    following.extend(node.values())
                elif isinstance(node, list):
                    following.extend(node)
            else:
                try:
                    following.append(_step(node, segment, path))
                except PathError:
                    continue
        nodes = following
    return nodes


def set_path(data: Any, path: str, value: Any) -> Any:
    """A copy of ``data`` with ``value`` at the reference ``path`` (``$`` replaces the whole), creating objects.

    Raises ``PathError`` when the path runs through a value that is not an object (or an index out of range).
    """
    validate(path, reference=True)
    segments = parse(path)
    if not segments:
        return value
    root = copy.deepcopy(data)
    node = root
    for position, segment in enumerate(segments):
        last = position == len(segments) - 1
        if isinstance(segment, str):
            if not isinstance(node, dict):
                raise PathError(f"{path!r}: cannot set field {segment!r} in {_short(node)}")
            if last:
                node[segment] = value
            else:
                if segment not in node:
                    node[segment] = {}
                node = node[segment]
        else:
            if not isinstance(node, list) or segment >= len(node):
                raise PathError(f"{path!r}: no index {segment} in {_short(node)}")
            if last:
                node[segment] = value
            else:
                node = node[segment]
    return root


def _short(node: Any) -> str:
    text = repr(node)
    return text if len(text) <= 80 else text[:77] + "..."
