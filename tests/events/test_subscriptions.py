"""Subscriptions through their services: bounded retry policies, Standard Webhooks secrets, rotation;
a delivery whose attempt cannot be computed is recorded and dead-lettered, never a crash that loops."""

import json
import math
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from supplychain.core.bootstrap import bootstrap
from supplychain.events import services, signing, transport
from supplychain.events.errors import SubscriptionInvalid
from supplychain.events.models import AuditEntry, Delivery, Subscription
from tests.events.factories import SubscriptionFactory
from tests.httpserver import Endpoint

pytestmark = pytest.mark.django_db
THING = "probe.thing_happened"
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
GOOD = {
    "name": "courier",
    "event_types": ["probe.*"],
    "target": "http",
    "url": "https://courier.example.com/h",
    "queue": "dispatch",
}


@pytest.fixture
def admin_api():
    bootstrap(demo=False)
    client = APIClient()
    admin = get_user_model().objects.get(username="admin")
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=admin)[0].key}")
    return client


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("initial_interval", 1e308),
        ("initial_interval", -1),
        ("initial_interval", "NaN"),
        ("max_interval", 1e308),
        ("max_interval", "Infinity"),
        ("backoff_rate", 1e6),
        ("backoff_rate", 0.5),
        ("max_attempts", 10**6),
        ("max_attempts", 9223372036854775808),
        ("max_attempts", 0),
        ("timeout_seconds", 3600),
        ("timeout_seconds", 0),
        ("max_batch_size", 10**6),
        ("secret", "whsec_" + "A" * 300),
        ("secret", "a-long-random-secret"),
        ("secret", "whsec_not base64!"),
        ("secret", "whsec_c2hvcnQ="),  # 5 bytes: the specification asks for 24 to 64
        ("name", "-starts-with-a-dash"),
        ("event_types", ["x.*"] * 51),
    ],
)
def test_out_of_bounds_subscription_fields_are_refused_naming_the_field(admin_api, field, value):
    response = admin_api.post("/api/v1/subscriptions/", {**GOOD, field: value}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()
    assert not Subscription.objects.filter(target="http").exists()  # the code handlers' own ones aside


def test_bounds_hold_on_update_too(admin_api):
    assert admin_api.post("/api/v1/subscriptions/", GOOD, format="json").status_code == 201
    response = admin_api.patch("/api/v1/subscriptions/courier/", {"initial_interval": 1e308}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"initial_interval": ["Ensure this value is less than or equal to 3600.0."]}
    assert Subscription.objects.get(name="courier").initial_interval == 1.0
    renamed = admin_api.patch(
        "/api/v1/subscriptions/courier/", {"name": "courier-eu", "max_attempts": 9}, format="json"
    )
    assert renamed.status_code == 200, renamed.content
    assert (renamed.json()["name"], renamed.json()["max_attempts"]) == ("courier-eu", 9)


def test_the_service_checks_the_bounds_for_any_caller():
    with pytest.raises(SubscriptionInvalid) as refused:
        services.create_subscription(
            name="x", event_types=["probe.*"], target="handler", handler="probe-a", initial_interval=math.inf
        )
    assert "initial_interval" in refused.value.errors
    subscription = services.create_subscription(name="x", event_types=["probe.*"], target="handler", handler="probe-a")
    with pytest.raises(SubscriptionInvalid) as refused:
        services.update_subscription(subscription=subscription, max_attempts=0, backoff_rate=100)
    assert set(refused.value.errors) == {"max_attempts", "backoff_rate"}
    with pytest.raises(SubscriptionInvalid):
        services.update_subscription(subscription=subscription, alarm_state="ok")


def test_an_http_subscription_without_a_secret_gets_a_whsec_one_shown_only_at_creation(admin_api):
    response = admin_api.post("/api/v1/subscriptions/", GOOD, format="json")
    assert response.status_code == 201, response.content
    secret = response.json()["secret"]
    assert (response.json()["dead_count"], response.json()["pending_count"]) == (0, 0)  # the schema requires both
    assert secret.startswith("whsec_")
    assert signing.secret_problem(secret) is None
    assert Subscription.objects.get(name="courier").secret == secret
    assert "secret" not in admin_api.get("/api/v1/subscriptions/courier/").json()
    assert "secret" not in admin_api.get("/api/v1/subscriptions/").json()["results"][0]


def test_a_given_whsec_secret_is_kept(admin_api):
    response = admin_api.post("/api/v1/subscriptions/", {**GOOD, "secret": SPEC_SECRET}, format="json")
    assert response.status_code == 201
    assert Subscription.objects.get(name="courier").secret == SPEC_SECRET


def test_rotation_keeps_the_old_secret_valid_for_the_grace_period(admin_api):
    admin_api.post("/api/v1/subscriptions/", {**GOOD, "secret": SPEC_SECRET}, format="json")
    response = admin_api.post("/api/v1/subscriptions/courier/rotate-secret/", {"grace_seconds": 3600}, format="json")
    assert response.status_code == 200, response.content
    new_secret = response.json()["secret"]
    assert new_secret != SPEC_SECRET and new_secret.startswith("whsec_")
    subscription = Subscription.objects.get(name="courier")
    assert subscription.previous_secret == SPEC_SECRET
    left = subscription.previous_secret_expires_at - timezone.now()
    assert timedelta(minutes=59) < left <= timedelta(hours=1)

    from supplychain.events.transport import signing_secrets

    assert signing_secrets(subscription) == [new_secret, SPEC_SECRET]
    subscription.previous_secret_expires_at = timezone.now() - timedelta(seconds=1)
    assert signing_secrets(subscription) == [new_secret]

    blanked = admin_api.patch("/api/v1/subscriptions/courier/", {"secret": ""}, format="json")
    assert blanked.status_code == 400 and "secret" in blanked.json()["errors"]
    assert Subscription.objects.get(name="courier").secret == new_secret

    refused = admin_api.post("/api/v1/subscriptions/courier/rotate-secret/", {"secret": "plain"}, format="json")
    assert refused.status_code == 400
    assert "secret" in refused.json()["errors"]


def test_operations_may_rotate_but_platform_may_not():
    bootstrap(demo=False)
    services.create_subscription(name="courier", event_types=["probe.*"], target="http", url="https://x.example/h")
    platform = APIClient()
    platform.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get(user__username='platform').key}")
    assert platform.post("/api/v1/subscriptions/courier/rotate-secret/", {}, format="json").status_code == 403


