"""The OpenAPI schema describes what the server does: its request examples are answered as documented, and
every path parameter has a pattern, so anything a caller can create can be reached at its URL."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from integrations.api import ORDER_EXAMPLE
from stock import demo, services
from stock.models import NATURAL_KEY_PATTERN
from supplychain.core.bootstrap import bootstrap
from supplychain.core.identifiers import IDENTIFIER_PATTERN
from tests.stock.factories import csv_opener

pytestmark = pytest.mark.django_db

# A path parameter is reachable for every value its creator accepted only if its pattern is one of these.
CONSTRAINED = {
    IDENTIFIER_PATTERN,  # caller-chosen identifiers: the one alphabet (supplychain/core/identifiers.py)
    "[0-9]+",  # database ids
    r"\d+",
    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",  # Django's <uuid:> converter
    "v1",  # the API version
    NATURAL_KEY_PATTERN,  # skus, recipe and supplier codes: slugs within the identifier alphabet
}


def _parameters(patterns, prefix=""):
    """(route, parameter, its regular expression) for every named parameter of every URL under ``patterns``."""
    for entry in patterns:
        pattern = entry.pattern
        route = prefix + str(pattern)
        found = dict(getattr(pattern, "converters", {}))
        if found:  # path("<str:x>/"): the converter's regex
            groups = {name: converter.regex for name, converter in found.items()}
        else:  # re_path: the named groups of the regular expression
            groups = {name: _group(pattern._regex, name) for name in re.compile(pattern._regex).groupindex}
        for name, regex in groups.items():
            yield route, name, regex
        if isinstance(entry, URLResolver):
            yield from _parameters(entry.url_patterns, route)
        else:
            assert isinstance(entry, URLPattern)


def _group(regex: str, name: str) -> str:
    """The text of the named group ``name`` in ``regex`` (balanced parentheses)."""
    start = regex.index(f"(?P<{name}>") + len(f"(?P<{name}>")
    depth, index = 1, start
    while depth:
        depth += {"(": 1, ")": -1}.get(regex[index], 0) if regex[index - 1] != "\\" else 0
        index += 1
    return regex[start : index - 1]


def _api_parameters():
    api = next(
        entry for entry in get_resolver().url_patterns if "api/" in str(entry.pattern) and "v1" in str(entry.pattern)
    )
    cases = []
    for route, name, regex in _parameters([api]):
        cases.append(pytest.param(route, name, regex, id=f"{route}:{name}"))
    return cases


@pytest.mark.parametrize(("route", "name", "regex"), _api_parameters())
def test_every_path_parameter_under_the_api_has_a_pattern(route, name, regex):
    assert regex in CONSTRAINED, f"{route}: {name} matches {regex!r}; give it IDENTIFIER_PATTERN or an id pattern"


def test_the_guard_sees_every_routed_path_parameter():
    seen = {(name) for _, name, _ in (case.values for case in _api_parameters())}
    assert {"version", "transaction_id", "pk", "task_id"} <= seen


# ---- Every request example in the live schema is answered as documented ------------------------------


def _schema() -> dict:
    """The schema ``/api/schema/`` serves (built here directly: tests are collected before the test settings)."""
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def _examples():
    """One case per request example in the live schema, with the operation's documented success status."""
    cases = []
    for path, methods in _schema()["paths"].items():
        for method, operation in methods.items():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            for name, example in content.get("examples", {}).items():
                documented = {int(code) for code in operation["responses"] if code.startswith("2")}
                case_id = f"{method} {path} {name}"
                cases.append(
                    pytest.param(method, _filled(path, example["value"]), example["value"], documented, id=case_id)
                )
    return cases


# Path parameters of examples whose body does not carry them: what the fixture below creates.
PATH_VALUES = {"order_id": ORDER_EXAMPLE["order_id"], "pipeline": "route-by-weekday"}


def _filled(path: str, body) -> str:
    """The path with each ``{parameter}`` from the example's own field of that name (an upsert's key) or PATH_VALUES."""
    for name in re.findall(r"{(\w+)}", path):
        if isinstance(body, dict) and isinstance(body.get(name), str):
            path = path.replace(f"{{{name}}}", body[name])
        elif name in PATH_VALUES:
            path = path.replace(f"{{{name}}}", PATH_VALUES[name])
    return path


from forecasting import services as forecasting_services  # noqa: E402
from forecasting.api import EXAMPLE_DEFINITION as PIPELINE_EXAMPLE  # noqa: E402


@pytest.fixture
def operator():
    """A client with a token holding every permission (the admin's), and the stock the examples name."""
    bootstrap(demo=False)
    best_before = (timezone.localdate() + timedelta(days=30)).isoformat()
    demo.load_catalogue()  # the examples are written against the demo ingredients and recipes
    text = "sku,quantity,best_before\n" + "".join(f"{sku},5000,{best_before}\n" for sku, *_ in demo.INGREDIENTS)
    services.ingest_receipt(key="examples.csv", open_stream=csv_opener(text), source="upload")
    token, _ = Token.objects.get_or_create(user=get_user_model().objects.get(username="admin"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    placed = client.post("/api/v1/orders/", ORDER_EXAMPLE, format="json")  # the order the cancel example names
    # the pipeline the start example runs
    forecasting_services.save_pipeline(name=PATH_VALUES["pipeline"], definition=PIPELINE_EXAMPLE)
    assert placed.status_code == 202, placed.content
    return client


@pytest.mark.parametrize(("method", "path", "value", "documented"), _examples())
def test_every_request_example_in_the_schema_is_answered_with_its_documented_status(
    operator, method, path, value, documented
):
    assert "{" not in path, f"an example for {path} needs values for its path parameters"
    response = getattr(operator, method)(path, value, format="json")
    assert response.status_code in documented, response.content


def test_the_schema_has_request_examples_to_send():
    assert len(_examples()) >= 5


def test_every_400_example_names_a_field_its_operation_has():
    schema = _schema()
    schemas = schema["components"]["schemas"]
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            fields = {"path", "non_field_errors"} | {parameter["name"] for parameter in operation.get("parameters", [])}
            for content in operation.get("requestBody", {}).get("content", {}).values():
                body = content["schema"]
                body = schemas[body["$ref"].rsplit("/", 1)[-1]] if "$ref" in body else body
                fields |= set(body.get("properties", {}))
            examples = operation["responses"].get("400", {}).get("content", {}).get("application/json", {})
            for example in examples.get("examples", {}).values():
                named = {name.split(".")[0] for name in example["value"]["errors"]}
                assert named <= fields, (method, path, named)
