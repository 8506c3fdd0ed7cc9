"""The transitions of pipeline runs: the only place that moves a run's branches from state to state.

Every transition happens inside one database transaction holding the branch's row lock, and is driven by the
pure logic of ``forecasting.engine.machine``. Pass, Choice, Succeed, Fail and zero waits run inline (no
message); a Task becomes a ``StateAttempt`` sent to the ``forecast`` queue (retries with their delay as a
countdown, or, past ``PIPELINE_COUNTDOWN_MAX``, left to the sweep: a waiting poll costs no worker); a Wait or
a Parallel/Map retry schedules a resumption the same way.

Parallel and Map: the children (one branch per Parallel branch or Map item) are rows; a child that ends
commits its outcome as data, then *joins* its parent in a new transaction: under the parent's lock the
children are recounted (nothing is kept in memory or in Celery's chord machinery, so a join can run twice
and a lost one is found by the sweep and run again), more Map items are started up to ``MaxConcurrency``,
and the state ends when they all have. Lock order: a branch, then its attempts; a parent, then its
children; a child never waits for its parent's lock while holding its own.

Cost per state (measured with bench/pipeline.py): writes are collected per transaction and made with one
statement per table, many quick attempts share a message (``CeleryDispatcher``, ``services.run_attempts``),
and a worker runs a sequence's next quick Task itself (``following``).
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import Count, JSONField
from django.utils import timezone

from forecasting.engine import definition as definitions
from forecasting.engine import jsonpath, machine
from forecasting.engine.errors import RUNTIME, PathError, StatesError
from forecasting.models import (
    AttemptStatus,
    Branch,
    BranchStatus,
    Run,
    RunStatus,
    StateAttempt,
)
from forecasting.services.execution import dispatch
from forecasting.services.execution.dispatch import Effects, _followed
from forecasting.services.execution.history import write_history

logger = logging.getLogger(__name__)

ACTIVE_BRANCH = (BranchStatus.RUNNING, BranchStatus.PENDING)
ACTIVE_ATTEMPT = (AttemptStatus.SCHEDULED, AttemptStatus.RUNNING)
_rng = random.Random()  # noqa: S311 (retry jitter, not secrets)


def countdown_max() -> float:
    """Waits longer than this are not handed to the broker as a countdown: the sweep sends them when due."""
    return float(getattr(settings, "PIPELINE_COUNTDOWN_MAX", 300.0))


def task_lease() -> float:
    """How long a started attempt may run before the sweep takes it as lost (its worker died)."""
    return float(getattr(settings, "PIPELINE_TASK_LEASE_SECONDS", settings.CELERY_TASK_TIME_LIMIT + 30))


def _after_commit(effects: Effects) -> None:
    taken = _followed.get()
    if taken is not None and effects.batch and effects.attempts:
        quick = [attempt for attempt in effects.attempts if attempt[2] <= 0 and not attempt[3]]
        if quick:  # one: the others of a fan-out go out, to run beside it
            taken.append(quick[0][0])
            effects.attempts = [attempt for attempt in effects.attempts if attempt is not quick[0]]
    dispatch.dispatcher.send(effects)
    pending = list(dict.fromkeys(effects.joins))
    while pending:
        parent_id = pending.pop(0)
        more = _in_transaction(lambda ctx, parent_id=parent_id: join_branch(ctx, parent_id))
        pending.extend(parent for parent in more.joins if parent not in pending)


def _in_transaction(work, *, attempts: int = 5, savepoint: bool = True) -> Effects:
    """Run ``work(ctx)`` in one transaction (retried on a deadlock), then send what it decided on commit.

    ``savepoint=False``: inside the caller's transaction, without a savepoint (two round trips fewer);
    then a failure fails the caller's transaction, and nothing is retried.
    """
    for attempt in range(attempts):
        ctx = Context()
        try:
            with transaction.atomic(savepoint=savepoint):
                work(ctx)
                ctx.flush_writes()
                ctx.flush_history()
                transaction.on_commit(lambda effects=ctx.effects: _after_commit(effects))
        except OperationalError as exc:
            if "deadlock" not in str(exc) or attempt == attempts - 1 or not savepoint:
                raise
            logger.warning("pipeline transition retried after a deadlock: %s", exc)
            continue
        return ctx.effects
    raise AssertionError("unreachable")


# ---- the context of one transaction --------------------------------------------------------------------------


class Context:
    def __init__(self) -> None:
        self.now = timezone.now()
        self.effects = Effects()
        self.history: list[tuple] = []  # rows of HISTORY_FIELDS, written with COPY
        self.joining: set[int] = set()
        self.runs: dict[Any, Run] = {}
        self._scopes: dict[tuple, dict] = {}
        self.dirty: dict[int, Branch] = {}  # branches to write (by object), see ``flush_writes``
        self.new_attempts: list[tuple[StateAttempt, bool]] = []  # (attempt, sent now)
        self.finished_attempts: list[StateAttempt] = []  # their outcomes to write

    def run_of(self, branch: Branch) -> Run:
        if branch.run_id not in self.runs:
            self.runs[branch.run_id] = Run.objects.select_related("pipeline").get(id=branch.run_id)
        return self.runs[branch.run_id]

    def scope(self, branch: Branch) -> dict:
        address = tuple(tuple(step) for step in branch.address)
        if address not in self._scopes:
            self._scopes[address] = definitions.scope_at(self.run_of(branch).definition, address)
        return self._scopes[address]

    def state(self, branch: Branch) -> dict:
        return self.scope(branch)["States"][branch.state]

    def context_object(self, branch: Branch) -> dict:
        run = self.run_of(branch)
        context = machine.context_object(
            execution_id=str(run.id),
            execution_name=run.name,
            start_time=run.started_at.isoformat(),
            execution_input=run.input,
            machine_name=run.pipeline.name,
            state_name=branch.state,
            entered_time=branch.entered_at.isoformat() if branch.entered_at else "",
            retry_count=branch.retries,
        )
        context["Execution"]["RedriveCount"] = run.redrive_count
        return context

    def event(self, branch: Branch | None, kind: str, *, run: Run | None = None, state: str = "", **details) -> None:
        run_id = run.id if run is not None else branch.run_id
        self.history.append(
            (
                run_id,
                kind,
                timezone.now(),
                branch.key if branch is not None else "",
                state or (branch.state if branch is not None else ""),
                details,
            )
        )

    def flush_writes(self) -> None:
        """Write the branches and new attempts of this transaction so far (before any query that reads them).

        Branch writes are collected rather than made one by one: a Map starting 1,000 items writes them
        with one statement and their attempts with one INSERT.
        """
        if self.dirty:
            dirty, self.dirty = list(self.dirty.values()), {}
            new = [branch for branch in dirty if branch.pk is None]
            for branch in new:  # a run's root, written once it has moved as far as it can
                branch.save()
            _bulk_update(Branch, [branch for branch in dirty if branch not in new], _BRANCH_FIELDS)
        if self.finished_attempts:
            _bulk_update(StateAttempt, self.finished_attempts, _FINISHED_ATTEMPT_FIELDS)
            self.finished_attempts = []
        if self.new_attempts:
            StateAttempt.objects.bulk_create([attempt for attempt, _ in self.new_attempts])  # keys come back
            for attempt, sent in self.new_attempts:
                if sent:
                    self.effects.attempts.append(
                        (attempt.id, attempt.celery_task_id, attempt.delay, attempt.timeout_seconds)
                    )
            self.new_attempts = []

    def flush_history(self) -> None:
        if self.history:
            write_history(self.history)
            self.history = []


def _save(ctx: Context, branch: Branch) -> None:
    """Mark ``branch`` to be written (``Context.flush_writes``: one statement for many, before reads)."""
    ctx.dirty[id(branch)] = branch


_BRANCH_FIELDS = tuple(field.name for field in Branch._meta.concrete_fields if not field.primary_key)
_FINISHED_ATTEMPT_FIELDS = ("status", "output", "error", "cause", "finished_at")


def _bulk_update(model, objects: list, fields: tuple[str, ...]) -> None:
    """Write ``fields`` of ``objects``: one ``UPDATE … FROM unnest(…)`` on PostgreSQL for many rows.

    A Map's start writes its items this way, and a batch its attempts (measured: 1,000 single-row saves
    were most of a 1,000-item fan-out); Django's ``bulk_update`` would build a CASE per row and column.
    """
    if not objects:
        return
    if len(objects) == 1 or connection.vendor != "postgresql":
        for instance in objects:
            instance.save(update_fields=fields)
        return
    quote = connection.ops.quote_name
    arrays, params, sets, names = ["%s::bigint[]"], [[instance.pk for instance in objects]], [], ["id"]
    for name in fields:
        column = model._meta.get_field(name)
        values = [getattr(instance, column.attname) for instance in objects]
        quoted = quote(column.column)
        names.append(quoted)
        if isinstance(column, JSONField):
            arrays.append("%s::text[]")
            params.append([None if value is None else json.dumps(value) for value in values])
            sets.append(f"{quoted} = v.{quoted}::jsonb")
        else:
            arrays.append(f"%s::{column.db_type(connection)}[]")
            params.append(values)
            sets.append(f"{quoted} = v.{quoted}")
    table = quote(model._meta.db_table)
    sql = (
        f"UPDATE {table} AS t SET {', '.join(sets)} "  # noqa: S608 (names from the model, values as parameters)
        f"FROM unnest({', '.join(arrays)}) AS v({', '.join(names)}) WHERE t.id = v.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


# ---- moving a branch -----------------------------------------------------------------------------------------


def enter(ctx: Context, branch: Branch, name: str, data: Any) -> None:
    """Move ``branch`` into state ``name`` with raw input ``data`` (a new visit: retry counters start at 0)."""
    branch.state = name
    branch.state_input = data
    branch.visit += 1
    branch.retry_counts = []
    branch.retries = 0
    branch.entered_at = ctx.now
    branch.waiting_for = ""
    _clear_resume(branch)
    ctx.event(branch, f"{ctx.state(branch)['Type']}StateEntered", input=data)


def _clear_resume(branch: Branch) -> None:
    branch.resume_at = None
    branch.resume_sent = False
    branch.resume_action = ""
    branch.resume_next = ""
    branch.resume_output = None


def advance(ctx: Context, branch: Branch) -> None:
    """Run the branch's current (just entered) state and go on through inline states until it must wait."""
    while branch.status == BranchStatus.RUNNING:
        state = ctx.state(branch)
        kind = state["Type"]
        if kind in machine.INLINE_TYPES:
            try:
                step = machine.inline_step(state, branch.state_input, ctx.context_object(branch), now=ctx.now)
            except StatesError as exc:
                fail_branch(ctx, branch, exc.error, exc.cause)
                return
            if kind == "Wait" and step.wait > 0:
                _schedule_resume(ctx, branch, step.wait, action="continue", next_state=step.next, output=step.output)
                _save(ctx, branch)
                return
            if not _exit(ctx, branch, step.next, step.output):
                return
            continue
        if not _start_work(ctx, branch, state):
            _save(ctx, branch)
            return


