"""What a transaction decided to send after its commit, and how it goes out (Celery, batched; tests swap in
another ``dispatcher``): the messages of the executor."""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone

from forecasting.models import AttemptStatus, StateAttempt


@dataclass
class Effects:
    """Messages to send and joins to run once the transaction that decided them has committed."""

    attempts: list[tuple[int, str, float, int | None]] = field(default_factory=list)
    resumes: list[tuple[int, int, float]] = field(default_factory=list)
    revokes: list[str] = field(default_factory=list)
    joins: list[int] = field(default_factory=list)
    batch: bool = True  # quick attempts may share messages (not when a batch sends its rest one by one)


def batch_size() -> int:
    """At most this many attempts ride in one message (``forecasting.run_attempts``)."""
    return max(1, int(getattr(settings, "PIPELINE_BATCH_SIZE", 25)))


def batch_messages() -> int:
    """Attempts scheduled together are spread over at least this many messages (one each when fewer)."""
    return max(1, int(getattr(settings, "PIPELINE_BATCH_MESSAGES", 16)))


def batch_seconds() -> float:
    """A batch that has run this long sends the attempts it has not started as messages of their own."""
    return float(getattr(settings, "PIPELINE_BATCH_SECONDS", 1.0))


class CeleryDispatcher:
    """Sends the engine's messages through Celery (tests may swap in another dispatcher).

    Attempts due now and without ``TimeoutSeconds`` (the time limit is per message) that one transaction
    scheduled together, a Map's items, are spread over ``batch_messages()`` messages or more, at most
    ``batch_size()`` each (16 or fewer go one per message, so a few slow items still run side by side);
    all go through one producer connection. A message costs the worker about 3-4 ms of CPU here, more
    than a no-op step.
    """

    def send(self, effects: Effects) -> None:
        from forecasting import tasks
        from supplychain.celery import app

        if effects.revokes:
            app.control.revoke(effects.revokes, terminate=True)
        quick = [attempt for attempt in effects.attempts if attempt[2] <= 0 and not attempt[3]]
        size = min(batch_size(), -(-len(quick) // batch_messages()))
        if not effects.batch or size < 2:
            quick = []
        batched = {attempt[0] for attempt in quick}
        single = [attempt for attempt in effects.attempts if attempt[0] not in batched]
        if not (effects.attempts or effects.resumes):
            return
        with app.producer_or_acquire() as producer:
            if quick:
                ids = [attempt_id for attempt_id, *_ in quick]
                for at in range(0, len(ids), size):
                    tasks.run_attempts.apply_async((ids[at : at + size],), producer=producer)
            for attempt_id, task_id, countdown, timeout in single:
                options: dict[str, Any] = {"task_id": task_id, "producer": producer}
                if countdown > 0:
                    options["countdown"] = countdown
                if timeout:
                    options["soft_time_limit"] = timeout
                    options["time_limit"] = timeout + 10
                tasks.run_attempt.apply_async((attempt_id,), **options)
            for branch_id, visit, countdown in effects.resumes:
                tasks.resume_branch.apply_async(
                    (branch_id, visit), countdown=max(countdown, 0) or None, producer=producer
                )


dispatcher: Any = CeleryDispatcher()


def send_separately(attempt_ids: list[int]) -> None:
    """Send still-scheduled attempts of a batch as one message each (the batch ran past ``batch_seconds()``)."""
    now = timezone.now()
    scheduled = StateAttempt.objects.filter(id__in=attempt_ids, status=AttemptStatus.SCHEDULED)
    rows = list(scheduled.order_by("id").values_list("id", "celery_task_id", "timeout_seconds"))
    scheduled.update(sent_at=now)
    dispatcher.send(Effects(attempts=[(id_, task_id, 0.0, timeout) for id_, task_id, timeout in rows], batch=False))


_followed: ContextVar[list[int] | None] = ContextVar("pipeline_followed", default=None)


@contextmanager
def following():
    """Within it, the first quick attempt (due now, no ``TimeoutSeconds``) each of this process's transactions
    schedules is handed to the caller instead of sent: a worker runs a sequence's next Task itself, without
    a message and a broker round trip per state (``services.run_attempts``)."""
    taken: list[int] = []
    token = _followed.set(taken)
    try:
        yield taken
    finally:
        _followed.reset(token)
