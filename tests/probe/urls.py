"""The project's URLs plus views that fail on purpose, for tests of the error shape (override ROOT_URLCONF)."""

from django.urls import path, re_path
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny

from supplychain.urls import handler404, handler500
from supplychain.urls import urlpatterns as project_urlpatterns

__all__ = ["handler404", "handler500", "urlpatterns"]


class ProbeFailure(Exception):
    """A bug in a view: nothing maps it to a status."""


def django_view_that_fails(request, version=None):
    raise ProbeFailure("probe view failed")


@api_view(["GET", "POST"])
@permission_classes([AllowAny])
def api_view_that_fails(request, version=None):
    raise ProbeFailure("probe API view failed")


urlpatterns = [
    re_path(r"^api/(?P<version>v1)/probe/fails/$", django_view_that_fails),
    re_path(r"^api/(?P<version>v1)/probe/api-fails/$", api_view_that_fails),
    path("probe/fails/", django_view_that_fails),
    *project_urlpatterns,
]
