"""Who may publish what through the API: internal facts only from the services that own them."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from supplychain.core.bootstrap import bootstrap
from supplychain.events import registry
from supplychain.events.models import AuditEntry, OutboxEvent

pytestmark = pytest.mark.django_db
OUTSIDE = "platform.probe_posted"
FORGED_LEVEL = {"sku": "ham", "on_hand": "9999.000", "reserved": "0.000", "available": "9999.000"}


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def platform():
    bootstrap(demo=False)
    return client_for(get_user_model().objects.get(username="platform"))


def internal_types() -> list[str]:
    return sorted({name for name, _ in registry.schemas() if registry.publish_permission(name) is None})


def test_every_internal_type_is_known_to_the_registry():
    # Guards the loop below against passing on an empty list.
    assert {"stock.level_changed", "stock.batch_expired", "events.dead_letters_raised"} <= set(internal_types())
    assert OUTSIDE not in internal_types()


def test_platform_cannot_forge_a_stock_level():
    bootstrap(demo=False)
    platform = client_for(get_user_model().objects.get(username="platform"))
    response = platform.post(
        "/api/v1/events/", {"type": "stock.level_changed", "key": "ham", "payload": FORGED_LEVEL}, format="json"
    )
    assert response.status_code == 403, response.content
    body = response.json()
    assert set(body) >= {"type", "title", "status", "detail", "errors", "correlation_id"}
    assert body["status"] == 403
    assert "type" in body["errors"]
    assert not OutboxEvent.objects.filter(type="stock.level_changed").exists()
    assert not AuditEntry.objects.filter(event_type="stock.level_changed").exists()


@pytest.mark.parametrize("caller", ["platform", "admin"])
def test_no_api_caller_publishes_any_internal_type(caller):
    bootstrap(demo=False)
    client = client_for(get_user_model().objects.get(username=caller))
    for event_type in internal_types():
        response = client.post("/api/v1/events/", {"type": event_type, "payload": {}}, format="json")
        assert response.status_code == 403, (event_type, response.content)
        assert response.json()["type"] == "permission_denied"
    assert OutboxEvent.objects.count() == 0


def test_platform_publishes_an_outside_type_recorded_under_its_own_name(platform):
    response = platform.post(
        "/api/v1/events/", {"type": OUTSIDE, "key": "erp-1", "payload": {"sku": "ham", "quantity": 2}}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["source"] == "api/platform"
    event = OutboxEvent.objects.get(event_id=response.json()["id"])
    assert event.source == "api/platform"
    assert AuditEntry.objects.get(event_id=event.event_id).data["source"] == "api/platform"


def test_a_caller_without_the_publish_permission_gets_403():
    user = get_user_model().objects.create_user("reader")
    user.user_permissions.add(Permission.objects.get(codename="add_outboxevent"))
    response = client_for(user).post(
        "/api/v1/events/", {"type": OUTSIDE, "payload": {"sku": "ham", "quantity": 2}}, format="json"
    )
    assert response.status_code == 403, response.content
    assert "events.publish_platform_event" in response.json()["detail"]
    assert OutboxEvent.objects.count() == 0


def test_a_platform_schema_names_its_permission_and_services_still_publish_internal_types():
    from supplychain.events import services

    assert registry.publish_permission("platform.message_posted") == "events.publish_platform_event"
    event = services.publish("stock.level_changed", FORGED_LEVEL, key="ham")
    assert event.source == "supplychain/stock"


def test_the_publish_example_in_the_schema_is_accepted_and_its_400_example_is_what_the_server_says(platform):
    schema = platform.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = schema["paths"]["/api/v1/events/"]["post"]
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    good = next(iter(examples.values()))["value"]
    response = platform.post("/api/v1/events/", good, format="json")
    assert response.status_code == 201, response.content

    documented = next(iter(operation["responses"]["400"]["content"]["application/json"]["examples"].values()))
    documented = documented["value"]
    missing = documented["errors"].copy().popitem()[0].removeprefix("payload.")
    bad = {**good, "payload": {k: v for k, v in good["payload"].items() if k != missing}}
    response = platform.post("/api/v1/events/", bad, format="json")
    assert response.status_code == 400
    assert response.json()["type"] == documented["type"]
    assert response.json()["errors"] == documented["errors"]


def test_an_internal_type_cannot_be_opened_to_outside_callers_by_its_schema():
    from django.core.exceptions import ImproperlyConfigured

    flagged = {"type": "object", registry.PUBLISH_PERMISSION_KEYWORD: "events.publish_platform_event"}
    with pytest.raises(ImproperlyConfigured, match="internal fact"):
        registry.check_publishable("stock.level_changed", flagged, where="stock/schemas/stock.level_changed.v1.json")
    registry.check_publishable("platform.message_posted", flagged, where="events")
    registry.check_publishable("stock.level_changed", {"type": "object"}, where="stock")
