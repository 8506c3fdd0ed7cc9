"""Admin of integrations: orders with their timeline (read-only: every change goes through the lifecycle), partner
messages with replay of parked ones, the couriers' status vocabulary (editable), alert rules (editable), alert
groups and every alert message sent (read-only facts)."""

from django.contrib import admin, messages

from integrations import services
from integrations.errors import IllegalTransition
from integrations.models import (
    AlertGroup,
    AlertNotification,
    AlertRule,
    Order,
    OrderTransition,
    PartnerMessage,
    StatusVocabulary,
)
from supplychain.core.admin import ReadOnlyAdmin, json_table


class TimelineInline(admin.TabularInline):
    model = OrderTransition
    fields = ["occurred_at", "from_status", "to_status", "source", "detail"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["occurred_at", "id"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class PartnerMessageInline(admin.TabularInline):
    model = PartnerMessage
    fields = ["received_at", "partner", "direction", "kind", "raw_status", "status", "reason", "message_id"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["received_at", "id"]
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["order_id", "status", "customer_reference", "delivery_date", "received_at", "status_changed_at"]
    list_filter = ["status", "delivery_date", "received_at"]
    search_fields = ["order_id", "customer_reference"]
    date_hierarchy = "delivery_date"
    ordering = ["-received_at", "-id"]
    readonly_fields = [
        "order_id",
        "status",
        "customer_reference",
        "delivery_date",
        "delivery_address",
        "lines",
        "received_at",
        "status_changed_at",
    ]
    exclude = ["request_hash"]
    inlines = [TimelineInline, PartnerMessageInline]
    actions = ["cancel_orders"]
    show_full_result_count = False  # counting millions of orders on every list page is slow

    def has_add_permission(self, request):
        return False  # orders come from the platform

    def has_delete_permission(self, request, obj=None):
        return False  # the timeline and the audit log are the record

    @admin.action(description="Cancel the selected orders (releases their reservations)", permissions=["change"])
    def cancel_orders(self, request, queryset):
        cancelled = refused = 0
        for order_id in queryset.values_list("order_id", flat=True):
            try:
                services.cancel_order(order_id=order_id, source=f"operations:{request.user.get_username()}")
                cancelled += 1
            except IllegalTransition:
                refused += 1
        self.message_user(request, f"{cancelled} cancelled.", messages.SUCCESS)
        if refused:
            self.message_user(
                request, f"{refused} refused: already picked or later (see the audit log).", messages.WARNING
            )


@admin.register(PartnerMessage)
class PartnerMessageAdmin(admin.ModelAdmin):
    list_display = [
        "received_at",
        "partner",
        "direction",
        "kind",
        "status",
        "reason",
        "raw_status",
        "canonical_status",
        "order_reference",
        "replays",
    ]
    list_filter = ["status", "reason", "partner", "direction", "kind", "received_at"]
    search_fields = ["message_id", "order_reference", "raw_status"]
    date_hierarchy = "received_at"
    readonly_fields = [field.name for field in PartnerMessage._meta.fields]
    actions = ["replay_messages"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the raw message is the record

    @admin.action(
        description="Replay the selected parked messages (after fixing vocabulary or order)", permissions=["change"]
    )
    def replay_messages(self, request, queryset):
        ids = list(queryset.filter(status=PartnerMessage.Status.PARKED).values_list("id", flat=True))
        counts = services.replay_messages(message_ids=ids, actor=f"operations:{request.user.get_username()}")
        summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items())) or "nothing parked"
        level = messages.WARNING if counts.get("parked") else messages.SUCCESS
        self.message_user(request, f"Replayed {len(ids)}: {summary}.", level)


@admin.register(StatusVocabulary)
class StatusVocabularyAdmin(admin.ModelAdmin):
    list_display = ["partner", "raw_status", "canonical_status", "description"]
    list_filter = ["partner", "canonical_status"]
    search_fields = ["raw_status", "description"]
    list_editable = ["canonical_status"]


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    """Where each kind of alert goes and how it is grouped; one row per kind (the migration creates them)."""

    list_display = ["kind", "channel", "recipients", "active", "group_wait", "group_interval", "repeat_interval"]
    list_editable = ["recipients", "active"]
    list_filter = ["channel", "active"]
    fields = [
        "kind",
        "channel",
        "recipients",
        "active",
        "group_wait",
        "group_interval",
        "repeat_interval",
        "resolve_after",
        "send_resolved",
    ]

    def get_readonly_fields(self, request, obj=None):
        return ["kind"] if obj is not None else []

    def has_delete_permission(self, request, obj=None):
        return False  # a kind without a rule would get the defaults back at the next sweep


class AlertMessageInline(admin.TabularInline):
    model = AlertNotification
    fields = ["created_at", "reason", "channel", "count", "new_since_last", "title", "outcome", "sent_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["created_at", "id"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AlertGroup)
class AlertGroupAdmin(ReadOnlyAdmin):
    list_display = ["kind", "partner", "status", "count", "notifications", "started_at", "last_seen_at", "resolved_at"]
    list_filter = ["status", "kind", "partner", "started_at"]
    search_fields = ["partner", "samples"]
    date_hierarchy = "started_at"
    readonly_fields = [
        "kind",
        "partner",
        "status",
        "started_at",
        "last_seen_at",
        "count",
        "notified_count",
        "notifications",
        "last_notified_at",
        "resolved_at",
        "resolved_notified",
        "latest",
    ]
    exclude = ["samples"]
    inlines = [AlertMessageInline]

    @admin.display(description="Latest alerts")
    def latest(self, obj):
        return json_table(list(reversed(obj.samples)))


@admin.register(AlertNotification)
class AlertNotificationAdmin(ReadOnlyAdmin):
    """Every alert message: what was said, to which channel and recipients, and whether it went out."""

    list_display = ["created_at", "title", "kind", "partner", "channel", "reason", "count", "outcome", "sent_at"]
    list_filter = ["channel", "kind", "reason", "outcome", "partner", "created_at"]
    search_fields = ["title", "text", "partner", "=event_id"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "group",
        "kind",
        "partner",
        "channel",
        "reason",
        "count",
        "new_since_last",
        "title",
        "text",
        "recipients",
        "event_id",
        "created_at",
        "outcome",
        "sent_at",
    ]
