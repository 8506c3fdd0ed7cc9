"""REST API of stock: levels, batches (with traceability), receipts, reservations."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from urllib.parse import unquote_plus

import django_filters
from django.shortcuts import get_object_or_404
from django_guid import get_guid
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from stock import selectors, services
from stock.errors import InvalidReceiptKey
from stock.models import Batch, Ingredient, Receipt, Reservation
from stock.services.receipts import NotifiedObject, upload_key, validate_receipt_key
from supplychain.core.api.errors import STANDARD_ERRORS, ErrorSerializer, domain_error_body, error_response
from supplychain.core.api.parsers import FormParser, JSONParser, MultiPartParser
from supplychain.core.api.permissions import ModelPermissions, require
from supplychain.core.identifiers import IDENTIFIER_PATTERN, IdentifierField, is_identifier
from supplychain.core.storage import MAX_KEY_BYTES

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


class StrictCharField(serializers.CharField):
    """Text that must arrive as a string: DRF's ``CharField`` would take the number 7 for ``"7"``."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ReceiptKeyField(StrictCharField):
    """A receipt key, checked as every source's key is (``validate_receipt_key``): a 400 naming its path.

    ``url_encoded`` keys (S3 notifications encode them) are decoded first, so ``..%2F`` is a ``..`` too.
    A key sent empty is refused, not taken for one left out (DRF treats an empty form field as absent).
    """

    def __init__(self, *, url_encoded: bool = False, **kwargs):
        self.url_encoded = url_encoded
        # Encoded, each byte of the key may take three characters (%2F); the decoded key is checked after.
        longest = Receipt._meta.get_field("key").max_length
        kwargs.setdefault("max_length", 3 * MAX_KEY_BYTES if url_encoded else longest)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def get_value(self, dictionary):
        if self.field_name in dictionary and dictionary.get(self.field_name) == "":
            return ""
        return super().get_value(dictionary)

    def to_internal_value(self, data):
        key = super().to_internal_value(data)
        if self.url_encoded:
            key = unquote_plus(key)
        try:
            return validate_receipt_key(key)
        except InvalidReceiptKey as exc:
            raise serializers.ValidationError(exc.detail) from exc


class S3BucketSerializer(serializers.Serializer):
    name = StrictCharField(max_length=255)


class S3ObjectSerializer(serializers.Serializer):
    key = ReceiptKeyField(url_encoded=True, help_text="URL-encoded, as S3 sends it.")


class S3EntitySerializer(serializers.Serializer):
    bucket = S3BucketSerializer()
    object = S3ObjectSerializer()


class S3RecordSerializer(serializers.Serializer):
    """One record of an S3 event notification; other fields S3 sends are kept on the audit entry."""

    eventName = StrictCharField(max_length=100, required=False, default="ObjectCreated:Put")
    s3 = S3EntitySerializer()


class S3NotificationSerializer(serializers.Serializer):
    Records = S3RecordSerializer(many=True, allow_empty=False, max_length=1000)


