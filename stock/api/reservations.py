"""Reservations: one, or up to 1,000 in one group call (bulk), with their reads and closes."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from django.shortcuts import get_object_or_404
from django_guid import get_guid
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from stock import services
from stock.api.fields import QUANTITY
from stock.models import Reservation
from supplychain.core.api.errors import STANDARD_ERRORS, ErrorSerializer, domain_error_body, error_response
from supplychain.core.api.permissions import require
from supplychain.core.identifiers import IDENTIFIER_PATTERN, IdentifierField, is_identifier

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
