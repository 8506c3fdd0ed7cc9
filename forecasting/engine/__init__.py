"""The pipeline engine: Amazon States Language state machines, validated, and run locally or on Celery.

It imports no step and no other app: steps register themselves with ``@step("name")``. Pure parts:
``definition`` (load and validate), ``builder``, ``jsonpath``, ``intrinsics``, ``machine`` (next-state logic),
``local`` (a synchronous runner). The Celery executor (models, services, tasks) lives beside them in the
``forecasting`` app and drives the same ``machine`` functions.
"""

from forecasting.engine.definition import load, validate
from forecasting.engine.errors import DefinitionInvalid, Problem, StatesError, StepError
from forecasting.engine.local import Execution, LocalRunner, run_local
from forecasting.engine.registry import REGISTRY, StepRegistry, step

__all__ = [
    "REGISTRY",
    "DefinitionInvalid",
    "Execution",
    "LocalRunner",
    "Problem",
    "StatesError",
    "StepError",
    "StepRegistry",
    "load",
    "run_local",
    "step",
    "validate",
]
