"""Stock levels per ingredient, and batches with their traceability."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.permissions import IsAuthenticated

from stock import selectors
from stock.api.fields import ID_PATTERN, QUANTITY
from stock.models import Batch, Ingredient

EXPIRING_WITHIN_MAX_DAYS = 3650


# ---- Levels and batches ---------------------------------------------------------------------------


class LevelSerializer(serializers.ModelSerializer):
    """An ingredient's level, from the annotations of ``selectors.stock_levels``."""

    on_hand = serializers.DecimalField(**QUANTITY, read_only=True)
    reserved = serializers.DecimalField(**QUANTITY, read_only=True)
    available = serializers.DecimalField(**QUANTITY, read_only=True)
    low = serializers.BooleanField(read_only=True)

    class Meta:
        model = Ingredient
        fields = ["sku", "name", "unit", "on_hand", "reserved", "available", "low_stock_threshold", "low"]


class LevelFilter(django_filters.FilterSet):
    sku = django_filters.BaseInFilter(field_name="sku", help_text="Comma-separated skus.")

    class Meta:
        model = Ingredient
        fields = ["sku"]


@extend_schema_view(list=extend_schema(tags=["stock"], summary="Stock level per ingredient"))
class LevelViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    queryset = selectors.stock_levels()
    serializer_class = LevelSerializer
    permission_classes = [IsAuthenticated]
    filterset_class = LevelFilter


class AllocationTraceSerializer(serializers.Serializer):
    transaction_id = serializers.CharField(source="reservation.transaction_id")
    reservation_status = serializers.CharField(source="reservation.status")
    quantity = serializers.DecimalField(**QUANTITY)
    open = serializers.BooleanField()


class BatchSerializer(serializers.ModelSerializer):
    sku = serializers.CharField(source="ingredient.sku")
    supplier = serializers.CharField(source="supplier.name", allow_null=True)
    receipt = serializers.CharField(source="receipt.key", allow_null=True)
    quantity_available = serializers.DecimalField(**QUANTITY, read_only=True)

    class Meta:
        model = Batch
        fields = [
            "id",
            "sku",
            "lot",
            "supplier",
            "receipt",
            "source_line",
            "received_at",
            "best_before",
            "quantity_received",
            "quantity_remaining",
            "quantity_reserved",
            "quantity_available",
            "status",
        ]


class BatchDetailSerializer(BatchSerializer):
    reservations = serializers.SerializerMethodField()

    class Meta(BatchSerializer.Meta):
        fields = [*BatchSerializer.Meta.fields, "reservations"]

    def get_reservations(self, batch) -> list[dict]:
        return AllocationTraceSerializer(selectors.batch_trace(batch), many=True).data


class BatchFilter(django_filters.FilterSet):
    sku = django_filters.CharFilter(field_name="ingredient__sku")
    status = django_filters.ChoiceFilter(choices=Batch.Status.choices)
    lot = django_filters.CharFilter()
    supplier = django_filters.CharFilter(field_name="supplier__name")
    expiring_within = django_filters.NumberFilter(
        method="filter_expiring",
        min_value=0,
        max_value=EXPIRING_WITHIN_MAX_DAYS,
        help_text=f"Days from today, 0 to {EXPIRING_WITHIN_MAX_DAYS}.",
    )

    class Meta:
        model = Batch
        fields = ["sku", "status", "lot", "supplier"]

    def filter_expiring(self, queryset, name, value):
        return selectors.batches_expiring_within(int(value), queryset)


@extend_schema_view(
    list=extend_schema(tags=["stock"], summary="Batches, first-expiring first"),
    retrieve=extend_schema(tags=["stock"], summary="A batch and every reservation it went into"),
)
class BatchViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Batch.objects.select_related("ingredient", "supplier", "receipt").order_by("best_before", "id")
    lookup_value_regex = ID_PATTERN
    permission_classes = [IsAuthenticated]
    filterset_class = BatchFilter

    def get_serializer_class(self):
        return BatchDetailSerializer if self.action == "retrieve" else BatchSerializer
