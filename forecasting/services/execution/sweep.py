"""Beat's safety net for pipeline runs: due waits and retries, lost attempts and joins, timeouts."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from forecasting.engine.errors import TIMEOUT
from forecasting.models import (
    AttemptStatus,
    Branch,
    BranchStatus,
    HistoryEvent,
    RunStatus,
    StateAttempt,
)
from forecasting.services.execution import dispatch
from forecasting.services.execution.dispatch import Effects
from forecasting.services.execution.entries import Outcome, finish_attempt
from forecasting.services.execution.transitions import _in_transaction, countdown_max, join_branch

# ---- the sweep -----------------------------------------------------------------------------------------------


def sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Beat's safety net: send what is due, take back attempts whose worker died, time out overdue tasks,
    resend lost resumptions and run joins that were lost with a dead worker."""
    now = now or timezone.now()
    done = {"sent": 0, "taken_back": 0, "timed_out": 0, "resumed": 0, "joined": 0}
    horizon = now + timedelta(seconds=countdown_max())
    lost_after = timedelta(seconds=float(getattr(settings, "PIPELINE_LOST_MESSAGE_SECONDS", 60)))
    effects = Effects()
    with transaction.atomic():
        due = StateAttempt.objects.select_for_update(skip_locked=True).filter(
            Q(sent_at__isnull=True, scheduled_at__lte=horizon)
            | Q(sent_at__lt=now - lost_after, scheduled_at__lt=now - lost_after),
            status=AttemptStatus.SCHEDULED,
            run__status=RunStatus.RUNNING,
        )
        for attempt in due[:1000]:
            attempt.sent_at = now
            attempt.save(update_fields=["sent_at"])
            countdown = max(0.0, (attempt.scheduled_at - now).total_seconds())
            effects.attempts.append((attempt.id, attempt.celery_task_id, countdown, attempt.timeout_seconds))
            done["sent"] += 1
        expired = StateAttempt.objects.select_for_update(skip_locked=True).filter(
            status=AttemptStatus.RUNNING, lease_until__lt=now, run__status=RunStatus.RUNNING
        )
        overdue = []
        for attempt in expired[:1000]:
            if attempt.timeout_seconds and attempt.started_at + timedelta(seconds=attempt.timeout_seconds) < now:
                overdue.append(attempt.id)
                continue
            # Its worker died (or lost the message): run it again. Steps are idempotent (at-least-once).
            attempt.status, attempt.sent_at, attempt.celery_task_id = AttemptStatus.SCHEDULED, now, str(uuid.uuid4())
            attempt.save(update_fields=["status", "sent_at", "celery_task_id"])
            HistoryEvent.objects.create(
                run_id=attempt.run_id,
                type="TaskLost",
                timestamp=now,
                state=attempt.state,
                details={
                    "attempt": attempt.attempt,
                    "worker": attempt.worker,
                    "lease_until": attempt.lease_until.isoformat(),
                },
            )
            effects.attempts.append((attempt.id, attempt.celery_task_id, 0.0, attempt.timeout_seconds))
            done["taken_back"] += 1
        resumes = Branch.objects.select_for_update(skip_locked=True).filter(
            Q(resume_sent=False, resume_at__lte=horizon) | Q(resume_at__lt=now - lost_after),
            status=BranchStatus.RUNNING,
            resume_at__isnull=False,
        )
        for branch in resumes[:1000]:
            branch.resume_sent = True
            branch.save(update_fields=["resume_sent"])
            effects.resumes.append((branch.id, branch.visit, max(0.0, (branch.resume_at - now).total_seconds())))
            done["resumed"] += 1
        transaction.on_commit(lambda: dispatch.dispatcher.send(effects))
    for attempt_id in overdue:
        task_id = StateAttempt.objects.filter(id=attempt_id).values_list("celery_task_id", flat=True).first()
        cause = "the task did not finish within its TimeoutSeconds"
        finish_attempt(attempt_id, Outcome(error=TIMEOUT, cause=cause, timed_out=True))
        if task_id:
            dispatch.dispatcher.send(Effects(revokes=[task_id]))
        done["timed_out"] += 1
    running_child = Branch.objects.filter(
        parent_id=OuterRef("pk"), parent_fanout=OuterRef("fanout"), status=BranchStatus.RUNNING
    )
    lost_joins = (
        Branch.objects.filter(status=BranchStatus.RUNNING, waiting_for="children", run__status=RunStatus.RUNNING)
        .exclude(Exists(running_child))
        .values_list("id", flat=True)
    )
    for branch_id in list(lost_joins[:1000]):
        _in_transaction(lambda ctx, branch_id=branch_id: join_branch(ctx, branch_id))
        done["joined"] += 1
    return done
