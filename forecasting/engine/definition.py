"""Loading and validating a state machine written in Amazon States Language (JSONPath query language).

``validate`` returns the definition as plain JSON data, or raises ``DefinitionInvalid`` listing every problem,
each naming the state (``Fanout/Branches[0]/Load``) and the field. What is checked: the shape of every state
type and field, that every ``Next``/``Default``/catcher target exists in the same scope, that every state is
reachable from ``StartAt``, that a state which must continue has ``Next`` or ``End``, that ``States.ALL``
stands alone in the last retrier/catcher, that paths, ``.$`` templates and intrinsic calls parse, and that
Choice rules are well formed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from forecasting.engine import intrinsics, jsonpath
from forecasting.engine.errors import ALL, DefinitionInvalid, IntrinsicError, PathError, Problem

STATE_TYPES = ("Task", "Pass", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map")
COMMON_FIELDS = {"Type", "Comment", "InputPath", "OutputPath"}
FIELDS = {
    "Task": COMMON_FIELDS
    | {"Next", "End", "Resource", "Parameters", "ResultSelector", "ResultPath", "Retry", "Catch"}
    | {"TimeoutSeconds", "TimeoutSecondsPath", "HeartbeatSeconds", "HeartbeatSecondsPath", "Credentials"},
    "Pass": COMMON_FIELDS | {"Next", "End", "Result", "Parameters", "ResultPath"},
    "Choice": COMMON_FIELDS | {"Choices", "Default"},
    "Wait": COMMON_FIELDS | {"Next", "End", "Seconds", "Timestamp", "SecondsPath", "TimestampPath"},
    "Succeed": COMMON_FIELDS,
    "Fail": {"Type", "Comment", "Error", "ErrorPath", "Cause", "CausePath"},
    "Parallel": COMMON_FIELDS
    | {"Next", "End", "Branches", "Parameters", "ResultSelector", "ResultPath", "Retry", "Catch"},
    "Map": COMMON_FIELDS
    | {"Next", "End", "ItemsPath", "ItemSelector", "Parameters", "ItemProcessor", "Iterator"}
    | {"MaxConcurrency", "MaxConcurrencyPath", "ToleratedFailurePercentage", "ToleratedFailureCount"}
    | {"ToleratedFailurePercentagePath", "ToleratedFailureCountPath", "ResultSelector", "ResultPath", "Retry"}
    | {"Catch", "Label"},
}
CONTINUING = ("Task", "Pass", "Wait", "Parallel", "Map")
TOP_FIELDS = {"StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage"}
SCOPE_FIELDS = {"StartAt", "States", "Comment", "ProcessorConfig"}

COMPARISONS = {
    **{f"String{op}": "string" for op in ("Equals", "LessThan", "GreaterThan", "LessThanEquals", "GreaterThanEquals")},
    **{f"Numeric{op}": "number" for op in ("Equals", "LessThan", "GreaterThan", "LessThanEquals", "GreaterThanEquals")},
    "BooleanEquals": "boolean",
    **{
        f"Timestamp{op}": "timestamp"
        for op in ("Equals", "LessThan", "GreaterThan", "LessThanEquals", "GreaterThanEquals")
    },
    "StringMatches": "string",
    **{name: "boolean" for name in ("IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp")},
}
PATH_COMPARISONS = {
    f"{name}Path": kind for name, kind in COMPARISONS.items() if not name.startswith("Is") and name != "StringMatches"
}
RETRIER_FIELDS = {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds", "JitterStrategy"}
CATCHER_FIELDS = {"ErrorEquals", "Next", "ResultPath"}
MAX_NAME = 80


def load(text: str | bytes | dict) -> dict:
    """Parse (if text) and validate a definition; raises ``DefinitionInvalid``."""
    if isinstance(text, (str, bytes)):
        try:
            definition = json.loads(text)
        except ValueError as exc:
            raise DefinitionInvalid([Problem("", "", f"not JSON: {exc}")]) from None
    else:
        definition = text
    return validate(definition)


def validate(definition: Any) -> dict:
    """``definition`` if it is a valid state machine; otherwise ``DefinitionInvalid`` with every problem."""
    problems = list(check(definition))
    if problems:
        raise DefinitionInvalid(problems)
    return definition


def check(definition: Any) -> Iterator[Problem]:
    """Every problem of ``definition`` (nothing if it is valid)."""
    if not isinstance(definition, dict):
        yield Problem("", "", "a definition is a JSON object")
        return
    for field in sorted(set(definition) - TOP_FIELDS):
        yield Problem("", field, "unknown field")
    if definition.get("QueryLanguage", "JSONPath") != "JSONPath":
        yield Problem("", "QueryLanguage", "only the JSONPath query language is supported")
    if "TimeoutSeconds" in definition:
        yield from _positive_int("", "TimeoutSeconds", definition["TimeoutSeconds"])
    yield from _check_scope(definition, prefix="", top=True)


def _check_scope(scope: Any, *, prefix: str, top: bool = False) -> Iterator[Problem]:
    where = prefix.rstrip("/")
    if not isinstance(scope, dict):
        yield Problem(where, "", "a state machine (StartAt, States) is a JSON object")
        return
    if not top:
        for field in sorted(set(scope) - SCOPE_FIELDS):
            yield Problem(where, field, "unknown field")
    states = scope.get("States")
    start = scope.get("StartAt")
    if not isinstance(states, dict) or not states:
        yield Problem(where, "States", "States is a non-empty object of states")
        return
    if not isinstance(start, str):
        yield Problem(where, "StartAt", "StartAt names the first state")
    elif start not in states:
        yield Problem(where, "StartAt", f"unknown state {start!r}")
    for name, state in states.items():
        yield from _check_state(name, state, states, prefix=prefix)
    if isinstance(start, str) and start in states:
        reachable = _reachable(start, states)
        for name in states:
            if name not in reachable:
                yield Problem(prefix + name, "", f"unreachable state: no transition from {start!r} leads to it")


def _reachable(start: str, states: dict) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        state = states.get(todo.pop())
        if not isinstance(state, dict):
            continue
        for target in transitions(state):
            if isinstance(target, str) and target in states and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def transitions(state: dict) -> Iterator[str]:
    """Every state name ``state`` can move to (Next, Choice rules, Default, catchers)."""
    if "Next" in state:
        yield state["Next"]
    if "Default" in state:
        yield state["Default"]
    for rule in state.get("Choices") or []:
        if isinstance(rule, dict) and "Next" in rule:
            yield rule["Next"]
    for catcher in state.get("Catch") or []:
        if isinstance(catcher, dict) and "Next" in catcher:
            yield catcher["Next"]


def _check_state(name: str, state: Any, states: dict, *, prefix: str) -> Iterator[Problem]:
    where = prefix + name
    if len(name) > MAX_NAME:
        yield Problem(where, "", f"a state name has at most {MAX_NAME} characters")
    if not isinstance(state, dict):
        yield Problem(where, "", "a state is a JSON object")
        return
    kind = state.get("Type")
    if kind not in STATE_TYPES:
        yield Problem(where, "Type", f"Type must be one of {', '.join(STATE_TYPES)}, got {kind!r}")
        return
    for field in sorted(set(state) - FIELDS[kind]):
        yield Problem(where, field, f"unknown field for a {kind} state")
    if kind in CONTINUING:
        has_next, has_end = "Next" in state, state.get("End") is True
        if "End" in state and state["End"] is not True:
            yield Problem(where, "End", "End is true when present")
        if has_next and has_end:
            yield Problem(where, "Next", "a state has either Next or End, not both")
        elif not has_next and not has_end:
            yield Problem(where, "Next", "missing Next (or End: true)")
        if has_next:
            yield from _target(where, "Next", state["Next"], states)
    for field in ("InputPath", "OutputPath"):
        if field in state and state[field] is not None:
            yield from _path(where, field, state[field])
    if "ResultPath" in state and state["ResultPath"] is not None:
        yield from _path(where, "ResultPath", state["ResultPath"], reference=True)
    for field in ("Parameters", "ResultSelector", "ItemSelector"):
        if field in state:
            yield from _template(where, field, state[field])
    yield from CHECKS[kind](where, state, states, prefix)


def _target(where: str, field: str, target: Any, states: dict) -> Iterator[Problem]:
    if not isinstance(target, str):
        yield Problem(where, field, "names a state")
    elif target not in states:
        yield Problem(where, field, f"unknown state {target!r}")


def _path(where: str, field: str, path: Any, *, reference: bool = False, context: bool = False) -> Iterator[Problem]:
    if not isinstance(path, str):
        yield Problem(where, field, f"a path is a string starting with '$', got {path!r}")
        return
    if context and path.startswith("$$"):
        path = "$" + path[2:]
    try:
        jsonpath.validate(path, reference=reference)
    except PathError as exc:
        yield Problem(where, field, f"bad path: {exc}")


def _template(where: str, field: str, template: Any, trail: str = "") -> Iterator[Problem]:
    if isinstance(template, dict):
        for key, value in template.items():
            inner = f"{trail}.{key}" if trail else key
            if key.endswith(".$"):
                yield from _dynamic(where, f"{field}.{inner}", value)
            else:
                yield from _template(where, field, value, inner)
    elif isinstance(template, list):
        for index, value in enumerate(template):
            yield from _template(where, field, value, f"{trail}[{index}]")


def _dynamic(where: str, field: str, value: Any) -> Iterator[Problem]:
    if intrinsics.is_intrinsic(value):
        try:
            intrinsics.parse(value)
        except IntrinsicError as exc:
            yield Problem(where, field, f"bad intrinsic function: {exc}")
    else:
        yield from _path(where, field, value, context=True)


def _positive_int(where: str, field: str, value: Any, *, minimum: int = 1, maximum: int = 99999999):
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        yield Problem(where, field, f"an integer from {minimum} to {maximum}, got {value!r}")


def _check_task(where: str, state: dict, states: dict, prefix: str) -> Iterator[Problem]:
    if not isinstance(state.get("Resource"), str) or not state["Resource"]:
        yield Problem(where, "Resource", "a Task names its Resource (a registered step)")
    for field in ("TimeoutSeconds", "HeartbeatSeconds"):
        if field in state:
            yield from _positive_int(where, field, state[field])
    for field in ("TimeoutSecondsPath", "HeartbeatSecondsPath"):
        if field in state:
            yield from _path(where, field, state[field], reference=True)
    yield from _check_errors(where, state, states)


def _check_errors(where: str, state: dict, states: dict) -> Iterator[Problem]:
    for field, allowed in (("Retry", RETRIER_FIELDS), ("Catch", CATCHER_FIELDS)):
        if field not in state:
            continue
        handlers = state[field]
        if not isinstance(handlers, list):
            yield Problem(where, field, "a list of objects")
            continue
        for index, handler in enumerate(handlers):
            at = f"{field}[{index}]"
            if not isinstance(handler, dict):
                yield Problem(where, at, "an object")
                continue
            for name in sorted(set(handler) - allowed):
                yield Problem(where, f"{at}.{name}", "unknown field")
            errors = handler.get("ErrorEquals")
            if not isinstance(errors, list) or not errors or not all(isinstance(e, str) and e for e in errors):
                yield Problem(where, f"{at}.ErrorEquals", "a non-empty list of error names")
            elif ALL in errors:
                if len(errors) != 1:
                    yield Problem(where, f"{at}.ErrorEquals", "States.ALL must appear alone")
                if index != len(handlers) - 1:
                    yield Problem(
                        where,
                        f"{at}.ErrorEquals",
                        f"States.ALL must be in the last {'retrier' if field == 'Retry' else 'catcher'}",
                    )
            if field == "Retry":
                yield from _check_retrier(where, at, handler)
            else:
                if "Next" not in handler:
                    yield Problem(where, f"{at}.Next", "missing Next")
                else:
                    yield from _target(where, f"{at}.Next", handler["Next"], states)
                if handler.get("ResultPath") is not None and "ResultPath" in handler:
                    yield from _path(where, f"{at}.ResultPath", handler["ResultPath"], reference=True)


def _check_retrier(where: str, at: str, retrier: dict) -> Iterator[Problem]:
    if "IntervalSeconds" in retrier:
        yield from _positive_int(where, f"{at}.IntervalSeconds", retrier["IntervalSeconds"])
    if "MaxAttempts" in retrier:
        yield from _positive_int(where, f"{at}.MaxAttempts", retrier["MaxAttempts"], minimum=0)
    if "MaxDelaySeconds" in retrier:
        yield from _positive_int(where, f"{at}.MaxDelaySeconds", retrier["MaxDelaySeconds"], maximum=31622401)
    if "BackoffRate" in retrier:
        rate = retrier["BackoffRate"]
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate < 1:
            yield Problem(where, f"{at}.BackoffRate", f"a number of at least 1.0, got {rate!r}")
    if retrier.get("JitterStrategy", "NONE") not in ("FULL", "NONE"):
        yield Problem(where, f"{at}.JitterStrategy", "FULL or NONE")


def _check_pass(where: str, state: dict, states: dict, prefix: str) -> Iterator[Problem]:
    return iter(())


def _check_succeed(where: str, state: dict, states: dict, prefix: str) -> Iterator[Problem]:
    return iter(())


def _check_fail(where: str, state: dict, states: dict, prefix: str) -> Iterator[Problem]:
    for field in ("Error", "Cause"):
        if field in state and f"{field}Path" in state:
            yield Problem(where, field, f"{field} and {field}Path exclude each other")
        if field in state and not isinstance(state[field], str):
            yield Problem(where, field, "a string")
        if f"{field}Path" in state:
            value = state[f"{field}Path"]
            if intrinsics.is_intrinsic(value):
                yield from _dynamic(where, f"{field}Path", value)
            else:
                yield from _path(where, f"{field}Path", value, context=True)


def _check_wait(where: str, state: dict, states: dict, prefix: str) -> Iterator[Problem]:
    forms = [field for field in ("Seconds", "Timestamp", "SecondsPath", "TimestampPath") if field in state]
    if len(forms) != 1:
        yield Problem(where, "Seconds", "a Wait has exactly one of Seconds, Timestamp, SecondsPath, TimestampPath")
        return
    field = forms[0]
    value = state[field]
    if field == "Seconds":
        yield from _positive_int(where, field, value, minimum=0)
    elif field == "Timestamp":
        if parse_timestamp(value) is None:
            yield Problem(where, field, f"an RFC 3339 timestamp like 2026-01-31T12:00:00Z, got {value!r}")
    else:
        yield from _path(where, field, value, reference=True, context=True)


def _check_choice(where: str, state: dict, states: dict, prefix: str) -> Iterator[Problem]:
    if "Next" in state or "End" in state:
        yield Problem(where, "Next" if "Next" in state else "End", "a Choice has no Next or End (use Default)")
    choices = state.get("Choices")
    if not isinstance(choices, list) or not choices:
        yield Problem(where, "Choices", "a non-empty list of rules")
        return
    for index, rule in enumerate(choices):
        at = f"Choices[{index}]"
        if not isinstance(rule, dict):
            yield Problem(where, at, "a rule is an object")
            continue
        if "Next" not in rule:
            yield Problem(where, f"{at}.Next", "missing Next")
        else:
            yield from _target(where, f"{at}.Next", rule["Next"], states)
        yield from _check_rule(where, at, {key: value for key, value in rule.items() if key != "Next"})
    if "Default" in state:
        yield from _target(where, "Default", state["Default"], states)


def _check_rule(where: str, at: str, rule: Any) -> Iterator[Problem]:
    if not isinstance(rule, dict):
        yield Problem(where, at, "a rule is an object")
        return
    rule = {key: value for key, value in rule.items() if key != "Comment"}
    if "Next" in rule:
        yield Problem(where, f"{at}.Next", "only a top-level rule has Next")
        rule.pop("Next")
    logical = [key for key in ("And", "Or", "Not") if key in rule]
    if logical:
        if len(rule) != 1:
            yield Problem(where, at, f"{logical[0]} stands alone in its rule (no Variable or comparison beside it)")
        key = logical[0]
        if key == "Not":
            yield from _check_rule(where, f"{at}.Not", rule["Not"])
        elif not isinstance(rule[key], list) or not rule[key]:
            yield Problem(where, f"{at}.{key}", "a non-empty list of rules")
        else:
            for index, inner in enumerate(rule[key]):
                yield from _check_rule(where, f"{at}.{key}[{index}]", inner)
        return
    if "Variable" not in rule:
        yield Problem(where, f"{at}.Variable", "a comparison needs a Variable (a path)")
    else:
        yield from _path(where, f"{at}.Variable", rule["Variable"], context=True)
    operators = [key for key in rule if key != "Variable"]
    if len(operators) != 1:
        yield Problem(where, at, f"a rule has exactly one comparison operator, got {operators or 'none'}")
        return
    operator = operators[0]
    value = rule[operator]
    if operator in PATH_COMPARISONS:
        yield from _path(where, f"{at}.{operator}", value, context=True)
    elif operator in COMPARISONS:
        kind = COMPARISONS[operator]
        good = {
            "string": isinstance(value, str),
            "number": isinstance(value, (int, float)) and not isinstance(value, bool),
            "boolean": isinstance(value, bool),
            "timestamp": isinstance(value, str) and parse_timestamp(value) is not None,
        }[kind]
        if not good:
            yield Problem(where, f"{at}.{operator}", f"{operator} compares with a {kind}, got {value!r}")
    else:
        yield Problem(where, f"{at}.{operator}", "unknown comparison operator")


def _check_parallel(where: str, state: dict, states: dict, prefix: str) -> Iterator[Problem]:
    branches = state.get("Branches")
    if not isinstance(branches, list) or not branches:
        yield Problem(where, "Branches", "a non-empty list of state machines")
    else:
        for index, branch in enumerate(branches):
            yield from _check_scope(branch, prefix=f"{where}/Branches[{index}]/")
    yield from _check_errors(where, state, states)


def _check_map(where: str, state: dict, states: dict, prefix: str) -> Iterator[Problem]:
    if "ItemProcessor" in state and "Iterator" in state:
        yield Problem(where, "Iterator", "ItemProcessor and its old name Iterator exclude each other")
    if "ItemSelector" in state and "Parameters" in state:
        yield Problem(where, "Parameters", "ItemSelector and its old name Parameters exclude each other")
    processor = state.get("ItemProcessor", state.get("Iterator"))
    if processor is None:
        yield Problem(where, "ItemProcessor", "missing ItemProcessor (the state machine run for each item)")
    else:
        yield from _check_scope(processor, prefix=f"{where}/ItemProcessor/")
        config = processor.get("ProcessorConfig", {}) if isinstance(processor, dict) else {}
        if isinstance(config, dict) and config.get("Mode", "INLINE") != "INLINE":
            yield Problem(where, "ItemProcessor.ProcessorConfig.Mode", "only the INLINE mode is supported")
    if "ItemsPath" in state:
        yield from _path(where, "ItemsPath", state["ItemsPath"], reference=True)
    if "MaxConcurrency" in state:
        yield from _positive_int(where, "MaxConcurrency", state["MaxConcurrency"], minimum=0)
    if "ToleratedFailureCount" in state:
        yield from _positive_int(where, "ToleratedFailureCount", state["ToleratedFailureCount"], minimum=0)
    if "ToleratedFailurePercentage" in state:
        value = state["ToleratedFailurePercentage"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
            yield Problem(where, "ToleratedFailurePercentage", f"a number from 0 to 100, got {value!r}")
    for field in ("MaxConcurrencyPath", "ToleratedFailureCountPath", "ToleratedFailurePercentagePath"):
        if field in state:
            yield from _path(where, field, state[field], reference=True)
    yield from _check_errors(where, state, states)


CHECKS = {
    "Task": _check_task,
    "Pass": _check_pass,
    "Choice": _check_choice,
    "Wait": _check_wait,
    "Succeed": _check_succeed,
    "Fail": _check_fail,
    "Parallel": _check_parallel,
    "Map": _check_map,
}


def parse_timestamp(value: Any) -> datetime | None:
    """The aware datetime of an RFC 3339 timestamp (``T`` separator and a zone required), else None."""
    if not isinstance(value, str) or "T" not in value or len(value) < 20:
        return None
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def processor_of(state: dict) -> dict:
    """The state machine a Map state runs for each item (``ItemProcessor``, or its old name ``Iterator``)."""
    return state.get("ItemProcessor") or state["Iterator"]


def scope_at(definition: dict, address: tuple) -> dict:
    """The (sub) state machine at ``address``: ``()`` is the top; ``(("Fanout", 1),)`` is branch 1 of the Parallel
    ``Fanout``; ``(("Items", None),)`` is the processor of the Map ``Items``; addresses nest."""
    scope = definition
    for state_name, branch in address:
        state = scope["States"][state_name]
        scope = state["Branches"][branch] if state["Type"] == "Parallel" else processor_of(state)
    return scope
