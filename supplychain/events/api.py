"""REST API of the backbone: publish events, manage subscriptions, inspect and redrive deliveries, audit."""

from __future__ import annotations

import django_filters
from django.db import transaction
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from supplychain.core.api.errors import STANDARD_ERRORS, error_response
from supplychain.core.api.permissions import ModelPermissions, require
from supplychain.events import selectors, services
from supplychain.events.models import AuditEntry, Delivery, OutboxEvent, Subscription

# ---- Events ---------------------------------------------------------------------------------------


class PublishInput(serializers.Serializer):
    type = serializers.RegexField(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$", max_length=100)
    version = serializers.IntegerField(required=False, min_value=1)
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


PUBLISH_EXAMPLE = {"type": "stock.level_changed", "key": "ham", "payload": {"sku": "ham", "on_hand": 40}}


@extend_schema_view(
    list=extend_schema(tags=["events"], summary="Events published, newest first"),
    retrieve=extend_schema(tags=["events"]),
    create=extend_schema(
        tags=["events"],
        summary="Publish an event",
        description="Validated against the type's JSON Schema; fanned out to matching subscriptions after commit.",
        request=PublishInput,
        responses={201: EventOutput, **STANDARD_ERRORS},
        examples=[OpenApiExample("publish", value=PUBLISH_EXAMPLE, request_only=True)],
    ),
)
class EventViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = OutboxEvent.objects.all()
    serializer_class = EventOutput
    permission_classes = [ModelPermissions]
    filterset_class = EventFilter
    lookup_field = "event_id"

    def create(self, request, *args, **kwargs):
        data = PublishInput(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            event = services.publish(
                data.validated_data["type"],
                data.validated_data["payload"],
                key=data.validated_data.get("key", ""),
                version=data.validated_data.get("version"),
            )
        return Response(EventOutput(event).data, status=status.HTTP_201_CREATED)


# ---- Subscriptions --------------------------------------------------------------------------------


class SubscriptionSerializer(serializers.ModelSerializer):
    secret = serializers.CharField(write_only=True, required=False, allow_blank=True)
    dead_count = serializers.IntegerField(read_only=True)
    pending_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Subscription
        fields = [
            "id",
            "name",
            "description",
            "active",
            "event_types",
            "filter_policy",
            "target",
            "handler",
            "url",
            "secret",
            "max_batch_size",
            "timeout_seconds",
            "queue",
            "max_attempts",
            "initial_interval",
            "backoff_rate",
            "max_interval",
            "jitter",
            "alarm_state",
            "dead_count",
            "pending_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["alarm_state", "created_at", "updated_at"]

    def validate(self, attrs):
        candidate = Subscription(**{**self._current(), **attrs})
        from django.core.exceptions import ValidationError as DjangoValidationError

        try:
            candidate.clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        return attrs

    def _current(self) -> dict:
        if self.instance is None:
            return {}
        return {f: getattr(self.instance, f) for f in self.Meta.fields if hasattr(Subscription, f) and f != "id"}


@extend_schema_view(
    list=extend_schema(tags=["subscriptions"]),
    retrieve=extend_schema(tags=["subscriptions"]),
    create=extend_schema(
        tags=["subscriptions"],
        responses={201: SubscriptionSerializer, **STANDARD_ERRORS},
        examples=[
            OpenApiExample(
                "courier webhook",
                value={
                    "name": "courier-dispatch",
                    "event_types": ["order.*"],
                    "filter_policy": {"country": ["GB"], "boxes": [{"numeric": [">", 0]}]},
                    "target": "http",
                    "url": "https://courier.example.com/hooks/supplychain",
                    "secret": "a-long-random-secret",
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
    update=extend_schema(tags=["subscriptions"]),
    partial_update=extend_schema(tags=["subscriptions"]),
    destroy=extend_schema(tags=["subscriptions"]),
)
class SubscriptionViewSet(viewsets.ModelViewSet):
    serializer_class = SubscriptionSerializer
    permission_classes = [ModelPermissions]
    filterset_fields = ["target", "active", "queue", "alarm_state"]
    lookup_field = "name"

    def get_queryset(self):
        return selectors.subscriptions_with_counts()


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


class RedriveInput(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, max_length=10000)
    subscription = serializers.CharField(required=False)
    event_type = serializers.CharField(required=False, help_text="Exact type, or a prefix ending in *.")
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
    queryset = AuditEntry.objects.all()
    serializer_class = AuditSerializer
    permission_classes = [ModelPermissions]
    filterset_class = AuditFilter
