"""REST API of the backbone: publish events, manage subscriptions, inspect and redrive deliveries, audit."""

from __future__ import annotations

import django_filters
from django.http import Http404
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from supplychain.core.api.errors import STANDARD_ERRORS, error_body, error_response
from supplychain.core.api.permissions import ModelPermissions, require
from supplychain.core.identifiers import IDENTIFIER_PATTERN, IdentifierField
from supplychain.events import selectors, services
from supplychain.events.models import (
    BACKOFF_RATE_RANGE,
    INITIAL_INTERVAL_RANGE,
    MAX_ATTEMPTS_RANGE,
    MAX_BATCH_SIZE_RANGE,
    MAX_INTERVAL_RANGE,
    TIMEOUT_SECONDS_RANGE,
    AuditEntry,
    Delivery,
    OutboxEvent,
    Subscription,
    validate_finite,
)

# Path parameters: only what their creator can make, so anything else is a JSON 404 before a view runs.
ID_PATTERN = "[0-9]+"  # database ids
UUID_PATTERN = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # event ids

# ---- Events ---------------------------------------------------------------------------------------


class PublishInput(serializers.Serializer):
    type = serializers.RegexField(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$", max_length=100)
    version = serializers.IntegerField(required=False, min_value=1, max_value=32767)
    key = serializers.CharField(required=False, allow_blank=True, max_length=200)
    payload = serializers.DictField()


class EventOutput(serializers.ModelSerializer):
    id = serializers.UUIDField(source="event_id")

    class Meta:
        model = OutboxEvent
        fields = ["id", "type", "version", "occurred_at", "source", "correlation_id", "key", "payload", "relayed_at"]


class EventFilter(django_filters.FilterSet):
    type = django_filters.CharFilter()
    key = django_filters.CharFilter()
    correlation_id = django_filters.CharFilter()
    occurred_after = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")

    class Meta:
        model = OutboxEvent
        fields = ["type", "key", "correlation_id"]


PUBLISH_EXAMPLE = {
    "type": "platform.message_posted",
    "key": "promo-2026-12",
    "payload": {
        "topic": "promotion.planned",
        "subject": "Christmas hamper promotion, 20-24 December",
        "attributes": {"sku": "ham", "expected_extra_units": 400},
    },
}
PUBLISH_INVALID_EXAMPLE = error_body(
    type="invalid_event",
    title="The event does not match its schema.",
    status=400,
    detail="platform.message_posted v1 payload is invalid: payload.subject: 'subject' is a required property",
    errors={"payload.subject": ["'subject' is a required property"]},
) | {"correlation_id": "3f2b0c8e9d7a4e5f8a1b2c3d4e5f6a7b"}
PUBLISH_FORBIDDEN_EXAMPLE = error_body(
    type="permission_denied",
    status=403,
    detail="stock.level_changed is an internal fact: only the app that owns it publishes it. "
    "Outside callers publish platform.* types.",
    errors={"type": ["stock.level_changed may not be published through the API."]},
) | {"correlation_id": "3f2b0c8e9d7a4e5f8a1b2c3d4e5f6a7b"}


@extend_schema_view(
    list=extend_schema(tags=["events"], summary="Events published, newest first"),
    retrieve=extend_schema(tags=["events"]),
    create=extend_schema(
        tags=["events"],
        summary="Publish an event",
        description=(
            "Outside callers publish only `platform.*` types (each needs the permission its schema names, "
            "`events.publish_platform_event` by default); every other type is an internal fact that only the "
            "app owning it publishes, refused with 403 to every caller. The event is recorded with the source "
            "`api/<username>`, validated against the type's JSON Schema and fanned out to matching "
            "subscriptions after commit."
        ),
        request=PublishInput,
        responses={
            201: EventOutput,
            **STANDARD_ERRORS,
            400: error_response(400, "Unknown type or a payload that fails its schema.", PUBLISH_INVALID_EXAMPLE),
            403: error_response(403, "An internal type, or a permission the caller lacks.", PUBLISH_FORBIDDEN_EXAMPLE),
        },
        examples=[OpenApiExample("publish", value=PUBLISH_EXAMPLE, request_only=True)],
    ),
)
class EventViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = OutboxEvent.objects.all()
    serializer_class = EventOutput
    permission_classes = [ModelPermissions]
    filterset_class = EventFilter
    lookup_field = "event_id"
    lookup_value_regex = UUID_PATTERN

    def create(self, request, *args, **kwargs):
        data = PublishInput(data=request.data)
        data.is_valid(raise_exception=True)
        event = services.publish_as_caller(
            caller=request.user,
            event_type=data.validated_data["type"],
            payload=data.validated_data["payload"],
            key=data.validated_data.get("key", ""),
            version=data.validated_data.get("version"),
        )
        return Response(EventOutput(event).data, status=status.HTTP_201_CREATED)


# ---- Subscriptions --------------------------------------------------------------------------------


def _bounded_float(bounds: tuple[float, float], **kwargs) -> serializers.FloatField:
    return serializers.FloatField(min_value=bounds[0], max_value=bounds[1], validators=[validate_finite], **kwargs)


def _bounded_int(bounds: tuple[int, int], **kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=bounds[0], max_value=bounds[1], **kwargs)


class SubscriptionInput(serializers.Serializer):
    """The shape and bounds of a subscription; ``services.create_subscription`` checks the rest."""

    name = IdentifierField()
    description = serializers.CharField(required=False, allow_blank=True, max_length=300)
    active = serializers.BooleanField(required=False)
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=100), min_length=1, max_length=services.EVENT_TYPE_PATTERNS_MAX
    )
    filter_policy = serializers.DictField(required=False)
    target = serializers.ChoiceField(choices=Subscription.Target.choices)
    handler = serializers.CharField(required=False, allow_blank=True, max_length=200)
    url = serializers.URLField(required=False, allow_blank=True, max_length=500)
    secret = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        write_only=True,
        help_text="whsec_<base64 of 24 to 64 bytes>; generated for an HTTP target when not given.",
    )
    max_batch_size = _bounded_int(MAX_BATCH_SIZE_RANGE, required=False)
    timeout_seconds = _bounded_float(TIMEOUT_SECONDS_RANGE, required=False)
    queue = serializers.CharField(required=False, max_length=50)
    max_attempts = _bounded_int(MAX_ATTEMPTS_RANGE, required=False)
    initial_interval = _bounded_float(INITIAL_INTERVAL_RANGE, required=False, help_text="Seconds.")
    backoff_rate = _bounded_float(BACKOFF_RATE_RANGE, required=False)
    max_interval = _bounded_float(MAX_INTERVAL_RANGE, required=False, help_text="Seconds.")
    jitter = serializers.ChoiceField(choices=Subscription.Jitter.choices, required=False)


