"""The pure next-state logic of the States Language: data flow, Choice rules, waits, retries and catches.

Nothing here runs a task, sleeps, or touches a database: each function takes a state (JSON from a validated
definition) and data, and returns data or a decision. The local runner (``local.py``) and the Celery executor
both drive a run with these functions, so both follow the specification the same way.

Data flow (states-language.net, "Input and Output Processing"): ``InputPath`` → ``Parameters`` (``.$`` keys:
paths, ``$$`` context, intrinsics) → the task → ``ResultSelector`` → ``ResultPath`` into the state's *raw*
input (``null`` keeps the input and discards the result) → ``OutputPath``.
"""

from __future__ import annotations

import copy
import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from forecasting.engine import intrinsics, jsonpath
from forecasting.engine.definition import parse_timestamp
from forecasting.engine.errors import (
    ALL,
    EXCEED_TOLERATED_FAILURE_THRESHOLD,
    NO_CHOICE_MATCHED,
    PARAMETER_PATH_FAILURE,
    RESULT_PATH_MATCH_FAILURE,
    RUNTIME,
    TASK_FAILED,
    TIMEOUT,
    UNCATCHABLE,
    PathError,
    StatesError,
)

INLINE_TYPES = frozenset({"Pass", "Choice", "Succeed", "Fail", "Wait"})
DEFAULT_INTERVAL = 1
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_BACKOFF = 2.0


# --- data flow ------------------------------------------------------------------------------------------------


def select(data: Any, path: Any, *, field: str, error: str = RUNTIME) -> Any:
    """``InputPath``/``OutputPath`` semantics: ``$`` by default, ``None`` (JSON null) gives ``{}``."""
    if path is None:
        return {}
    try:
        return jsonpath.get(data, path)
    except PathError as exc:
        raise StatesError(error, f"{field}: {exc}") from None


def resolve(template: Any, data: Any, context: Any, *, field: str) -> Any:
    """A payload template (``Parameters``, ``ResultSelector``, ``ItemSelector``) filled from ``data``/``context``."""
    if isinstance(template, dict):
        out = {}
        for key, value in template.items():
            if key.endswith(".$"):
                out[key[:-2]] = _dynamic(value, data, context, field=f"{field}.{key}")
            else:
                out[key] = resolve(value, data, context, field=field)
        return out
    if isinstance(template, list):
        return [resolve(value, data, context, field=field) for value in template]
    return template


def _dynamic(value: str, data: Any, context: Any, *, field: str) -> Any:
    if intrinsics.is_intrinsic(value):
        return intrinsics.evaluate(value, data, context)
    try:
        if value.startswith("$$"):
            return jsonpath.get(context, "$" + value[2:])
        return jsonpath.get(data, value)
    except PathError as exc:
        raise StatesError(PARAMETER_PATH_FAILURE, f"{field}: {exc}") from None


def effective_input(state: dict, raw_input: Any, context: Any) -> Any:
    """What the state works on: ``InputPath``, then ``Parameters`` (not for Map, whose selector is per item)."""
    data = select(raw_input, state.get("InputPath", "$"), field="InputPath")
    if "Parameters" in state and state["Type"] != "Map":
        data = resolve(state["Parameters"], data, context, field="Parameters")
    return data


def state_output(state: dict, raw_input: Any, result: Any, context: Any) -> Any:
    """The state's output from its task's ``result``: ``ResultSelector``, ``ResultPath``, ``OutputPath``."""
    if "ResultSelector" in state:
        result = resolve(state["ResultSelector"], result, context, field="ResultSelector")
    combined = place_result(raw_input, state.get("ResultPath", "$"), result)
    return select(combined, state.get("OutputPath", "$"), field="OutputPath")


def place_result(raw_input: Any, result_path: Any, result: Any) -> Any:
    if result_path is None:
        return raw_input
    try:
        return jsonpath.set_path(raw_input, result_path, result)
    except PathError as exc:
        raise StatesError(RESULT_PATH_MATCH_FAILURE, f"ResultPath: {exc}") from None


# --- inline states --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """Where an inline state leads: ``next`` (None ends the scope) with ``output``; ``wait`` seconds first."""

    next: str | None
    output: Any
    wait: float = 0.0


