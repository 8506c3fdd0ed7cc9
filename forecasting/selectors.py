"""Reads of forecasting: pipelines, runs and what a run did (its branches, attempts and history)."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Q, QuerySet

from forecasting import diagram
from forecasting.models import Branch, BranchStatus, HistoryEvent, Pipeline, Run, StateAttempt

HISTORY_SHOWN = 1000
ATTEMPTS_SHOWN = 500


def pipelines() -> QuerySet[Pipeline]:
    return Pipeline.objects.order_by("name")


def runs(*, pipeline: str | None = None, status: str | None = None) -> QuerySet[Run]:
    queryset = Run.objects.select_related("pipeline").order_by("-started_at", "id")
    if pipeline:
        queryset = queryset.filter(pipeline__name=pipeline)
    if status:
        queryset = queryset.filter(status=status)
    return queryset


# When a state's branches (Map items, visits) did different things, the first of these is shown.
STATUS_PRECEDENCE = (
    diagram.FAILED,
    diagram.RUNNING,
    diagram.ABORTED,
    diagram.CAUGHT,
    diagram.RETRIED,
    diagram.SUCCEEDED,
    diagram.NOT_RUN,
)


def state_statuses(run: Run) -> dict[str, str]:
    """What each state of the run's definition did, by its path (``diagram.state_path``), for the picture and the API.

    Derived from what is persisted: a branch running in a state, or that failed or was aborted in it (its current
    state is where it stopped); a Task attempt beyond the first, or a Parallel/Map retry scheduled (retried);
    ``CatchTaken`` (caught); a ``…StateExited`` (succeeded). A state of many branches (Map items, loops) shows
    the first of ``STATUS_PRECEDENCE`` among them; a redriven state shows what it did since.
    """
    seen: dict[str, set[str]] = defaultdict(set)
    address_of: dict[str, list] = {}
    for key, address, state, status, visit in Branch.objects.filter(run=run).values_list(
        "key", "address", "state", "status", "visit"
    ):
        address_of[key] = address
        if visit == 0:  # a Map item that never started
            continue
        path = diagram.state_path(address, state)
        if status == BranchStatus.RUNNING:
            seen[path].add(diagram.RUNNING)
        elif status == BranchStatus.FAILED:
            seen[path].add(diagram.FAILED)
        elif status == BranchStatus.ABORTED:
            seen[path].add(diagram.ABORTED)
    retried = StateAttempt.objects.filter(run=run, attempt__gt=1).values_list("branch__address", "state").distinct()
    for address, state in retried:
        seen[diagram.state_path(address, state)].add(diagram.RETRIED)
    finished = (
        HistoryEvent.objects.filter(run=run)
        .filter(Q(type__endswith="StateExited") | Q(type="CatchTaken") | Q(type__endswith="StateRetryScheduled"))
        .values_list("type", "branch_key", "state")
        .distinct()
    )
    for kind, key, state in finished:
        if kind == "CatchTaken":
            status = diagram.CAUGHT
        elif kind.endswith("StateRetryScheduled"):
            status = diagram.RETRIED
        else:
            status = diagram.SUCCEEDED
        seen[diagram.state_path(address_of.get(key, []), state)].add(status)
    statuses = {}
    for path in diagram.state_paths(run.definition):
        statuses[path] = next((s for s in STATUS_PRECEDENCE if s in seen.get(path, ())), diagram.NOT_RUN)
    return statuses


def run_history(run: Run) -> list[HistoryEvent]:
    return list(HistoryEvent.objects.filter(run=run).order_by("id")[:HISTORY_SHOWN])


def run_attempts(run: Run) -> list[StateAttempt]:
    return list(StateAttempt.objects.filter(run=run).select_related("branch").order_by("id")[:ATTEMPTS_SHOWN])
