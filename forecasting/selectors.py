"""Reads of forecasting: pipelines, runs and what a run did (its branches, attempts and history)."""

from __future__ import annotations

from django.db.models import QuerySet

from forecasting.models import Branch, HistoryEvent, Pipeline, Run, StateAttempt

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


def run_states(run: Run) -> dict[str, str]:
    """The status of each state of the top level (and of nested scopes, keyed by path), for the picture."""
    states: dict[str, str] = {}
    for key, state, status in Branch.objects.filter(run=run).values_list("key", "state", "status"):
        states[f"{_scope_of(key)}{state}"] = status
    for key, state, status in (
        StateAttempt.objects.filter(run=run).order_by("id").values_list("branch__key", "state", "status")
    ):
        states.setdefault(f"{_scope_of(key)}{state}", status)
    for event in HistoryEvent.objects.filter(run=run, type__endswith="StateExited").values_list("branch_key", "state"):
        states.setdefault(f"{_scope_of(event[0])}{event[1]}", "SUCCEEDED")
    return states


def _scope_of(key: str) -> str:
    """``Each@1/3`` (item 3 of the Map ``Each``) → ``Each/``: the definition scope a branch key runs in."""
    parts = [part for part in key.split("/") if part]
    names = [part.split("@")[0] for part in parts[0::2]]
    return "".join(f"{name}/" for name in names)


def run_history(run: Run) -> list[HistoryEvent]:
    return list(HistoryEvent.objects.filter(run=run).order_by("id")[:HISTORY_SHOWN])


def run_attempts(run: Run) -> list[StateAttempt]:
    return list(StateAttempt.objects.filter(run=run).select_related("branch").order_by("id")[:ATTEMPTS_SHOWN])
