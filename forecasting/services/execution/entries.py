"""The entry points of execution, each its own transaction: start a run, claim and finish Task attempts,
resume a branch, cancel and redrive a run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from forecasting.engine import machine
from forecasting.engine.errors import TASK_FAILED, StatesError
from forecasting.models import (
    AttemptStatus,
    Branch,
    BranchStatus,
    Run,
    RunStatus,
    StateAttempt,
)
from forecasting.services.execution.history import write_history
from forecasting.services.execution.transitions import (
    ACTIVE_ATTEMPT,
    ACTIVE_BRANCH,
    Context,
    _abort_attempts,
    _children,
    _clear_resume,
    _exit,
    _in_transaction,
    _join_locked,
    _lock_branches,
    _save,
    _start_work,
    advance,
    enter,
    state_error,
    task_lease,
)

# ---- entry points (each its own transaction) -----------------------------------------------------------------


def start(run: Run) -> None:
    """Create the run's top-level branch and advance it (inline states run here, in the caller's transaction)."""

    def work(ctx: Context) -> None:
        ctx.runs[run.id] = run
        # Inserted when first written (``flush_writes``): a run of inline states writes its root once.
        root = Branch(run=run, key="", kind=Branch.Kind.ROOT, address=[], state=run.definition["StartAt"])
        ctx.event(None, "ExecutionStarted", run=run, input=run.input)
        enter(ctx, root, root.state, run.input)
        advance(ctx, root)
        if root.status == BranchStatus.RUNNING:
            _save(ctx, root)

    _in_transaction(work, savepoint=False)  # new rows: nothing to deadlock on


def claim_attempt(attempt_id: int, *, worker: str = "") -> StateAttempt | None:
    """Mark a scheduled attempt started (once: a duplicate message finds it taken) and return it."""
    claimed = claim_attempts([attempt_id], worker=worker)
    return claimed[0] if claimed else None


_CLAIM_SQL = """
    UPDATE forecasting_stateattempt AS a
       SET status = %s, started_at = %s, lease_until = %s, worker = %s
      FROM forecasting_run AS r, forecasting_branch AS b
     WHERE a.id = ANY(%s) AND a.status = %s AND r.id = a.run_id AND r.status = %s AND b.id = a.branch_id
 RETURNING a.id, a.run_id, a.branch_id, a.visit, a.state, a.resource, a.attempt, a.input, a.timeout_seconds,
           a.celery_task_id, b.key
