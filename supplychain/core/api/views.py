"""Platform endpoints of the API: the v1 index and diagnostics (send a ping, read a task's state)."""

from celery.result import AsyncResult
from django_guid import get_guid
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from supplychain.celery import app
from supplychain.core import services
from supplychain.core.api.errors import STANDARD_ERRORS, error_response


class PingInput(serializers.Serializer):
    marker = serializers.CharField(required=False, max_length=200, help_text="Free text echoed by the task.")


class PingOutput(serializers.Serializer):
    task_id = serializers.CharField()
    status_url = serializers.URLField()
    correlation_id = serializers.CharField()


class TaskOutput(serializers.Serializer):
    task_id = serializers.CharField()
    state = serializers.CharField(help_text="PENDING, STARTED, RETRY, SUCCESS or FAILURE.")
    result = serializers.JSONField(allow_null=True)
    date_done = serializers.DateTimeField(allow_null=True)


class ApiRootView(APIView):
    """Index of the v1 API."""

    @extend_schema(exclude=True)
    def get(self, request, version="v1"):
        return Response(
            {
                "ping": reverse("api:diagnostics-ping", request=request),
                "schema": reverse("schema", request=request),
                "docs": reverse("docs", request=request),
            }
        )


class PingView(APIView):
    """Send a trivial task to the workers; follow it at ``status_url`` or in Flower."""

    @extend_schema(
        tags=["diagnostics"],
        request=PingInput,
        responses={202: PingOutput, **STANDARD_ERRORS},
        examples=[
            OpenApiExample("ping", value={"marker": "hello"}, request_only=True),
            OpenApiExample(
                "queued",
                value={
                    "task_id": "0b5e4f5a-2a7e-4c55-9d3b-6f1f9e0c1d2a",
                    "status_url": "http://127.0.0.1:8000/api/v1/diagnostics/tasks/0b5e4f5a-2a7e-4c55-9d3b-6f1f9e0c1d2a/",
                    "correlation_id": "3f2b0c8e9d7a4e5f8a1b2c3d4e5f6a7b",
                },
                response_only=True,
                status_codes=["202"],
            ),
        ],
    )
    def post(self, request, version="v1"):
        data = PingInput(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.send_ping(marker=data.validated_data.get("marker"))
        body = {
            "task_id": result.id,
            "status_url": reverse("api:diagnostics-task", kwargs={"task_id": result.id}, request=request),
            "correlation_id": get_guid(),
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)


class TaskView(APIView):
    """The state and result of one task, from the result backend."""

    @extend_schema(
        tags=["diagnostics"],
        responses={200: TaskOutput, 401: STANDARD_ERRORS[401], 404: error_response(404, "Unknown task.")},
    )
    def get(self, request, task_id: str, version="v1"):
        result = AsyncResult(task_id, app=app)
        value = result.result
        if isinstance(value, Exception):
            value = {"error": f"{type(value).__name__}: {value}"}
        return Response({"task_id": task_id, "state": result.state, "result": value, "date_done": result.date_done})
