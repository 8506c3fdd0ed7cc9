"""Admin of the backbone for operations staff: subscriptions, deliveries and dead letters, audit, dashboard.

The dashboard draws the last hour per minute (server-side SVG) and shows the panels other apps register
(``register_dashboard_panel``: stock adds low stock and batches expiring soon).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from supplychain.core.admin import ReadOnlyAdmin, json_table
from supplychain.events import selectors, services
from supplychain.events.errors import SubscriptionInvalid
from supplychain.events.models import AuditArchive, AuditEntry, Delivery, OutboxEvent, Subscription


class DashboardPanel(NamedTuple):
    """A section another app adds to the operations dashboard: its template and what it shows."""

    template: str
    context: Callable[[HttpRequest], dict]


dashboard_panels: list[DashboardPanel] = []


def register_dashboard_panel(*, template: str, context: Callable[[HttpRequest], dict]) -> None:
    """Show ``template`` (rendered with ``panel`` = ``context(request)``) on the dashboard, under the chart."""
    dashboard_panels.append(DashboardPanel(template, context))


# The per-minute chart, drawn on the server as SVG (no script, nothing fetched by the browser).
CHART_BAR_STEP = 12  # pixels per minute: three 4-pixel bars
CHART_HEIGHT = 140
CHART_LEFT, CHART_TOP, CHART_BOTTOM = 44, 10, 40
CHART_SERIES = (("published", "#447e9b"), ("succeeded", "#5b9a3c"), ("failed", "#ba2121"))
CHART_LABEL_EVERY_MINUTES = 10


def _chart(series: list[dict]) -> dict:
    """Bars, axes, ticks and labels of the per-minute chart, in SVG coordinates."""
    peak = max([1, *(point[key] for point in series for key, _ in CHART_SERIES)])
    base = CHART_TOP + CHART_HEIGHT
    bars = []
    for index, point in enumerate(series):
        for offset, (key, colour) in enumerate(CHART_SERIES):
            height = round(CHART_HEIGHT * point[key] / peak)
            bars.append(
                {
                    "x": CHART_LEFT + index * CHART_BAR_STEP + offset * 4,
                    "y": base - height,
                    "height": height,
                    "colour": colour,
                    "value": point[key],
                    "key": key,
                    "minute": timezone.localtime(point["minute"]),
                }
            )
    y_ticks = [{"value": v, "y": base - round(CHART_HEIGHT * v / peak)} for v in sorted({0, peak // 2, peak})]
    last = len(series) - 1
    x_ticks = [
        {
            "x": CHART_LEFT + index * CHART_BAR_STEP + 6,
            "label": timezone.localtime(series[index]["minute"]).strftime("%H:%M"),
        }
        for index in range(last, -1, -CHART_LABEL_EVERY_MINUTES)
    ]
    width = CHART_LEFT + len(series) * CHART_BAR_STEP + 24  # room for the last time label
    return {
        "bars": bars,
        "peak": peak,
        "y_ticks": y_ticks,
        "x_ticks": x_ticks,
        "left": CHART_LEFT,
        "top": CHART_TOP,
        "base": base,
        "right": width - 24,
        "width": width,
        "height": base + CHART_BOTTOM,
        "x_title": CHART_LEFT + (width - CHART_LEFT) // 2,
        "y_title": CHART_TOP + CHART_HEIGHT // 2,
        "timezone": timezone.get_current_timezone_name(),
    }


class SubscriptionForm(forms.ModelForm):
    """The model's bounds, plus the Standard Webhooks secret format the subscription service requires."""

    url = forms.URLField(
        max_length=500, required=False, assume_scheme="https", help_text="Endpoint for the HTTP target."
    )

    class Meta:
        model = Subscription
        fields = list(services.SUBSCRIPTION_FIELDS)

    def clean_secret(self):
        secret = self.cleaned_data.get("secret", "")
        if self.instance.pk and not secret and self.cleaned_data.get("target") == Subscription.Target.HTTP:
            raise forms.ValidationError("An HTTP subscription keeps a secret: give a new whsec_ one to rotate it.")
        return secret

    def _post_clean(self):
        """After the model's own checks, the subscription service's (name alphabet, secret format, …)."""
        super()._post_clean()
        new_secret = "secret" in self.changed_data or not self.instance.pk
        try:
            services.check_subscription(self.instance, new_secret=new_secret and bool(self.instance.secret))
        except SubscriptionInvalid as exc:
            for name, messages in exc.errors.items():
                for message in messages:
                    if name in self.fields and message not in self.errors.get(name, []):
                        self.add_error(name, message)
                    elif name not in self.fields:
                        self.add_error(None, f"{name}: {message}")


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    form = SubscriptionForm
    list_display = ["name", "target", "types", "queue", "active", "alarm", "dead_count", "pending_count"]
    list_filter = ["target", "active", "queue", "alarm_state", "jitter"]
    search_fields = ["name", "description", "handler", "url"]
    readonly_fields = ["alarm_state", "previous_secret_expires_at", "created_at", "updated_at"]
    actions = ["redrive_dead"]
    fieldsets = [
        (None, {"fields": ["name", "description", "active", "event_types", "filter_policy"]}),
        ("Target", {"fields": ["target", "handler", "url", "secret", "max_batch_size", "timeout_seconds", "queue"]}),
        ("Retry policy", {"fields": ["max_attempts", "initial_interval", "backoff_rate", "max_interval", "jitter"]}),
        ("State", {"fields": ["alarm_state", "previous_secret_expires_at", "created_at", "updated_at"]}),
    ]

    def save_model(self, request, obj, form, change):
        """Through the subscription services (a changed secret is a rotation with a grace period)."""
        values = {name: form.cleaned_data[name] for name in services.SUBSCRIPTION_FIELDS if name in form.cleaned_data}
        if change:
            changed = {name: value for name, value in values.items() if name in form.changed_data}
            saved = services.update_subscription(subscription=Subscription.objects.get(pk=obj.pk), **changed)
        else:
            saved = services.create_subscription(**values)
        obj.pk, obj.secret = saved.pk, saved.secret

    def get_queryset(self, request):
        return selectors.subscriptions_with_counts()

    def get_urls(self):
        dashboard = self.admin_site.admin_view(self.dashboard_view)
        return [path("dashboard/", dashboard, name="events_dashboard"), *super().get_urls()]

    def dashboard_view(self, request):
        summary = selectors.operations_summary(minutes=60)
        context = {
            **self.admin_site.each_context(request),
            "title": "Operations: the event backbone's last hour and stock",
            "summary": summary,
            "chart": _chart(summary["series"]),
            "panels": [{"template": panel.template, "data": panel.context(request)} for panel in dashboard_panels],
            "dead_url": reverse("admin:events_delivery_changelist") + "?status__exact=dead",
        }
        return TemplateResponse(request, "admin/events/dashboard.html", context)

    @admin.display(description="event types")
    def types(self, obj):
        return ", ".join(obj.event_types)

    @admin.display(description="alarm", ordering="alarm_state")
    def alarm(self, obj):
        if obj.alarm_state == Subscription.Alarm.ALARM:
            return format_html('<strong style="color:#ba2121">dead letters</strong>')
        return "ok"

    @admin.display(description="dead", ordering="dead_count")
    def dead_count(self, obj):
        if not obj.dead_count:
            return 0
        url = reverse("admin:events_delivery_changelist") + f"?status__exact=dead&subscription__id__exact={obj.pk}"
        return format_html('<a href="{}" style="color:#ba2121">{}</a>', url, obj.dead_count)

    @admin.display(description="pending", ordering="pending_count")
    def pending_count(self, obj):
        return obj.pending_count

    @admin.action(description="Redrive the dead deliveries of the selected subscriptions", permissions=["change"])
    def redrive_dead(self, request, queryset):
        total = sum(
            services.redrive_deliveries(subscription=subscription.name, actor=request.user.username)
            for subscription in queryset
        )
        self.message_user(request, f"{total} dead deliveries redriven.", messages.SUCCESS)


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "event_type",
        "event_key",
        "subscription",
        "status",
        "attempts",
        "total_attempts",
        "short_error",
        "visible_at",
        "dead_at",
    ]
    list_filter = ["status", "subscription", "event__type", "redrive_count"]
    search_fields = ["=event__event_id", "event__key", "event__correlation_id", "last_error"]
    list_select_related = ["event", "subscription"]
    date_hierarchy = "created_at"
    actions = ["redrive"]
    readonly_fields = [
        "event_link",
        "subscription",
        "status",
        "attempts",
        "total_attempts",
        "redrive_count",
        "visible_at",
        "last_error",
        "last_http_status",
        "created_at",
        "completed_at",
        "dead_at",
        "history",
    ]
    fields = readonly_fields

    def has_change_permission(self, request, obj=None):
        # Viewing is read-only; the redrive action needs the change permission.
        return obj is None and request.user.has_perm("events.change_delivery")

    @admin.display(description="event type", ordering="event__type")
    def event_type(self, obj):
        return obj.event.type

    @admin.display(description="entity", ordering="event__key")
    def event_key(self, obj):
        return obj.event.key

    @admin.display(description="last error")
    def short_error(self, obj):
        return Truncator(obj.last_error).chars(80)

    @admin.display(description="event")
    def event_link(self, obj):
        url = reverse("admin:events_outboxevent_change", args=[obj.event_id])
        return format_html('<a href="{}">{} {}</a>', url, obj.event.type, obj.event.event_id)

    @admin.display(description="attempts and redrives")
    def history(self, obj):
        rows = selectors.delivery_history(obj.pk)
        return format_html(
            "<table><tr><th>when</th><th>#</th><th>outcome</th><th>HTTP</th><th>ms</th><th>next in s</th>"
            "<th>error</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (
                        r.occurred_at,
                        r.attempt or "",
                        r.outcome,
                        r.http_status or "",
                        r.duration_ms or "",
                        round(r.delay_seconds, 2) if r.delay_seconds is not None else "",
                        Truncator(r.error).chars(200),
                    )
                    for r in rows
                ),
            ),
        )

    @admin.action(description="Redrive the selected dead deliveries", permissions=["change"])
    def redrive(self, request, queryset):
        count = services.redrive_deliveries(
            delivery_ids=list(queryset.values_list("id", flat=True)), actor=request.user.username
        )
        skipped = queryset.count() - count
        note = f" ({skipped} were not dead and were left alone)" if skipped else ""
        self.message_user(request, f"{count} deliveries redriven{note}.", messages.SUCCESS)


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "type", "version", "key", "correlation_id", "relayed_at"]
    list_filter = ["type", ("relayed_at", admin.EmptyFieldListFilter)]
    search_fields = ["=event_id", "key", "correlation_id"]
    date_hierarchy = "occurred_at"
    fields = [
        "event_id",
        "type",
        "version",
        "source",
        "occurred_at",
        "correlation_id",
        "key",
        "relayed_at",
        "payload_table",
    ]
    readonly_fields = fields

    @admin.display(description="payload")
    def payload_table(self, obj):
        return json_table(obj.payload)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = [
        "occurred_at",
        "kind",
        "event_type",
        "entity_key",
        "subscription",
        "partner",
        "attempt",
        "outcome",
        "http_status",
        "duration_ms",
        "correlation_id",
    ]
    list_filter = ["kind", "outcome", "event_type", "subscription", "partner"]
    search_fields = ["=correlation_id", "=entity_key", "=event_id", "=subscription", "error"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False
    exclude = ["data"]
    readonly_fields = ["data_table"]

    @admin.display(description="data")
    def data_table(self, obj):
        return json_table(obj.data)


@admin.register(AuditArchive)
class AuditArchiveAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "key", "storage", "entries", "first_occurred_at", "last_occurred_at", "size_bytes"]
    search_fields = ["key"]