def inline_step(state: dict, raw_input: Any, context: Any, *, now: datetime | None = None) -> Step:
    """Run a Pass, Choice, Succeed, Fail or Wait state; Fail (and any data-flow error) raises ``StatesError``."""
    kind = state["Type"]
    if kind == "Fail":
        error, cause = fail_error(state, raw_input, context)
        raise StatesError(error, cause)
    if kind == "Pass":
        data = effective_input(state, raw_input, context)
        result = copy.deepcopy(state["Result"]) if "Result" in state else data
        output = place_result(raw_input, state.get("ResultPath", "$"), result)
        return Step(state.get("Next"), select(output, state.get("OutputPath", "$"), field="OutputPath"))
    data = select(raw_input, state.get("InputPath", "$"), field="InputPath")
    output = select(data, state.get("OutputPath", "$"), field="OutputPath")
    if kind == "Succeed":
        return Step(None, output)
    if kind == "Choice":
        return Step(choose(state, data, context), output)
    if kind == "Wait":
        return Step(state.get("Next"), output, wait_seconds(state, data, context, now=now))
    raise ValueError(f"{kind} is not an inline state")


def fail_error(state: dict, raw_input: Any, context: Any) -> tuple[str, str]:
    values = {}
    for name in ("Error", "Cause"):
        if f"{name}Path" in state:
            value = _dynamic(state[f"{name}Path"], raw_input, context, field=f"{name}Path")
            values[name] = value if isinstance(value, str) else str(value)
        else:
            values[name] = state.get(name, "")
    return values["Error"], values["Cause"]


def wait_seconds(state: dict, data: Any, context: Any = None, *, now: datetime | None = None) -> float:
    """How long a Wait state waits (never negative: a timestamp in the past waits 0)."""
    now = now or datetime.now(UTC)
    if "Seconds" in state:
        return float(state["Seconds"])
    if "SecondsPath" in state:
        value = _path_value(state["SecondsPath"], data, context, field="SecondsPath")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise StatesError(RUNTIME, f"SecondsPath: a non-negative number of seconds, got {value!r}")
        return float(value)
    if "Timestamp" in state:
        moment = parse_timestamp(state["Timestamp"])
    else:
        value = _path_value(state["TimestampPath"], data, context, field="TimestampPath")
        moment = parse_timestamp(value)
        if moment is None:
            raise StatesError(RUNTIME, f"TimestampPath: an RFC 3339 timestamp, got {value!r}")
    return max(0.0, (moment - now).total_seconds())


def _path_value(path: str, data: Any, context: Any, *, field: str) -> Any:
    try:
        if path.startswith("$$"):
            return jsonpath.get(context, "$" + path[2:])
        return jsonpath.get(data, path)
    except PathError as exc:
        raise StatesError(RUNTIME, f"{field}: {exc}") from None


# --- Choice ---------------------------------------------------------------------------------------------------


def choose(state: dict, data: Any, context: Any = None) -> str:
    """The ``Next`` of the first matching rule, else ``Default``, else ``States.NoChoiceMatched``."""
    for rule in state["Choices"]:
        if evaluate_rule(rule, data, context):
            return rule["Next"]
    if "Default" in state:
        return state["Default"]
    raise StatesError(NO_CHOICE_MATCHED, "no Choices rule matched and there is no Default")


_NUMBER_OPS = {
    "Equals": lambda a, b: a == b,
    "LessThan": lambda a, b: a < b,
    "GreaterThan": lambda a, b: a > b,
    "LessThanEquals": lambda a, b: a <= b,
    "GreaterThanEquals": lambda a, b: a >= b,
}


def evaluate_rule(rule: dict, data: Any, context: Any = None) -> bool:
    """Whether a Choice rule holds; ``And``/``Or`` short-circuit, so ``IsPresent`` can guard later rules."""
    if "And" in rule:
        return all(evaluate_rule(inner, data, context) for inner in rule["And"])
    if "Or" in rule:
        return any(evaluate_rule(inner, data, context) for inner in rule["Or"])
    if "Not" in rule:
        return not evaluate_rule(rule["Not"], data, context)
    variable = rule["Variable"]
    operator = next(key for key in rule if key not in ("Variable", "Next", "Comment"))
    expected = rule[operator]
    present = True
    try:
        value = _lookup(variable, data, context)
    except PathError:
        present = False
        value = None
    if operator == "IsPresent":
        return present == expected
    if not present:
        raise StatesError(RUNTIME, f"Choice: Variable {variable!r} is not in the input")
    if operator.startswith("Is"):
        return _type_test(operator, value) == expected
    if operator.endswith("Path"):
        operator = operator[: -len("Path")]
        try:
            expected = _lookup(expected, data, context)
        except PathError as exc:
            raise StatesError(RUNTIME, f"Choice: {operator}Path: {exc}") from None
    if operator == "StringMatches":
        return isinstance(value, str) and _string_matches(value, expected)
    for family in ("String", "Numeric", "Boolean", "Timestamp"):
        if operator.startswith(family):
            comparison = _NUMBER_OPS[operator[len(family) :]]
            return _compare(family, comparison, value, expected)
    raise StatesError(RUNTIME, f"Choice: unknown operator {operator}")