def _exit(ctx: Context, branch: Branch, following: str | None, output: Any) -> bool:
    """Leave the current state; True when the branch entered ``following`` (False: the branch ended)."""
    ctx.event(branch, f"{ctx.state(branch)['Type']}StateExited", output=output)
    if following is None:
        succeed_branch(ctx, branch, output)
        return False
    enter(ctx, branch, following, output)
    return True


def _start_work(ctx: Context, branch: Branch, state: dict) -> bool:
    """Start a Task, Parallel or Map state; True when it already ended and the branch moved on."""
    context = ctx.context_object(branch)
    try:
        effective = machine.effective_input(state, branch.state_input, context)
        if state["Type"] == "Task":
            _schedule_attempt(ctx, branch, state, effective, delay=0.0, retrier=None)
            return False
        return _fan_out(ctx, branch, state, effective, context)
    except StatesError as exc:
        return state_error(ctx, branch, state, exc.error, exc.cause)


def state_error(ctx: Context, branch: Branch, state: dict, error: str, cause: str) -> bool:
    """Retry, catch or fail: True when a catcher moved the branch on to another state."""
    decision = machine.handle_error(state, branch.state_input, error, cause, branch.retry_counts, rng=_rng)
    if isinstance(decision, machine.Retry):
        branch.retry_counts = decision.counts
        branch.retries += 1
        if state["Type"] == "Task":
            context = ctx.context_object(branch)
            try:
                effective = machine.effective_input(state, branch.state_input, context)
            except StatesError as exc:  # cannot happen for an input that worked before; be safe
                fail_branch(ctx, branch, exc.error, exc.cause)
                return False
            _schedule_attempt(ctx, branch, state, effective, delay=decision.delay, retrier=decision.retrier)
        else:
            _schedule_resume(ctx, branch, decision.delay, action="retry")
        return False
    if isinstance(decision, machine.Caught):
        ctx.event(branch, "CatchTaken", error=error, cause=cause, catcher=decision.catcher, next=decision.next)
        return _exit(ctx, branch, decision.next, decision.output)
    fail_branch(ctx, branch, decision.error, decision.cause)
    return False


