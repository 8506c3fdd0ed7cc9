"""URL patterns of the pipelines under /api/v1/pipelines/ (``runs`` and ``validate`` are reserved names)."""

from django.urls import path

from forecasting import api

NAME = "<str:name>"
urlpatterns = [
    path("pipelines/", api.PipelineList.as_view(), name="pipeline-list"),
    path("pipelines/validate/", api.ValidateDefinition.as_view(), name="pipeline-validate"),
    path("pipelines/runs/", api.RunList.as_view(), name="pipeline-run-list"),
    path("pipelines/runs/<uuid:run_id>/", api.RunDetail.as_view(), name="pipeline-run-detail"),
    path("pipelines/runs/<uuid:run_id>/redrive/", api.RedriveRun.as_view(), name="pipeline-run-redrive"),
    path("pipelines/runs/<uuid:run_id>/cancel/", api.CancelRun.as_view(), name="pipeline-run-cancel"),
    path(f"pipelines/{NAME}/", api.PipelineDetail.as_view(), name="pipeline-detail"),
    path(f"pipelines/{NAME}/runs/", api.StartRun.as_view(), name="pipeline-start"),
]
