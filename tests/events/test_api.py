"""The backbone's API: publish, subscriptions, deliveries and redrive, audit search; permissions."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from supplychain.core.bootstrap import bootstrap
from supplychain.events import services
from supplychain.events.models import AuditEntry, Delivery, OutboxEvent
from tests.events.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db
THING = "probe.thing_happened"
OUTSIDE = "platform.probe_posted"  # the probe's type in the namespace outside callers may publish


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def platform():
    bootstrap(demo=False)
    return client_for(get_user_model().objects.get(username="platform"))


@pytest.fixture
def operations():
    bootstrap(demo=False)
    user = get_user_model().objects.create_user("ops-staff", is_staff=True)
    user.groups.add(Group.objects.get(name="operations"))
    return client_for(user)


def make_dead(subscription, n=1):
    events = [services.publish(THING, {"sku": "ham", "quantity": i + 1}, key=f"order-{i}") for i in range(n)]
    services.relay_pending()
    Delivery.objects.filter(subscription=subscription).update(status="dead", dead_at=timezone.now(), attempts=3)
    return events


def test_platform_publishes_an_event_through_the_api(platform):
    response = platform.post(
        "/api/v1/events/",
        {"type": OUTSIDE, "key": "batch-9", "payload": {"sku": "ham", "quantity": 4}},
        format="json",
        HTTP_X_CORRELATION_ID="erp-77",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["type"] == OUTSIDE
    assert body["correlation_id"] == "erp-77"
    assert OutboxEvent.objects.get(event_id=body["id"]).key == "batch-9"


def test_invalid_event_payload_gets_400_naming_the_field_and_nothing_is_written(platform):
    response = platform.post("/api/v1/events/", {"type": OUTSIDE, "payload": {"sku": "ham"}}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "invalid_event"
    assert "payload.quantity" in body["errors"]
    assert OutboxEvent.objects.count() == 0


def test_unknown_event_type_gets_400(platform):
    response = platform.post("/api/v1/events/", {"type": "made.up", "payload": {}}, format="json")
    assert response.status_code == 400
    assert "type" in response.json()["errors"]


def test_platform_cannot_manage_subscriptions_or_redrive(platform):
    assert platform.get("/api/v1/subscriptions/").status_code == 403
    assert platform.post("/api/v1/deliveries/redrive/", {"all": True}, format="json").status_code == 403


def test_operations_create_a_subscription_and_bad_input_names_the_field(operations):
    good = {
        "name": "courier",
        "event_types": ["order.*"],
        "target": "http",
        "url": "https://courier.example.com/h",
        "filter_policy": {"country": ["GB"]},
        "queue": "dispatch",
    }
    assert operations.post("/api/v1/subscriptions/", good, format="json").status_code == 403  # view+change only

    admin = client_for(get_user_model().objects.get(username="admin"))
    response = admin.post("/api/v1/subscriptions/", good, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["secret"].startswith("whsec_")  # generated, shown this once
    assert "secret" not in admin.get("/api/v1/subscriptions/courier/").json()

    bad = {**good, "name": "courier-2", "filter_policy": {"country": "GB"}, "queue": "nowhere"}
    response = admin.post("/api/v1/subscriptions/", bad, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"filter_policy", "queue"}

    unknown_handler = {**good, "name": "h", "target": "handler", "handler": "nope", "url": ""}
    response = admin.post("/api/v1/subscriptions/", unknown_handler, format="json")
    assert response.status_code == 400
    assert "handler" in response.json()["errors"]

    response = operations.patch("/api/v1/subscriptions/courier/", {"max_attempts": 9}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["max_attempts"] == 9


def test_dead_letters_are_listed_and_redriven_one_by_one(operations):
    subscription = SubscriptionFactory(name="flaky")
    make_dead(subscription, 2)
    listed = operations.get("/api/v1/deliveries/", {"status": "dead", "subscription": "flaky"}).json()
    assert listed["count"] == 2
    delivery_id = listed["results"][0]["id"]
    response = operations.post(f"/api/v1/deliveries/{delivery_id}/redrive/")
    assert response.status_code == 200
    assert response.json() == {"redriven": 1}
    again = operations.post(f"/api/v1/deliveries/{delivery_id}/redrive/")
    assert again.status_code == 409
    assert again.json()["type"] == "conflict"


def test_bulk_redrive_needs_a_selector(operations):
    response = operations.post("/api/v1/deliveries/redrive/", {}, format="json")
    assert response.status_code == 400
    assert response.json()["type"] == "nothing_selected"


def test_bulk_redrive_by_event_type_prefix(operations):
    subscription = SubscriptionFactory(name="flaky")
    make_dead(subscription, 3)
    response = operations.post("/api/v1/deliveries/redrive/", {"event_type": "probe.*"}, format="json")
    assert response.json() == {"redriven": 3}
    assert Delivery.objects.filter(status="pending").count() == 3


def test_audit_is_searchable_by_correlation_id_entity_and_type(operations):
    services.publish(THING, {"sku": "ham", "quantity": 1}, key="order-1", correlation_id="trace-1")
    services.publish(THING, {"sku": "ham", "quantity": 2}, key="order-2", correlation_id="trace-2")
    by_trace = operations.get("/api/v1/audit/", {"correlation_id": "trace-1"}).json()
    assert [row["entity_key"] for row in by_trace["results"]] == ["order-1"]
    by_entity = operations.get("/api/v1/audit/", {"entity": "order-2"}).json()
    assert by_entity["results"][0]["correlation_id"] == "trace-2"
    assert operations.get("/api/v1/audit/", {"event_type": THING}).json()["count"] == 2
    assert operations.get("/api/v1/audit/", {"kind": "attempt"}).json()["count"] == 0


def test_audit_api_is_read_only(operations):
    services.publish(THING, {"sku": "ham", "quantity": 1})
    entry = AuditEntry.objects.first()
    assert operations.delete(f"/api/v1/audit/{entry.pk}/").status_code in (403, 405)
    assert operations.post("/api/v1/audit/", {}, format="json").status_code in (403, 405)
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_redrive_command(capsys):
    subscription = SubscriptionFactory(name="flaky")
    make_dead(subscription, 2)
    call_command("redrive", "--subscription", "flaky")
    assert "2 dead deliveries redriven" in capsys.readouterr().out
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="Give delivery ids"):
        call_command("redrive")
    with pytest.raises(CommandError, match="not an ISO"):
        call_command("redrive", "--dead-since", "yesterday")