def _schedule_resume(ctx, branch, seconds: float, *, action: str, next_state=None, output=None) -> None:
    branch.waiting_for = "resume"
    branch.resume_at = ctx.now + timedelta(seconds=seconds)
    branch.resume_action = action
    branch.resume_next = next_state or ""
    branch.resume_output = output
    branch.resume_sent = seconds <= countdown_max()
    if action == "continue":
        ctx.event(branch, "WaitStateWaiting", seconds=seconds, until=branch.resume_at.isoformat())
    else:
        ctx.event(branch, f"{ctx.state(branch)['Type']}StateRetryScheduled", delay=seconds, retry=branch.retries)
    if branch.resume_sent:
        if branch.pk is None:  # a root waiting at its start: the message needs its id
            _save(ctx, branch)
            ctx.flush_writes()
        ctx.effects.resumes.append((branch.id, branch.visit, seconds))


def _timeout_of(state: dict, effective: Any) -> int | None:
    if "TimeoutSeconds" in state:
        return int(state["TimeoutSeconds"])
    if "TimeoutSecondsPath" in state:
        try:
            value = jsonpath.get(effective, state["TimeoutSecondsPath"])
        except PathError as exc:
            raise StatesError(RUNTIME, f"TimeoutSecondsPath: {exc}") from None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise StatesError(RUNTIME, f"TimeoutSecondsPath: a positive integer, got {value!r}")
        return value
    return None