def test_redrive_ids_past_a_bigint_are_a_400_not_a_500(admin_api):
    response = admin_api.post("/api/v1/deliveries/redrive/", {"ids": [9223372036854775808]}, format="json")
    assert response.status_code == 400, response.content
    assert "ids.0" in response.json()["errors"]
    assert admin_api.get("/api/v1/deliveries/9223372036854775808/").status_code == 404
    assert admin_api.post("/api/v1/deliveries/9223372036854775808/redrive/").status_code == 404
    assert admin_api.get("/api/v1/audit/99999999999999999999/").status_code == 404
    assert admin_api.get("/api/v1/events/not-a-uuid/").status_code == 404
    response = admin_api.post(
        "/api/v1/events/", {"type": "platform.probe_posted", "version": 10**20, "payload": {}}, format="json"
    )
    assert response.status_code == 400
    assert "version" in response.json()["errors"]


@pytest.mark.parametrize(
    "policy",
    [
        {"initial_interval": 1e308, "max_interval": 1e308},
        {"initial_interval": math.nan},
        {"timeout_seconds": math.nan},
        {"max_attempts": 10**9, "backoff_rate": 1e300, "initial_interval": 1.0, "max_interval": math.inf},
    ],
    ids=["1e308", "nan-interval", "nan-timeout", "overflowing-backoff"],
)
def test_a_delivery_whose_attempt_cannot_be_computed_is_recorded_and_dead_lettered(policy):
    """A policy written past validation (directly in the database, an old row) must not crash the task."""
    with Endpoint(always_fail=True) as endpoint:
        subscription = SubscriptionFactory(target="http", handler="", url=endpoint.url, max_attempts=5)
        Subscription.objects.filter(pk=subscription.pk).update(**policy)  # no validation on this path
        event = services.publish(THING, {"sku": "ham", "quantity": 1})
        services.relay_pending()
        report = services.process_deliveries(subscription_id=subscription.id)
        again = services.process_deliveries(subscription_id=subscription.id)
    delivery = Delivery.objects.get(event=event)
    assert delivery.status == "dead"
    assert delivery.attempts == 1
    assert report.dead == 1 and again.claimed == 0
    attempt = AuditEntry.objects.get(kind="attempt", delivery_id=delivery.id)
    assert attempt.outcome == "dead"
    assert attempt.error and attempt.error == delivery.last_error
    assert next(iter(policy)) in attempt.error
    subscription.refresh_from_db()
    assert subscription.alarm_state == "alarm"


