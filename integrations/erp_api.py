"""REST API of purchasing with the ERP: purchase orders (placed, listed, read) and goods receipts from the ERP."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.models import PurchaseOrder
from integrations.services import purchasing
from stock.api import ReceiptSerializer, StrictCharField
from supplychain.core.api.errors import STANDARD_ERRORS, error_response
from supplychain.core.api.permissions import ModelPermissions, require
from supplychain.core.identifiers import IDENTIFIER_PATTERN, identifier_validator

HORIZON_DAYS = 366
_EXAMPLE_DATE = (timezone.localdate() + timedelta(days=7)).isoformat()
PURCHASE_ORDER_EXAMPLE = {
    "purchase_order_id": "po-2026-0042",
    "supplier": "Farm A",
    "expected_date": _EXAMPLE_DATE,
    "lines": [{"sku": "ham", "quantity": "5000"}, {"sku": "mushroom", "quantity": "2500.5"}],
    "notes": "Morning delivery, dock 2",
}
PURCHASE_ORDER_ANSWER = {
    **PURCHASE_ORDER_EXAMPLE,
    "lines": [{"sku": "ham", "quantity": "5000"}, {"sku": "mushroom", "quantity": "2500.5"}],
    "status": "placed",
    "erp_reference": "",
    "created_at": "2026-12-02T09:00:00.000000Z",
    "sent_at": None,
}
GOODS_RECEIPT_EXAMPLE = {
    "GoodsReceipt": {
        "DocumentNo": "GR-5000123",
        "PurchaseOrder": "po-2026-0042",
        "Vendor": "Farm A",
        "Items": [{"Material": "ham", "Quantity": "5000", "BestBefore": _EXAMPLE_DATE, "Batch": "H-0042"}],
    }
}


_TEXT = {"type": "string", "minLength": 1, "maxLength": 100}
GOODS_RECEIPT_SCHEMA = {
    "type": "object",
    "required": ["GoodsReceipt"],
    "properties": {
        "GoodsReceipt": {
            "type": "object",
            "required": ["DocumentNo", "Items"],
            "properties": {
                "DocumentNo": {**_TEXT, "pattern": "^[-A-Za-z0-9_.]+$"},
                "PurchaseOrder": _TEXT,
                "Vendor": _TEXT,
                "Items": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["Material", "Quantity", "BestBefore"],
                        "properties": {
                            "Material": _TEXT,
                            "Quantity": {"type": "string", "example": "5000"},
                            "BestBefore": {"type": "string", "format": "date"},
                            "Batch": _TEXT,
                            "Vendor": _TEXT,
                        },
                    },
                },
            },
        }
    },
}


class PurchaseOrderLineSerializer(serializers.Serializer):
    sku = StrictCharField(max_length=64)
    quantity = serializers.DecimalField(
        max_digits=13, decimal_places=3, min_value=Decimal("0.001"), coerce_to_string=True
    )


class PurchaseOrderInput(serializers.Serializer):
    purchase_order_id = StrictCharField(
        max_length=100, validators=[identifier_validator], help_text="Your id for it: the idempotency key."
    )
    supplier = StrictCharField(max_length=100)
    expected_date = serializers.DateField()
    lines = PurchaseOrderLineSerializer(many=True, allow_empty=False, max_length=200)
    notes = StrictCharField(max_length=500, required=False, allow_blank=True, default="")

    def validate_expected_date(self, value):
        today = timezone.localdate()
        if not today <= value <= today + timedelta(days=HORIZON_DAYS):
            raise serializers.ValidationError(f"From today to {HORIZON_DAYS} days ahead.")
        return value

    def validate_lines(self, lines):
        skus = [line["sku"] for line in lines]
        if len(set(skus)) != len(skus):
            raise serializers.ValidationError("Each sku once.")
        return lines

    def validate(self, attrs):
        for field in ("purchase_order_id", "supplier", "notes"):
            value = attrs.get(field, "")
            if "\x00" in value:
                raise serializers.ValidationError({field: ["NUL characters are not allowed."]})
        return attrs


class PurchaseOrderSerializer(serializers.ModelSerializer):
    class Meta:
        model = PurchaseOrder
        fields = [
            "purchase_order_id",
            "supplier",
            "expected_date",
            "lines",
            "notes",
            "status",
            "erp_reference",
            "created_at",
            "sent_at",
        ]


@extend_schema_view(
    list=extend_schema(tags=["purchasing"], summary="Purchase orders, newest first"),
    retrieve=extend_schema(tags=["purchasing"], summary="A purchase order and whether the ERP has it"),
)
class PurchaseOrderViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Purchase orders to suppliers, sent to the ERP as deliveries of the backbone."""

    queryset = PurchaseOrder.objects.all()
    serializer_class = PurchaseOrderSerializer
    permission_classes = [ModelPermissions]
    lookup_field = "purchase_order_id"
    lookup_value_regex = IDENTIFIER_PATTERN
    filterset_fields = ["status", "supplier"]

    @extend_schema(
        tags=["purchasing"],
        summary="Place a purchase order (idempotent on purchase_order_id); the ERP gets it asynchronously",
        description=(
            "`201` when placed; the same order again answers `200` with the same body and changes nothing; the "
            "same `purchase_order_id` with another body is `422`. Each sku once, known to stock; quantities above "
            "zero with at most three decimals; the expected date from today to a year ahead."
        ),
        request=PurchaseOrderInput,
        responses={
            201: OpenApiResponse(PurchaseOrderSerializer, description="Placed; the ERP delivery follows."),
            200: OpenApiResponse(PurchaseOrderSerializer, description="The same order again: nothing changed."),
            422: error_response(422, "The purchase order id was already used with a different body."),
            **STANDARD_ERRORS,
        },
        examples=[
            OpenApiExample("a purchase order", request_only=True, value=PURCHASE_ORDER_EXAMPLE),
            OpenApiExample("placed", response_only=True, status_codes=["201"], value=PURCHASE_ORDER_ANSWER),
        ],
    )
    def create(self, request, version="v1"):
        data = PurchaseOrderInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        placed = purchasing.place_purchase_order(
            purchase_order_id=values["purchase_order_id"],
            supplier=values["supplier"],
            expected_date=values["expected_date"],
            lines=[{"sku": line["sku"], "quantity": str(line["quantity"])} for line in values["lines"]],
            notes=values.get("notes", ""),
        )
        code = status.HTTP_201_CREATED if placed.created else status.HTTP_200_OK
        return Response(PurchaseOrderSerializer(placed.purchase_order).data, status=code)