def _schedule_attempt(ctx, branch, state: dict, effective: Any, *, delay: float, retrier: int | None) -> None:
    timeout = _timeout_of(state, effective)
    sent = delay <= countdown_max()
    attempt = StateAttempt(
        run_id=branch.run_id,
        branch=branch,
        visit=branch.visit,
        state=branch.state,
        resource=state["Resource"],
        attempt=branch.retries + 1,
        input=effective,
        delay=delay,
        retrier=retrier,
        timeout_seconds=timeout,
        scheduled_at=ctx.now + timedelta(seconds=delay),
        sent_at=ctx.now if sent else None,
        celery_task_id=str(uuid.uuid4()),
    )
    ctx.new_attempts.append((attempt, sent))
    branch.waiting_for = "task"
    ctx.event(
        branch, "TaskScheduled", resource=attempt.resource, parameters=effective, attempt=attempt.attempt, delay=delay
    )


# ---- ends of branches ----------------------------------------------------------------------------------------


def succeed_branch(ctx: Context, branch: Branch, output: Any) -> None:
    branch.status = BranchStatus.SUCCEEDED
    branch.output = output
    branch.finished_at = ctx.now
    branch.waiting_for = ""
    _save(ctx, branch)
    if branch.parent_id is None:
        _finish_run(ctx, branch, RunStatus.SUCCEEDED, output=output)
        return
    if branch.kind == Branch.Kind.ITEM:
        ctx.event(branch, "MapIterationSucceeded", index=branch.index, output=output)
    _join_later(ctx, branch)


