"""The API base: authentication, the one error shape, correlation ids, OpenAPI schema and docs."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from supplychain.core.api.errors import exception_handler, flatten_errors
from supplychain.core.bootstrap import bootstrap
from supplychain.core.errors import Conflict

pytestmark = pytest.mark.django_db

ERROR_KEYS = {"type", "title", "status", "detail", "errors", "correlation_id"}


@pytest.fixture
def api():
    token = bootstrap(demo=False).api_token
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_api_without_token_is_refused_with_the_error_shape():
    response = APIClient().post("/api/v1/diagnostics/ping/", {}, format="json")
    assert response.status_code == 401
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["type"] == "not_authenticated"
    assert body["status"] == 401


def test_api_with_a_wrong_token_is_refused():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get("/api/v1/")
    assert response.status_code == 401
    assert response.json()["type"] == "authentication_failed"


def test_bad_body_gets_400_naming_the_field(api):
    response = api.post("/api/v1/diagnostics/ping/", {"marker": "x" * 500}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["type"] == "validation_error"
    assert list(body["errors"]) == ["marker"]
    assert "200" in body["errors"]["marker"][0]


def test_unparseable_json_gets_400_parse_error(api):
    response = api.generic("POST", "/api/v1/diagnostics/ping/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["type"] == "parse_error"


def test_unknown_api_path_answers_json_404():
    response = APIClient().get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert set(response.json()) == ERROR_KEYS


def test_unsupported_api_version_is_404():
    response = APIClient().get("/api/v2/")
    assert response.status_code == 404


def test_correlation_id_from_the_caller_is_echoed(api):
    response = api.get("/api/v1/", HTTP_X_CORRELATION_ID="order-42-trace")
    assert response.status_code == 200
    assert response["X-Correlation-ID"] == "order-42-trace"


def test_correlation_id_is_made_when_the_caller_sends_none(api):
    response = api.get("/api/v1/")
    assert len(response["X-Correlation-ID"]) == 32


def test_error_body_carries_the_request_correlation_id():
    response = APIClient().get("/api/v1/", HTTP_X_CORRELATION_ID="trace-7")
    assert response.json()["correlation_id"] == "trace-7"


def test_domain_errors_map_to_their_status_and_shape():
    response = exception_handler(Conflict("batch already depleted", errors={"sku": ["ham is out"]}), {})
    assert response.status_code == 409
    assert response.data["type"] == "conflict"
    assert response.data["errors"] == {"sku": ["ham is out"]}
    assert response.data["detail"] == "batch already depleted"


def test_nested_validation_errors_flatten_to_dotted_paths():
    detail = {"items": [{}, {"sku": ["Unknown sku."], "quantity": ["Must be positive."]}], "note": ["Too long."]}
    assert flatten_errors(detail) == {
        "items.1.sku": ["Unknown sku."],
        "items.1.quantity": ["Must be positive."],
        "note": ["Too long."],
    }


def test_openapi_schema_documents_endpoints_and_error_shape():
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    ping = schema["paths"]["/api/v1/diagnostics/ping/"]["post"]
    assert set(ping["responses"]) >= {"202", "400", "401"}
    assert "examples" in ping["responses"]["202"]["content"]["application/json"]
    assert set(schema["components"]["schemas"]["Error"]["properties"]) == ERROR_KEYS
    assert schema["components"]["securitySchemes"]["tokenAuth"]["type"] == "apiKey"


def test_docs_page_is_served_without_any_external_download():
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "drf_spectacular_sidecar/swagger-ui-dist" in html
    assert "cdn.jsdelivr" not in html


def test_lists_are_paginated_with_a_caller_chosen_page_size(api):
    from supplychain.events.services import record_received

    for n in range(3):
        record_received(partner="erp", message_type="erp.order", entity_key=f"order-{n}")
    admin = APIClient()
    admin.force_authenticate(get_user_model().objects.get(username="admin"))
    first = admin.get("/api/v1/audit/", {"page_size": 2}).json()
    assert first["count"] == 3
    assert len(first["results"]) == 2
    second = admin.get(first["next"]).json()
    assert len(second["results"]) == 1
    assert second["next"] is None
