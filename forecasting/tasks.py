"""Celery entry points of forecasting (queue ``forecast``, routed by the ``forecasting.*`` prefix in settings)."""

from __future__ import annotations

import os

from celery import shared_task
from django.utils import timezone

from forecasting import services

ENGINE_TASK = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(name="forecasting.run_attempt", bind=True, **ENGINE_TASK)
def run_attempt(self, attempt_id: int) -> None:
    """Run one attempt of a Task state; its outcome is recorded as data (this task never raises for it).

    It also runs the quick attempts that follow (a sequence's next Task), within ``PIPELINE_BATCH_SECONDS``,
    unless its attempt has ``TimeoutSeconds`` (then this message's time limit is that attempt's).
    """
    services.run_attempts([attempt_id], worker=f"{self.request.hostname or ''} pid {os.getpid()}", follow=True)


@shared_task(name="forecasting.run_attempts", bind=True, **ENGINE_TASK)
def run_attempts(self, attempt_ids: list[int]) -> None:
    """Run several attempts of quick Task states sent together (a Map's items); see ``services.run_attempts``."""
    services.run_attempts(attempt_ids, worker=f"{self.request.hostname or ''} pid {os.getpid()}", follow=True)


@shared_task(name="forecasting.resume_branch", **ENGINE_TASK)
def resume_branch(branch_id: int, visit: int) -> None:
    """Go on after a Wait state, or retry a Parallel/Map state, once its delay is over."""
    services.execution.resume(branch_id, visit)


@shared_task(name="forecasting.sweep", ignore_result=True)
def sweep() -> dict:
    """Beat's safety net for runs: due messages, dead workers' attempts, timeouts, lost joins."""
    return services.execution.sweep()


@shared_task(name="forecasting.start_scheduled", ignore_result=True)
def start_scheduled(pipeline: str, input: dict | None = None) -> str:
    """Start a run from a django-celery-beat schedule (args: the pipeline name; kwargs: ``input``)."""
    run, _ = services.start_run(pipeline=pipeline, input=input, name=f"scheduled-{timezone.now():%Y%m%dT%H%M%S}")
    return str(run.id)