def _lookup(path: str, data: Any, context: Any) -> Any:
    if path.startswith("$$"):
        return jsonpath.get(context, "$" + path[2:])
    return jsonpath.get(data, path)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _compare(family: str, comparison, value: Any, expected: Any) -> bool:
    """A comparison of two values of the family's type; a value of another type makes the rule false."""
    if family == "String":
        return isinstance(value, str) and isinstance(expected, str) and comparison(value, expected)
    if family == "Numeric":
        return _is_number(value) and _is_number(expected) and comparison(value, expected)
    if family == "Boolean":
        return isinstance(value, bool) and isinstance(expected, bool) and comparison(value, expected)
    left, right = parse_timestamp(value), parse_timestamp(expected)
    return left is not None and right is not None and comparison(left, right)


def _type_test(operator: str, value: Any) -> bool:
    return {
        "IsNull": value is None,
        "IsNumeric": _is_number(value),
        "IsString": isinstance(value, str),
        "IsBoolean": isinstance(value, bool),
        "IsTimestamp": parse_timestamp(value) is not None,
    }[operator]


def _string_matches(value: str, pattern: str) -> bool:
    """``*`` matches any run of characters; ``\\*`` is a literal star (and nothing else is special)."""
    parts = re.split(r"(?<!\\)\*", pattern)
    regex = ".*".join(re.escape(part.replace("\\*", "*").replace("\\\\", "\\")) for part in parts)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


# --- errors: Retry and Catch ----------------------------------------------------------------------------------


def error_matches(names: list[str], error: str) -> bool:
    """Whether a retrier's or catcher's ``ErrorEquals`` covers ``error``.

    ``States.ALL`` covers every error except ``States.Runtime`` and ``States.DataLimitExceeded`` (which only
    their own name covers); ``States.TaskFailed`` covers every error except ``States.Timeout`` and those two.
    """
    if error in names:
        return True
    if error in UNCATCHABLE:
        return False
    if ALL in names:
        return True
    return TASK_FAILED in names and error != TIMEOUT


@dataclass(frozen=True)
class Retry:
    """Run the state again after ``delay`` seconds; ``retrier`` is the index whose counter was spent."""

    delay: float
    retrier: int
    attempt: int  # this retrier's retries so far, including this one
    counts: list[int] = field(default_factory=list)  # every retrier's counter after this decision


@dataclass(frozen=True)
class Caught:
    """Go to ``next`` with ``output`` (the error object placed at the catcher's ``ResultPath``)."""

    next: str
    output: Any
    catcher: int


@dataclass(frozen=True)
class Unhandled:
    """No retrier or catcher applies: the state, and its scope, fail with this error."""

    error: str
    cause: str


def retry_delay(retrier: dict, retries_so_far: int, *, rng: random.Random | None = None) -> float:
    """The wait before the next attempt: ``IntervalSeconds * BackoffRate^n``, capped at ``MaxDelaySeconds``,
    then with ``JitterStrategy: FULL`` a uniform draw between 0 and that."""
    interval = retrier.get("IntervalSeconds", DEFAULT_INTERVAL)
    delay = interval * retrier.get("BackoffRate", DEFAULT_BACKOFF) ** retries_so_far
    if "MaxDelaySeconds" in retrier:
        delay = min(delay, retrier["MaxDelaySeconds"])
    if retrier.get("JitterStrategy", "NONE") == "FULL":
        delay = (rng or random).uniform(0, delay)
    return float(delay)


def handle_error(
    state: dict, raw_input: Any, error: str, cause: str, counts: list[int], *, rng: random.Random | None = None
) -> Retry | Caught | Unhandled:
    """What a Task, Parallel or Map state does with ``error``.

    The first retrier whose ``ErrorEquals`` matches decides; while its own counter is below ``MaxAttempts``
    (default 3) the state is retried. Each retrier counts separately, across every error it matched in this
    visit of the state (``counts``: one counter per retrier, reset when the state is entered again). A spent
    (or absent) retrier hands the error to the first matching catcher, whose ``ResultPath`` (default ``$``)
    places ``{"Error", "Cause"}`` into the state's raw input.
    """
    retriers = state.get("Retry") or []
    counts = list(counts) + [0] * (len(retriers) - len(counts))
    for index, retrier in enumerate(retriers):
        if error_matches(retrier["ErrorEquals"], error):
            done = counts[index]
            if done < retrier.get("MaxAttempts", DEFAULT_MAX_ATTEMPTS):
                counts[index] = done + 1
                return Retry(retry_delay(retrier, done, rng=rng), index, done + 1, counts)
            break
    for index, catcher in enumerate(state.get("Catch") or []):
        if error_matches(catcher["ErrorEquals"], error):
            try:
                output = place_result(raw_input, catcher.get("ResultPath", "$"), {"Error": error, "Cause": cause})
            except StatesError as exc:
                return Unhandled(exc.error, exc.cause)
            return Caught(catcher["Next"], output, index)
    return Unhandled(error, cause)