"""


def _started(attempt: StateAttempt, worker: str) -> dict:
    return {"attempt": attempt.attempt, "worker": worker}


def claim_attempts(attempt_ids: list[int], *, worker: str = "") -> list[StateAttempt]:
    """Mark scheduled attempts started, in one transaction; those already taken (or aborted) are left out.

    One ``UPDATE … RETURNING`` on PostgreSQL (a Task state's claim is on the path of every state).
    """
    now = timezone.now()
    lease_until = now + timedelta(seconds=task_lease())
    worker = worker[:200]
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    _CLAIM_SQL,
                    [
                        AttemptStatus.RUNNING,
                        now,
                        lease_until,
                        worker,
                        list(attempt_ids),
                        AttemptStatus.SCHEDULED,
                        RunStatus.RUNNING,
                    ],
                )
                rows = sorted(cursor.fetchall())
            claimed = []
            for attempt_id, run_id, branch_id, visit, state, resource, number, data, timeout, task_id, key in rows:
                attempt = StateAttempt(
                    id=attempt_id,
                    run_id=run_id,
                    branch_id=branch_id,
                    visit=visit,
                    state=state,
                    resource=resource,
                    attempt=number,
                    input=json.loads(data) if isinstance(data, str) else data,
                    timeout_seconds=timeout,
                    celery_task_id=task_id,
                    status=AttemptStatus.RUNNING,
                    started_at=now,
                    lease_until=lease_until,
                    worker=worker,
                )
                attempt._state.adding = False
                claimed.append((attempt, key))
        else:
            taken = StateAttempt.objects.filter(
                id__in=attempt_ids, status=AttemptStatus.SCHEDULED, run__status=RunStatus.RUNNING
            ).update(status=AttemptStatus.RUNNING, started_at=now, lease_until=lease_until, worker=worker)
            if not taken:
                return []
            # The rows this transaction just claimed: locked by it, so no other claim can have taken them.
            mine = StateAttempt.objects.select_related("branch").filter(
                id__in=attempt_ids, status=AttemptStatus.RUNNING, started_at=now, worker=worker
            )
            claimed = [(attempt, attempt.branch.key) for attempt in mine.order_by("id")]
        if claimed:
            write_history(
                [
                    (attempt.run_id, "TaskStarted", now, key, attempt.state, _started(attempt, worker))
                    for attempt, key in claimed
                ],
            )
    return [attempt for attempt, _ in claimed]


@dataclass(frozen=True)
class Outcome:
    """What a step did: ``result``, or ``error``/``cause`` (``timed_out`` for ``States.Timeout``)."""

    result: Any = None
    error: str | None = None
    cause: str = ""
    timed_out: bool = False


def finish_attempt(attempt_id: int, outcome: Outcome) -> None:
    """Record a started attempt's outcome and move its branch on (retry, catch, next state or end)."""
    finish_attempts({attempt_id: outcome})


def finish_attempts(outcomes: dict[int, Outcome]) -> None:
    """Record several started attempts' outcomes in one transaction (their joins follow, once per parent)."""

    def work(ctx: Context) -> None:
        # Lock order: the branches (by id, read with their run), then their attempts (by id).
        by_id = {branch.id: branch for branch in _lock_branches(ctx, attempts__id__in=list(outcomes))}
        if not by_id:
            return
        attempts = StateAttempt.objects.select_for_update().filter(id__in=list(outcomes)).order_by("id")
        for attempt in attempts:
            _finish_locked(ctx, by_id[attempt.branch_id], attempt, outcomes[attempt.id])

    _in_transaction(work)


def _finish_locked(ctx: Context, branch: Branch, attempt: StateAttempt, outcome: Outcome) -> None:
    if attempt.status != AttemptStatus.RUNNING:
        return  # aborted, timed out by the sweep, or finished by an earlier delivery
    attempt.finished_at = ctx.now
    run = ctx.run_of(branch)
    if run.status != RunStatus.RUNNING or branch.status != BranchStatus.RUNNING or branch.visit != attempt.visit:
        attempt.status = AttemptStatus.ABORTED
        ctx.finished_attempts.append(attempt)
        return
    state = ctx.state(branch)
    if outcome.error is None:
        attempt.status, attempt.output = AttemptStatus.SUCCEEDED, outcome.result
        ctx.finished_attempts.append(attempt)
        ctx.event(branch, "TaskSucceeded", output=outcome.result, attempt=attempt.attempt)
        try:
            output = machine.state_output(state, branch.state_input, outcome.result, ctx.context_object(branch))
        except StatesError as exc:
            moved = state_error(ctx, branch, state, exc.error, exc.cause)
        else:
            branch.waiting_for = ""
            moved = _exit(ctx, branch, state.get("Next"), output)
    else:
        attempt.status = AttemptStatus.TIMED_OUT if outcome.timed_out else AttemptStatus.FAILED
        attempt.error, attempt.cause = outcome.error[:256], outcome.cause
        ctx.finished_attempts.append(attempt)
        kind = "TaskTimedOut" if outcome.timed_out else "TaskFailed"
        ctx.event(branch, kind, error=outcome.error, cause=outcome.cause, attempt=attempt.attempt)
        moved = state_error(ctx, branch, state, outcome.error, outcome.cause)
    if moved:
        advance(ctx, branch)
    elif branch.status == BranchStatus.RUNNING:
        _save(ctx, branch)


def resume(branch_id: int, visit: int) -> None:
    """Go on after a Wait, or retry a Parallel/Map, when its time has come (early or stale messages do nothing)."""

    def work(ctx: Context) -> None:
        branch = Branch.objects.select_for_update().filter(id=branch_id).first()
        if branch is None or branch.status != BranchStatus.RUNNING or branch.visit != visit or branch.resume_at is None:
            return
        if ctx.run_of(branch).status != RunStatus.RUNNING:
            return
        early = (branch.resume_at - ctx.now).total_seconds()
        if early > 0.5:
            ctx.effects.resumes.append((branch.id, branch.visit, early))
            return
        action, following, output = branch.resume_action, branch.resume_next or None, branch.resume_output
        _clear_resume(branch)
        branch.waiting_for = ""
        if action == "continue":
            moved = _exit(ctx, branch, following, output)
        else:
            moved = _start_work(ctx, branch, ctx.state(branch))
        if moved:
            advance(ctx, branch)
        elif branch.status == BranchStatus.RUNNING:
            _save(ctx, branch)

    _in_transaction(work)


def cancel(run_id) -> bool:
    """Abort a running run: nothing new starts, scheduled and running attempts are revoked."""
    result = {"cancelled": False}

    def work(ctx: Context) -> None:
        run = Run.objects.select_for_update().get(id=run_id)
        if run.status != RunStatus.RUNNING:
            return
        Run.objects.filter(id=run.id).update(status=RunStatus.ABORTED, stopped_at=ctx.now, error="", cause="")
        run.status = RunStatus.ABORTED
        Branch.objects.filter(run=run, status__in=ACTIVE_BRANCH).update(
            status=BranchStatus.ABORTED, finished_at=ctx.now, waiting_for="", resume_at=None
        )
        _abort_attempts(ctx, StateAttempt.objects.filter(run=run, status__in=ACTIVE_ATTEMPT))
        ctx.event(None, "ExecutionAborted", run=run)
        result["cancelled"] = True

    _in_transaction(work)
    return result["cancelled"]


def redrive(run_id) -> None:
    """Resume a failed or aborted run from its unsuccessful states, keeping every output that succeeded."""

    def work(ctx: Context) -> None:
        run = Run.objects.select_for_update().select_related("pipeline").get(id=run_id)
        ctx.runs[run.id] = run
        run.status = RunStatus.RUNNING
        run.redrive_count += 1
        run.redrive_date = ctx.now
        run.output, run.error, run.cause, run.stopped_at = None, "", "", None
        run.save(update_fields=["status", "redrive_count", "redrive_date", "output", "error", "cause", "stopped_at"])
        ctx.event(None, "ExecutionRedriven", run=run, redrive_count=run.redrive_count)
        root = Branch.objects.select_for_update().get(run=run, parent=None)
        _redrive_branch(ctx, root)

    _in_transaction(work)


def _redrive_branch(ctx: Context, branch: Branch) -> None:
    if branch.status == BranchStatus.SUCCEEDED:
        return
    state = ctx.state(branch)
    branch.status = BranchStatus.RUNNING
    branch.error, branch.cause, branch.finished_at = "", "", None
    fanned_out = state["Type"] in ("Parallel", "Map") and branch.fanout and _children(branch).exists()
    if fanned_out:
        ctx.event(branch, f"{state['Type']}StateRedriven")
        branch.retry_counts, branch.retries, branch.waiting_for = [], 0, "children"
        _save(ctx, branch)
        ctx.joining.add(branch.id)
        unsuccessful = _children(branch).filter(status__in=(BranchStatus.FAILED, BranchStatus.ABORTED))
        for child in unsuccessful.select_for_update().order_by("index"):
            if ctx.state(child)["Type"] in ("Parallel", "Map") and child.fanout and _children(child).exists():
                _redrive_branch(ctx, child)  # its own unsuccessful children run again, not the whole state
            else:
                # Started again by the join (within MaxConcurrency) in the state it stopped in, same raw input.
                child.status, child.error, child.cause, child.finished_at = BranchStatus.PENDING, "", "", None
                _save(ctx, child)
        ctx.joining.discard(branch.id)
        if _join_locked(ctx, branch):
            advance(ctx, branch)
        elif branch.status == BranchStatus.RUNNING:
            _save(ctx, branch)
        return
    enter(ctx, branch, branch.state, branch.state_input)
    advance(ctx, branch)
    if branch.status == BranchStatus.RUNNING:
        _save(ctx, branch)


def unknown_step_outcome(resource: str) -> Outcome:
    return Outcome(error=TASK_FAILED, cause=f"no step is registered as {resource!r}")
