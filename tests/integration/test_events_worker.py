"""The event backbone with real workers, beat, Redis and PostgreSQL: nothing lost, effects once."""

from __future__ import annotations

import signal
import sys
import threading
import time
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from supplychain.events import services, signing
from supplychain.events.models import AuditEntry, Delivery, OutboxEvent, Subscription
from tests.events.factories import SubscriptionFactory
from tests.httpserver import Endpoint
from tests.probe.models import Effect
from tests.processes import ManagedProcess, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

THING = "probe.thing_happened"
OUTSIDE = "platform.probe_posted"  # what an outside caller may publish through the API
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def publish_committed(payload: dict, **kwargs) -> OutboxEvent:
    with transaction.atomic():
        return services.publish(THING, payload, **kwargs)


def succeeded(subscription: Subscription, count: int = 1):
    return lambda: Delivery.objects.filter(subscription=subscription, status="succeeded").count() >= count


def staff_api() -> APIClient:
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-for-tests-only")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_rollback_delivers_nothing_and_commit_delivers_once_to_each_matching_subscriber(celery_worker):
    subscriptions = [SubscriptionFactory(name=name, handler=name) for name in ("probe-a", "probe-b", "probe-c")]
    filtered = SubscriptionFactory(name="cheese-only", handler="probe-a", filter_policy={"sku": ["cheese"]})

    with pytest.raises(RuntimeError), transaction.atomic():
        services.publish(THING, {"sku": "ham", "quantity": 1})
        raise RuntimeError("the business change failed")

    event = publish_committed({"sku": "ham", "quantity": 5}, key="batch-1")
    for subscription in subscriptions:
        wait_for(succeeded(subscription), 30, f"{subscription.name} to be delivered")

    assert OutboxEvent.objects.filter(type=THING).count() == 1
    assert Delivery.objects.filter(subscription=filtered).count() == 0
    effects = sorted(Effect.objects.filter(event_id=event.event_id).values_list("handler", flat=True))
    assert effects == ["probe-a", "probe-b", "probe-c"]
    for delivery in Delivery.objects.all():
        assert delivery.attempts == 1


def test_http_subscriber_failing_then_recovering_gets_growing_jittered_retries_signed(celery_worker):
    failures = 3
    with Endpoint(fail_first=failures, secret=SECRET) as endpoint:  # answers 401 to a bad signature
        subscription = SubscriptionFactory(
            name="partner-http",
            target="http",
            handler="",
            url=endpoint.url,
            secret=SECRET,
            max_attempts=6,
            initial_interval=0.4,
            backoff_rate=2.0,
            jitter="equal",
            queue="dispatch",
        )
        event = publish_committed({"sku": "ham", "quantity": 2})
        wait_for(succeeded(subscription), 60, "the HTTP delivery to succeed")

    assert [received.status for received in endpoint.received] == [500, 500, 500, 200]
    for received in endpoint.received:  # Standard Webhooks: what any receiver library verifies
        assert received.json["id"] == str(event.event_id)
        assert received.headers["webhook-id"] == str(event.event_id)  # the same on every retry: dedupe on it
        assert Webhook(SECRET).verify(received.body, received.headers)["id"] == str(event.event_id)
        assert signing.verify(SECRET, received.body, received.headers, now=received.at)
        assert not signing.verify(signing.generate_secret(), received.body, received.headers, now=received.at)
        assert "X-Supplychain-Signature" not in received.headers

    attempts = list(AuditEntry.objects.filter(kind="attempt", subscription="partner-http").order_by("attempt"))
    assert [a.outcome for a in attempts] == ["failed", "failed", "failed", "succeeded"]
    assert [a.http_status for a in attempts] == [500, 500, 500, 200]
    delays = [a.delay_seconds for a in attempts[:failures]]
    ceilings = [0.4, 0.8, 1.6]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling  # equal jitter: half the backoff plus a random half
    assert delays == sorted(delays), f"retry delays should grow: {delays}"
    gaps = [b.at - a.at for a, b in zip(endpoint.received, endpoint.received[1:], strict=False)]
    for gap, delay in zip(gaps, delays, strict=True):
        assert gap >= delay  # the countdown really waited


