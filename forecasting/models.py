"""Data and invariants of forecasting: pipeline definitions and their runs, as Step Functions keeps them
(here), and the forecast's own models (in ``forecasting/forecast/models.py``, re-exported).

A ``Run`` is one execution of a ``Pipeline``. Its ``Branch`` rows are where it is: the top level, each
Parallel branch and each Map item is a branch with its current state and that state's raw input. Each try of
a Task state is a ``StateAttempt`` (input, output, error, cause, delay, timings, Celery task id). Everything
that happens is a ``HistoryEvent`` named like Step Functions' history (``TaskStateEntered``, ``TaskFailed``,
``MapIterationFailed``, ``ExecutionRedriven``…).
"""

from __future__ import annotations

import re
import uuid

from django.core.exceptions import ValidationError
from django.db import models

from forecasting.engine import DefinitionInvalid, validate
from forecasting.forecast.models import Forecast, ForecastPoint, HistoryDay, PurchaseSuggestion

__all__ = [
    "Branch",
    "Forecast",
    "ForecastPoint",
    "HistoryDay",
    "HistoryEvent",
    "Pipeline",
    "PurchaseSuggestion",
    "Run",
    "StateAttempt",
]

PIPELINE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")
# Names of the API's routes beside /pipelines/{name}/: a pipeline must not be called like them.
RESERVED_PIPELINE_NAMES = frozenset({"runs", "validate", "steps", "schema"})
RUN_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")


def validate_pipeline_name(name: str) -> None:
    if not PIPELINE_NAME.match(name or ""):
        raise ValidationError(
            "1-80 characters: lower-case letters, digits, '-' and '_', starting with a letter or digit."
        )
    if name in RESERVED_PIPELINE_NAMES:
        raise ValidationError(f"{name!r} is reserved (an API route has that name).")


def validate_definition(definition) -> None:
    try:
        validate(definition)
    except DefinitionInvalid as invalid:
        raise ValidationError([str(problem) for problem in invalid.problems]) from None


class Pipeline(models.Model):
    """A named state machine definition (Amazon States Language JSON), validated on save."""

    name = models.CharField(max_length=80, unique=True, validators=[validate_pipeline_name])
    description = models.TextField(blank=True)
    definition = models.JSONField(validators=[validate_definition])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RunStatus(models.TextChoices):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    ABORTED = "ABORTED"


