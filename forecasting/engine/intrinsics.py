"""The States Language's 18 intrinsic functions (``States.Format(...)`` and friends) and their argument parser.

Arguments are string literals in single quotes (escapes ``\\'``, ``\\{``, ``\\}``, ``\\\\``), numbers, ``true``,
``false``, ``null``, paths into the input (``$.x``) or the context object (``$$.Execution.Id``), and nested
calls. Any failure is ``States.IntrinsicFailure`` at run time; a call that does not parse is caught when the
definition is validated.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from forecasting.engine import jsonpath
from forecasting.engine.errors import INTRINSIC_FAILURE, IntrinsicError, PathError, StatesError

MAX_ARRAY = 1000
MAX_TEXT = 10000


@dataclass(frozen=True)
class Call:
    name: str
    arguments: tuple


@dataclass(frozen=True)
class PathArgument:
    path: str  # "$..." or "$$..."


def is_intrinsic(text: Any) -> bool:
    return isinstance(text, str) and text.startswith("States.")


@lru_cache(maxsize=2048)
def parse(text: str) -> Call:
    """The call tree of ``text``; raises ``IntrinsicError`` naming the problem."""
    parser = _Parser(text)
    call = parser.call()
    parser.skip_space()
    if parser.position != len(text):
        raise IntrinsicError(f"unexpected text after the call at position {parser.position + 1}: {text!r}")
    return call


class _Parser:
    _NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
    _FUNCTION = re.compile(r"States\.([A-Za-z0-9]+)\(")
    _PATH = re.compile(r"\$\$?[^,()\s]*")

    def __init__(self, text: str):
        self.text = text
        self.position = 0

    def skip_space(self) -> None:
        while self.position < len(self.text) and self.text[self.position].isspace():
            self.position += 1

    def call(self) -> Call:
        self.skip_space()
        match = self._FUNCTION.match(self.text, self.position)
        if not match:
            raise IntrinsicError(f"expected States.<Function>( at position {self.position + 1}: {self.text!r}")
        name = match.group(1)
        if name not in FUNCTIONS:
            raise IntrinsicError(f"unknown intrinsic function States.{name}")
        self.position = match.end()
        arguments = []
        self.skip_space()
        if self.text.startswith(")", self.position):
            self.position += 1
        else:
            while True:
                arguments.append(self.argument())
                self.skip_space()
                if self.text.startswith(",", self.position):
                    self.position += 1
                    continue
                if self.text.startswith(")", self.position):
                    self.position += 1
                    break
                raise IntrinsicError(f"expected ',' or ')' at position {self.position + 1}: {self.text!r}")
        low, high = ARITY[name]
        if not low <= len(arguments) <= high:
            expected = str(low) if low == high else f"{low} to {high if high < 99 else 'any number of'}"
            raise IntrinsicError(f"States.{name} takes {expected} arguments, got {len(arguments)}")
        return Call(name, tuple(arguments))

    def argument(self) -> Any:
        self.skip_space()
        text, position = self.text, self.position
        if text.startswith("'", position):
            return self.string()
        if text.startswith("States.", position):
            return self.call()
        if text.startswith("$", position):
            match = self._PATH.match(text, position)
            path = match.group(0)
            try:
                jsonpath.parse("$" + path[2:] if path.startswith("$$") else path)
            except PathError as exc:
                raise IntrinsicError(str(exc)) from None
            self.position = match.end()
            return PathArgument(path)
        for word, value in (("true", True), ("false", False), ("null", None)):
            if text.startswith(word, position):
                self.position += len(word)
                return value
        match = self._NUMBER.match(text, position)
        if match:
            self.position = match.end()
            number = match.group(0)
            return float(number) if match.group(1) or match.group(2) else int(number)
        raise IntrinsicError(f"unexpected argument at position {position + 1}: {text!r}")

    def string(self) -> str:
        self.position += 1
        out = []
        while self.position < len(self.text):
            char = self.text[self.position]
            if char == "\\" and self.position + 1 < len(self.text):
                following = self.text[self.position + 1]
                out.append("\\" + following if following in "{}" else following)  # States.Format unescapes braces
                self.position += 2
                continue
            if char == "'":
                self.position += 1
                return "".join(out)
            out.append(char)
            self.position += 1
        raise IntrinsicError(f"unterminated string literal: {self.text!r}")


def evaluate(text: str, data: Any, context: Any) -> Any:
    """The value of the intrinsic call ``text`` against the state's input ``data`` and the ``context`` object."""
    try:
        call = parse(text)
    except IntrinsicError as exc:
        raise StatesError(INTRINSIC_FAILURE, str(exc)) from None
    return _evaluate(call, data, context)


def _evaluate(call: Call, data: Any, context: Any) -> Any:
    values = []
    for argument in call.arguments:
        if isinstance(argument, Call):
            values.append(_evaluate(argument, data, context))
        elif isinstance(argument, PathArgument):
            try:
                if argument.path.startswith("$$"):
                    values.append(jsonpath.get(context, "$" + argument.path[2:]))
                else:
                    values.append(jsonpath.get(data, argument.path))
            except PathError as exc:
                raise StatesError(INTRINSIC_FAILURE, f"States.{call.name}: {exc}") from None
        else:
            values.append(argument)
    try:
        return FUNCTIONS[call.name](*values)
    except StatesError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
        raise StatesError(INTRINSIC_FAILURE, f"States.{call.name}: {exc}") from None


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise TypeError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _array(value: Any, what: str = "the first argument") -> list:
    if not isinstance(value, list):
        raise TypeError(f"{what} must be an array, got {value!r}")
    return value


