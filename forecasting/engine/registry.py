"""Task resources: Python functions registered by name with ``@step("forecast.load_history")``.

A Task state's ``Resource`` is such a name. A step takes the Task's effective input (JSON data) and returns
JSON data; raising fails the Task with the exception's class name as ``Error`` and its text as ``Cause``
(``StepError(error, cause)`` chooses the name). The engine imports no step: apps register theirs on import.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from forecasting.engine.errors import EngineError

NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
StepFunction = Callable[[Any], Any]


class UnknownStep(EngineError):
    """No step is registered under that name."""


class StepRegistry:
    def __init__(self) -> None:
        self._steps: dict[str, StepFunction] = {}

    def step(self, name: str) -> Callable[[StepFunction], StepFunction]:
        """Register the decorated function as the Task resource ``name`` (dotted lower-case words)."""
        if not NAME.match(name) or len(name) > 120:
            raise ValueError(f"a step name is dotted lower-case words like 'forecast.load_history', got {name!r}")

        def register(function: StepFunction) -> StepFunction:
            existing = self._steps.get(name)
            if existing is not None and _qualified(existing) != _qualified(function):
                raise ValueError(f"step {name!r} is already registered by {_qualified(existing)}")
            self._steps[name] = function
            return function

        return register

    def get(self, name: str) -> StepFunction:
        try:
            return self._steps[name]
        except KeyError:
            raise UnknownStep(f"no step is registered as {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._steps

    def names(self) -> list[str]:
        return sorted(self._steps)

    def unregister(self, name: str) -> None:
        self._steps.pop(name, None)


def _qualified(function: Callable) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}"


REGISTRY = StepRegistry()
step = REGISTRY.step
