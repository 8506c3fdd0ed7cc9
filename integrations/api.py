"""REST API of orders: intake (one and bulk), cancel, reads with timeline, traceability and meal plan."""

from __future__ import annotations

from datetime import timedelta

import django_filters
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from integrations import selectors, services
from integrations.models import Order
from supplychain.core.api.errors import STANDARD_ERRORS, domain_error_body, error_response
from supplychain.core.api.permissions import ModelPermissions, require
from supplychain.core.identifiers import IDENTIFIER_PATTERN

PLACE = "integrations.add_order"
CANCEL = "integrations.change_order"
VIEW = "integrations.view_order"

_EXAMPLE_DATE = (timezone.localdate() + timedelta(days=3)).isoformat()
ORDER_EXAMPLE = {
    "order_id": "web-100234",
    "customer_reference": "cust-42",
    "delivery_date": _EXAMPLE_DATE,
    "delivery_address": {
        "name": "Ada Lovelace",
        "line1": "12 Analytical Row",
        "city": "London",
        "postcode": "N1 9GU",
        "country": "GB",
    },
    "lines": [{"recipe": "ham-mushroom-pasta", "portions": 2}, {"sku": "cheese", "quantity": 200}],
}
ACCEPTED_EXAMPLE = {"order_id": "web-100234", "status": "received", "received_at": "2026-12-02T03:40:00.123456Z"}


