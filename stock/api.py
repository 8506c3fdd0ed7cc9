"""REST API of stock: levels, batches (with traceability), receipts, reservations."""

from __future__ import annotations

from decimal import Decimal

import django_filters
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from stock import selectors, services
from stock.models import Batch, Ingredient, Receipt, Reservation
from supplychain.core.api.errors import STANDARD_ERRORS, ErrorSerializer, error_response
from supplychain.core.api.parsers import FormParser, JSONParser, MultiPartParser
from supplychain.core.api.permissions import ModelPermissions, require
from supplychain.core.identifiers import IDENTIFIER_PATTERN, IdentifierField

QUANTITY = {"max_digits": 14, "decimal_places": 3}
ID_PATTERN = "[0-9]+"  # database ids in URLs
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


# ---- Receipts -------------------------------------------------------------------------------------


class ReceiptSerializer(serializers.ModelSerializer):
    class Meta:
        model = Receipt
        fields = ["id", "key", "sha256", "source", "status", "rows_total", "rows_ingested", "errors", "received_at"]


class S3NotificationSerializer(serializers.Serializer):
    Records = serializers.ListField(child=serializers.DictField(), allow_empty=False)


class ReceiptUpload(serializers.Serializer):
    file = serializers.FileField(help_text="CSV with header sku,quantity,best_before[,lot][,supplier].")
    key = serializers.CharField(required=False, max_length=500, help_text="Defaults to uploads/<file name>.")


@extend_schema_view(
    list=extend_schema(tags=["stock"], summary="Receipts received, with their row errors"),
    retrieve=extend_schema(tags=["stock"]),
    create=extend_schema(
        tags=["stock"],
        summary="Upload a CSV receipt",
        request={"multipart/form-data": ReceiptUpload},
        responses={
            201: OpenApiResponse(ReceiptSerializer, description="Ingested; bad rows listed in errors."),
            200: OpenApiResponse(ReceiptSerializer, description="The same file again: a duplicate, nothing changed."),
            409: error_response(409, "The key was already received with different content."),
            **STANDARD_ERRORS,
        },
    ),
)
class ReceiptViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Receipt.objects.all()
    lookup_value_regex = ID_PATTERN
    serializer_class = ReceiptSerializer
    permission_classes = [ModelPermissions]
    parser_classes = [MultiPartParser, FormParser]
    filterset_fields = ["status", "source"]

    def create(self, request, *args, **kwargs):
        data = ReceiptUpload(data=request.data)
        data.is_valid(raise_exception=True)
        outcome = services.ingest_upload(upload=data.validated_data["file"], key=data.validated_data.get("key"))
        code = status.HTTP_201_CREATED if outcome.outcome == "processed" else status.HTTP_200_OK
        return Response({**ReceiptSerializer(outcome.receipt).data, "outcome": outcome.outcome}, status=code)

    @extend_schema(
        summary="S3 event notification: queue the new receipt files for ingest",
        request=S3NotificationSerializer,
        responses={202: OpenApiResponse(description="The keys queued for ingest."), **STANDARD_ERRORS},
        examples=[
            OpenApiExample(
                "ObjectCreated",
                request_only=True,
                value={
                    "Records": [
                        {
                            "eventName": "ObjectCreated:Put",
                            "s3": {"bucket": {"name": "supplychain"}, "object": {"key": "receipts/2026-11-22.csv"}},
                        }
                    ]
                },
            )
        ],
    )
    @action(detail=False, methods=["post"], parser_classes=[JSONParser])
    def notifications(self, request, version="v1"):
        require(request, "stock.add_receipt")
        data = S3NotificationSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        keys = services.queue_notified_receipts(records=data.validated_data["Records"])
        return Response({"queued": keys}, status=status.HTTP_202_ACCEPTED)


# ---- Reservations ---------------------------------------------------------------------------------


class ItemInput(serializers.Serializer):
    sku = serializers.SlugField(max_length=64)
    quantity = serializers.DecimalField(**QUANTITY, min_value=Decimal("0.001"))


