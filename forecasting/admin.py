"""Admin registrations of forecasting: pipelines (with their picture) and their runs (the picture coloured by what
each state did, the history, every attempt's input and output), and the published forecasts.

Actions and saves call the services (``save_pipeline``, ``redrive_run``, ``cancel_run``); nothing here decides.
"""

from __future__ import annotations

import json
import uuid

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from forecasting import diagram, selectors, services
from forecasting.errors import DefinitionRejected, InvalidPipelineName, RunNotRedrivable, RunNotRunning
from forecasting.forecast.admin import ForecastAdmin, HistoryDayAdmin, PurchaseSuggestionAdmin
from forecasting.models import HistoryEvent, Pipeline, Run
from supplychain.core.admin import ReadOnlyAdmin

__all__ = ["ForecastAdmin", "HistoryDayAdmin", "PipelineAdmin", "PurchaseSuggestionAdmin", "RunAdmin"]

JSON_SHOWN = 20_000  # characters of one JSON value on a page (a state's data may be 256 KB)
DETAILS_SHOWN = 2_000  # characters of one history entry's details


def pretty_json(value, *, limit: int = JSON_SHOWN) -> str:
    """``value`` as indented JSON in a ``<pre>``, cut after ``limit`` characters saying how much was left out."""
    if value is None:
        return "—"
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    if len(text) > limit:
        text = f"{text[:limit]}\n… {len(text) - limit:,} more characters (the whole value: GET the run in the API)"
    return format_html(
        '<pre class="json" style="max-height:24em;max-width:40em;overflow:auto;margin:0;white-space:pre-wrap">{}</pre>',
        text,
    )


def compact_json(value, *, limit: int = DETAILS_SHOWN) -> str:
    """``value`` as one wrapped line of JSON (a history entry's details), cut after ``limit`` characters."""
    if value is None or value == {}:
        return ""
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    if len(text) > limit:
        text = f"{text[:limit]} … {len(text) - limit:,} more characters"
    return format_html('<code style="white-space:pre-wrap;word-break:break-word">{}</code>', text)


