"""URL patterns of the pipelines under /api/v1/pipelines/ (``runs`` and ``validate`` are reserved names)."""

from django.urls import path, re_path

from forecasting import api
from supplychain.core.identifiers import IDENTIFIER_PATTERN

NAME = rf"(?P<pipeline>{IDENTIFIER_PATTERN})"
urlpatterns = [
    path("pipelines/", api.PipelineList.as_view(), name="pipeline-list"),
    path("pipelines/validate/", api.ValidateDefinition.as_view(), name="pipeline-validate"),
    path("pipelines/runs/", api.RunList.as_view(), name="pipeline-run-list"),
    path("pipelines/runs/<uuid:run_id>/", api.RunDetail.as_view(), name="pipeline-run-detail"),
    path("pipelines/runs/<uuid:run_id>/redrive/", api.RedriveRun.as_view(), name="pipeline-run-redrive"),
    path("pipelines/runs/<uuid:run_id>/cancel/", api.CancelRun.as_view(), name="pipeline-run-cancel"),
    re_path(rf"^pipelines/{NAME}/$", api.PipelineDetail.as_view(), name="pipeline-detail"),
    re_path(rf"^pipelines/{NAME}/runs/$", api.StartRun.as_view(), name="pipeline-start"),
]
