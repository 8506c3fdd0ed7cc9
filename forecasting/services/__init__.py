"""Writes of forecasting: pipeline definitions and their runs (start, cancel, redrive), and run execution.

``execution`` moves runs from state to state; this module holds the business actions callers use.
"""

from __future__ import annotations

import contextlib
import json
import time

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from forecasting.engine import REGISTRY, DefinitionInvalid, Problem, StepError
from forecasting.engine.definition import check
from forecasting.engine.errors import error_of
from forecasting.engine.registry import UnknownStep
from forecasting.errors import (
    DefinitionRejected,
    InvalidPipelineName,
    PipelineNotFound,
    RunNameTaken,
    RunNotFound,
    RunNotRedrivable,
    RunNotRunning,
)
from forecasting.models import RUN_NAME, Pipeline, Run, RunStatus, validate_pipeline_name
from forecasting.services import execution
from forecasting.services.execution import Outcome

__all__ = [
    "cancel_run",
    "definition_problems",
    "execution",
    "redrive_run",
    "run_attempt",
    "run_attempts",
    "save_pipeline",
    "start_run",
]

MAX_INPUT_BYTES = 256 * 1024  # Step Functions' limit on an execution's input and a state's data


def definition_problems(definition) -> list[Problem]:
    """Every problem of ``definition``, including Task resources no step is registered for."""
    problems = list(check(definition))
    if not problems:
        problems.extend(_unknown_resources(definition, ""))
    return problems


def _unknown_resources(scope: dict, prefix: str):
    for name, state in scope["States"].items():
        if state["Type"] == "Task" and state["Resource"] not in REGISTRY:
            yield Problem(prefix + name, "Resource", f"no step is registered as {state['Resource']!r}")
        for index, branch in enumerate(state.get("Branches") or []):
            yield from _unknown_resources(branch, f"{prefix}{name}/Branches[{index}]/")
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from _unknown_resources(processor, f"{prefix}{name}/ItemProcessor/")


def _reject(problems: list[Problem]) -> DefinitionRejected:
    return DefinitionRejected(
        f"{len(problems)} problem(s): " + "; ".join(str(problem) for problem in problems[:5]),
        errors={"definition": [problem.as_dict() for problem in problems]},
    )


@transaction.atomic
def save_pipeline(*, name: str, definition: dict, description: str = "") -> Pipeline:
    """Create or replace the pipeline ``name``; the definition is validated first (nothing saved if not)."""
    try:
        validate_pipeline_name(name)
    except ValidationError as exc:
        raise InvalidPipelineName(exc.messages[0], errors={"name": exc.messages}) from None
    problems = definition_problems(definition)
    if problems:
        raise _reject(problems)
    pipeline, _ = Pipeline.objects.update_or_create(
        name=name, defaults={"definition": definition, "description": description}
    )
    return pipeline


def start_run(*, pipeline: str, input: object = None, name: str | None = None) -> tuple[Run, bool]:
    """Start a run of ``pipeline`` (created, True); a run of the same name and input answers that run (False).

    The name is the idempotency key (Step Functions' execution name): the same name with another input is
    ``RunNameTaken``. Without a name, one is made from the time.
    """
    data = {} if input is None else input
    if len(json.dumps(data)) > MAX_INPUT_BYTES:
        raise DefinitionRejected(
            "The input is too large.", errors={"input": [f"At most {MAX_INPUT_BYTES} bytes of JSON."]}
        )
    name = name or f"run-{timezone.now():%Y%m%dT%H%M%S%f}"
    if not RUN_NAME.match(name):
        raise DefinitionRejected(
            "Not a valid run name.", errors={"name": ["1-80 characters: letters, digits, '-', '_', '.', ':'."]}
        )
    found = Pipeline.objects.filter(name=pipeline).first()
    if found is None:
        raise PipelineNotFound(f"No pipeline is named {pipeline!r}.")
    try:
        with transaction.atomic():
            run = Run.objects.create(pipeline=found, name=name, definition=found.definition, input=data)
            execution.start(run)
    except IntegrityError:
        run = Run.objects.select_related("pipeline").get(pipeline=found, name=name)
        if run.input != data:
            raise RunNameTaken(
                f"Run {name!r} of {pipeline!r} exists with another input.", errors={"name": ["Already used."]}
            ) from None
        return run, False
    return run, True