class ReceiptUpload(serializers.Serializer):
    file = serializers.FileField(help_text="CSV with header sku,quantity,best_before[,lot][,supplier].")
    key = ReceiptKeyField(required=False, help_text="Defaults to uploads/<file name>.")

    def validate(self, attrs):
        if "key" not in attrs:  # the default key, from the file's name, must be a valid key too
            try:
                attrs["key"] = validate_receipt_key(upload_key(attrs["file"].name))
            except InvalidReceiptKey as exc:
                raise serializers.ValidationError({"file": [exc.detail]}) from exc
        return attrs


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
        outcome = services.ingest_upload(upload=data.validated_data["file"], key=data.validated_data["key"])
        code = status.HTTP_201_CREATED if outcome.outcome == "processed" else status.HTTP_200_OK
        return Response({**ReceiptSerializer(outcome.receipt).data, "outcome": outcome.outcome}, status=code)

    @extend_schema(
        summary="S3 event notification: queue the new receipt files for ingest",
        request=S3NotificationSerializer,
        description=(
            "Each record's key is checked as an upload's is (no `..` segment, no leading `/`, no control"
            " character, at most 500 characters once URL-decoded); a malformed record is a 400 naming its"
            " path (`Records.0.s3.object.key`) and nothing of the body is recorded or queued. Valid records"
            " outside the receipts prefix, not `.csv` or of another bucket are ignored, on record."
        ),
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
        notified = [
            NotifiedObject(
                key=record["s3"]["object"]["key"],
                bucket=record["s3"]["bucket"]["name"],
                event_name=record["eventName"],
                record=received,
            )
            for record, received in zip(data.validated_data["Records"], request.data["Records"], strict=True)
        ]
        keys = services.queue_notified_receipts(objects=notified)
        return Response({"queued": keys}, status=status.HTTP_202_ACCEPTED)


# ---- Reservations ---------------------------------------------------------------------------------


ITEMS_PER_RESERVATION = 500


class ItemInput(serializers.Serializer):
    sku = serializers.SlugField(max_length=64)
    quantity = serializers.DecimalField(**QUANTITY, min_value=Decimal("0.001"))


class ReservationInput(serializers.Serializer):
    transaction_id = IdentifierField(help_text="The caller's id: it names the reservation's URL ('bulk' excepted).")
    items = ItemInput(many=True, allow_empty=False, max_length=ITEMS_PER_RESERVATION)
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

    def validate_transaction_id(self, value: str) -> str:
        if value == "bulk":  # /reservations/bulk/ is the group endpoint: such a reservation could never be read
            raise serializers.ValidationError("'bulk' is reserved; choose another transaction id.")
        return value


class BulkReservationInput(serializers.Serializer):
    reservations = ReservationInput(many=True, allow_empty=False, max_length=services.GROUP_LIMIT)


_SKU = re.compile(r"\A[-a-zA-Z0-9_]{1,64}\Z")
_QUANTITY = re.compile(r"\A[0-9]{1,11}(\.[0-9]{1,3})?\Z")
_DATE = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_MILLI = Decimal("0.001")
_MAX_HOLD = ReservationInput().fields["hold_seconds"].max_value


def plain_bulk_requests(data) -> list[services.ReservationRequest] | None:
    """The requests of a bulk body in the plain shape almost every caller sends, or None for anything else.

    The serializers above cost about 4 ms per 100 requests here (a nested field tree run per element);
    this reads the common shape (string ids and skus, whole or decimal quantities, ISO dates, integer
    holds) in a fraction of that. It accepts only what ``BulkReservationInput`` accepts and gives the
    same values; whatever it does not recognise (a wrong type, a bound crossed, a float) returns None,
    and the serializers then answer, with their errors.
    """
    if not isinstance(data, dict):
        return None
    elements = data.get("reservations")
    if not isinstance(elements, list) or not 0 < len(elements) <= services.GROUP_LIMIT:
        return None
    requests = []
    for element in elements:
        if not isinstance(element, dict):
            return None
        transaction_id, items = element.get("transaction_id"), element.get("items")
        if not is_identifier(transaction_id) or transaction_id == "bulk":
            return None
        if not isinstance(items, list) or not 0 < len(items) <= ITEMS_PER_RESERVATION:
            return None
        parsed = []
        for item in items:
            if not isinstance(item, dict):
                return None
            sku, quantity = item.get("sku"), item.get("quantity")
            if not isinstance(sku, str) or not _SKU.match(sku):
                return None
            if type(quantity) is int:
                quantity = str(quantity)
            if not isinstance(quantity, str) or not _QUANTITY.match(quantity):
                return None
            value = Decimal(quantity).quantize(_MILLI)
            if value < _MILLI:
                return None
            parsed.append(services.Item(sku, value))
        needed_by = element.get("needed_by")
        if needed_by is not None:
            if not isinstance(needed_by, str) or not _DATE.match(needed_by):
                return None
            try:
                needed_by = date.fromisoformat(needed_by)
            except ValueError:
                return None
        hold_seconds = element.get("hold_seconds")
        if hold_seconds is not None and (type(hold_seconds) is not int or not 1 <= hold_seconds <= _MAX_HOLD):
            return None
        requests.append(services.ReservationRequest(transaction_id, parsed, needed_by, hold_seconds))
    return requests


class BulkResult(serializers.Serializer):
    transaction_id = serializers.CharField()
    status = serializers.ChoiceField(["reserved", "rejected", "replayed", "refused"])
    http_status = serializers.IntegerField(help_text="What the single endpoint would have answered.")
    body = serializers.DictField(help_text="The single endpoint's body for that status.")


class BulkOutput(serializers.Serializer):
    results = BulkResult(many=True)


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


def _bulk_body(result: services.ReservationResult) -> dict:
    """What the single endpoint answers for one element: a stored reply gets this request's correlation id."""
    if result.error is not None:
        return domain_error_body(result.error)
    body = result.reservation.response
    if result.http_status >= 400 and "correlation_id" not in body:
        body = {**body, "correlation_id": get_guid()}
    return body


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

    @extend_schema(
        summary="Reserve many requests in one transaction, each all or nothing (up to 1,000)",
        description=(
            "Each element is a request of the single endpoint, reserved in the order given; one result per "
            "element, in order, with the status and body the single endpoint would have answered. A rejected "
            "or refused element never undoes the others. A malformed element refuses the whole call (400, "
            "the element named by its index, e.g. `reservations.3.items.0.sku`) before anything is written."
        ),
        request=BulkReservationInput,
        responses={200: BulkOutput, **STANDARD_ERRORS},
        examples=[
            OpenApiExample(
                "reserve many",
                request_only=True,
                value={
                    "reservations": [
                        {"transaction_id": "order-1001", "items": [{"sku": "ham", "quantity": 2}]},
                        {"transaction_id": "order-1002", "items": [{"sku": "ham", "quantity": 1}], "hold_seconds": 600},
                    ]
                },
            ),
            OpenApiExample(
                "results",
                response_only=True,
                status_codes=["200"],
                value={
                    "results": [
                        {
                            "transaction_id": "abc123",
                            "status": "reserved",
                            "http_status": 201,
                            "body": RESERVED_EXAMPLE,
                        },
                        {
                            "transaction_id": "order-1002",
                            "status": "refused",
                            "http_status": 422,
                            "body": {
                                "type": "transaction_id_reused",
                                "title": "This transaction id was used with a different request.",
                                "status": 422,
                                "detail": "Transaction order-1002 was already used with a different request.",
                                "errors": {"transaction_id": ["Already used with a different body."]},
                                "correlation_id": "3f2b0c8e9d7a4e5f8a1b2c3d4e5f6a7b",
                            },
                        },
                    ]
                },
            ),
        ],
    )
    @action(detail=False, methods=["post"])
    def bulk(self, request, version="v1"):
        require(request, "stock.add_reservation")
        requests = plain_bulk_requests(request.data)
        if requests is None:  # anything but the plain shape: the serializers check it, with their errors
            data = BulkReservationInput(data=request.data)
            data.is_valid(raise_exception=True)
            requests = [
                services.ReservationRequest(
                    values["transaction_id"],
                    [services.Item(item["sku"], item["quantity"]) for item in values["items"]],
                    values.get("needed_by"),
                    values.get("hold_seconds"),
                )
                for values in data.validated_data["reservations"]
            ]
        results = services.reserve_many(requests=requests)
        return Response(
            {
                "results": [
                    {
                        "transaction_id": result.transaction_id,
                        "status": result.status,
                        "http_status": result.http_status,
                        "body": _bulk_body(result),
                    }
                    for result in results
                ]
            }
        )

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
