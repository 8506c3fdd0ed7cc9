"""Admin of the platform for operations staff: shared display helpers, Celery's results read-only.

The site itself (branding, app order, View site) is ``admin_site.OperationsAdminSite``. Records that are facts
(audit, deliveries, Celery's task results) are registered with ``ReadOnlyAdmin``.
"""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html, format_html_join
from django_celery_results.admin import GroupResultAdmin, TaskResultAdmin
from django_celery_results.models import GroupResult, TaskResult


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records that are facts: viewable and searchable, never added, changed or deleted by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def json_table(value):
    """A JSON value as a person reads it: objects as two-column tables, lists of objects as tables with a header.

    Used for stored requests, responses and payloads instead of one long line of raw JSON.
    """
    if isinstance(value, dict):
        if not value:
            return "—"
        return format_html(
            '<table class="json">{}</table>',
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", ((k, json_table(v)) for k, v in value.items())),
        )
    if isinstance(value, list):
        if value and all(isinstance(item, dict) for item in value):
            columns = list(dict.fromkeys(key for item in value for key in item))
            head = format_html_join("", "<th>{}</th>", ((c,) for c in columns))
            rows = format_html_join(
                "",
                "<tr>{}</tr>",
                (
                    (format_html_join("", "<td>{}</td>", ((json_table(item.get(c)),) for c in columns)),)
                    for item in value
                ),
            )
            return format_html('<table class="json"><tr>{}</tr>{}</table>', head, rows)
        return ", ".join(str(json_table(item)) for item in value) if value else "—"
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


admin.site.unregister(TaskResult)
admin.site.unregister(GroupResult)


@admin.register(TaskResult)
class ReadOnlyTaskResultAdmin(ReadOnlyAdmin, TaskResultAdmin):
    """Celery's task results are what a worker recorded: read them, never edit them."""


@admin.register(GroupResult)
class ReadOnlyGroupResultAdmin(ReadOnlyAdmin, GroupResultAdmin):
    """Celery's group results, read-only for the same reason."""