def _run(run_id) -> Run:
    try:
        return Run.objects.select_related("pipeline").get(id=run_id)
    except (Run.DoesNotExist, ValidationError, ValueError):
        raise RunNotFound(f"No run {run_id}.") from None


def cancel_run(*, run_id) -> Run:
    """Abort a running run: its scheduled and running Task attempts are revoked, nothing new starts."""
    run = _run(run_id)
    if not execution.cancel(run.id):
        raise RunNotRunning(f"Run {run.name} is {run.status}, not running.")
    return _run(run_id)


def redrive_run(*, run_id) -> Run:
    """Resume a failed or aborted run from its unsuccessful states (same run id; succeeded outputs kept)."""
    run = _run(run_id)
    if run.status not in (RunStatus.FAILED, RunStatus.ABORTED):
        raise RunNotRedrivable(
            f"Run {run.name} is {run.status}: only a failed or aborted run can be redriven.",
            errors={"status": [f"Is {run.status}."]},
        )
    days = int(getattr(settings, "PIPELINE_REDRIVE_DAYS", 14))
    if run.stopped_at and (timezone.now() - run.stopped_at).days >= days:
        raise RunNotRedrivable(f"Run {run.name} stopped more than {days} days ago.")
    execution.redrive(run.id)
    return _run(run_id)


def run_attempt(attempt_id: int, *, worker: str = "") -> None:
    """Run one Task attempt (called by the ``forecast`` queue's worker): claim it, call its step, record it.

    A step's exception is data, never the Celery task's failure: the outcome is recorded and Retry/Catch
    decide. ``TimeoutSeconds`` is the Celery soft time limit of the message (``States.Timeout``).
    """
    attempt = execution.claim_attempt(attempt_id, worker=worker)
    if attempt is None:
        return
    execution.finish_attempt(attempt_id, _call(attempt))


def run_attempts(attempt_ids: list[int], *, worker: str = "", follow: bool = False) -> None:
    """Run attempts sent in one message, in chunks that grow fourfold while they are quick (1, 4, 16…).

    Each chunk is claimed in one transaction and its outcomes recorded in another (then one join per
    parent), instead of three transactions per attempt. With ``follow``, the quick attempts those
    transactions schedule (a sequence's next Task) join this message instead of being sent. Once the
    message has run ``batch_seconds()``, the attempts not started yet are sent as messages of their own,
    so slow steps still spread over the workers.
    """
    started = time.monotonic()
    remaining = list(attempt_ids)
    size = 1
    limited = False
    with execution.following() if follow else contextlib.nullcontext([]) as followed:
        while remaining:
            chunk, remaining = remaining[:size], remaining[size:]
            chunk_started = time.monotonic()
            claimed = execution.claim_attempts(chunk, worker=worker)
            if claimed:
                execution.finish_attempts({attempt.id: _call(attempt) for attempt in claimed})
            limited = limited or any(attempt.timeout_seconds for attempt in claimed)
            if followed and limited:  # a message with an attempt's TimeoutSeconds as its limit runs nothing else
                execution.send_separately(followed)
            else:
                remaining.extend(followed)
            followed.clear()
            now = time.monotonic()
            if remaining and now - started > execution.batch_seconds():
                execution.send_separately(remaining)
                return
            if now - chunk_started < execution.batch_seconds() / 4:
                size *= 4


def _call(attempt) -> Outcome:
    """Call the attempt's step on its input: its result, or its failure as an outcome."""
    try:
        function = REGISTRY.get(attempt.resource)
    except UnknownStep:
        return execution.unknown_step_outcome(attempt.resource)
    try:
        result = function(attempt.input)
        json.dumps(result)
    except SoftTimeLimitExceeded:
        return Outcome(
            error="States.Timeout", cause=f"past TimeoutSeconds ({attempt.timeout_seconds} s)", timed_out=True
        )
    except StepError as exc:
        return Outcome(error=exc.error, cause=exc.cause)
    except Exception as exc:  # any failure of a step is its outcome: Retry and Catch decide
        error, cause = error_of(exc)
        return Outcome(error=error, cause=cause)
    return Outcome(result=result)


__all__ += ["DefinitionInvalid"]
