"""Execution of pipeline runs on Celery: the only place that moves a run's branches from state to state.

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
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import Count, Exists, JSONField, OuterRef, Q
from django.utils import timezone

from forecasting.engine import definition as definitions
from forecasting.engine import jsonpath, machine
from forecasting.engine.errors import RUNTIME, TASK_FAILED, TIMEOUT, PathError, StatesError
from forecasting.models import (
    AttemptStatus,
    Branch,
    BranchStatus,
    HistoryEvent,
    Run,
    RunStatus,
    StateAttempt,
)
from supplychain.core.db import copy_rows

logger = logging.getLogger(__name__)
HISTORY_FIELDS = ("run", "type", "timestamp", "branch_key", "state", "details")
_HISTORY_SQL = """
    INSERT INTO forecasting_historyevent (run_id, type, timestamp, branch_key, state, details)
    SELECT r.run_id, r.type, r.timestamp, r.branch_key, r.state, r.details
      FROM jsonb_to_recordset(%s::jsonb)
        AS r(run_id uuid, type varchar, timestamp timestamptz, branch_key varchar, state varchar, details jsonb)
"""


def write_history(rows: list[tuple]) -> None:
    """Insert history rows (``HISTORY_FIELDS`` order) in one round trip: one JSON parameter on PostgreSQL.

    Every transition writes a few; COPY costs two round trips and per-value formatting in Python, where
    this is one ``json.dumps`` (measured: about 4 ms of a 50-state inline run, loaded).
    """
    if connection.vendor != "postgresql":
        copy_rows(HistoryEvent, HISTORY_FIELDS, rows)
        return
    payload = json.dumps(
        [
            {
                "run_id": str(run_id),
                "type": kind,
                "timestamp": moment.isoformat(),
                "branch_key": key,
                "state": state,
                "details": details,
            }
            for run_id, kind, moment, key, state, details in rows
        ],
        separators=(",", ":"),
    )
    with connection.cursor() as cursor:
        cursor.execute(_HISTORY_SQL, [payload])


ACTIVE_BRANCH = (BranchStatus.RUNNING, BranchStatus.PENDING)
ACTIVE_ATTEMPT = (AttemptStatus.SCHEDULED, AttemptStatus.RUNNING)
_rng = random.Random()  # noqa: S311 (retry jitter, not secrets)


def countdown_max() -> float:
    """Waits longer than this are not handed to the broker as a countdown: the sweep sends them when due."""
    return float(getattr(settings, "PIPELINE_COUNTDOWN_MAX", 300.0))


def task_lease() -> float:
    """How long a started attempt may run before the sweep takes it as lost (its worker died)."""
    return float(getattr(settings, "PIPELINE_TASK_LEASE_SECONDS", settings.CELERY_TASK_TIME_LIMIT + 30))


# ---- what to do after commit ---------------------------------------------------------------------------------


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


def _after_commit(effects: Effects) -> None:
    taken = _followed.get()
    if taken is not None and effects.batch and effects.attempts:
        quick = [attempt for attempt in effects.attempts if attempt[2] <= 0 and not attempt[3]]
        if quick:  # one: the others of a fan-out go out, to run beside it
            taken.append(quick[0][0])
            effects.attempts = [attempt for attempt in effects.attempts if attempt is not quick[0]]
    dispatcher.send(effects)
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
        transaction.on_commit(lambda: dispatcher.send(effects))
    for attempt_id in overdue:
        task_id = StateAttempt.objects.filter(id=attempt_id).values_list("celery_task_id", flat=True).first()
        cause = "the task did not finish within its TimeoutSeconds"
        finish_attempt(attempt_id, Outcome(error=TIMEOUT, cause=cause, timed_out=True))
        if task_id:
            dispatcher.send(Effects(revokes=[task_id]))
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


def unknown_step_outcome(resource: str) -> Outcome:
    return Outcome(error=TASK_FAILED, cause=f"no step is registered as {resource!r}")
