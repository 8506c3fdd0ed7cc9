"""Guards for API promises no test held: the 500 shape under /api/ and the page-size ceiling."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client, override_settings
from django.utils import timezone
from rest_framework.authtoken.models import Token

from supplychain.core.bootstrap import bootstrap
from supplychain.events.models import AuditEntry

pytestmark = pytest.mark.django_db

ERROR_KEYS = {"type", "title", "status", "detail", "errors", "correlation_id"}


@pytest.fixture
def failing_client():
    with override_settings(ROOT_URLCONF="tests.probe.urls", DEBUG=False):
        yield Client(raise_request_exception=False)


@pytest.mark.parametrize("url", ["/api/v1/probe/fails/", "/api/v1/probe/api-fails/"])
def test_a_view_that_raises_under_api_answers_500_in_the_one_error_shape(failing_client, url):
    response = failing_client.get(url, HTTP_X_CORRELATION_ID="trace-500")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert (body["type"], body["status"], body["errors"]) == ("server_error", 500, {})
    assert body["correlation_id"] == "trace-500"
    assert "probe" not in body["detail"]  # the exception's text stays in the log


def test_a_view_that_raises_outside_api_answers_the_html_page(failing_client):
    response = failing_client.get("/probe/fails/")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")


@pytest.fixture
def operations():
    bootstrap(demo=False)
    user = get_user_model().objects.create_user("ops-pages", is_staff=True)
    user.groups.add(Group.objects.get(name="operations"))
    client = Client()
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {Token.objects.get_or_create(user=user)[0].key}"
    return client


def test_page_size_is_the_callers_choice_up_to_the_ceiling_of_500(operations):
    now = timezone.now()
    AuditEntry.objects.bulk_create(
        AuditEntry(occurred_at=now, kind="received", event_type="probe.page", partner="pages", outcome="accepted")
        for _ in range(502)
    )
    total = AuditEntry.objects.count()
    small = operations.get("/api/v1/audit/?page_size=2").json()
    assert (len(small["results"]), small["count"]) == (2, total)
    assert "page_size=2" in small["next"]
    ceiling = operations.get("/api/v1/audit/?page_size=500").json()
    assert len(ceiling["results"]) == 500
    assert operations.get("/api/v1/audit/?page_size=500&page=2").json()["results"]
    huge = operations.get("/api/v1/audit/?page_size=100000")  # past the ceiling: refused, as the schema says
    assert huge.status_code == 400
    assert list(huge.json()["errors"]) == ["page_size"]
    assert len(operations.get("/api/v1/audit/").json()["results"]) == 50  # the default page
