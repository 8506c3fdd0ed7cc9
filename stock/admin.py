"""Admin of stock for operations staff: levels (low highlighted), batches by expiry, receipts, reservations, ledger.

Also the stock panel of the operations dashboard: low stock and batches expiring within three days.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from stock import selectors, services
from stock.models import (
    Allocation,
    Batch,
    Ingredient,
    Movement,
    Receipt,
    Recipe,
    RecipeIngredient,
    Reservation,
    Supplier,
    SupplierIngredient,
)
from supplychain.core.admin import ReadOnlyAdmin, json_table
from supplychain.core.errors import DomainError
from supplychain.events.admin import register_dashboard_panel

DASHBOARD_EXPIRING_DAYS = 3
DASHBOARD_ROWS = 20


class MasterDataAdmin(admin.ModelAdmin):
    """Master data edited by operations staff goes through the same upsert service as the API, so every
    change publishes its ``stock.*_changed`` event like any other. The natural key is fixed once created
    (it is how platforms and the ERP name the entity); a domain error (say, the unit of an ingredient with
    stock) is shown on the page and changes nothing."""

    key_field = ""

    def get_readonly_fields(self, request, obj=None):
        fixed = [self.key_field] if obj is not None else []
        return [*super().get_readonly_fields(request, obj), *fixed]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:  # the admin's own transaction rolls back with the error
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as error:
            self.message_user(request, f"Not saved: {error}", level=messages.ERROR)
            return redirect(request.get_full_path())

    def save_model(self, request, obj, form, change):
        obj.pk = self.upsert(obj).pk

    def upsert(self, obj):
        raise NotImplementedError


@admin.register(Ingredient)
class IngredientAdmin(MasterDataAdmin):
    key_field = "sku"
    list_display = ["sku", "name", "unit", "on_hand", "reserved", "available", "low_stock_threshold"]
    list_filter = ["unit"]
    search_fields = ["sku", "name"]

    def get_queryset(self, request):
        return selectors.stock_levels()

    @admin.display(description="on hand", ordering="on_hand")
    def on_hand(self, obj):
        return obj.on_hand

    @admin.display(description="reserved", ordering="reserved")
    def reserved(self, obj):
        return obj.reserved

    @admin.display(description="available", ordering="available")
    def available(self, obj):
        if obj.low:
            return format_html(
                '<strong style="color:#ba2121" title="below the low-stock threshold">{} low</strong>', obj.available
            )
        return obj.available

    def upsert(self, obj):
        ingredient, _ = services.upsert_ingredient(
            sku=obj.sku, name=obj.name, unit=obj.unit, low_stock_threshold=obj.low_stock_threshold
        )
        return ingredient


class ExpiringWithinFilter(admin.SimpleListFilter):
    title = "expiring within"
    parameter_name = "expiring_within"

    def lookups(self, request, model_admin):
        return [("1", "1 day"), ("3", "3 days"), ("7", "7 days"), ("14", "14 days")]

    def queryset(self, request, queryset):
        if self.value():
            return selectors.batches_expiring_within(int(self.value()), queryset)
        return queryset


class BatchAllocationInline(admin.TabularInline):
    model = Allocation
    fields = ["reservation", "quantity", "open"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "reservations this batch went into"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("reservation", "ingredient", "batch")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    # Five short columns fit a 1280-pixel page beside the sidebar and the filters (the browser tier checks it);
    # supplier is a filter, and received, reserved and the receipt are on the batch's own page.
    list_display = ["ingredient", "lot", "best_before", "available_of_remaining", "status"]
    list_filter = [ExpiringWithinFilter, "status", "supplier"]
    search_fields = ["lot", "ingredient__sku", "receipt__key"]
    list_select_related = ["ingredient", "supplier", "receipt"]
    date_hierarchy = "best_before"
    inlines = [BatchAllocationInline]

    @admin.display(description="available of remaining", ordering="quantity_remaining")
    def available_of_remaining(self, obj):
        return f"{obj.quantity_available} of {obj.quantity_remaining}"


class ReceiptUploadForm(forms.Form):
    file = forms.FileField(help_text="CSV with header sku,quantity,best_before[,lot][,supplier].")
    key = forms.CharField(required=False, help_text="Defaults to uploads/<file name>.")


@admin.register(Receipt)
class ReceiptAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "key", "source", "status", "rows_total", "rows_ingested", "error_count"]
    list_filter = ["status", "source"]
    search_fields = ["key", "sha256"]
    fields = ["key", "sha256", "source", "status", "rows_total", "rows_ingested", "received_at", "row_errors"]
    readonly_fields = fields
    change_list_template = "admin/stock/receipt/change_list.html"

    @admin.display(description="errors")
    def error_count(self, obj):
        return len(obj.errors)

    @admin.display(description="row errors")
    def row_errors(self, obj):
        if not obj.errors:
            return "none"
        return format_html(
            "<table><tr><th>line</th><th>column</th><th>reason</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                ((e["line"], e["column"], e["reason"]) for e in obj.errors),
            ),
        )

    def get_urls(self):
        upload = self.admin_site.admin_view(self.upload_view)
        return [path("upload/", upload, name="stock_receipt_upload"), *super().get_urls()]

    def upload_view(self, request):
        if not request.user.has_perm("stock.add_receipt"):
            return redirect("admin:stock_receipt_changelist")
        form = ReceiptUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                outcome = services.ingest_upload(upload=form.cleaned_data["file"], key=form.cleaned_data["key"])
            except DomainError as exc:
                self.message_user(request, exc.detail, messages.ERROR)
            else:
                receipt = outcome.receipt
                self.message_user(
                    request,
                    f"{receipt.key}: {outcome.outcome}, {receipt.rows_ingested} of {receipt.rows_total} rows ingested, "
                    f"{len(receipt.errors)} errors.",
                    messages.SUCCESS if not receipt.errors else messages.WARNING,
                )
                return redirect(reverse("admin:stock_receipt_change", args=[receipt.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Upload a receipt",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/stock/receipt/upload.html", context)


class AllocationInline(admin.TabularInline):
    model = Allocation
    fields = ["ingredient", "lot", "best_before", "supplier", "quantity", "open"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("ingredient", "batch__supplier")

    @admin.display(description="lot")
    def lot(self, obj):
        url = reverse("admin:stock_batch_change", args=[obj.batch_id])
        return format_html('<a href="{}">{}</a>', url, obj.batch.lot)

    @admin.display(description="best before")
    def best_before(self, obj):
        return obj.batch.best_before

    @admin.display(description="supplier")
    def supplier(self, obj):
        return obj.batch.supplier


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    list_display = ["transaction_id", "status", "items", "risk", "needed_by", "hold_until", "created_at", "closed_at"]
    list_filter = ["status", "at_risk"]
    search_fields = ["transaction_id"]
    date_hierarchy = "created_at"
    inlines = [AllocationInline]
    actions = ["commit", "release"]
    fields = [
        "transaction_id",
        "status",
        "risk",
        "needed_by",
        "hold_until",
        "created_at",
        "closed_at",
        "request_table",
        "response_status",
        "response_table",
    ]
    readonly_fields = fields

    @admin.display(description="items")
    def items(self, obj):
        """What was asked for, as ``10 ham, 4 cheese`` (from the stored request: rejected ones have no allocations)."""
        return ", ".join(f"{item['quantity']} {item['sku']}" for item in obj.request.get("items", []))

    @admin.display(description="at risk", ordering="at_risk")
    def risk(self, obj):
        """Nothing unless part of it could not be re-allocated after an expiry."""
        if obj.at_risk:
            return format_html(
                '<strong style="color:#ba2121" title="{}">at risk</strong>',
                "part of it could not be re-allocated after an expiry",
            )
        return ""

    @admin.display(description="request")
    def request_table(self, obj):
        return json_table(obj.request)

    @admin.display(description="response (replayed to identical repeats)")
    def response_table(self, obj):
        return json_table(obj.response)

    def has_change_permission(self, request, obj=None):
        return obj is None and request.user.has_perm("stock.change_reservation")

    @admin.action(description="Commit (consume) the selected reservations", permissions=["change"])
    def commit(self, request, queryset):
        self._apply(request, queryset, services.commit_reservation, "committed")

    @admin.action(description="Release the selected reservations", permissions=["change"])
    def release(self, request, queryset):
        self._apply(request, queryset, services.release_reservation, "released")

    def _apply(self, request, queryset, service, verb):
        done, refused = 0, []
        for transaction_id in queryset.values_list("transaction_id", flat=True):
            try:
                service(transaction_id=transaction_id)
                done += 1
            except DomainError as exc:
                refused.append(exc.detail)
        self.message_user(request, f"{done} reservations {verb}.", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)


@admin.register(Movement)
class MovementAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "ingredient",
        "kind",
        "on_hand_delta",
        "reserved_delta",
        "batch",
        "reservation",
        "note",
    ]
    list_filter = ["kind"]
    search_fields = ["ingredient__sku", "reservation__transaction_id", "batch__lot", "note"]
    list_select_related = ["ingredient", "batch", "reservation"]
    date_hierarchy = "created_at"


class RecipeIngredientInline(admin.TabularInline):
    model = RecipeIngredient
    extra = 1
    autocomplete_fields = ["ingredient"]


@admin.register(Recipe)
class RecipeAdmin(MasterDataAdmin):
    key_field = "code"
    list_display = ["code", "name"]
    search_fields = ["code", "name"]
    inlines = [RecipeIngredientInline]

    def save_model(self, request, obj, form, change):
        """The recipe and its lines are one upsert, in ``save_related`` once the lines are known."""

    def save_related(self, request, form, formsets, change):
        lines = {}
        for formset in formsets:
            # the admin's change message reads what a formset's save did; the upsert below does it instead
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
            for line in formset.forms:
                data = getattr(line, "cleaned_data", None) or {}
                if data.get("ingredient") and not data.get("DELETE"):
                    lines[data["ingredient"].sku] = data["quantity_per_portion"]
        recipe = form.instance
        saved, _ = services.upsert_recipe(
            code=recipe.code,
            name=recipe.name,
            lines=[services.RecipeLine(sku, quantity) for sku, quantity in sorted(lines.items())],
        )
        recipe.pk = saved.pk


@admin.register(Supplier)
class SupplierAdmin(MasterDataAdmin):
    key_field = "code"
    list_display = ["code", "name", "lead_time_days"]
    list_editable = ["lead_time_days"]  # purchasing terms, edited in the list; the form keeps the master data
    fields = ["code", "name"]
    search_fields = ["code", "name"]

    def upsert(self, obj):
        supplier, _ = services.upsert_supplier(code=obj.code, name=obj.name)
        if supplier.lead_time_days != obj.lead_time_days:  # purchasing terms, not master data: no event
            supplier.lead_time_days = obj.lead_time_days
            supplier.save(update_fields=["lead_time_days"])
        return supplier


@admin.register(SupplierIngredient)
class SupplierIngredientAdmin(admin.ModelAdmin):
    """Purchasing terms (pack size, minimum order, lead time) that make forecast suggestions orderable."""

    list_display = ["ingredient", "supplier", "pack_size", "minimum_order_quantity", "lead_time_days", "preferred"]
    list_filter = ["supplier", "preferred"]
    search_fields = ["ingredient__sku", "supplier__code", "supplier__name"]
    autocomplete_fields = ["ingredient", "supplier"]


def _dashboard_stock(request) -> dict:
    """The dashboard's stock panel: what is low and what expires soon, each linking to its list."""
    low = list(selectors.stock_levels().filter(low=True)[:DASHBOARD_ROWS])
    expiring = selectors.batches_expiring_within(DASHBOARD_EXPIRING_DAYS).select_related("ingredient")
    return {
        "low": low,
        "expiring": list(expiring[:DASHBOARD_ROWS]),
        "expiring_count": expiring.count(),
        "days": DASHBOARD_EXPIRING_DAYS,
        "levels_url": reverse("admin:stock_ingredient_changelist"),
        "expiring_url": reverse("admin:stock_batch_changelist") + f"?expiring_within={DASHBOARD_EXPIRING_DAYS}",
    }


register_dashboard_panel(template="admin/stock/dashboard_panel.html", context=_dashboard_stock)