def _text(value: Any, what: str = "the argument") -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {value!r}")
    if len(value) > MAX_TEXT:
        raise ValueError(f"{what} is longer than {MAX_TEXT} characters")
    return value


def _format_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        raise TypeError("States.Format takes strings, numbers, booleans or null as values")
    return json.dumps(value)


def states_format(template: Any, *values: Any) -> str:
    template = _text(template, "the template")
    pieces = re.split(r"(?<!\\)\{\}", template)
    if len(pieces) - 1 != len(values):
        raise ValueError(f"the template has {len(pieces) - 1} placeholders for {len(values)} values")
    pieces = [piece.replace("\\{", "{").replace("\\}", "}") for piece in pieces]
    out = [pieces[0]]
    for value, piece in zip(values, pieces[1:], strict=True):
        out.append(_format_value(value))
        out.append(piece)
    return "".join(out)


def string_to_json(text: Any) -> Any:
    return json.loads(_text(text))


def json_to_string(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def array(*values: Any) -> list:
    return list(values)


def array_partition(values: Any, size: Any) -> list:
    values, size = _array(values), _integer(size, "the chunk size")
    if size <= 0:
        raise ValueError("the chunk size must be greater than 0")
    return [values[start : start + size] for start in range(0, len(values), size)]


def array_contains(values: Any, looking_for: Any) -> bool:
    return any(_json_equal(item, looking_for) for item in _array(values))


def _json_equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    return left == right


def array_range(start: Any, end: Any, step: Any) -> list:
    start, end, step = _integer(start, "start"), _integer(end, "end"), _integer(step, "step")
    if step == 0:
        raise ValueError("step must not be 0")
    result = list(range(start, end + (1 if step > 0 else -1), step))
    if len(result) > MAX_ARRAY:
        raise ValueError(f"the range has {len(result)} items, more than {MAX_ARRAY}")
    return result


def array_get_item(values: Any, index: Any) -> Any:
    values, index = _array(values), _integer(index, "the index")
    if not 0 <= index < len(values):
        raise IndexError(f"index {index} is out of range for an array of {len(values)}")
    return values[index]


def array_length(values: Any) -> int:
    return len(_array(values))


def array_unique(values: Any) -> list:
    unique: list = []
    for item in _array(values):
        if not any(_json_equal(item, seen) for seen in unique):
            unique.append(item)
    return unique


def math_add(left: Any, right: Any) -> int:
    return _integer(left, "the first value") + _integer(right, "the second value")


def math_random(start: Any, end: Any, seed: Any = None) -> int:
    start, end = _integer(start, "start"), _integer(end, "end")
    if start > end:
        raise ValueError("start must not be greater than end")
    generator = random.Random(_integer(seed, "seed")) if seed is not None else random  # noqa: S311 (not for secrets)
    return generator.randint(start, end)


def string_split(text: Any, delimiters: Any) -> list:
    text, delimiters = _text(text, "the string"), _text(delimiters, "the delimiters")
    if not delimiters:
        raise ValueError("the delimiters must not be empty")
    pattern = "|".join(re.escape(char) for char in delimiters)
    return [part for part in re.split(pattern, text) if part]


def json_merge(first: Any, second: Any, deep: Any) -> dict:
    if not isinstance(first, dict) or not isinstance(second, dict):
        raise TypeError("States.JsonMerge merges two objects")
    if deep is not False:
        raise ValueError("only the shallow merge is supported: the third argument must be false")
    return {**first, **second}


HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}


def states_hash(data: Any, algorithm: Any) -> str:
    if algorithm not in HASHES:
        raise ValueError(f"the algorithm must be one of {', '.join(HASHES)}, got {algorithm!r}")
    if not isinstance(data, str):
        data = json_to_string(data)
    return hashlib.new(HASHES[algorithm], _text(data, "the data").encode()).hexdigest()


def base64_encode(text: Any) -> str:
    return base64.b64encode(_text(text).encode()).decode()


def base64_decode(text: Any) -> str:
    try:
        return base64.b64decode(_text(text).encode(), validate=True).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not base64 text: {exc}") from None


def states_uuid() -> str:
    return str(uuid.uuid4())


FUNCTIONS: dict[str, Callable] = {
    "Format": states_format,
    "StringToJson": string_to_json,
    "JsonToString": json_to_string,
    "Array": array,
    "ArrayPartition": array_partition,
    "ArrayContains": array_contains,
    "ArrayRange": array_range,
    "ArrayGetItem": array_get_item,
    "ArrayLength": array_length,
    "ArrayUnique": array_unique,
    "MathAdd": math_add,
    "MathRandom": math_random,
    "StringSplit": string_split,
    "JsonMerge": json_merge,
    "Hash": states_hash,
    "Base64Encode": base64_encode,
    "Base64Decode": base64_decode,
    "UUID": states_uuid,
}
ARITY: dict[str, tuple[int, int]] = {
    "Format": (1, 99),
    "StringToJson": (1, 1),
    "JsonToString": (1, 1),
    "Array": (0, 99),
    "ArrayPartition": (2, 2),
    "ArrayContains": (2, 2),
    "ArrayRange": (3, 3),
    "ArrayGetItem": (2, 2),
    "ArrayLength": (1, 1),
    "ArrayUnique": (1, 1),
    "MathAdd": (2, 2),
    "MathRandom": (2, 3),
    "StringSplit": (2, 2),
    "JsonMerge": (3, 3),
    "Hash": (2, 2),
    "Base64Encode": (1, 1),
    "Base64Decode": (1, 1),
    "UUID": (0, 0),
}