# --- Parallel and Map -----------------------------------------------------------------------------------------


def map_items(state: dict, data: Any) -> list:
    """The items a Map state iterates over (``ItemsPath`` of its effective input; default ``$``)."""
    items = select(data, state.get("ItemsPath", "$"), field="ItemsPath")
    if not isinstance(items, list):
        raise StatesError(RUNTIME, f"ItemsPath: the Map's items must be an array, got {type(items).__name__}")
    return items


def map_item_input(state: dict, data: Any, index: int, value: Any, context: dict) -> Any:
    """One item's input: ``ItemSelector`` (or the old ``Parameters``) with ``$$.Map.Item.Index``/``Value``."""
    selector = state.get("ItemSelector", state.get("Parameters"))
    if selector is None:
        return value
    item_context = {**context, "Map": {"Item": {"Index": index, "Value": value}}}
    return resolve(selector, data, item_context, field="ItemSelector")


def max_concurrency(state: dict, data: Any) -> int:
    """How many items run at once; 0 means no limit."""
    if "MaxConcurrencyPath" in state:
        value = _path_value(state["MaxConcurrencyPath"], data, None, field="MaxConcurrencyPath")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise StatesError(RUNTIME, f"MaxConcurrencyPath: a non-negative integer, got {value!r}")
        return value
    return int(state.get("MaxConcurrency", 0))


def tolerance(state: dict, data: Any) -> tuple[int | None, float | None]:
    """(ToleratedFailureCount, ToleratedFailurePercentage), each None when not set."""
    count = state.get("ToleratedFailureCount")
    percentage = state.get("ToleratedFailurePercentage")
    if "ToleratedFailureCountPath" in state:
        count = _path_value(state["ToleratedFailureCountPath"], data, None, field="ToleratedFailureCountPath")
    if "ToleratedFailurePercentagePath" in state:
        path = state["ToleratedFailurePercentagePath"]
        percentage = _path_value(path, data, None, field="ToleratedFailurePercentagePath")
    return count, percentage


def tolerance_exceeded(state: dict, data: Any, failed: int, total: int) -> bool:
    """Whether ``failed`` of ``total`` items are more than the Map tolerates (nothing is tolerated by default)."""
    if failed == 0:
        return False
    count, percentage = tolerance(state, data)
    if count is None and percentage is None:
        return True
    if count is not None and failed > count:
        return True
    return percentage is not None and total > 0 and failed * 100.0 / total > percentage


def map_failure(state: dict, data: Any, first_error: tuple[str, str], failed: int, total: int) -> tuple[str, str]:
    """The Map's error: the first failed item's when nothing is tolerated, else the threshold's."""
    count, percentage = tolerance(state, data)
    if count is None and percentage is None:
        return first_error
    return (
        EXCEED_TOLERATED_FAILURE_THRESHOLD,
        f"{failed} of {total} items failed, more than tolerated "
        f"(count {count}, percentage {percentage}); first: {first_error[0]}: {first_error[1]}",
    )


def tolerated_output(error: str, cause: str) -> dict:
    """What a tolerated failed item contributes to the Map's result array (its error object)."""
    return {"Error": error, "Cause": cause}


# --- the context object ---------------------------------------------------------------------------------------


def context_object(
    *,
    execution_id: str,
    execution_name: str,
    start_time: str,
    execution_input: Any,
    machine_name: str,
    state_name: str = "",
    entered_time: str = "",
    retry_count: int = 0,
    task_token: str = "",
) -> dict:
    """The ``$$`` object a state sees (Execution, StateMachine, State, Task)."""
    return {
        "Execution": {
            "Id": execution_id,
            "Name": execution_name,
            "StartTime": start_time,
            "Input": execution_input,
            "RedriveCount": 0,
        },
        "StateMachine": {"Id": machine_name, "Name": machine_name},
        "State": {"Name": state_name, "EnteredTime": entered_time, "RetryCount": retry_count},
        "Task": {"Token": task_token},
    }


def timeout_error(seconds: float) -> StatesError:
    return StatesError(TIMEOUT, f"the task did not finish within TimeoutSeconds ({seconds:g} s)")