class GoodsReceiptView(APIView):
    """Goods receipts from the ERP, in the ERP's own format: they become stock receipts (batches, levels)."""

    @extend_schema(
        tags=["purchasing"],
        summary="A goods receipt from the ERP (its format): ingested as a stock receipt, once per document",
        description=(
            "Translated by the ERP adapter (integrations/adapters/erp.py) into receipt rows and ingested like a "
            "receipt file under the key `erp/goods-receipts/<DocumentNo>.csv`: `201` with the receipt (bad rows "
            "listed in `errors`, good ones ingested), `200` for the same document again (nothing changed), `409` "
            "for the same document number with other content. Needs `stock.add_receipt` (the erp role has it)."
        ),
        request={"application/json": GOODS_RECEIPT_SCHEMA},
        responses={
            201: OpenApiResponse(ReceiptSerializer, description="Ingested."),
            200: OpenApiResponse(ReceiptSerializer, description="The same document again: a duplicate."),
            409: error_response(409, "The document number was already received with different content."),
            **STANDARD_ERRORS,
        },
        examples=[OpenApiExample("a goods receipt", request_only=True, value=GOODS_RECEIPT_EXAMPLE)],
    )
    def post(self, request, version="v1"):
        require(request, "stock.add_receipt")
        outcome = purchasing.receive_goods_receipt(document=request.data)
        code = status.HTTP_201_CREATED if outcome.outcome == "processed" else status.HTTP_200_OK
        return Response({**ReceiptSerializer(outcome.receipt).data, "outcome": outcome.outcome}, status=code)
