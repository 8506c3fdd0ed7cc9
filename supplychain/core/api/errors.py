"""One JSON error shape for the whole API, and the OpenAPI component that documents it.

Every error answers ``{"type", "title", "status", "detail", "errors", "correlation_id"}``;
``errors`` maps a dotted field path (``items.0.sku``) to its messages.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import DataError
from django.http import Http404, JsonResponse
from django_guid import get_guid
from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from supplychain.core.api.exceptions import InvalidValue, RequestTooLarge, TooManyFields, TooManyFiles
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
    "bad_request": "The request is not valid.",
    "request_too_large": "The request is larger than the server accepts.",
    "too_many_fields": "The request has more fields than the server accepts.",
    "too_many_files": "The request has more files than the server accepts.",
    "invalid_value": "A value does not fit what the server stores.",
}

# The type an error response answered by Django itself (not by a view) gets, by its status.
TYPES_BY_STATUS = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "server_error",
}


def api_exception_for(exc: Exception) -> exceptions.APIException | None:
    """The API error for one of Django's own request limits, or None for anything else."""
    if isinstance(exc, RequestDataTooBig):
        return RequestTooLarge(f"Fields larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes in all are refused.")
    if isinstance(exc, TooManyFieldsSent):
        return TooManyFields()
    if isinstance(exc, TooManyFilesSent):
        return TooManyFiles()
    return None


def json_error(*, status: int, detail: str, type: str | None = None, errors=None) -> JsonResponse:
    """An error in the one shape, answered outside DRF (middleware, URL-level handlers)."""
    kind = type or TYPES_BY_STATUS.get(status, "error")
    return JsonResponse(error_body(type=kind, status=status, detail=detail, errors=errors), status=status)


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
    elif isinstance(exc, DataError):
        # The database refused a value no check caught: the caller's input, so a 400, and a bug to fix here.
        logger.warning("A value reached the database and was refused: %s", exc)
        exc = InvalidValue()
    else:
        exc = api_exception_for(exc) or exc
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


SERVER_ERROR_DETAIL = "An unexpected error happened; it has been logged."
NO_SUCH_ENDPOINT = "No such endpoint."


def is_api(request) -> bool:
    return request.path_info.startswith("/api/")


def server_error(request, *args, **kwargs) -> JsonResponse:
    """handler500: API callers get the error shape (with the correlation id to quote), not HTML."""
    from django.views.defaults import server_error as html_server_error

    if is_api(request):
        return json_error(status=500, detail=SERVER_ERROR_DETAIL)
    return html_server_error(request, *args, **kwargs)


def not_found(request, exception=None, *args, **kwargs):
    from django.views.defaults import page_not_found

    if is_api(request):
        return json_error(status=404, detail=NO_SUCH_ENDPOINT)
    return page_not_found(request, exception, *args, **kwargs)


def bad_request(request, exception=None, *args, **kwargs):
    """handler400: Django's own refusals (its request limits among them) in the error shape under /api/."""
    from django.views.defaults import bad_request as html_bad_request

    if is_api(request):
        limit = api_exception_for(exception) if exception is not None else None
        if limit is not None:
            return json_error(status=limit.status_code, type=limit.default_code, detail=str(limit.detail))
        return json_error(status=400, detail="The request is not valid.")
    return html_bad_request(request, exception, *args, **kwargs)


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


# The field a 400 example names: the schema hook (supplychain/core/api/schema.py) puts in each
# operation's own first field, so no example names a field its operation does not have.
EXAMPLE_FIELD = "{field}"

STANDARD_ERRORS = {
    400: error_response(
        400,
        "The body failed validation.",
        error_body(
            type="validation_error",
            status=400,
            detail=f"{EXAMPLE_FIELD}: This field is required.",
            errors={EXAMPLE_FIELD: ["This field is required."]},
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