def test_a_retry_delay_that_overflows_is_dead_lettered_with_its_reason():
    """Past the policy check too (a bound loosened one day): the attempt is kept, never a crash."""
    subscription = SubscriptionFactory(handler="probe-a", max_attempts=5)
    event = services.publish(THING, {"sku": "ham", "quantity": 1})
    services.relay_pending()
    delivery = Delivery.objects.get(event=event)
    delivery.attempts = 1
    failed = transport.Outcome(False, 1.0, "boom")
    subscription.initial_interval = subscription.max_interval = 1e308  # in memory only
    services.deliveries._record(subscription, [delivery], [failed], services.DeliveryReport())
    delivery.refresh_from_db()
    assert delivery.status == "dead"
    assert "no retry delay can be computed" in delivery.last_error


def test_the_admin_form_goes_through_the_service_and_keeps_the_bounds(client):
    bootstrap(demo=False)
    client.force_login(get_user_model().objects.get(username="admin"))
    form = {
        "name": "courier",
        "description": "",
        "active": "on",
        "event_types": '["probe.*"]',
        "filter_policy": "{}",
        "target": "http",
        "handler": "",
        "url": "https://courier.example.com/h",
        "secret": "",
        "max_batch_size": "1",
        "timeout_seconds": "10",
        "queue": "dispatch",
        "max_attempts": "5",
        "initial_interval": "1e308",
        "backoff_rate": "2",
        "max_interval": "3600",
        "jitter": "full",
    }
    refused = client.post("/admin/events/subscription/add/", form)
    assert refused.status_code == 200  # the form again, with its errors
    assert "initial_interval" in refused.context["adminform"].form.errors
    assert not Subscription.objects.filter(target="http").exists()  # the code handlers' own ones aside

    refused = client.post("/admin/events/subscription/add/", {**form, "initial_interval": "1", "name": "-dash"})
    assert "name" in refused.context["adminform"].form.errors  # the service's identifier rule, as a form error
    many = {**form, "initial_interval": "1", "event_types": json.dumps(["x.*"] * 51)}
    assert "event_types" in client.post("/admin/events/subscription/add/", many).context["adminform"].form.errors
    assert not Subscription.objects.filter(target="http").exists()  # the code handlers' own ones aside

    assert client.post("/admin/events/subscription/add/", {**form, "initial_interval": "1"}).status_code == 302
    created = Subscription.objects.get(name="courier")
    assert created.secret.startswith("whsec_")  # generated by create_subscription

    change = {**form, "initial_interval": "1", "secret": "not-a-whsec-secret"}
    refused = client.post(f"/admin/events/subscription/{created.pk}/change/", change)
    assert "secret" in refused.context["adminform"].form.errors
    blank = client.post(f"/admin/events/subscription/{created.pk}/change/", {**change, "secret": ""})
    assert "secret" in blank.context["adminform"].form.errors
    rotated = {**change, "secret": SPEC_SECRET}
    assert client.post(f"/admin/events/subscription/{created.pk}/change/", rotated).status_code == 302
    created.refresh_from_db()
    assert created.secret == SPEC_SECRET
    assert created.previous_secret.startswith("whsec_") and created.previous_secret_expires_at is not None


