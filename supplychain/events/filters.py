"""Subscription filter policies: the subset of SNS payload filtering a supply chain needs.

A policy maps payload attributes (nested with dicts) to a list of conditions; every attribute must
match (AND) and any one condition per attribute suffices (OR). Conditions:
exact values (``"ham"``, ``3``), ``{"prefix": "ham-"}``, ``{"numeric": [">=", 0, "<", 10]}`` and
``{"exists": true|false}``. A payload attribute holding a list matches if any element does.
"""

from __future__ import annotations

import operator
from typing import Any

_MISSING = object()
_NUMERIC_OPERATORS = {"=": operator.eq, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def validate_policy(policy: Any, path: str = "") -> None:
    """Raise ``ValueError`` naming the attribute when a policy is malformed."""
    if not isinstance(policy, dict):
        raise ValueError(f"{path or 'policy'}: must be an object")
    for key, rule in policy.items():
        where = f"{path}.{key}" if path else key
        if isinstance(rule, dict):
            validate_policy(rule, where)
            continue
        if not isinstance(rule, list) or not rule:
            raise ValueError(f"{where}: must be a non-empty list of conditions or a nested object")
        for condition in rule:
            _validate_condition(condition, where)


def _validate_condition(condition: Any, where: str) -> None:
    if isinstance(condition, str | int | float | bool) or condition is None:
        return
    if not isinstance(condition, dict) or len(condition) != 1:
        raise ValueError(f"{where}: a condition is a value or one of prefix, numeric, exists")
    ((name, argument),) = condition.items()
    if name == "prefix" and isinstance(argument, str):
        return
    if name == "exists" and isinstance(argument, bool):
        return
    if name == "numeric" and isinstance(argument, list) and argument and len(argument) % 2 == 0:
        pairs = zip(argument[::2], argument[1::2], strict=True)
        if all(op in _NUMERIC_OPERATORS and isinstance(value, int | float) for op, value in pairs):
            return
    raise ValueError(f"{where}: bad condition {condition!r}")


def matches(policy: dict, payload: Any) -> bool:
    """True when ``payload`` satisfies every attribute of ``policy`` (an empty policy matches all)."""
    for key, rule in policy.items():
        value = payload.get(key, _MISSING) if isinstance(payload, dict) else _MISSING
        if isinstance(rule, dict):
            if value is _MISSING or not matches(rule, value):
                return False
        elif not any(_condition_matches(condition, value) for condition in rule):
            return False
    return True


def _condition_matches(condition: Any, value: Any) -> bool:
    if isinstance(condition, dict) and "exists" in condition:
        return (value is not _MISSING) == condition["exists"]
    if value is _MISSING:
        return False
    values = value if isinstance(value, list) else [value]
    return any(_single_matches(condition, item) for item in values)


def _single_matches(condition: Any, value: Any) -> bool:
    if isinstance(condition, dict):
        if "prefix" in condition:
            return isinstance(value, str) and value.startswith(condition["prefix"])
        if "numeric" in condition:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
            argument = condition["numeric"]
            return all(
                _NUMERIC_OPERATORS[op](value, bound) for op, bound in zip(argument[::2], argument[1::2], strict=True)
            )
        return False
    if isinstance(condition, bool) or isinstance(value, bool):
        return condition is value
    return condition == value