def _openapi_3_0(schema):
    """A JSON Schema 2020-12 fragment in OpenAPI 3.0's dialect: no if/then/else, boolean exclusive bounds."""
    if isinstance(schema, list):
        return [_openapi_3_0(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key.startswith("$") or key in ("if", "then", "else"):
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
            continue
        out[key] = _openapi_3_0(value)
    return out


def _order_request_schema() -> dict:
    """The order's JSON Schema as the OpenAPI request body (the order_id pattern made explicit)."""
    schema = _openapi_3_0(services.order_schema())
    properties = schema["properties"]
    properties["order_id"]["pattern"] = f"^{IDENTIFIER_PATTERN}$"
    properties["lines"]["items"]["description"] = "Either recipe and portions, or sku and quantity."
    return schema


def _bulk_request_schema() -> dict:
    return {
        "type": "object",
        "required": ["orders"],
        "properties": {
            "orders": {
                "type": "array",
                "minItems": 1,
                "maxItems": services.BULK_LIMIT,
                "items": _order_request_schema(),
            }
        },
    }


class OrderAcceptedSerializer(serializers.Serializer):
    order_id = serializers.CharField()
    status = serializers.ChoiceField(Order.Status.choices, help_text="Always received: the status it was accepted in.")
    received_at = serializers.DateTimeField()


class OrderBulkResultSerializer(serializers.Serializer):
    order_id = serializers.CharField()
    outcome = serializers.ChoiceField(["accepted", "replayed", "refused"])
    http_status = serializers.IntegerField(help_text="What the single endpoint would have answered.")
    body = serializers.DictField(help_text="The single endpoint's body for that status.")


class OrderBulkAnswerSerializer(serializers.Serializer):
    results = OrderBulkResultSerializer(many=True)


class OrderListSerializer(serializers.ModelSerializer):
    class Meta:
        model = Order
        fields = ["order_id", "status", "customer_reference", "delivery_date", "received_at", "status_changed_at"]


class OrderBatchTraceSerializer(serializers.Serializer):
    batch_id = serializers.IntegerField()
    lot = serializers.CharField()
    supplier = serializers.CharField(allow_null=True)
    best_before = serializers.DateField()
    quantity = serializers.CharField()
    open = serializers.BooleanField(help_text="False once consumed (picked) or released.")


class OrderIngredientTraceSerializer(serializers.Serializer):
    sku = serializers.CharField()
    quantity = serializers.CharField(help_text="What this line needs of the sku.")
    batches = OrderBatchTraceSerializer(many=True, help_text="The batches allocated to the order for this sku.")


class OrderLineTraceSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    recipe = serializers.CharField(required=False)
    portions = serializers.IntegerField(required=False)
    sku = serializers.CharField(required=False)
    quantity = serializers.CharField(required=False)
    ingredients = OrderIngredientTraceSerializer(many=True)


class OrderTimelineSerializer(serializers.Serializer):
    from_status = serializers.CharField(allow_null=True)
    to_status = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    source = serializers.CharField()
    detail = serializers.DictField()


class OrderPartnerMessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    partner = serializers.CharField()
    direction = serializers.ChoiceField(["in", "out"])
    kind = serializers.CharField()
    message_id = serializers.CharField()
    received_at = serializers.DateTimeField()
    raw_status = serializers.CharField(allow_null=True, help_text="The partner's own status word.")
    canonical_status = serializers.CharField(allow_null=True)
    status = serializers.CharField()
    reason = serializers.CharField(allow_null=True)


class OrderDetailSerializer(serializers.Serializer):
    order_id = serializers.CharField()
    status = serializers.ChoiceField(Order.Status.choices)
    customer_reference = serializers.CharField()
    delivery_date = serializers.DateField()
    delivery_address = serializers.DictField()
    received_at = serializers.DateTimeField()
    status_changed_at = serializers.DateTimeField()
    lines = OrderLineTraceSerializer(many=True)
    timeline = OrderTimelineSerializer(many=True)
    partner_messages = OrderPartnerMessageSerializer(many=True, help_text="Messages with partners, in and out.")


class OrderMealSerializer(serializers.Serializer):
    cook_order = serializers.IntegerField()
    recipe = serializers.CharField()
    name = serializers.CharField()
    portions = serializers.IntegerField()
    eat_by = serializers.DateField(allow_null=True, help_text="Earliest best-before of its allocated ingredients.")
    limited_by = serializers.CharField(allow_null=True, help_text="The sku whose batch sets eat_by.")


class OrderMealPlanSerializer(serializers.Serializer):
    order_id = serializers.CharField()
    meals = OrderMealSerializer(many=True)


class OrderCancelInput(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500)


class OrderFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Order.Status.choices)
    delivery_date = django_filters.DateFilter()
    delivery_date_from = django_filters.DateFilter(field_name="delivery_date", lookup_expr="gte")
    delivery_date_to = django_filters.DateFilter(field_name="delivery_date", lookup_expr="lte")
    customer_reference = django_filters.CharFilter(max_length=100)

    class Meta:
        model = Order
        fields = ["status", "delivery_date", "customer_reference"]


DETAIL_EXAMPLE = {
    "order_id": "web-100234",
    "status": "reserved",
    "customer_reference": "cust-42",
    "delivery_date": _EXAMPLE_DATE,
    "delivery_address": ORDER_EXAMPLE["delivery_address"],
    "received_at": "2026-12-02T03:40:00.123456Z",
    "status_changed_at": "2026-12-02T03:40:00.412000Z",
    "lines": [
        {
            "line": 0,
            "recipe": "ham-mushroom-pasta",
            "portions": 2,
            "ingredients": [
                {
                    "sku": "ham",
                    "quantity": "120.000",
                    "batches": [
                        {
                            "batch_id": 7,
                            "lot": "H1",
                            "supplier": "Farm A",
                            "best_before": _EXAMPLE_DATE,
                            "quantity": "120.000",
                            "open": True,
                        }
                    ],
                }
            ],
        }
    ],
    "timeline": [
        {
            "from_status": None,
            "to_status": "received",
            "occurred_at": "2026-12-02T03:40:00.123456Z",
            "source": "platform",
            "detail": {},
        },
        {
            "from_status": "received",
            "to_status": "reserved",
            "occurred_at": "2026-12-02T03:40:00.412000Z",
            "source": "worker",
            "detail": {"reservation": "web-100234"},
        },
    ],
    "partner_messages": [],
}


@extend_schema_view(
    list=extend_schema(
        tags=["orders"], summary="Orders, newest first (filters: status, delivery date, customer reference)"
    )
)
class OrderViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Orders from the platform: accepted at once (202), reserved in batches by workers, then followed."""

    queryset = selectors.orders()
    serializer_class = OrderListSerializer
    permission_classes = [ModelPermissions]
    filterset_class = OrderFilter
    ordering_fields = ["received_at", "delivery_date"]
    lookup_field = "order_id"
    lookup_value_regex = IDENTIFIER_PATTERN

    @extend_schema(
        tags=["orders"],
        summary="Place one order (idempotent on order_id)",
        description=(
            "Validated against the order's JSON Schema (integrations/schemas/payloads/order.v1.json); a bad "
            "element is named by its path (`lines.0.portions`). `202` once the order is committed; the same "
            "order again answers the same `202` and changes nothing; the same `order_id` with another body is `422`."
        ),
        request={"application/json": _order_request_schema()},
        responses={
            202: OpenApiResponse(OrderAcceptedSerializer, description="Committed; it will be reserved asynchronously."),
            422: error_response(422, "The order id was already used with a different body."),
            **STANDARD_ERRORS,
        },
        examples=[
            OpenApiExample("an order", request_only=True, value=ORDER_EXAMPLE),
            OpenApiExample("accepted", response_only=True, status_codes=["202"], value=ACCEPTED_EXAMPLE),
        ],
    )
    def create(self, request, version="v1"):
        result = services.receive_order(document=request.data)
        return Response(result.answer(), status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        tags=["orders"],
        summary=f"Place up to {services.BULK_LIMIT:,} orders in one transaction",
        description=(
            "Each element is an order of the single endpoint. A malformed element refuses the whole call (400, "
            "named by its index: `orders.3.lines.0.portions`) before anything is written. Otherwise `202`, with one "
            "result per element in order: `accepted`, `replayed` (received before, nothing changed) or `refused` "
            "(422: the id was used with another body), which never undoes the others."
        ),
        request={"application/json": _bulk_request_schema()},
        responses={202: OrderBulkAnswerSerializer, **STANDARD_ERRORS},
        examples=[
            OpenApiExample("orders", request_only=True, value={"orders": [ORDER_EXAMPLE]}),
            OpenApiExample(
                "results",
                response_only=True,
                status_codes=["202"],
                value={
                    "results": [
                        {"order_id": "web-100234", "outcome": "accepted", "http_status": 202, "body": ACCEPTED_EXAMPLE}
                    ]
                },
            ),
        ],
    )
    @action(detail=False, methods=["post"])
    def bulk(self, request, version="v1"):
        require(request, PLACE)
        documents = request.data.get("orders") if isinstance(request.data, dict) else None
        results = services.receive_orders(documents=documents)
        return Response(
            {
                "results": [
                    {
                        "order_id": result.order_id,
                        "outcome": result.outcome,
                        "http_status": result.http_status,
                        "body": domain_error_body(result.error) if result.error else result.answer(),
                    }
                    for result in results
                ]
            },
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(
        tags=["orders"],
        summary="An order: status, the whole timeline, and per line the batches, lots, suppliers, best-before dates",
        responses={200: OrderDetailSerializer, 404: error_response(404, "No such order.")},
        examples=[OpenApiExample("reserved", response_only=True, value=DETAIL_EXAMPLE)],
    )
    def retrieve(self, request, order_id=None, version="v1"):
        order = selectors.order_by_id(order_id)
        return Response(OrderDetailSerializer(selectors.order_document(order)).data)

    @extend_schema(
        tags=["orders"],
        summary="The order's recipes in the order to cook them, with an eat-by date each",
        responses={200: OrderMealPlanSerializer, 404: error_response(404, "No such order.")},
        examples=[
            OpenApiExample(
                "meal plan",
                response_only=True,
                value={
                    "order_id": "web-100234",
                    "meals": [
                        {
                            "cook_order": 1,
                            "recipe": "ham-mushroom-pasta",
                            "name": "Ham and mushroom tagliatelle",
                            "portions": 2,
                            "eat_by": _EXAMPLE_DATE,
                            "limited_by": "ham",
                        }
                    ],
                },
            )
        ],
    )
    @action(detail=True, methods=["get"], url_path="meal-plan")
    def meal_plan(self, request, order_id=None, version="v1"):
        require(request, VIEW)
        order = selectors.order_by_id(order_id)
        return Response(OrderMealPlanSerializer({"order_id": order.order_id, "meals": selectors.meal_plan(order)}).data)

    @extend_schema(
        tags=["orders"],
        summary="Cancel an order while nothing is picked (its reservation is released)",
        request=OrderCancelInput,
        responses={
            200: OrderDetailSerializer,
            404: error_response(404, "No such order."),
            409: error_response(409, "Picked or later: it can no longer be cancelled."),
            **STANDARD_ERRORS,
        },
        examples=[OpenApiExample("cancel", request_only=True, value={"reason": "customer changed their mind"})],
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, order_id=None, version="v1"):
        require(request, CANCEL)
        data = OrderCancelInput(data=request.data)
        data.is_valid(raise_exception=True)
        order = services.cancel_order(
            order_id=order_id, source="platform", reason=data.validated_data.get("reason", "")
        )
        return Response(OrderDetailSerializer(selectors.order_document(order)).data)
