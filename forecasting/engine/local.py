"""A synchronous, in-process runner of a state machine, for tests and for trying a definition.

It drives the same pure logic as the Celery executor (``machine.py``) but runs each Task by calling its step
function directly, runs Parallel branches and Map items one after the other, and never sleeps: every wait
(Wait states and retry delays) is recorded in ``Execution.waits`` and skipped. ``TimeoutSeconds`` is checked
after the call returns (a step that ran longer fails with ``States.Timeout``).
"""

from __future__ import annotations

import copy
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from forecasting.engine import definition as definitions
from forecasting.engine import machine
from forecasting.engine.errors import TASK_FAILED, StatesError, error_of
from forecasting.engine.registry import REGISTRY, StepRegistry, UnknownStep


@dataclass
class Execution:
    status: str  # SUCCEEDED | FAILED
    output: Any = None
    error: str | None = None
    cause: str | None = None
    events: list[dict] = field(default_factory=list)
    waits: list[tuple[str, float]] = field(default_factory=list)  # (state, seconds), in order

    def event_types(self) -> list[str]:
        return [event["type"] for event in self.events]


class _ScopeFailed(Exception):
    def __init__(self, error: str, cause: str):
        self.error, self.cause = error, cause


class LocalRunner:
    """Runs definitions synchronously. ``steps`` maps resource names to functions (default: the registry)."""

    def __init__(
        self,
        steps: Mapping[str, Callable] | StepRegistry | None = None,
        *,
        rng: random.Random | None = None,
        now: Callable[[], datetime] | None = None,
    ):
        self.steps = steps if steps is not None else REGISTRY
        self.rng = rng or random.Random()  # noqa: S311 (jitter, not secrets)
        self.now = now or (lambda: datetime.now(UTC))

    def run(self, definition: dict | str, input: Any = None, *, name: str = "local") -> Execution:
        definition = definitions.load(definition)
        execution = Execution(status="RUNNING")
        self._execution = execution
        start = self.now().isoformat()
        self._context = machine.context_object(
            execution_id=f"local:{uuid.uuid4()}",
            execution_name=name,
            start_time=start,
            execution_input=copy.deepcopy(input if input is not None else {}),
            machine_name="local",
        )
        data = copy.deepcopy(input if input is not None else {})
        self._event("ExecutionStarted", "", input=data)
        try:
            output = self._run_scope(definition, data, "")
        except _ScopeFailed as failed:
            execution.status, execution.error, execution.cause = "FAILED", failed.error, failed.cause
            self._event("ExecutionFailed", "", error=failed.error, cause=failed.cause)
        else:
            execution.status, execution.output = "SUCCEEDED", output
            self._event("ExecutionSucceeded", "", output=output)
        return execution

    def _event(self, kind: str, state: str, **details: Any) -> None:
        self._execution.events.append({"type": kind, "state": state, **details})

    def _context_for(self, name: str, retry_count: int = 0, extra: dict | None = None) -> dict:
        context = copy.deepcopy(self._context)
        context["State"] = {"Name": name, "EnteredTime": self.now().isoformat(), "RetryCount": retry_count}
        if extra:
            context.update(extra)
        return context

    def _run_scope(self, scope: dict, data: Any, where: str, extra_context: dict | None = None) -> Any:
        name = scope["StartAt"]
        while True:
            state = scope["States"][name]
            kind = state["Type"]
            self._event(f"{kind}StateEntered", where + name, input=data)
            if kind in machine.INLINE_TYPES:
                try:
                    step = machine.inline_step(state, data, self._context_for(name, 0, extra_context), now=self.now())
                except StatesError as exc:
                    raise _ScopeFailed(exc.error, exc.cause) from None
                if kind == "Wait":
                    self._execution.waits.append((where + name, step.wait))
                following, output = step.next, step.output
            else:
                following, output = self._run_with_errors(name, state, data, where, extra_context)
            self._event(f"{kind}StateExited", where + name, output=output)
            if following is None:
                return output
            name, data = following, output

    def _run_with_errors(self, name: str, state: dict, data: Any, where: str, extra_context: dict | None):
        counts: list[int] = []
        retries = 0
        while True:
            context = self._context_for(name, retries, extra_context)
            try:
                output = self._attempt(name, state, data, where, context)
                return state.get("Next"), output
            except StatesError as exc:
                error, cause = exc.error, exc.cause
            decision = machine.handle_error(state, data, error, cause, counts, rng=self.rng)
            if isinstance(decision, machine.Retry):
                counts = decision.counts
                retries += 1
                self._execution.waits.append((where + name, decision.delay))
                continue
            if isinstance(decision, machine.Caught):
                return decision.next, decision.output
            raise _ScopeFailed(decision.error, decision.cause)

    def _attempt(self, name: str, state: dict, data: Any, where: str, context: dict) -> Any:
        kind = state["Type"]
        effective = machine.effective_input(state, data, context)
        if kind == "Task":
            result = self._call(name, state, effective, where)
        elif kind == "Parallel":
            result = self._parallel(name, state, effective, where)
        else:
            result = self._map(name, state, effective, where, context)
        return machine.state_output(state, data, result, context)

    def _call(self, name: str, state: dict, effective: Any, where: str) -> Any:
        resource = state["Resource"]
        self._event("TaskScheduled", where + name, resource=resource, parameters=effective)
        try:
            function = self.steps.get(resource) if isinstance(self.steps, StepRegistry) else self.steps[resource]
        except (UnknownStep, KeyError):
            self._event("TaskFailed", where + name, error=TASK_FAILED, cause=f"unknown resource {resource!r}")
            raise StatesError(TASK_FAILED, f"no step is registered as {resource!r}") from None
        self._event("TaskStarted", where + name)
        started = time.monotonic()
        try:
            result = function(copy.deepcopy(effective))
        except Exception as exc:  # a step's failure is data: Retry/Catch decide
            error, cause = error_of(exc)
            self._event("TaskFailed", where + name, error=error, cause=cause)
            raise StatesError(error, cause) from None
        limit = state.get("TimeoutSeconds")
        if limit is not None and time.monotonic() - started > limit:
            timeout = machine.timeout_error(limit)
            self._event("TaskTimedOut", where + name, error=timeout.error, cause=timeout.cause)
            raise timeout
        self._event("TaskSucceeded", where + name, output=result)
        return result

    def _parallel(self, name: str, state: dict, effective: Any, where: str) -> list:
        self._event("ParallelStateStarted", where + name)
        outputs = []
        for index, branch in enumerate(state["Branches"]):
            try:
                outputs.append(self._run_scope(branch, copy.deepcopy(effective), f"{where}{name}/Branches[{index}]/"))
            except _ScopeFailed as failed:
                self._event("ParallelStateFailed", where + name, error=failed.error, cause=failed.cause)
                raise StatesError(failed.error, failed.cause) from None
        self._event("ParallelStateSucceeded", where + name)
        return outputs

    def _map(self, name: str, state: dict, effective: Any, where: str, context: dict) -> list:
        items = machine.map_items(state, effective)
        self._event("MapStateStarted", where + name, length=len(items))
        processor = definitions.processor_of(state)
        outputs: list = []
        failed = 0
        first_error = None
        for index, value in enumerate(items):
            item_input = machine.map_item_input(state, effective, index, value, context)
            self._event("MapIterationStarted", where + name, index=index)
            try:
                outputs.append(self._run_scope(processor, item_input, f"{where}{name}/{index}/"))
                self._event("MapIterationSucceeded", where + name, index=index)
            except _ScopeFailed as item_failed:
                self._event("MapIterationFailed", where + name, index=index, error=item_failed.error)
                failed += 1
                first_error = first_error or (item_failed.error, item_failed.cause)
                if machine.tolerance_exceeded(state, effective, failed, len(items)):
                    error, cause = machine.map_failure(state, effective, first_error, failed, len(items))
                    self._event("MapStateFailed", where + name, error=error, cause=cause)
                    raise StatesError(error, cause) from None
                outputs.append(machine.tolerated_output(item_failed.error, item_failed.cause))
        self._event("MapStateSucceeded", where + name)
        return outputs


def run_local(definition: dict | str, input: Any = None, *, steps=None, rng=None, now=None) -> Execution:
    """Run ``definition`` on ``input`` synchronously (see ``LocalRunner``)."""
    return LocalRunner(steps, rng=rng, now=now).run(definition, input)
