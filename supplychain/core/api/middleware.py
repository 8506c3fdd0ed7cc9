"""Middleware for everything under /api/: refuse what no view can store, and answer every error in the one shape.

Before a view runs: a body over the size limit is a 413, and NUL bytes or lone surrogates in the
path or the query string are a 400 naming where (PostgreSQL cannot store them). After: an error
response that Django itself made (the technical 404 and 500 pages under ``DEBUG``, its HTML 400s)
becomes the JSON shape, and an error body in the shape that lacks a ``correlation_id`` (a stored
reply being replayed) gets the current request's, so every error under /api/ can be quoted.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from django_guid import get_guid
from rest_framework.response import Response

from supplychain.core.api.errors import NO_SUCH_ENDPOINT, SERVER_ERROR_DETAIL, api_exception_for, is_api, json_error
from supplychain.core.api.limits import shown_key, text_problem

_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def _max_body_bytes(request) -> int | None:
    if request.content_type == "multipart/form-data":
        return settings.API_MAX_UPLOAD_BYTES  # files count here, not in DATA_UPLOAD_MAX_MEMORY_SIZE
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _refusal(request):
    """The error answering a request no view should see, or None."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    limit = _max_body_bytes(request)
    if limit is not None and length > limit:
        return json_error(status=413, detail=f"The body is larger than {limit} bytes.")
    problem = text_problem(request.path_info)
    if problem:
        return json_error(status=400, type="validation_error", detail=f"path: {problem}", errors={"path": [problem]})
    try:
        query = list(request.GET.lists())
    except TooManyFieldsSent as exc:
        limit = api_exception_for(exc)
        return json_error(status=limit.status_code, type=limit.default_code, detail=str(limit.detail))
    for name, values in query:
        for value in [name, *values]:
            problem = text_problem(value)
            if problem:
                where = shown_key(name)
                return json_error(
                    status=400, type="validation_error", detail=f"{where}: {problem}", errors={where: [problem]}
                )
    return None


def _in_the_shape(request, response):
    """``response`` as an error in the one shape (it is one already when DRF or a handler made it)."""
    if response.status_code < 400 or response.streaming:
        return response
    if isinstance(response, Response) and not response.get("Content-Type", "").startswith("application/json"):
        return response  # the browsable API's HTML page of an error DRF already shaped
    if response.get("Content-Type", "").startswith("application/json"):
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if isinstance(body, dict) and "type" in body and "status" in body:
            if "correlation_id" not in body:  # a stored reply: the shape, but not of this request
                body["correlation_id"] = get_guid()
                response.content = json.dumps(body).encode()
                if response.has_header("Content-Length"):
                    response["Content-Length"] = str(len(response.content))
            return response
    detail = {404: NO_SUCH_ENDPOINT, 500: SERVER_ERROR_DETAIL}.get(response.status_code, response.reason_phrase)
    shaped = json_error(status=response.status_code, detail=detail)
    for header in _KEPT_HEADERS:
        if response.has_header(header):
            shaped[header] = response[header]
    return shaped


class ApiBoundaryMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not is_api(request):
            return self.get_response(request)
        response = _refusal(request) or self.get_response(request)
        return _in_the_shape(request, response)

    def process_exception(self, request, exception):
        """Django's own request limits raised outside DRF (whose handler maps them itself)."""
        if not is_api(request):
            return None
        limit = api_exception_for(exception)
        if limit is None:
            return None
        return json_error(status=limit.status_code, type=limit.default_code, detail=str(limit.detail))