def fail_branch(ctx: Context, branch: Branch, error: str, cause: str) -> None:
    branch.status = BranchStatus.FAILED
    branch.error, branch.cause = error[:256], cause
    branch.finished_at = ctx.now
    branch.waiting_for = ""
    _save(ctx, branch)
    if branch.parent_id is None:
        _finish_run(ctx, branch, RunStatus.FAILED, error=error, cause=cause)
        return
    if branch.kind == Branch.Kind.ITEM:
        ctx.event(branch, "MapIterationFailed", index=branch.index, error=error, cause=cause)
    _join_later(ctx, branch)


def _join_later(ctx: Context, branch: Branch) -> None:
    if branch.parent_id not in ctx.joining:
        ctx.effects.joins.append(branch.parent_id)


def _finish_run(ctx: Context, root: Branch, status: str, *, output=None, error: str = "", cause: str = "") -> None:
    from forecasting.services import events

    run = ctx.run_of(root)
    changed = Run.objects.filter(id=run.id, status=RunStatus.RUNNING).update(
        status=status, output=output, error=error[:256], cause=cause, stopped_at=ctx.now
    )
    if not changed:
        return
    run.status, run.output, run.error, run.cause, run.stopped_at = status, output, error[:256], cause, ctx.now
    if status == RunStatus.SUCCEEDED:
        ctx.event(None, "ExecutionSucceeded", run=run, output=output)
    else:
        ctx.event(None, "ExecutionFailed", run=run, error=error, cause=cause)
    events.run_finished(run)


# ---- Parallel and Map ----------------------------------------------------------------------------------------


def _fan_out(ctx: Context, branch: Branch, state: dict, effective: Any, context: dict) -> bool:
    name = branch.state
    if state["Type"] == "Parallel":
        scopes = [(index, [*branch.address, [name, index]], scope) for index, scope in enumerate(state["Branches"])]
        inputs = [effective] * len(scopes)
        kind = Branch.Kind.BRANCH
    else:
        items = machine.map_items(state, effective)
        processor = definitions.processor_of(state)
        scopes = [(index, [*branch.address, [name, None]], processor) for index in range(len(items))]
        inputs = [machine.map_item_input(state, effective, index, value, context) for index, value in enumerate(items)]
        kind = Branch.Kind.ITEM
    branch.fanout += 1
    branch.fanout_input = effective
    branch.waiting_for = "children"
    ctx.event(branch, f"{state['Type']}StateStarted", length=len(scopes))
    _save(ctx, branch)
    ctx.flush_writes()  # the parent's row exists before its children's
    prefix = f"{branch.key}/{name}@{branch.fanout}"
    Branch.objects.bulk_create(
        [
            Branch(
                run_id=branch.run_id,
                parent=branch,
                parent_fanout=branch.fanout,
                key=f"{prefix}/{index}",
                kind=kind,
                index=index,
                address=address,
                status=BranchStatus.PENDING,
                state=scope["StartAt"],
                state_input=data,
            )
            for (index, address, scope), data in zip(scopes, inputs, strict=True)
        ]
    )
    return _join_locked(ctx, branch)


def join_branch(ctx: Context, branch_id: int) -> None:
    """Recount a fanned-out branch's children under its lock and act on them (idempotent)."""
    branch = next(iter(_lock_branches(ctx, id=branch_id)), None)
    if branch is None or branch.status != BranchStatus.RUNNING or branch.waiting_for != "children":
        return
    if ctx.run_of(branch).status != RunStatus.RUNNING:
        return
    if _join_locked(ctx, branch):
        advance(ctx, branch)
    else:
        _save(ctx, branch)


def _lock_branches(ctx: Context, **filters) -> list[Branch]:
    """Branches locked ``FOR UPDATE`` (their rows only, by id), each read with its run, which ``ctx`` keeps."""
    locked = Branch.objects.select_for_update(of=("self",)).select_related("run__pipeline")
    branches = list(dict.fromkeys(locked.filter(**filters).order_by("id")))
    for branch in branches:
        ctx.runs.setdefault(branch.run_id, branch.run)
    return branches


def _children(branch: Branch):
    return Branch.objects.filter(parent_id=branch.id, parent_fanout=branch.fanout)