def test_the_subscription_example_in_the_schema_is_accepted(admin_api):
    schema = admin_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = schema["paths"]["/api/v1/subscriptions/"]["post"]
    example = next(iter(operation["requestBody"]["content"]["application/json"]["examples"].values()))["value"]
    response = admin_api.post("/api/v1/subscriptions/", example, format="json")
    assert response.status_code == 201, response.content
    documented = next(iter(operation["responses"]["400"]["content"]["application/json"]["examples"].values()))
    field = next(iter(documented["value"]["errors"]))
    response = admin_api.patch(f"/api/v1/subscriptions/{example['name']}/", {field: 1e308}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == documented["value"]["errors"]


def test_the_migration_turns_old_secrets_into_whsec_ones_with_the_same_key():
    """Receivers keep their HMAC key; HTTP subscriptions that had no secret get one."""
    import base64
    import importlib
    from pathlib import Path

    from django.apps import apps

    import supplychain.events.migrations as migrations

    (path,) = Path(migrations.__file__).parent.glob("*_subscription_bounds_webhook_secrets_publish_permission.py")
    migration = importlib.import_module(f"supplychain.events.migrations.{path.stem}")
    old = SubscriptionFactory(name="old", target="http", handler="", url="https://x.example/h", secret="partner-secret")
    unsigned = SubscriptionFactory(name="unsigned", target="http", handler="", url="https://x.example/h", secret="")
    internal = SubscriptionFactory(name="internal", secret="")
    current = SubscriptionFactory(
        name="current", target="http", handler="", url="https://x.example/h", secret=SPEC_SECRET
    )

    migration.secrets_to_standard_webhooks(apps, None)

    for subscription in (old, unsigned, internal, current):
        subscription.refresh_from_db()
    assert old.secret.startswith("whsec_")
    assert base64.b64decode(old.secret.removeprefix("whsec_")) == b"partner-secret"
    assert signing.secret_problem(unsigned.secret) is None
    assert internal.secret == ""
    assert current.secret == SPEC_SECRET


def test_a_rotated_subscription_is_still_accepted_by_a_receiver_holding_the_old_secret():
    """Both signatures travel during the grace period: a receiver on the old secret and one on the new accept."""
    with Endpoint(secret=SPEC_SECRET) as old_receiver:
        subscription = services.create_subscription(
            name="rotating", event_types=["probe.*"], target="http", url=old_receiver.url, secret=SPEC_SECRET
        )
        subscription = services.rotate_subscription_secret(subscription=subscription, grace_seconds=600)
        services.publish(THING, {"sku": "ham", "quantity": 1})
        services.relay_pending()
        assert services.process_deliveries(subscription_id=subscription.id).succeeded == 1
    (request,) = old_receiver.received
    assert request.status == 200
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert signing.verify(subscription.secret, request.body, request.headers)

    Subscription.objects.filter(pk=subscription.pk).update(previous_secret_expires_at=timezone.now())
    with Endpoint(secret=SPEC_SECRET) as old_receiver:
        Subscription.objects.filter(pk=subscription.pk).update(url=old_receiver.url)
        services.publish(THING, {"sku": "ham", "quantity": 2})
        services.relay_pending()
        assert services.process_deliveries(subscription_id=subscription.id).retrying == 1
    assert [r.status for r in old_receiver.received] == [401]  # the grace period is over


def test_a_change_to_a_subscription_deleted_meanwhile_is_a_404_not_a_500():
    """Found by schemathesis against a live server: a PATCH racing a DELETE of the same subscription."""
    from supplychain.core.errors import NotFound

    subscription = services.create_subscription(
        name="gone", event_types=["stock.*"], target="http", url="https://example.com/hooks"
    )
    Subscription.objects.filter(pk=subscription.pk).delete()  # the other request's DELETE committed first
    with pytest.raises(NotFound):
        services.update_subscription(subscription=subscription, active=False)


def test_creating_a_name_that_was_taken_meanwhile_is_a_validation_error_not_a_database_error(monkeypatch):
    # Two creations of one name at once both pass the uniqueness check (the other's row is not committed
    # yet); the second save meets the unique index and must answer like the check, leaving the first.
    first = services.create_subscription(name="twice", event_types=["probe.*"], target="handler", handler="probe-a")
    monkeypatch.setattr(Subscription, "validate_unique", lambda self, exclude=None: None)
    with pytest.raises(SubscriptionInvalid) as refused:
        services.create_subscription(name="twice", event_types=["stock.*"], target="handler", handler="probe-b")
    assert refused.value.errors == {"name": ["A subscription with this name already exists."]}
    assert list(Subscription.objects.filter(name="twice").values_list("pk", "handler")) == [(first.pk, "probe-a")]


def test_renaming_to_a_name_taken_meanwhile_is_a_validation_error_and_changes_nothing(monkeypatch):
    services.create_subscription(name="taken", event_types=["probe.*"], target="handler", handler="probe-a")
    other = services.create_subscription(name="other", event_types=["probe.*"], target="handler", handler="probe-b")
    monkeypatch.setattr(Subscription, "validate_unique", lambda self, exclude=None: None)
    with pytest.raises(SubscriptionInvalid) as refused:
        services.update_subscription(subscription=other, name="taken")
    assert set(refused.value.errors) == {"name"}
    assert sorted(Subscription.objects.filter(name__in=["other", "taken"]).values_list("name", flat=True)) == [
        "other",
        "taken",
    ]
