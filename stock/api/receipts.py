"""Receipts: uploads, S3 event notifications and the receipts' reads."""

from __future__ import annotations

from urllib.parse import unquote_plus

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from stock import services
from stock.api.fields import ID_PATTERN, StrictCharField
from stock.errors import InvalidReceiptKey
from stock.models import Receipt
from stock.services.receipts import NotifiedObject, upload_key, validate_receipt_key
from supplychain.core.api.errors import STANDARD_ERRORS, error_response
from supplychain.core.api.parsers import FormParser, JSONParser, MultiPartParser
from supplychain.core.api.permissions import ModelPermissions, require
from supplychain.core.storage import MAX_KEY_BYTES

# ---- Receipts -------------------------------------------------------------------------------------


class ReceiptSerializer(serializers.ModelSerializer):
    class Meta:
        model = Receipt
        fields = ["id", "key", "sha256", "source", "status", "rows_total", "rows_ingested", "errors", "received_at"]


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