def test_always_failing_subscriber_dies_alarms_once_and_redrive_delivers_exactly_once(celery_worker):
    with Endpoint(always_fail=True, fail_status=503) as endpoint:
        subscription = SubscriptionFactory(
            name="broken-courier",
            target="http",
            handler="",
            url=endpoint.url,
            max_attempts=3,
            initial_interval=0.2,
            jitter="none",
            queue="dispatch",
        )
        events = [publish_committed({"sku": "ham", "quantity": n}) for n in (1, 2)]
        wait_for(
            lambda: Delivery.objects.filter(subscription=subscription, status="dead").count() == 2,
            60,
            "both deliveries to go dead",
        )
        assert len(endpoint.received) == 6
        subscription.refresh_from_db()
        assert subscription.alarm_state == "alarm"
        alarms = OutboxEvent.objects.filter(type="events.dead_letters_raised", key="broken-courier")
        assert alarms.count() == 1  # two dead letters, one alarm

        api = staff_api()
        dead = api.get("/api/v1/deliveries/", {"status": "dead", "subscription": "broken-courier"}).json()
        assert dead["count"] == 2
        assert "HTTP 503" in dead["results"][0]["last_error"]

        endpoint.always_fail = False
        response = api.post("/api/v1/deliveries/redrive/", {"subscription": "broken-courier"}, format="json")
        assert response.status_code == 200, response.content
        assert response.json() == {"redriven": 2}
        wait_for(succeeded(subscription, 2), 30, "the redriven deliveries")

    after_recovery = [r for r in endpoint.received if r.status == 200]
    assert sorted(r.json["id"] for r in after_recovery) == sorted(str(e.event_id) for e in events)
    subscription.refresh_from_db()
    assert subscription.alarm_state == "ok"
    delivery_id = Delivery.objects.filter(subscription=subscription).first().id
    history = api.get(f"/api/v1/deliveries/{delivery_id}/").json()["history"]
    assert [h["outcome"] for h in history] == ["failed", "failed", "dead", "redriven", "succeeded"]


def test_a_policy_written_past_validation_is_dead_lettered_once_not_retried_every_minute(celery_worker):
    """initial_interval 1e308 used to crash every attempt unrecorded, the delivery claimed again each lease."""
    with Endpoint(always_fail=True) as endpoint:
        subscription = SubscriptionFactory(
            name="overflowing", target="http", handler="", url=endpoint.url, max_attempts=50, queue="dispatch"
        )
        Subscription.objects.filter(pk=subscription.pk).update(initial_interval=1e308, max_interval=1e308)
        event = publish_committed({"sku": "ham", "quantity": 1})
        wait_for(
            lambda: Delivery.objects.filter(subscription=subscription, status="dead").exists(),
            30,
            "the delivery to be dead-lettered",
        )
        delivery = Delivery.objects.get(event=event, subscription=subscription)
        attempts = list(AuditEntry.objects.filter(kind="attempt", delivery_id=delivery.id))
        assert [a.outcome for a in attempts] == ["dead"]
        assert "initial_interval" in attempts[0].error
        assert delivery.attempts == 1
        assert len(endpoint.received) == 0  # nothing sent on a policy no attempt can be computed from
        subscription.refresh_from_db()
        assert subscription.alarm_state == "alarm"

        # Fixed through the service, then redriven: delivered.
        services.update_subscription(subscription=subscription, initial_interval=1, max_interval=60)
        endpoint.always_fail = False
        assert services.redrive_deliveries(subscription="overflowing") == 1
        wait_for(succeeded(subscription), 30, "the redriven delivery")


