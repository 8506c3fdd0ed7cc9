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


# ---- Every bad input gets a clear error in the one shape -----------------------------------------

PING = "/api/v1/diagnostics/ping/"


@pytest.fixture
def admin():
    bootstrap(demo=False)
    client = APIClient()
    client.force_authenticate(get_user_model().objects.get(username="admin"))
    return client


def post_json(client, path, text: str):
    return client.generic("POST", path, text.encode("utf-8", "surrogatepass"), content_type="application/json")


def test_json_nested_thousands_deep_is_a_400_not_a_recursion_error(api):
    response = post_json(api, PING, "[" * 5000 + "]" * 5000)
    assert response.status_code == 400
    assert set(response.json()) == ERROR_KEYS
    assert response.json()["type"] == "parse_error"


def test_json_nested_past_the_depth_limit_is_a_400_naming_where(api):
    response = post_json(api, PING, '{"marker": ' + "[" * 40 + "]" * 40 + "}")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["marker" + ".0" * 31]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"marker": "a\\ud800b"}', "marker"),  # a lone surrogate in a value
        ('{"marker": "ok", "a\\u0000": 1}', "a\\u0000"),  # a NUL in a key
        ('{"marker": "ok", "x": {"\\udfff": 1}}', "x.\\udfff"),  # a lone surrogate in a nested key
        ('{"marker": 1e400}', "marker"),  # overflows to Infinity
        ('{"marker": 9223372036854775808}', "marker"),  # past a bigint
        ('{"marker": "ok", "ids": [1, -9223372036854775809]}', "ids.1"),
    ],
)
def test_json_values_no_column_can_hold_are_a_400_naming_where(api, text, where):
    response = post_json(api, PING, text)
    assert response.status_code == 400, response.content
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["type"] == "validation_error"
    assert list(body["errors"]) == [where]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_nan_and_infinity_are_a_400(api, constant):
    response = post_json(api, PING, f'{{"marker": {constant}}}')
    assert response.status_code == 400
    assert response.json()["type"] == "parse_error"


def test_nul_in_a_query_parameter_is_a_400_naming_it(admin):
    response = admin.get("/api/v1/audit/", {"partner": "erp\x00"})
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {"partner": ["Text may not contain NUL (\\u0000) characters."]}


def test_nul_in_a_path_parameter_is_a_400_naming_the_path(admin):
    response = admin.get("/api/v1/subscriptions/a%00b/")
    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == ["path"]


def test_a_json_body_over_the_limit_is_a_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = post_json(api, PING, '{"marker": "' + "x" * 2000 + '"}')
    assert response.status_code == 413
    assert set(response.json()) == ERROR_KEYS
    assert response.json()["type"] == "request_too_large"


RECEIPTS = "/api/v1/stock/receipts/"


def test_a_3_mb_form_field_is_a_413_in_the_shape(api):
    response = api.post(RECEIPTS, {"key": "x" * (3 * 1024 * 1024)}, format="multipart")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json()["type"] == "request_too_large"


def test_a_field_of_the_limit_read_by_django_itself_is_a_413(api, settings):
    # the body is under the door's limit; Django's multipart parser refuses the fields' total
    settings.API_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api.post(RECEIPTS, {"key": "x" * 2000}, format="multipart")
    assert response.status_code == 413
    assert response.json()["type"] == "request_too_large"


def test_1001_fields_are_a_400_too_many_fields_in_the_shape(api):
    from urllib.parse import urlencode

    body = urlencode({f"f{n}": "1" for n in range(1001)})
    response = api.generic("POST", RECEIPTS, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["type"] == "too_many_fields"


def test_too_many_files_are_a_400_too_many_files_in_the_shape(api):
    from django.core.files.uploadedfile import SimpleUploadedFile

    files = {f"f{n}": SimpleUploadedFile(f"{n}.txt", b"x") for n in range(101)}
    response = api.post(RECEIPTS, files, format="multipart")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["type"] == "too_many_files"


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/api/v1/no-such-thing/"), ("post", "/api/v1/deliveries/0.5/redrive/"), ("get", "/api/v9/")],
)
def test_url_level_404s_answer_the_shape_also_with_debug_on(api, settings, method, path):
    settings.DEBUG = True
    response = getattr(api, method)(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert set(response.json()) == ERROR_KEYS
    assert response.json()["type"] == "not_found"


@pytest.mark.parametrize("debug", [False, True])
def test_a_server_error_under_api_answers_the_shape_with_debug_on_or_off(api, settings, monkeypatch, debug):
    from supplychain.core import services

    settings.DEBUG = debug

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "send_ping", broken)
    api.raise_request_exception = False
    response = api.post(PING, {"marker": "x"}, format="json", HTTP_X_CORRELATION_ID="trace-500")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json()["type"] == "server_error"
    assert response.json()["correlation_id"] == "trace-500"


def test_an_empty_ping_marker_is_refused_as_the_schema_says(api):
    response = api.post(PING, {"marker": ""}, format="json")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["marker"]
    # a form's empty field reads as "not sent" in DRF: the API takes JSON, as its schema says
    form = api.generic("POST", PING, "marker=", content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415
    assert form.json()["type"] == "unsupported_media_type"
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    ping = schema["paths"][PING]["post"]["requestBody"]["content"]
    assert list(ping) == ["application/json"]
    assert schema["components"]["schemas"]["PingInputRequest"]["properties"]["marker"]["minLength"] == 1


def test_a_form_field_with_a_nul_is_a_400_naming_it(api):
    response = api.post(RECEIPTS, {"key": "a\x00b"}, format="multipart")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["key"]


@pytest.mark.parametrize("page", ["0", "-1", "last", "1.5"])
def test_a_page_number_the_schema_forbids_is_a_400_naming_page(admin, page):
    response = admin.get("/api/v1/audit/", {"page": page})
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["page"]


def test_a_page_past_the_last_is_a_documented_404(admin):
    response = admin.get("/api/v1/audit/", {"page": 99})
    assert response.status_code == 404
    assert set(response.json()) == ERROR_KEYS
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    audit = schema["paths"]["/api/v1/audit/"]["get"]
    assert {"400", "401", "403", "404"} <= set(audit["responses"])
    page = next(parameter for parameter in audit["parameters"] if parameter["name"] == "page")
    assert page["schema"]["minimum"] == 1


def test_every_operation_documents_the_errors_the_shared_mechanisms_answer():
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            codes = set(operation["responses"])
            assert {"401", "403"} <= codes, (method, path)
            if "{" in path:
                assert "404" in codes, (method, path)
            if "requestBody" in operation:
                assert {"400", "413"} <= codes, (method, path)


def test_a_value_the_database_refuses_is_a_400_not_a_500():
    from django.db import DataError

    response = exception_handler(DataError("value too long for type character varying(64)"), {})
    assert response.status_code == 400
    assert response.data["type"] == "invalid_value"
    assert set(response.data) == ERROR_KEYS
