"""The JSONPath subset and the 18 intrinsic functions."""

import base64
import hashlib
import json

import pytest

from forecasting.engine import intrinsics, jsonpath
from forecasting.engine.errors import IntrinsicError, PathError, StatesError

DATA = {"a": {"b": [10, 20, {"c": "x"}]}, "odd key": 1, "list": [{"n": 1}, {"n": 2}, {"m": 3}]}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("$", DATA),
        ("$.a.b[0]", 10),
        ("$.a.b[-1].c", "x"),
        ("$['odd key']", 1),
        ('$["a"]["b"][1]', 20),
        ("$.list[*].n", [1, 2]),
        ("$.a.b.*", [10, 20, {"c": "x"}]),
    ],
)
def test_get_selects(path, value):
    assert jsonpath.get(DATA, path) == value


@pytest.mark.parametrize("path", ["$.missing", "$.a.b[7]", "$.a.b.c", "$.odd key"])
def test_get_of_nothing_raises(path):
    with pytest.raises(PathError):
        jsonpath.get(DATA, path)


@pytest.mark.parametrize("path", ["a.b", "$..a", "$.a[", "$$.x", "$.a[x]", ""])
def test_paths_that_do_not_parse(path):
    with pytest.raises(PathError):
        jsonpath.parse(path)


def test_set_path_creates_objects_and_copies():
    original = {"a": {"keep": 1}}
    changed = jsonpath.set_path(original, "$.a.new.deep", 5)
    assert changed == {"a": {"keep": 1, "new": {"deep": 5}}}
    assert original == {"a": {"keep": 1}}
    assert jsonpath.set_path({"x": [1, 2]}, "$.x[1]", 9) == {"x": [1, 9]}
    assert jsonpath.set_path({"x": 1}, "$", "all") == "all"


def test_set_path_through_a_scalar_fails():
    with pytest.raises(PathError):
        jsonpath.set_path({"a": 1}, "$.a.b", 2)
    with pytest.raises(PathError):
        jsonpath.set_path({"a": 1}, "$.a[*]", 2)


def call(text, data=None, context=None):
    return intrinsics.evaluate(text, data if data is not None else {}, context or {})


def test_format_with_paths_numbers_and_escapes():
    assert call(
        "States.Format('Hello, {}! You are {} ({}).', $.name, $.age, $.ok)", {"name": "Ana", "age": 3, "ok": True}
    ) == ("Hello, Ana! You are 3 (true).")
    assert call("States.Format('literal \\{\\} and {}', 'x')") == "literal {} and x"
    assert call("States.Format('it\\'s {}', null)") == "it's null"
    with pytest.raises(StatesError) as raised:
        call("States.Format('{} {}', 'only one')")
    assert raised.value.error == "States.IntrinsicFailure"


def test_json_round_trip():
    assert call("States.StringToJson($.s)", {"s": '{"a": [1, 2]}'}) == {"a": [1, 2]}
    assert call("States.JsonToString($.o)", {"o": {"a": [1, 2], "b": "é"}}) == '{"a":[1,2],"b":"é"}'


def test_arrays():
    assert call("States.Array('a', 1, $.x, true, null)", {"x": {"k": 1}}) == ["a", 1, {"k": 1}, True, None]
    assert call("States.Array()") == []
    assert call("States.ArrayPartition($.a, 2)", {"a": [1, 2, 3, 4, 5]}) == [[1, 2], [3, 4], [5]]
    assert call("States.ArrayContains($.a, 3)", {"a": [1, 2, 3]}) is True
    assert call("States.ArrayContains($.a, true)", {"a": [1]}) is False
    assert call("States.ArrayRange(1, 9, 2)") == [1, 3, 5, 7, 9]
    assert call("States.ArrayRange(5, 1, -2)") == [5, 3, 1]
    assert call("States.ArrayGetItem($.a, 1)", {"a": ["x", "y"]}) == "y"
    assert call("States.ArrayLength($.a)", {"a": [1, 2, 3]}) == 3
    assert call("States.ArrayUnique($.a)", {"a": [1, 2, 1, "1", {"a": 1}, {"a": 1}]}) == [1, 2, "1", {"a": 1}]


@pytest.mark.parametrize(
    "text",
    [
        "States.ArrayPartition($.a, 0)",
        "States.ArrayRange(1, 2000, 1)",
        "States.ArrayRange(1, 2, 0)",
        "States.ArrayGetItem($.a, 5)",
        "States.ArrayLength($.s)",
        "States.MathAdd($.s, 1)",
        "States.MathAdd(1.5, 1)",
        "States.JsonMerge($.o, $.o, true)",
        "States.Hash($.s, 'SHA-3')",
        "States.Base64Decode('%%%')",
        "States.StringToJson('{nope')",
        "States.ArrayLength($.missing)",
    ],
)
def test_intrinsic_failures_are_states_intrinsic_failure(text):
    with pytest.raises(StatesError) as raised:
        call(text, {"a": [1, 2], "s": "text", "o": {"a": 1}})
    assert raised.value.error == "States.IntrinsicFailure"


def test_math_string_merge_hash_base64_uuid():
    assert call("States.MathAdd($.v, -3)", {"v": 10}) == 7
    assert 1 <= call("States.MathRandom(1, 3)") <= 3
    assert call("States.MathRandom(1, 1000, 7)") == call("States.MathRandom(1, 1000, 7)")
    assert call("States.StringSplit($.s, '.+,=')", {"s": "This.is+a,test=string"}) == [
        "This",
        "is",
        "a",
        "test",
        "string",
    ]
    assert call("States.JsonMerge($.a, $.b, false)", {"a": {"x": 1, "n": {"p": 1}}, "b": {"n": {"q": 2}}}) == {
        "x": 1,
        "n": {"q": 2},
    }
    assert call("States.Hash('abc', 'SHA-256')") == hashlib.sha256(b"abc").hexdigest()
    assert call("States.Hash('abc', 'MD5')") == hashlib.md5(b"abc").hexdigest()  # noqa: S324 (the spec's algorithm)
    assert call("States.Base64Encode('hello')") == base64.b64encode(b"hello").decode()
    assert call("States.Base64Decode(States.Base64Encode($.s))", {"s": "round trip"}) == "round trip"
    first, second = call("States.UUID()"), call("States.UUID()")
    assert len(first) == 36 and first != second


def test_context_paths_and_nesting():
    context = {"Execution": {"Name": "run-1"}, "Map": {"Item": {"Index": 2}}}
    assert call("States.Format('{}#{}', $$.Execution.Name, $$.Map.Item.Index)", {}, context) == "run-1#2"
    assert call("States.ArrayLength(States.StringSplit('a b c', ' '))") == 3


@pytest.mark.parametrize(
    "text",
    [
        "States.Nope()",
        "States.UUID(1)",
        "States.Format()",
        "States.Array('x'",
        "Format('x')",
        "States.Array('x') extra",
        "States.Array('x)",
    ],
)
def test_calls_that_do_not_parse(text):
    with pytest.raises(IntrinsicError):
        intrinsics.parse(text)


def test_every_function_of_the_issue_is_present():
    names = [
        "Format", "StringToJson", "JsonToString", "Array", "ArrayPartition", "ArrayContains", "ArrayRange",
        "ArrayGetItem", "ArrayLength", "ArrayUnique", "MathAdd", "MathRandom", "StringSplit", "JsonMerge", "Hash",
        "Base64Encode", "Base64Decode", "UUID",
    ]  # fmt: skip
    assert sorted(intrinsics.FUNCTIONS) == sorted(names)
    json.dumps(names)