def _time(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if moment else ""


def _picture(svg: str):
    # The SVG is built by forecasting.diagram from numbers and escaped text only.
    return mark_safe(f'<div class="pipeline-picture" style="overflow:auto;max-width:100%">{svg}</div>')  # noqa: S308


class PipelineForm(forms.ModelForm):
    class Meta:
        model = Pipeline
        fields = ["name", "description", "definition"]

    def clean(self):
        cleaned = super().clean()
        definition = cleaned.get("definition")
        if definition is not None and "definition" not in self.errors:
            problems = services.definition_problems(definition)
            if problems:
                self.add_error("definition", [str(problem) for problem in problems[:20]])
        return cleaned


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    form = PipelineForm
    list_display = ["name", "description", "state_count", "run_count", "updated_at"]
    search_fields = ["name", "description"]
    fields = ["name", "description", "definition", "picture", "runs_link", "created_at", "updated_at"]
    readonly_fields = ["picture", "runs_link", "created_at", "updated_at"]

    @admin.display(description="states")
    def state_count(self, obj):
        return len(diagram.state_paths(obj.definition))

    @admin.display(description="runs")
    def run_count(self, obj):
        return obj.runs.count()

    @admin.display(description="Picture")
    def picture(self, obj):
        if obj is None or obj.pk is None:
            return "—"
        return _picture(diagram.definition_svg(obj.definition, title=obj.name, element_id="pipeline-diagram"))

    @admin.display(description="Runs")
    def runs_link(self, obj):
        if obj is None or obj.pk is None:
            return "—"
        url = reverse("admin:forecasting_run_changelist") + f"?pipeline__id__exact={obj.pk}"
        return format_html('<a href="{}">{} runs</a>', url, obj.runs.count())

    def save_model(self, request, obj, form, change):
        # Through the service: the name and every state are validated there (the form showed the problems).
        try:
            saved = services.save_pipeline(name=obj.name, definition=obj.definition, description=obj.description or "")
        except (DefinitionRejected, InvalidPipelineName) as exc:  # a race with another editor: say so
            self.message_user(request, str(exc), messages.ERROR)
            return
        obj.pk, obj.created_at, obj.updated_at = saved.pk, saved.created_at, saved.updated_at


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ["name", "pipeline", "coloured_status", "started_at", "stopped_at", "redrive_count", "short_error"]
    list_filter = ["status", "pipeline", "started_at"]
    search_fields = ["name", "pipeline__name", "error"]
    list_select_related = ["pipeline"]
    date_hierarchy = "started_at"
    actions = ["redrive", "cancel"]
    fields = [
        "picture",
        "pipeline",
        "name",
        "id",
        "coloured_status",
        "started_at",
        "stopped_at",
        "duration",
        "redrive_count",
        "redrive_date",
        "error",
        "cause",
        "run_input",
        "run_output",
        "history_table",
        "attempts_table",
    ]
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        """Also a run's id, when the term is one (pasted from an alert or the API)."""
        found, duplicates = super().get_search_results(request, queryset, search_term)
        try:
            run_id = uuid.UUID(search_term.strip())
        except ValueError:
            return found, duplicates
        return found | queryset.filter(id=run_id), duplicates

    def has_redrive_permission(self, request):
        return request.user.has_perm("forecasting.redrive_run")

    def has_cancel_permission(self, request):
        return request.user.has_perm("forecasting.cancel_run")

    @admin.display(description="status", ordering="status")
    def coloured_status(self, obj):
        fill, stroke = diagram.COLOURS.get(obj.status, diagram.COLOURS[diagram.NOT_RUN])
        return format_html(
            '<span class="run-status" style="background:{};border:1px solid {};padding:1px 6px;border-radius:3px">'
            "{}</span>",
            fill,
            stroke,
            obj.status,
        )

    @admin.display(description="error")
    def short_error(self, obj):
        return Truncator(obj.error).chars(60)

    @admin.display(description="took")
    def duration(self, obj):
        return f"{(obj.stopped_at - obj.started_at).total_seconds():.3f} s" if obj.stopped_at else "—"

    @admin.display(description="Picture")
    def picture(self, obj):
        svg = diagram.definition_svg(
            obj.definition,
            statuses=selectors.state_statuses(obj),
            title=f"{obj.pipeline.name}: {obj.name} ({obj.status})",
            element_id="run-diagram",
        )
        return _picture(svg)

    @admin.display(description="input")
    def run_input(self, obj):
        return pretty_json(obj.input)

    @admin.display(description="output")
    def run_output(self, obj):
        return pretty_json(obj.output)

    @admin.display(description="History")
    def history_table(self, obj):
        events = selectors.run_history(obj)
        total = HistoryEvent.objects.filter(run=obj).count()
        note = f"the first {len(events)} of {total} entries" if total > len(events) else f"{total} entries"
        rows = format_html_join(
            "",
            '<tr class="history-{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    event.type,
                    number,
                    _time(event.timestamp),
                    event.type,
                    event.branch_key or "",
                    event.state,
                    compact_json(event.details),
                )
                for number, event in enumerate(events, start=1)
            ),
        )
        return format_html(
            '<p>{}</p><table id="run-history"><thead><tr><th>#</th><th>time</th><th>event</th><th>branch</th>'
            "<th>state</th><th>details</th></tr></thead><tbody>{}</tbody></table>",
            note,
            rows,
        )

    @admin.display(description="State attempts")
    def attempts_table(self, obj):
        attempts = selectors.run_attempts(obj)
        if not attempts:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    attempt.state,
                    attempt.branch.key or "(top level)",
                    attempt.attempt,
                    attempt.status,
                    f"{attempt.delay:g} s" if attempt.delay else "",
                    _time(attempt.started_at),
                    _time(attempt.finished_at),
                    pretty_json(attempt.input),
                    pretty_json(attempt.output),
                    attempt.error,
                    Truncator(attempt.cause).chars(DETAILS_SHOWN),
                )
                for attempt in attempts
            ),
        )
        return format_html(
            '<div style="overflow-x:auto;max-width:100%"><table id="run-attempts"><thead><tr><th>state</th>'
            "<th>branch</th><th>#</th><th>status</th>"
            "<th>delay</th><th>started</th><th>finished</th><th>input</th><th>output</th><th>error</th>"
            "<th>cause</th></tr></thead><tbody>{}</tbody></table></div>",
            rows,
        )

    @admin.action(description="Redrive the selected failed or aborted runs", permissions=["redrive"])
    def redrive(self, request, queryset):
        self._each(request, queryset, services.redrive_run, RunNotRedrivable, "redriven")

    @admin.action(description="Cancel the selected running runs", permissions=["cancel"])
    def cancel(self, request, queryset):
        self._each(request, queryset, services.cancel_run, RunNotRunning, "cancelled")

    def _each(self, request, queryset, action, refusal: type[Exception], done_word: str) -> None:
        """Apply ``action`` to each selected run; say how many it did and why the others were refused."""
        done, refused = 0, []
        for run in queryset:
            try:
                action(run_id=run.id)
                done += 1
            except refusal as exc:
                refused.append(str(exc))
        self.message_user(request, f"{done} runs {done_word}.", messages.SUCCESS)
        for reason in refused[:10]:
            self.message_user(request, reason, messages.WARNING)
