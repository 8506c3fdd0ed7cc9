"""REST API of partners: the inbound webhooks (signature-authenticated) and the partner messages with replay."""

from __future__ import annotations

import json

import django_filters
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations import adapters, services
from integrations.models import PartnerMessage
from supplychain.core.api.errors import STANDARD_ERRORS, error_response
from supplychain.core.api.permissions import ModelPermissions, require

REPLAY = "integrations.change_partnermessage"


class WebhookAnswerSerializer(serializers.Serializer):
    message_id = serializers.CharField(help_text="The partner's message id (the deduplication key).")
    status = serializers.ChoiceField(
        ["applied", "parked", "duplicate", "rejected"],
        help_text="applied; parked (kept, replayable once fixed); duplicate (seen before, nothing changed); "
        "rejected (a transition the lifecycle refuses, e.g. backwards: audited, never applied).",
    )
    reason = serializers.CharField(allow_null=True)
    order_id = serializers.CharField(allow_null=True)
    detail = serializers.CharField(allow_blank=True)


SWIFTSHIP_EXAMPLE = {
    "event": "tracking_update",
    "msg": {
        "tracking_number": "SS1A2B3C4D",
        "order_id": "web-100234",
        "tag": "OutForDelivery",
        "subtag": "OutForDelivery_001",
        "updated_at": "2026-12-02T09:12:00Z",
    },
}


class WebhookView(APIView):
    """Inbound partner webhooks: the partner's signature is the authentication (no token)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        tags=["partners"],
        summary="Receive a partner's webhook (signed by the partner; no token)",
        description=(
            "Each partner signs in its own way: `wms` and `swiftship` per Standard Webhooks (`webhook-id`, "
            "`webhook-timestamp`, `webhook-signature`), `parcelpost` with `X-ParcelPost-Signature: "
            "t=<unix>,v1=<hex HMAC-SHA256 of '<t>.<body>'>`. A bad or stale (±5 min) signature is a 401, "
            "audited. A message id seen before answers `duplicate` and changes nothing. An unknown status word "
            "or order is `parked` (kept, alerted, replayable), never dropped. A SwiftShip update looks like "
            f"`{json.dumps(SWIFTSHIP_EXAMPLE)}` (no request example here: only a signed one is answered 200)."
        ),
        auth=[],
        parameters=[
            OpenApiParameter("partner", str, OpenApiParameter.PATH, enum=sorted(adapters.adapters()), required=True)
        ],
        request={"application/json": {"type": "object", "description": "The partner's own format."}},
        responses={
            200: WebhookAnswerSerializer,
            400: error_response(400, "Authentic but unreadable (stored parked, `invalid`)."),
            401: error_response(401, "Bad, missing or stale signature (audited)."),
            403: error_response(403, "The partner has no webhook secret configured."),
            404: error_response(404, "No such partner."),
            413: STANDARD_ERRORS.get(413, error_response(413, "The body is too large.")),
        },
        examples=[
            OpenApiExample(
                "applied",
                response_only=True,
                status_codes=["200"],
                value={
                    "message_id": "msg_2fQx7",
                    "status": "applied",
                    "reason": None,
                    "order_id": "web-100234",
                    "detail": "",
                },
            ),
        ],
    )
    def post(self, request, partner: str, version="v1"):
        answer = services.receive_webhook(
            partner=partner, body=request.body, headers=request.headers, remote_addr=request.META.get("REMOTE_ADDR")
        )
        return Response(answer.body(), status=status.HTTP_200_OK)


class PartnerMessageSerializer(serializers.ModelSerializer):
    order_id = serializers.CharField(source="order.order_id", allow_null=True, default=None)

    class Meta:
        model = PartnerMessage
        fields = [
            "id",
            "partner",
            "direction",
            "message_id",
            "kind",
            "received_at",
            "status",
            "reason",
            "raw_status",
            "canonical_status",
            "order_reference",
            "order_id",
            "error",
            "replays",
            "applied_at",
            "headers",
            "body",
            "translated",
        ]


class PartnerMessageFilter(django_filters.FilterSet):
    partner = django_filters.ChoiceFilter(choices=[(name, name) for name in sorted(adapters.adapters())])
    status = django_filters.ChoiceFilter(choices=PartnerMessage.Status.choices)
    direction = django_filters.ChoiceFilter(choices=PartnerMessage.Direction.choices)
    reason = django_filters.ChoiceFilter(choices=[c for c in PartnerMessage.Reason.choices if c[0]])

    class Meta:
        model = PartnerMessage
        fields = ["partner", "status", "direction", "reason"]


MESSAGE_EXAMPLE = {
    "id": 17,
    "partner": "swiftship",
    "direction": "in",
    "message_id": "msg_2fQx7",
    "kind": "tracking_update",
    "received_at": "2026-12-02T09:12:01.120000Z",
    "status": "parked",
    "reason": "unknown_status",
    "raw_status": "AvailableForPickup",
    "canonical_status": "",
    "order_reference": "web-100234",
    "order_id": None,
    "error": "No vocabulary row for swiftship 'AvailableForPickup'.",
    "replays": 0,
    "applied_at": None,
    "headers": {"webhook-id": "msg_2fQx7"},
    "body": '{"event":"tracking_update","msg":{"tag":"AvailableForPickup"}}',
    "translated": {"raw_status": "AvailableForPickup"},
}


@extend_schema_view(
    list=extend_schema(tags=["partners"], summary="Partner messages in and out, newest first (filter parked ones)"),
    retrieve=extend_schema(
        tags=["partners"],
        summary="One partner message, raw and translated",
        examples=[OpenApiExample("parked", response_only=True, value=MESSAGE_EXAMPLE)],
    ),
)
class PartnerMessageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Every message that crossed the boundary with a partner; parked ones are replayed here once fixed."""

    queryset = PartnerMessage.objects.select_related("order").order_by("-received_at", "-id")
    serializer_class = PartnerMessageSerializer
    permission_classes = [ModelPermissions]
    filterset_class = PartnerMessageFilter
    lookup_value_regex = r"[0-9]+"

    @extend_schema(
        tags=["partners"],
        summary="Translate and apply a parked message again (after adding its vocabulary row or its order)",
        request=None,
        responses={
            200: PartnerMessageSerializer,
            404: error_response(404, "No such message."),
            409: error_response(409, "The message is not parked."),
            **STANDARD_ERRORS,
        },
        examples=[OpenApiExample("applied", response_only=True, value={**MESSAGE_EXAMPLE, "status": "applied"})],
    )
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def replay(self, request, pk=None, version="v1"):
        require(request, REPLAY)
        message = self.get_object()
        message = services.replay_message(message_id=message.pk, actor=f"api/{request.user.get_username()}")
        return Response(PartnerMessageSerializer(message).data)
