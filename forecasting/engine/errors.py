"""The engine's errors: a definition that does not validate, and the runtime errors of the States Language.

``DefinitionInvalid`` carries every problem found (state, field, message), so a caller shows them all at once.
``StatesError`` is a runtime error with the States Language's ``Error`` name and ``Cause`` text; it is what
Retry and Catch match on.
"""

from __future__ import annotations

from dataclasses import dataclass


class EngineError(Exception):
    """Base of every error raised by the engine."""


@dataclass(frozen=True)
class Problem:
    """One reason a definition is invalid: where (``state`` path like ``Fanout/Branches[0]/Load``), which field, why."""

    state: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"state {self.state!r}" if self.state else "definition"
        return f"{where}, field {self.field!r}: {self.message}"

    def as_dict(self) -> dict:
        return {"state": self.state, "field": self.field, "message": self.message}


class DefinitionInvalid(EngineError):
    """The definition is not a valid state machine; ``problems`` lists every reason found."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("; ".join(str(problem) for problem in self.problems))


class PathError(EngineError):
    """A JSONPath that does not parse, or that selects nothing in the data it is applied to."""


class IntrinsicError(EngineError):
    """An intrinsic function call that does not parse or cannot be evaluated."""


class StatesError(EngineError):
    """A runtime error of a state: ``error`` is the name Retry/Catch match on, ``cause`` the human text."""

    def __init__(self, error: str, cause: str = ""):
        self.error = error
        self.cause = cause
        super().__init__(f"{error}: {cause}" if cause else error)


class StepError(StatesError):
    """Raised by a step function to fail with a chosen error name (otherwise the exception's class name is used)."""


# The predefined error names of the States Language (states-language.net, "Errors").
ALL = "States.ALL"
TASK_FAILED = "States.TaskFailed"
TIMEOUT = "States.Timeout"
HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
RUNTIME = "States.Runtime"
DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"
PARAMETER_PATH_FAILURE = "States.ParameterPathFailure"
RESULT_PATH_MATCH_FAILURE = "States.ResultPathMatchFailure"
BRANCH_FAILED = "States.BranchFailed"
NO_CHOICE_MATCHED = "States.NoChoiceMatched"
INTRINSIC_FAILURE = "States.IntrinsicFailure"
EXCEED_TOLERATED_FAILURE_THRESHOLD = "States.ExceedToleratedFailureThreshold"
UNCATCHABLE = frozenset({RUNTIME, DATA_LIMIT_EXCEEDED})


def error_of(exc: BaseException) -> tuple[str, str]:
    """The (Error, Cause) pair a step's exception stands for: a ``StatesError`` names its own, others their class."""
    if isinstance(exc, StatesError):
        return exc.error, exc.cause
    return type(exc).__name__, str(exc)
