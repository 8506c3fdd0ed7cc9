"""URL patterns of the platform endpoints under /api/v1/."""

from django.urls import path, re_path

from supplychain.core.api import views
from supplychain.core.identifiers import IDENTIFIER_PATTERN

urlpatterns = [
    path("", views.ApiRootView.as_view(), name="root"),
    path("diagnostics/ping/", views.PingView.as_view(), name="diagnostics-ping"),
    re_path(
        rf"^diagnostics/tasks/(?P<task_id>{IDENTIFIER_PATTERN})/$", views.TaskView.as_view(), name="diagnostics-task"
    ),
]
