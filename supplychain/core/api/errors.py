"""One JSON error shape for the whole API, and the OpenAPI component that documents it.

Every error answers ``{"type", "title", "status", "detail", "errors", "correlation_id"}``;
``errors`` maps a dotted field path (``items.0.sku``) to its messages.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django_guid import get_guid
from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from supplychain.core.errors import DomainError

logger = logging.getLogger(__name__)

_TITLES = {
    "validation_error": "The request is not valid.",
    "parse_error": "The request body could not be parsed.",
    "not_authenticated": "Authentication credentials were not provided or are invalid.",
    "authentication_failed": "Authentication credentials were not provided or are invalid.",
    "permission_denied": "You do not have permission to do this.",
    "not_found": "Not found.",
    "method_not_allowed": "Method not allowed.",
    "not_acceptable": "Cannot produce the requested content type.",
    "unsupported_media_type": "Unsupported media type.",
    "throttled": "Too many requests.",
    "server_error": "Internal server error.",
}


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into ``{"a.0.b": ["message", ...]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key == "non_field_errors" and prefix:  # a nested serializer's own error belongs to its field
                out.update(flatten_errors(value, prefix))
                continue
            out.update(flatten_errors(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(detail, list) and detail and all(isinstance(item, str) for item in detail):
        out.setdefault(prefix or "non_field_errors", []).extend(str(item) for item in detail)
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            if value:  # DRF gives {} for list items without errors
                out.update(flatten_errors(value, f"{prefix}.{index}" if prefix else str(index)))
    else:
        out.setdefault(prefix or "non_field_errors", []).append(str(detail))
    return out


def error_body(*, type: str, status: int, detail: str, title: str | None = None, errors=None, **extra) -> dict:
    body = {
        "type": type,
        "title": title or _TITLES.get(type, "Error."),
        "status": status,
        "detail": detail,
        "errors": errors or {},
        "correlation_id": get_guid(),
    }
    body.update(extra)
    return body


def domain_error_body(exc: DomainError) -> dict:
    """A domain error in the one shape (also for answers inside a bulk response)."""
    return error_body(
        type=exc.type, title=exc.title, status=exc.status, detail=exc.detail, errors=exc.errors, **exc.extra
    )


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF exception handler: every known error becomes the one shape; unknown ones stay 500s."""
    if isinstance(exc, DomainError):
        return Response(domain_error_body(exc), status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        code, errors = "validation_error", flatten_errors(exc.detail)
        detail = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
    else:
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        code = code if isinstance(code, str) else "error"
        errors, detail = {}, str(getattr(exc, "detail", exc))
    response.data = error_body(type=code, status=response.status_code, detail=detail, errors=errors)
    return response


def server_error(request, *args, **kwargs) -> JsonResponse:
    """handler500: API callers get the error shape (with the correlation id to quote), not HTML."""
    from django.views.defaults import server_error as html_server_error

    if request.path.startswith("/api/"):
        return JsonResponse(
            error_body(type="server_error", status=500, detail="An unexpected error happened; it has been logged."),
            status=500,
        )
    return html_server_error(request, *args, **kwargs)


def not_found(request, exception=None, *args, **kwargs):
    from django.views.defaults import page_not_found

    if request.path.startswith("/api/"):
        return JsonResponse(error_body(type="not_found", status=404, detail="No such endpoint."), status=404)
    return page_not_found(request, exception, *args, **kwargs)


class ErrorSerializer(serializers.Serializer):
    """The error shape, for the OpenAPI schema."""

    type = serializers.CharField(help_text="Machine-readable error code, e.g. validation_error.")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Messages per dotted field path.",
    )
    correlation_id = serializers.CharField(allow_null=True)


def error_response(status: int, description: str, example: dict | None = None) -> OpenApiResponse:
    examples = []
    if example:
        examples = [OpenApiExample(f"{status}", value=example, response_only=True, status_codes=[str(status)])]
    return OpenApiResponse(ErrorSerializer, description=description, examples=examples)


STANDARD_ERRORS = {
    400: error_response(
        400,
        "The body failed validation.",
        error_body(
            type="validation_error",
            status=400,
            detail="delay: Ensure this value is less than or equal to 3600.",
            errors={"delay": ["Ensure this value is less than or equal to 3600."]},
        )
        | {"correlation_id": "3f2b0c8e9d7a4e5f8a1b2c3d4e5f6a7b"},
    ),
    401: error_response(
        401,
        "No valid token.",
        error_body(type="not_authenticated", status=401, detail="Authentication credentials were not provided.")
        | {"correlation_id": "3f2b0c8e9d7a4e5f8a1b2c3d4e5f6a7b"},
    ),
}