class ReservationInput(serializers.Serializer):
    transaction_id = IdentifierField(help_text="The caller's id: it names the reservation's URL.")
    items = ItemInput(many=True, allow_empty=False, max_length=500)
    needed_by = serializers.DateField(
        required=False, allow_null=True, help_text="Never allocate from a batch that expires before this date."
    )
    hold_seconds = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=30 * 86400,
        help_text="Release automatically if not committed in time.",
    )


RESERVED_EXAMPLE = {
    "transaction_id": "abc123",
    "status": "reserved",
    "needed_by": None,
    "hold_until": None,
    "at_risk": False,
    "items": [
        {
            "sku": "ham",
            "quantity": "10.000",
            "batches": [
                {
                    "batch_id": 7,
                    "lot": "H1",
                    "best_before": "2026-11-25",
                    "supplier": "Farm A",
                    "quantity": "10.000",
                    "open": True,
                }
            ],
        }
    ],
}


@extend_schema(tags=["stock"])
class ReservationViewSet(viewsets.GenericViewSet):
    """All-or-nothing reservations by the caller's transaction id (the seed's transaction API, made safe)."""

    queryset = Reservation.objects.all()
    serializer_class = ReservationInput
    lookup_field = "transaction_id"
    lookup_value_regex = IDENTIFIER_PATTERN
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Reserve every item or nothing (first-expiring batches first)",
        request=ReservationInput,
        responses={
            201: OpenApiResponse(description="Reserved, with the batches each item came from."),
            409: OpenApiResponse(
                ErrorSerializer,
                description="Not enough stock; nothing reserved. `shortages` "
                "lists requested and available per short item.",
            ),
            422: error_response(422, "The transaction id was already used with a different body."),
            **STANDARD_ERRORS,
        },
        examples=[
            OpenApiExample(
                "reserve",
                request_only=True,
                value={
                    "transaction_id": "abc123",
                    "items": [{"sku": "ham", "quantity": 10}, {"sku": "mushroom", "quantity": 10}],
                },
            ),
            OpenApiExample("reserved", response_only=True, status_codes=["201"], value=RESERVED_EXAMPLE),
        ],
    )
    def create(self, request, version="v1"):
        require(request, "stock.add_reservation")
        data = ReservationInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        reservation = services.reserve_stock(
            transaction_id=values["transaction_id"],
            items=[services.Item(item["sku"], item["quantity"]) for item in values["items"]],
            needed_by=values.get("needed_by"),
            hold_seconds=values.get("hold_seconds"),
        )
        return Response(reservation.response, status=reservation.response_status)

    @extend_schema(summary="A reservation and its batches, lots, suppliers and best-before dates")
    def retrieve(self, request, transaction_id=None, version="v1"):
        require(request, "stock.view_reservation")
        reservation = get_object_or_404(Reservation, transaction_id=transaction_id)
        return Response(services.reservation_document(reservation))

    @extend_schema(
        summary="Commit (consume) the reserved stock",
        request=None,
        responses={
            200: OpenApiResponse(description="Committed."),
            404: error_response(404, "Unknown transaction id."),
            409: error_response(409, "Released or rejected: cannot be committed."),
        },
    )
    @action(detail=True, methods=["post"])
    def commit(self, request, transaction_id=None, version="v1"):
        require(request, "stock.change_reservation")
        reservation = services.commit_reservation(transaction_id=transaction_id)
        return Response(services.reservation_document(reservation))

    @extend_schema(
        summary="Release the reserved stock",
        request=None,
        responses={
            200: OpenApiResponse(description="Released."),
            404: error_response(404, "Unknown transaction id."),
            409: error_response(409, "Committed or rejected: cannot be released."),
        },
    )
    @action(detail=True, methods=["post"])
    def release(self, request, transaction_id=None, version="v1"):
        require(request, "stock.change_reservation")
        reservation = services.release_reservation(transaction_id=transaction_id)
        return Response(services.reservation_document(reservation))