def test_killed_worker_mid_delivery_is_redone_after_restart_with_one_effect(
    celery_worker, celery_beat, start_worker, tmp_path
):
    started_file = tmp_path / "started"
    subscription = SubscriptionFactory(name="kill-probe", handler="probe-a", queue="killtest", max_attempts=5)
    lease = {"EVENTS_LEASE_SECONDS": "3"}
    victim = start_worker("killtest", label="victim", **lease)
    event = publish_committed({"sku": "ham", "quantity": 1, "sleep": 60, "started_file": str(started_file)})
    wait_for(started_file.exists, 30, "the handler to start on the victim worker")

    victim.signal(signal.SIGKILL)  # the whole process group: parent and pool child, mid-handler
    victim.popen.wait(timeout=10)
    assert Effect.objects.filter(event_id=event.event_id).count() == 0  # its transaction died with it

    start_worker("killtest", label="restarted", **lease)
    wait_for(succeeded(subscription), 60, "the delivery to complete after the restart")
    delivery = Delivery.objects.get(subscription=subscription)
    assert delivery.attempts == 2
    assert Effect.objects.filter(event_id=event.event_id, handler="probe-a").count() == 1


def test_broker_down_while_publishing_loses_nothing(real_services, process_env, log_dir, tmp_path):
    """A web process publishes while its broker is stopped; once it is back every event is delivered."""
    from supplychain import embedded

    port, web_port = free_port(), free_port()
    broker_url = f"redis://127.0.0.1:{port}/0"
    env = {**process_env, "CELERY_BROKER_URL": broker_url, "ALLOWED_HOSTS": "127.0.0.1"}
    redis_argv = [embedded.redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    redis_argv += ["--appendonly", "no", "--dir", str(tmp_path)]

    def start_redis() -> ManagedProcess:
        server = ManagedProcess("outage-redis", redis_argv, env, log_dir / "outage-redis.log")
        server.wait_until(lambda: "Ready to accept connections" in server.output(), 15, "redis to start")
        return server

    subscription = SubscriptionFactory(name="outage-probe", handler="probe-b", queue="default", event_types=[OUTSIDE])
    api = staff_api()
    token = api._credentials["HTTP_AUTHORIZATION"]
    redis_server = start_redis()
    celery = [sys.executable, "-m", "celery", "-A", "supplychain"]
    worker = ManagedProcess(
        "outage-worker",
        [*celery, "worker", "-Q", "events,default", "-c", "1", "-n", "outage@localhost"],
        env,
        log_dir / "outage-worker.log",
    )
    beat = ManagedProcess("outage-beat", [*celery, "beat", "-s", str(tmp_path / "beat")], env, log_dir / "ob.log")
    web = ManagedProcess(
        "outage-web",
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{web_port}", "--noreload"],
        env,
        log_dir / "outage-web.log",
    )
    import requests

    try:
        worker.wait_until(lambda: "ready." in worker.output(), 60, "the worker")
        web.wait_until(lambda: _answers(f"http://127.0.0.1:{web_port}/healthz"), 60, "the web server")
        redis_server.stop()  # the broker goes away

        published = []
        for n in range(20):
            response = requests.post(
                f"http://127.0.0.1:{web_port}/api/v1/events/",
                json={"type": OUTSIDE, "payload": {"sku": "ham", "quantity": n + 1}},
                headers={"Authorization": token},
                timeout=10,
            )
            assert response.status_code == 201, response.text
            published.append(response.json()["id"])
        ready = requests.get(f"http://127.0.0.1:{web_port}/readyz", timeout=10)
        assert ready.status_code == 503  # readiness tells the truth meanwhile
        assert OutboxEvent.objects.filter(type=OUTSIDE, relayed_at__isnull=True).count() == 20

        redis_server = start_redis()  # the broker is back (empty: whatever it held is gone)
        wait_for(succeeded(subscription, 20), 90, "every event published during the outage to be delivered")
        delivered = set(Effect.objects.filter(handler="probe-b").values_list("event_id", flat=True))
        assert {str(event_id) for event_id in delivered} == set(published)
        assert Effect.objects.filter(handler="probe-b").count() == 20
    finally:
        for process in (web, beat, worker, redis_server):
            process.stop()


def _answers(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_worker_killed_mid_http_delivery_takes_its_lease_back_at_once_when_restarted(celery_worker, start_worker):
    """The restarted worker redoes the delivery in seconds, not after the 60 s lease; the subscriber gets it twice."""
    name = f"restart-{uuid.uuid4().hex[:6]}@localhost"
    with Endpoint(slow_first=1, slow_seconds=25) as endpoint:  # still answering when the worker dies
        subscription = SubscriptionFactory(  # within the bounds: a timeout of at most 30 s, a whsec_ secret
            name="restart-probe",
            target="http",
            handler="",
            url=endpoint.url,
            queue="restarttest",
            timeout_seconds=30,
            secret=signing.generate_secret(),
        )
        victim = start_worker("restarttest", label="victim", name=name)
        event = publish_committed({"sku": "ham", "quantity": 1})
        wait_for(lambda: endpoint.received, 30, "the slow subscriber to receive the first POST")

        victim.signal(signal.SIGKILL)  # parent and pool child, while the subscriber is still answering
        victim.popen.wait(timeout=10)
        killed_at = time.monotonic()
        start_worker("restarttest", label="restarted", name=name)
        ready_at = time.monotonic()
        wait_for(succeeded(subscription), 60, "the delivery to complete after the restart")
        done_at = time.monotonic()

    assert done_at - ready_at < 5, f"{done_at - ready_at:.1f}s after the restarted worker was ready"
    assert done_at - killed_at < 30, f"{done_at - killed_at:.1f}s after the kill (the lease is 60 s)"
    assert [received.json["id"] for received in endpoint.received] == [str(event.event_id)] * 2  # at least once
    delivery = Delivery.objects.get(subscription=subscription)
    assert delivery.attempts == 2


def test_the_sweep_keeps_relaying_without_a_single_task_event_for_flower(celery_worker, celery_beat):
    """Beat sends events.sweep every second here: Flower's task list must not fill with it, yet it still works."""
    from supplychain.celery import app

    seen: list[dict] = []
    with app.connection() as connection:
        receiver = app.events.Receiver(connection, handlers={"*": seen.append})
        capture = threading.Thread(target=lambda: receiver.capture(limit=None, timeout=None, wakeup=True), daemon=True)
        capture.start()
        wait_for(lambda: seen, 30, "the first event (a worker heartbeat)")
        subscription = SubscriptionFactory(name="swept", handler="probe-a")
        missed = OutboxEvent.objects.create(  # written without publish(): no kick, only the sweep relays it
            type=THING, source="supplychain/probe", occurred_at=timezone.now(), payload={"sku": "ham", "quantity": 1}
        )
        wait_for(succeeded(subscription), 30, "the sweep to relay the missed event and kick its delivery")
        time.sleep(3)  # a few more sweeps
        receiver.should_stop = True
        capture.join(timeout=10)

    names = {e["uuid"]: e["name"] for e in seen if e.get("name")}
    task_events = [e for e in seen if e["type"].startswith("task-")]
    assert "events.deliver" in names.values()  # the capture sees the tasks the sweep kicked
    swept = sorted({e["type"] for e in task_events if names.get(e["uuid"]) == "events.sweep"})
    assert swept == [], f"events.sweep still sends {swept}"
    assert OutboxEvent.objects.get(pk=missed.pk).relayed_at is not None


def test_coalesced_kicks_never_strand_an_event_published_while_a_drain_runs(celery_worker):
    """No beat here, so no sweep: each event reaches its handler only through a kick.

    Kicks coalesce (one pending per subscription, across processes); the handler sleeps so that a drain is
    running when the next events commit. Each round's last event is the one a lost kick would strand.
    """
    subscription = SubscriptionFactory(name="coalesced", handler="probe-a")
    published = 0
    for round_number in range(8):
        for n in range(1 + round_number % 4):
            publish_committed({"sku": "ham", "quantity": published + 1, "sleep": 0.03})
            published += 1
            time.sleep(0.01 * ((round_number + n) % 3))
        wait_for(succeeded(subscription, published), 8, f"round {round_number}: {published} events delivered")
    assert Effect.objects.filter(handler="probe-a").count() == published
    assert Delivery.objects.filter(subscription=subscription).exclude(status="succeeded").count() == 0