class Run(models.Model):
    """One execution: started with a name unique per pipeline (starting it again answers the same run)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pipeline = models.ForeignKey(Pipeline, on_delete=models.PROTECT, related_name="runs")
    name = models.CharField(max_length=80)
    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.RUNNING)
    definition = models.JSONField(help_text="The definition as it was when the run started (redrive uses it too).")
    input = models.JSONField(default=dict, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.CharField(max_length=256, blank=True)
    cause = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    redrive_count = models.PositiveIntegerField(default=0)
    redrive_date = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [models.UniqueConstraint(fields=["pipeline", "name"], name="forecasting_run_name_unique")]
        indexes = [models.Index(fields=["status", "started_at"])]
        # Starting a run is ``add_run``; these two act on a run that exists (API, admin actions).
        permissions = [
            ("redrive_run", "Can redrive a failed or aborted run"),
            ("cancel_run", "Can cancel a running run"),
        ]

    def __str__(self) -> str:
        return f"{self.pipeline_id}:{self.name}"


class BranchStatus(models.TextChoices):
    PENDING = "PENDING"  # a Map item waiting for a concurrency slot
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    ABORTED = "ABORTED"


FINISHED_BRANCH = (BranchStatus.SUCCEEDED, BranchStatus.FAILED, BranchStatus.ABORTED)


class Branch(models.Model):
    """Where one thread of a run is: the top level (``key`` ""), a Parallel branch or a Map item.

    ``state`` is its current state and ``state_input`` that state's raw input; ``visit`` counts the states
    entered (a Task's attempts belong to one visit, a fan-out's children to one ``fanout``); ``retry_counts`` holds one
    counter per retrier of the current state. ``resume_at``/``resume_action`` schedule what happens next
    when the branch waits (a Wait state, or the delay before a Parallel/Map is retried).
    """

    class Kind(models.TextChoices):
        ROOT = "root"
        BRANCH = "branch"
        ITEM = "item"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="branches")
    parent = models.ForeignKey("self", on_delete=models.CASCADE, null=True, blank=True, related_name="children")
    parent_fanout = models.PositiveIntegerField(default=0, help_text="Which fan-out of its parent made it.")
    key = models.CharField(max_length=1000)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    index = models.PositiveIntegerField(null=True, blank=True)
    address = models.JSONField(default=list, help_text="Where its states are in the definition.")
    status = models.CharField(max_length=12, choices=BranchStatus.choices, default=BranchStatus.RUNNING)
    state = models.CharField(max_length=80)
    state_input = models.JSONField(null=True, blank=True)
    visit = models.PositiveIntegerField(default=0)
    retry_counts = models.JSONField(default=list, blank=True)
    retries = models.PositiveIntegerField(default=0)
    entered_at = models.DateTimeField(null=True, blank=True)
    fanout_input = models.JSONField(null=True, blank=True, help_text="The Parallel/Map state's effective input.")
    fanout = models.PositiveIntegerField(
        default=0, help_text="Fan-outs made so far (a retried Parallel/Map makes new children)."
    )
    waiting_for = models.CharField(max_length=12, blank=True)  # "task" | "children" | "resume" | ""
    resume_at = models.DateTimeField(null=True, blank=True)
    resume_sent = models.BooleanField(default=False)
    resume_action = models.CharField(max_length=16, blank=True)  # "continue" (after a Wait) | "retry"
    resume_next = models.CharField(max_length=80, blank=True)
    resume_output = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.CharField(max_length=256, blank=True)
    cause = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="forecasting_branch_key_unique")]
        indexes = [
            models.Index(fields=["parent", "parent_fanout", "status"]),
            models.Index(
                fields=["waiting_for"], condition=models.Q(waiting_for="children"), name="forecasting_branch_joining"
            ),
            models.Index(
                fields=["resume_at"], condition=models.Q(resume_at__isnull=False), name="forecasting_branch_resume"
            ),
        ]

    def __str__(self) -> str:
        return self.key or "(top level)"


class AttemptStatus(models.TextChoices):
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"


class StateAttempt(models.Model):
    """One try of a Task state: sent to the ``forecast`` queue (after ``delay`` seconds for a retry)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="attempts")
    branch = models.ForeignKey(Branch, on_delete=models.CASCADE, related_name="attempts")
    visit = models.PositiveIntegerField()
    state = models.CharField(max_length=80)
    resource = models.CharField(max_length=120)
    attempt = models.PositiveIntegerField(help_text="1 for the first try, 2 for the first retry…")
    status = models.CharField(max_length=12, choices=AttemptStatus.choices, default=AttemptStatus.SCHEDULED)
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.CharField(max_length=256, blank=True)
    cause = models.TextField(blank=True)
    delay = models.FloatField(default=0.0, help_text="Seconds waited before this attempt (its retry delay).")
    retrier = models.IntegerField(null=True, blank=True, help_text="The retrier whose delay this attempt waited.")
    timeout_seconds = models.PositiveIntegerField(null=True, blank=True)
    scheduled_at = models.DateTimeField(help_text="When it is due.")
    sent_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["branch", "visit", "attempt"], name="forecasting_attempt_unique"),
        ]
        indexes = [models.Index(fields=["status", "scheduled_at"]), models.Index(fields=["run", "state"])]

    def __str__(self) -> str:
        return f"{self.state} #{self.attempt}"


class HistoryEvent(models.Model):
    """One entry of a run's history, in order of ``id``."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="history")
    type = models.CharField(max_length=48)
    timestamp = models.DateTimeField()
    branch_key = models.CharField(max_length=1000, blank=True)
    state = models.CharField(max_length=80, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["run", "id"])]

    def __str__(self) -> str:
        return f"{self.type} {self.state}"
