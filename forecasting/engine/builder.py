"""A small Python builder for state machines: it produces the same Amazon States Language JSON one would write.

    machine = (
        Machine(comment="Order volume")
        .task("CreatePredictor", "forecast.create_predictor",
              retry=[retry(["ResourcePending"], interval=1, max_attempts=100, backoff_rate=1.0)])
        .choice("ByWeekday", [when("$.weekday", StringEquals="Friday", next="FactoryA")], default="FactoryB")
        .task("FactoryA", "forecast.network_a", end=True)
        .task("FactoryB", "forecast.network_b", end=True)
    )
    machine.build()   # the validated definition (a dict); machine.to_json() for the text

States are added in order. A state given neither ``next`` nor ``end`` continues to the state added after it
(the last one ends). Other keyword arguments are the state's fields in snake case (``input_path``,
``result_path=None`` for JSON null, ``items_path``, ``max_concurrency``, ``timeout_seconds``…); Choice rules
take the States Language operator names as written (``NumericGreaterThan=3``).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from forecasting.engine import definition as definitions

_SPECIAL = {"item_selector": "ItemSelector", "items_path": "ItemsPath"}
_UNSET = object()


def _field(name: str) -> str:
    return _SPECIAL.get(name) or "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _fields(options: dict) -> dict:
    return {_field(name): value for name, value in options.items()}


def retry(
    errors: list[str],
    *,
    interval: int | None = None,
    max_attempts: int | None = None,
    backoff_rate: float | None = None,
    max_delay: int | None = None,
    jitter: str | None = None,
) -> dict:
    """A retrier; fields left out take the specification's defaults (1 s, 3 attempts, rate 2.0, no jitter)."""
    retrier: dict[str, Any] = {"ErrorEquals": list(errors)}
    for key, value in (
        ("IntervalSeconds", interval),
        ("MaxAttempts", max_attempts),
        ("BackoffRate", backoff_rate),
        ("MaxDelaySeconds", max_delay),
        ("JitterStrategy", jitter),
    ):
        if value is not None:
            retrier[key] = value
    return retrier


def catch(errors: list[str], next: str, *, result_path: Any = _UNSET) -> dict:
    """A catcher going to ``next``; ``result_path`` (default ``$``) places ``{"Error", "Cause"}``."""
    catcher: dict[str, Any] = {"ErrorEquals": list(errors), "Next": next}
    if result_path is not _UNSET:
        catcher["ResultPath"] = result_path
    return catcher


def when(variable: str, *, next: str | None = None, **comparison: Any) -> dict:
    """A comparison rule: ``when("$.weekday", StringEquals="Friday", next="FactoryA")``."""
    if len(comparison) != 1:
        raise ValueError("a rule has exactly one comparison operator")
    rule = {"Variable": variable, **comparison}
    return _with_next(rule, next)


def all_of(*rules: dict, next: str | None = None) -> dict:
    return _with_next({"And": [_inner(rule) for rule in rules]}, next)


def any_of(*rules: dict, next: str | None = None) -> dict:
    return _with_next({"Or": [_inner(rule) for rule in rules]}, next)


def not_(rule: dict, *, next: str | None = None) -> dict:
    return _with_next({"Not": _inner(rule)}, next)


def _inner(rule: dict) -> dict:
    return {key: value for key, value in rule.items() if key != "Next"}


def _with_next(rule: dict, next: str | None) -> dict:
    if next is not None:
        rule["Next"] = next
    return rule


class Machine:
    """A state machine (or a Parallel branch, or a Map's item processor) built state by state."""

    def __init__(self, *, comment: str | None = None, start_at: str | None = None, timeout_seconds: int | None = None):
        self.comment = comment
        self.start_at = start_at
        self.timeout_seconds = timeout_seconds
        self._states: list[tuple[str, dict, bool]] = []  # (name, state, explicit transition)

    def _add(self, name: str, kind: str, fields: dict, *, next: str | None, end: bool, terminal: bool = False):
        if any(existing == name for existing, _, _ in self._states):
            raise ValueError(f"state {name!r} is added twice")
        state = {"Type": kind, **fields}
        explicit = terminal or next is not None or end
        if next is not None:
            state["Next"] = next
        elif end:
            state["End"] = True
        self._states.append((name, state, explicit))
        return self

    def task(self, name: str, resource: str, *, next=None, end=False, retry=None, catch=None, **options) -> Machine:
        fields = {"Resource": resource, **_fields(options)}
        _errors(fields, retry, catch)
        return self._add(name, "Task", fields, next=next, end=end)

    def pass_(self, name: str, *, next=None, end=False, **options) -> Machine:
        return self._add(name, "Pass", _fields(options), next=next, end=end)

    def wait(self, name: str, *, next=None, end=False, **options) -> Machine:
        return self._add(name, "Wait", _fields(options), next=next, end=end)

    def choice(self, name: str, rules: list[dict], *, default: str | None = None, **options) -> Machine:
        fields = {"Choices": copy.deepcopy(rules), **_fields(options)}
        if default is not None:
            fields["Default"] = default
        return self._add(name, "Choice", fields, next=None, end=False, terminal=True)

    def succeed(self, name: str, **options) -> Machine:
        return self._add(name, "Succeed", _fields(options), next=None, end=False, terminal=True)

    def fail(self, name: str, *, error: str | None = None, cause: str | None = None, **options) -> Machine:
        fields = _fields(options)
        if error is not None:
            fields["Error"] = error
        if cause is not None:
            fields["Cause"] = cause
        return self._add(name, "Fail", fields, next=None, end=False, terminal=True)

    def parallel(self, name: str, branches: list[Machine], *, next=None, end=False, retry=None, catch=None, **options):
        fields = {"Branches": [branch.scope() for branch in branches], **_fields(options)}
        _errors(fields, retry, catch)
        return self._add(name, "Parallel", fields, next=next, end=end)

    def map(self, name: str, processor: Machine, *, next=None, end=False, retry=None, catch=None, **options):
        fields = {"ItemProcessor": processor.scope(), **_fields(options)}
        _errors(fields, retry, catch)
        return self._add(name, "Map", fields, next=next, end=end)

    def scope(self) -> dict:
        """The JSON of this machine as a scope (StartAt, States): the first state unless ``start_at`` is given."""
        if not self._states:
            raise ValueError("a state machine has at least one state")
        states = {}
        for position, (name, state, explicit) in enumerate(self._states):
            state = copy.deepcopy(state)
            if not explicit:
                if position + 1 < len(self._states):
                    state["Next"] = self._states[position + 1][0]
                else:
                    state["End"] = True
            states[name] = state
        scope: dict[str, Any] = {}
        if self.comment:
            scope["Comment"] = self.comment
        scope["StartAt"] = self.start_at or self._states[0][0]
        scope["States"] = states
        return scope

    def build(self) -> dict:
        """The validated definition; raises ``DefinitionInvalid`` naming each problem."""
        definition = self.scope()
        if self.timeout_seconds is not None:
            definition["TimeoutSeconds"] = self.timeout_seconds
        return definitions.validate(definition)

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.build(), indent=indent)


def _errors(fields: dict, retriers: list[dict] | None, catchers: list[dict] | None) -> None:
    if retriers:
        fields["Retry"] = copy.deepcopy(retriers)
    if catchers:
        fields["Catch"] = copy.deepcopy(catchers)
