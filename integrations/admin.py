"""Admin of integrations: orders with their timeline, read-only (every change goes through the lifecycle)."""

from django.contrib import admin, messages

from integrations import services
from integrations.errors import IllegalTransition
from integrations.models import Order, OrderTransition


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
    inlines = [TimelineInline]
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
