"""REST API of the pipelines: list and validate definitions, start runs, list and show runs, redrive, cancel."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from forecasting import selectors, services
from forecasting.errors import PipelineNotFound
from forecasting.models import Pipeline, Run, RunStatus
from supplychain.core.api.errors import STANDARD_ERRORS, error_body, error_response
from supplychain.core.api.permissions import require

EXAMPLE_DEFINITION = {
    "Comment": "Route by weekday (Pass states stand in for the Task steps)",
    "StartAt": "CreatePredictor",
    "States": {
        "CreatePredictor": {
            "Type": "Task",
            "Resource": "probe.echo",
            "Retry": [
                {"ErrorEquals": ["ResourcePending"], "IntervalSeconds": 1, "MaxAttempts": 100, "BackoffRate": 1.0}
            ],
            "Next": "ByWeekday",
        },
        "ByWeekday": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.weekday", "StringEquals": "Friday", "Next": "FactoryA"}],
            "Default": "FactoryB",
        },
        "FactoryA": {"Type": "Pass", "Result": "A", "ResultPath": "$.factory", "End": True},
        "FactoryB": {"Type": "Pass", "Result": "B", "ResultPath": "$.factory", "End": True},
    },
}
INVALID_EXAMPLE = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}}


class PipelineSerializer(serializers.ModelSerializer):
    class Meta:
        model = Pipeline
        fields = ["name", "description", "definition", "created_at", "updated_at"]


class ValidateInput(serializers.Serializer):
    definition = serializers.JSONField()


class ProblemSerializer(serializers.Serializer):
    state = serializers.CharField()
    field = serializers.CharField()
    message = serializers.CharField()


class ValidateOutput(serializers.Serializer):
    valid = serializers.BooleanField()
    problems = ProblemSerializer(many=True)


class StartInput(serializers.Serializer):
    name = serializers.RegexField(r"^[A-Za-z0-9_.:-]{1,80}$", required=False, help_text="Idempotency key.")
    input = serializers.JSONField(required=False, default=dict)


class RunSerializer(serializers.ModelSerializer):
    pipeline = serializers.CharField(source="pipeline.name")
    status = serializers.CharField(help_text="RUNNING, SUCCEEDED, FAILED or ABORTED.")

    class Meta:
        model = Run
        fields = [
            "id",
            "pipeline",
            "name",
            "status",
            "input",
            "output",
            "error",
            "cause",
            "started_at",
            "stopped_at",
            "redrive_count",
            "redrive_date",
        ]


class AttemptSerializer(serializers.Serializer):
    branch = serializers.CharField(source="branch.key")
    state = serializers.CharField()
    attempt = serializers.IntegerField()
    status = serializers.CharField()
    input = serializers.JSONField()
    output = serializers.JSONField()
    error = serializers.CharField()
    cause = serializers.CharField()
    delay = serializers.FloatField()
    scheduled_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField()
    celery_task_id = serializers.CharField()


class HistorySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.CharField()
    timestamp = serializers.DateTimeField()
    branch = serializers.CharField(source="branch_key")
    state = serializers.CharField()
    details = serializers.JSONField()


class RunDetailSerializer(RunSerializer):
    states = serializers.SerializerMethodField()
    attempts = serializers.SerializerMethodField()
    history = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "states", "attempts", "history"]

    def get_states(self, run) -> dict[str, str]:
        """Each state by its path (``Fanout/Branches[0]/Load``, ``Each/ItemProcessor/Work``): NOT_RUN, RUNNING,
        SUCCEEDED, FAILED, CAUGHT, RETRIED or ABORTED."""
        return selectors.state_statuses(run)

    def get_attempts(self, run) -> list[dict]:
        return AttemptSerializer(selectors.run_attempts(run), many=True).data

    def get_history(self, run) -> list[dict]:
        return HistorySerializer(selectors.run_history(run), many=True).data


NOT_FOUND = {
    404: error_response(
        404, "No such pipeline or run.", error_body(type="not_found", status=404, detail="No such run.")
    )
}
CONFLICT = {
    409: error_response(
        409,
        "The run is not in a state that allows it.",
        error_body(
            type="run_not_redrivable",
            status=409,
            detail="Run daily-1 is SUCCEEDED: only a failed or aborted run can be redriven.",
        ),
    )
}


class PipelineList(generics.ListAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = PipelineSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Pipeline.objects.none()
        require(self.request, "forecasting.view_pipeline")
        return selectors.pipelines()

    @extend_schema(tags=["pipelines"], summary="Pipeline definitions (Amazon States Language)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class PipelineDetail(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(tags=["pipelines"], responses={200: PipelineSerializer, **NOT_FOUND}, summary="One pipeline")
    def get(self, request, pipeline, version="v1"):
        require(request, "forecasting.view_pipeline")
        found = selectors.pipelines().filter(name=pipeline).first()
        if found is None:
            raise PipelineNotFound(f"No pipeline is named {pipeline!r}.")
        return Response(PipelineSerializer(found).data)


class ValidateDefinition(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["pipelines"],
        request=ValidateInput,
        responses={200: ValidateOutput, **STANDARD_ERRORS},
        summary="Validate a definition: every problem, naming its state and field",
        examples=[
            OpenApiExample("valid", value={"definition": EXAMPLE_DEFINITION}, request_only=True),
            OpenApiExample("invalid", value={"definition": INVALID_EXAMPLE}, request_only=True),
            OpenApiExample(
                "problems",
                value={
                    "valid": False,
                    "problems": [{"state": "A", "field": "Next", "message": "unknown state 'Nowhere'"}],
                },
                response_only=True,
            ),
        ],
    )
    def post(self, request, version="v1"):
        require(request, "forecasting.view_pipeline")
        data = ValidateInput(data=request.data)
        data.is_valid(raise_exception=True)
        problems = services.definition_problems(data.validated_data["definition"])
        return Response({"valid": not problems, "problems": [problem.as_dict() for problem in problems]})


class StartRun(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["pipelines"],
        request=StartInput,
        responses={201: RunSerializer, 200: RunSerializer, **STANDARD_ERRORS, **NOT_FOUND},
        summary="Start a run (the same name and input again answers the first run with 200)",
        examples=[
            OpenApiExample(
                "start", value={"name": "daily-2026-12-02", "input": {"weekday": "Friday"}}, request_only=True
            )
        ],
    )
    def post(self, request, pipeline, version="v1"):
        require(request, "forecasting.add_run")
        data = StartInput(data=request.data)
        data.is_valid(raise_exception=True)
        run, created = services.start_run(
            pipeline=pipeline, input=data.validated_data["input"], name=data.validated_data.get("name")
        )
        run = Run.objects.select_related("pipeline").get(id=run.id)
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class RunList(generics.ListAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = RunSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Run.objects.none()
        require(self.request, "forecasting.view_run")
        params = self.request.query_params
        wanted = params.get("status") or None
        if wanted is not None and wanted not in RunStatus.values:
            raise serializers.ValidationError({"status": [f"One of {', '.join(RunStatus.values)}."]})
        pipeline = params.get("pipeline") or None
        if pipeline is not None and len(pipeline) > 80:
            raise serializers.ValidationError({"pipeline": ["At most 80 characters."]})
        return selectors.runs(pipeline=pipeline, status=wanted)

    @extend_schema(
        tags=["pipelines"],
        summary="Runs, newest first",
        parameters=[
            OpenApiParameter("pipeline", str, description="Only this pipeline's runs."),
            OpenApiParameter("status", str, enum=RunStatus.values),
        ],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


def _run(run_id) -> Run:
    return services._run(run_id)


class RunDetail(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["pipelines"],
        responses={200: RunDetailSerializer, **NOT_FOUND},
        summary="A run: states, attempts, history",
    )
    def get(self, request, run_id, version="v1"):
        require(request, "forecasting.view_run")
        return Response(RunDetailSerializer(_run(run_id)).data)


class RedriveRun(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["pipelines"],
        request=None,
        responses={200: RunSerializer, **NOT_FOUND, **CONFLICT},
        summary="Redrive a failed or aborted run from its failed states",
    )
    def post(self, request, run_id, version="v1"):
        require(request, "forecasting.redrive_run")
        return Response(RunSerializer(services.redrive_run(run_id=run_id)).data)


class CancelRun(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["pipelines"],
        request=None,
        responses={200: RunSerializer, **NOT_FOUND, **CONFLICT},
        summary="Cancel a running run (its tasks are revoked)",
    )
    def post(self, request, run_id, version="v1"):
        require(request, "forecasting.cancel_run")
        return Response(RunSerializer(services.cancel_run(run_id=run_id)).data)