def _join_locked(ctx: Context, branch: Branch) -> bool:
    """True when the fan-out ended and a catcher or ``Next`` moved the branch on (the caller advances it)."""
    state = ctx.state(branch)
    is_map = state["Type"] == "Map"
    ctx.joining.add(branch.id)
    try:
        while True:
            ctx.flush_writes()  # the children's rows as this transaction left them
            counts = dict(_children(branch).values_list("status").annotate(n=Count("id")).values_list("status", "n"))
            total = sum(counts.values())
            failed = counts.get(BranchStatus.FAILED, 0)
            running = counts.get(BranchStatus.RUNNING, 0)
            pending = counts.get(BranchStatus.PENDING, 0)
            if failed and (not is_map or machine.tolerance_exceeded(state, branch.fanout_input, failed, total)):
                first = _children(branch).filter(status=BranchStatus.FAILED).order_by("finished_at", "index").first()
                if is_map:
                    error, cause = machine.map_failure(
                        state, branch.fanout_input, (first.error, first.cause), failed, total
                    )
                else:
                    error, cause = first.error, first.cause
                _abort_descendants(ctx, branch)
                ctx.event(branch, f"{state['Type']}StateFailed", error=error, cause=cause)
                branch.waiting_for = ""
                return state_error(ctx, branch, state, error, cause)
            limit = machine.max_concurrency(state, branch.fanout_input) if is_map else 0
            room = pending if limit == 0 else min(pending, max(0, limit - running))
            if room:
                for child in _children(branch).filter(status=BranchStatus.PENDING).order_by("index")[:room]:
                    _start_child(ctx, child)
                continue  # children that ended inline change the counts
            if running or pending:
                return False
            break
        children = list(_children(branch).order_by("index").values_list("status", "output", "error", "cause"))
        results = [
            output if status == BranchStatus.SUCCEEDED else machine.tolerated_output(error, cause)
            for status, output, error, cause in children
        ]
        ctx.event(branch, f"{state['Type']}StateSucceeded", length=len(results))
        branch.waiting_for = ""
        try:
            output = machine.state_output(state, branch.state_input, results, ctx.context_object(branch))
        except StatesError as exc:
            return state_error(ctx, branch, state, exc.error, exc.cause)
        return _exit(ctx, branch, state.get("Next"), output)
    finally:
        ctx.joining.discard(branch.id)


def _start_child(ctx: Context, child: Branch) -> None:
    child.status = BranchStatus.RUNNING
    if child.kind == Branch.Kind.ITEM:
        ctx.event(child, "MapIterationStarted", index=child.index)
    enter(ctx, child, child.state, child.state_input)
    advance(ctx, child)
    if child.status == BranchStatus.RUNNING:
        _save(ctx, child)


def _abort_descendants(ctx: Context, branch: Branch) -> None:
    """Abort every active branch under ``branch``'s current fan-out, and their attempts (revoked)."""
    ctx.flush_writes()
    prefix = f"{branch.key}/{branch.state}@{branch.fanout}/"
    active = Branch.objects.filter(run_id=branch.run_id, key__startswith=prefix, status__in=ACTIVE_BRANCH)
    aborted = list(active.values_list("id", "key", "kind", "index"))
    if not aborted:
        return
    ids = [row[0] for row in aborted]
    Branch.objects.filter(id__in=ids).update(status=BranchStatus.ABORTED, finished_at=ctx.now, waiting_for="")
    _abort_attempts(ctx, StateAttempt.objects.filter(branch_id__in=ids, status__in=ACTIVE_ATTEMPT))
    for _, key, kind, index in aborted:
        if kind == Branch.Kind.ITEM:
            ctx.history.append((branch.run_id, "MapIterationAborted", ctx.now, key, "", {"index": index}))


def _abort_attempts(ctx: Context, attempts) -> None:
    task_ids = list(attempts.values_list("celery_task_id", flat=True))
    attempts.update(status=AttemptStatus.ABORTED, finished_at=ctx.now)
    ctx.effects.revokes.extend(task_id for task_id in task_ids if task_id)
