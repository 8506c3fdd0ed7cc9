"""Execution of pipeline runs on Celery: the only place that moves a run's branches from state to state.

- ``transitions``: every transition, inside one database transaction holding the branch's row lock, driven
  by the pure logic of ``forecasting.engine.machine`` (Parallel and Map children joined under the parent's lock);
- ``entries``: the entry points, each its own transaction (start, claim and finish attempts, resume, cancel,
  redrive);
- ``dispatch``: what a transaction decided to send after its commit, and the dispatcher that sends it
  (``dispatch.dispatcher``: tests swap in an in-process one);
- ``history``: the history rows, one round trip per transaction;
- ``sweep``: beat's safety net (due waits and retries, lost attempts and joins, timeouts).
"""

from forecasting.services.execution.dispatch import (
    CeleryDispatcher,
    Effects,
    batch_messages,
    batch_seconds,
    batch_size,
    following,
    send_separately,
)
from forecasting.services.execution.entries import (
    Outcome,
    cancel,
    claim_attempt,
    claim_attempts,
    finish_attempt,
    finish_attempts,
    redrive,
    resume,
    start,
    unknown_step_outcome,
)
from forecasting.services.execution.history import HISTORY_FIELDS, write_history
from forecasting.services.execution.sweep import sweep
from forecasting.services.execution.transitions import countdown_max, task_lease

__all__ = [
    "HISTORY_FIELDS",
    "CeleryDispatcher",
    "Effects",
    "Outcome",
    "batch_messages",
    "batch_seconds",
    "batch_size",
    "cancel",
    "claim_attempt",
    "claim_attempts",
    "countdown_max",
    "finish_attempt",
    "finish_attempts",
    "following",
    "redrive",
    "resume",
    "send_separately",
    "start",
    "sweep",
    "task_lease",
    "unknown_step_outcome",
    "write_history",
]
