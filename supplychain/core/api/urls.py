"""URL patterns of the platform endpoints under /api/v1/."""

from django.urls import path

from supplychain.core.api import views

urlpatterns = [
    path("", views.ApiRootView.as_view(), name="root"),
    path("diagnostics/ping/", views.PingView.as_view(), name="diagnostics-ping"),
    path("diagnostics/tasks/<str:task_id>/", views.TaskView.as_view(), name="diagnostics-task"),
]