class SubscriptionSerializer(serializers.ModelSerializer):
    """A subscription as read back (the secret is never shown after its creation or rotation)."""

    # A plain string in the schema: a handler subscription has no URL (""), which is no "uri".
    url = serializers.CharField(read_only=True, help_text="The HTTP target's URL; empty for a handler subscription.")
    dead_count = serializers.IntegerField(read_only=True)
    pending_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Subscription
        fields = [
            "id",
            *(name for name in services.SUBSCRIPTION_FIELDS if name != "secret"),  # what a caller may set
            "alarm_state",
            "previous_secret_expires_at",
            "dead_count",
            "pending_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SubscriptionCreatedSerializer(SubscriptionSerializer):
    """The answer to a creation: the only time the signing secret is shown."""

    secret = serializers.CharField(read_only=True)

    class Meta(SubscriptionSerializer.Meta):
        fields = [*SubscriptionSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class RotateSecretInput(serializers.Serializer):
    secret = serializers.CharField(
        required=False, allow_blank=True, max_length=200, help_text="whsec_<base64>; generated when not given."
    )
    grace_seconds = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=services.SECRET_GRACE_SECONDS_MAX,
        default=services.SECRET_GRACE_SECONDS_DEFAULT,
        help_text="How long the old secret keeps verifying (deliveries carry both signatures meanwhile).",
    )


class RotateSecretOutput(serializers.Serializer):
    name = serializers.CharField()
    secret = serializers.CharField()
    previous_secret_expires_at = serializers.DateTimeField(allow_null=True)


SUBSCRIPTION_INVALID_EXAMPLE = error_body(
    type="validation_error",
    status=400,
    detail="initial_interval: Ensure this value is less than or equal to 3600.0.",
    errors={"initial_interval": ["Ensure this value is less than or equal to 3600.0."]},
) | {"correlation_id": "3f2b0c8e9d7a4e5f8a1b2c3d4e5f6a7b"}
SUBSCRIPTION_ERRORS = {
    **STANDARD_ERRORS,
    400: error_response(400, "A field breaks its rules or bounds.", SUBSCRIPTION_INVALID_EXAMPLE),
}


@extend_schema_view(
    list=extend_schema(tags=["subscriptions"]),
    retrieve=extend_schema(tags=["subscriptions"]),
    create=extend_schema(
        tags=["subscriptions"],
        request=SubscriptionInput,
        responses={201: SubscriptionCreatedSerializer, **SUBSCRIPTION_ERRORS},
        description=(
            "Retry policy bounds: max_attempts 1-100, initial_interval 0-3600 s, max_interval 0-86400 s, "
            "backoff_rate 1-10, timeout_seconds 0.1-30, max_batch_size 1-100. HTTP deliveries are signed per "
            "Standard Webhooks with `secret` (whsec_<base64>), generated when not given and shown only here."
        ),
        examples=[
            OpenApiExample(
                "courier webhook",
                value={
                    "name": "courier-dispatch",
                    "event_types": ["stock.*"],
                    "filter_policy": {"sku": ["ham"], "available": [{"exists": True}]},
                    "target": "http",
                    "url": "https://courier.example.com/hooks/supplychain",
                    "secret": "whsec_lvZmCKSeNckQPBACIzFcmwUY2t5wZIO/WwgVCM0l6Z4=",
                    "max_attempts": 8,
                    "initial_interval": 2,
                    "backoff_rate": 2,
                    "max_interval": 900,
                    "jitter": "full",
                    "queue": "dispatch",
                },
                request_only=True,
            )
        ],
    ),
    update=extend_schema(
        tags=["subscriptions"],
        request=SubscriptionInput,
        responses={200: SubscriptionSerializer, **SUBSCRIPTION_ERRORS},
    ),
    partial_update=extend_schema(
        tags=["subscriptions"],
        request=SubscriptionInput(partial=True),
        responses={200: SubscriptionSerializer, **SUBSCRIPTION_ERRORS},
        description="A new `secret` is a rotation: the old one keeps verifying for a day.",
    ),
    destroy=extend_schema(tags=["subscriptions"]),
)
class SubscriptionViewSet(viewsets.ModelViewSet):
    serializer_class = SubscriptionSerializer
    permission_classes = [ModelPermissions]
    filterset_fields = ["target", "active", "queue", "alarm_state"]
    lookup_field = "name"
    lookup_value_regex = IDENTIFIER_PATTERN

    def get_queryset(self):
        return selectors.subscriptions_with_counts()

    def create(self, request, *args, **kwargs):
        data = SubscriptionInput(data=request.data)
        data.is_valid(raise_exception=True)
        subscription = services.create_subscription(**data.validated_data)
        subscription.dead_count = subscription.pending_count = 0  # new: no deliveries yet (the schema requires both)
        return Response(SubscriptionCreatedSerializer(subscription).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, partial=False, **kwargs):
        subscription = self.get_object()
        data = SubscriptionInput(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        updated = services.update_subscription(subscription=subscription, **data.validated_data)
        current = self.get_queryset().filter(pk=updated.pk).first()  # with its counts
        if current is None:  # deleted by another request right after this change
            raise Http404
        return Response(SubscriptionSerializer(current).data)

    def perform_destroy(self, instance):
        services.delete_subscription(subscription=instance)

    @extend_schema(
        tags=["subscriptions"],
        request=RotateSecretInput,
        responses={200: RotateSecretOutput, **STANDARD_ERRORS},
        summary="Rotate the signing secret; the old one keeps verifying for grace_seconds",
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret", permission_classes=[IsAuthenticated])
    def rotate_secret(self, request, name=None, version="v1"):
        require(request, "events.change_subscription")
        data = RotateSecretInput(data=request.data)
        data.is_valid(raise_exception=True)
        subscription = services.rotate_subscription_secret(
            subscription=self.get_object(),
            secret=data.validated_data.get("secret", ""),
            grace_seconds=data.validated_data["grace_seconds"],
        )
        return Response(
            {
                "name": subscription.name,
                "secret": subscription.secret,
                "previous_secret_expires_at": subscription.previous_secret_expires_at,
            }
        )


# ---- Deliveries -----------------------------------------------------------------------------------


class DeliverySerializer(serializers.ModelSerializer):
    subscription = serializers.CharField(source="subscription.name")
    event = EventOutput()

    class Meta:
        model = Delivery
        fields = [
            "id",
            "subscription",
            "status",
            "attempts",
            "total_attempts",
            "redrive_count",
            "visible_at",
            "last_error",
            "last_http_status",
            "created_at",
            "completed_at",
            "dead_at",
            "event",
        ]


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = ["occurred_at", "kind", "attempt", "outcome", "http_status", "duration_ms", "delay_seconds", "error"]


class DeliveryDetailSerializer(DeliverySerializer):
    history = serializers.SerializerMethodField()

    class Meta(DeliverySerializer.Meta):
        fields = [*DeliverySerializer.Meta.fields, "history"]

    def get_history(self, delivery) -> list[dict]:
        return AttemptSerializer(selectors.delivery_history(delivery.id), many=True).data


class DeliveryFilter(django_filters.FilterSet):
    subscription = django_filters.CharFilter(field_name="subscription__name")
    status = django_filters.ChoiceFilter(choices=Delivery.Status.choices)
    event_type = django_filters.CharFilter(field_name="event__type")
    key = django_filters.CharFilter(field_name="event__key")
    correlation_id = django_filters.CharFilter(field_name="event__correlation_id")

    class Meta:
        model = Delivery
        fields = ["subscription", "status", "event_type", "key", "correlation_id"]


DELIVERY_ID_MAX = 2**63 - 1  # a bigint primary key


class RedriveInput(serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=DELIVERY_ID_MAX), required=False, max_length=10000
    )
    subscription = serializers.CharField(required=False, max_length=100)
    event_type = serializers.CharField(required=False, max_length=100, help_text="Exact type, or a prefix ending in *.")
    dead_since = serializers.DateTimeField(required=False)
    dead_before = serializers.DateTimeField(required=False)
    all = serializers.BooleanField(required=False, default=False, help_text="Every dead delivery.")


class RedriveOutput(serializers.Serializer):
    redriven = serializers.IntegerField()


@extend_schema_view(
    list=extend_schema(tags=["deliveries"], summary="Deliveries (status=dead lists the dead letters)"),
    retrieve=extend_schema(tags=["deliveries"], responses={200: DeliveryDetailSerializer}),
)
class DeliveryViewSet(viewsets.ReadOnlyModelViewSet):
    lookup_value_regex = ID_PATTERN
    queryset = Delivery.objects.select_related("event", "subscription")
    permission_classes = [ModelPermissions]
    filterset_class = DeliveryFilter
    ordering_fields = ["id", "created_at", "dead_at"]

    def get_serializer_class(self):
        return DeliveryDetailSerializer if self.action == "retrieve" else DeliverySerializer

    @extend_schema(
        tags=["deliveries"],
        request=None,
        responses={200: RedriveOutput, 404: error_response(404, "No dead delivery with this id.")},
        summary="Redrive one dead delivery",
        operation_id="deliveries_redrive_one",
    )
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def redrive(self, request, pk=None, version="v1"):
        require(request, "events.change_delivery")
        delivery = self.get_object()
        count = services.redrive_deliveries(delivery_ids=[delivery.pk], actor=request.user.username)
        if not count:
            from supplychain.core.errors import Conflict

            raise Conflict(f"Delivery {delivery.pk} is {delivery.status}, not dead.")
        return Response({"redriven": count})

    @extend_schema(
        tags=["deliveries"],
        request=RedriveInput,
        responses={200: RedriveOutput, **STANDARD_ERRORS},
        summary="Redrive dead deliveries by ids, subscription, event type, time window or all",
        operation_id="deliveries_redrive_many",
        examples=[OpenApiExample("one subscription", value={"subscription": "courier-dispatch"}, request_only=True)],
    )
    @action(detail=False, methods=["post"], url_path="redrive", permission_classes=[IsAuthenticated])
    def redrive_many(self, request, version="v1"):
        require(request, "events.change_delivery")
        data = RedriveInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        count = services.redrive_deliveries(
            delivery_ids=values.get("ids"),
            subscription=values.get("subscription"),
            event_type=values.get("event_type"),
            dead_since=values.get("dead_since"),
            dead_before=values.get("dead_before"),
            all_dead=values["all"],
            actor=request.user.username,
        )
        return Response({"redriven": count})


# ---- Audit ----------------------------------------------------------------------------------------


class AuditSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = [
            "id",
            "occurred_at",
            "kind",
            "event_id",
            "event_type",
            "correlation_id",
            "entity_key",
            "subscription",
            "partner",
            "delivery_id",
            "attempt",
            "outcome",
            "http_status",
            "duration_ms",
            "delay_seconds",
            "error",
            "data",
        ]


class AuditFilter(django_filters.FilterSet):
    correlation_id = django_filters.CharFilter()
    event_type = django_filters.CharFilter()
    event_id = django_filters.UUIDFilter()
    subscription = django_filters.CharFilter()
    entity = django_filters.CharFilter(field_name="entity_key", help_text="Order id, batch id, file key.")
    partner = django_filters.CharFilter()
    kind = django_filters.ChoiceFilter(choices=AuditEntry.Kind.choices)
    since = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = AuditEntry
        fields = []


@extend_schema_view(
    list=extend_schema(
        tags=["audit"],
        summary="Every message published, attempted, received or redriven",
        parameters=[OpenApiParameter("correlation_id", str, description="All messages one request caused.")],
    ),
    retrieve=extend_schema(tags=["audit"]),
)
class AuditViewSet(viewsets.ReadOnlyModelViewSet):
    lookup_value_regex = ID_PATTERN
    queryset = AuditEntry.objects.all()
    serializer_class = AuditSerializer
    permission_classes = [ModelPermissions]
    filterset_class = AuditFilter
