"""The task machinery on the production parts: a real worker and beat on Redis + PostgreSQL."""

import time

import pytest
from rest_framework.test import APIClient

from supplychain.core.bootstrap import bootstrap
from supplychain.core.selfcheck import check_beat, check_chord, check_retry

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_ping_sent_through_the_api_runs_on_the_worker_with_the_callers_correlation_id(celery_worker):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {bootstrap(demo=False).api_token}")
    queued = client.post(
        "/api/v1/diagnostics/ping/", {"marker": "from-api"}, format="json", HTTP_X_CORRELATION_ID="corr-redis-1"
    )
    assert queued.status_code == 202, queued.content
    status_url = queued.json()["status_url"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        task = client.get(status_url).json()
        if task["state"] == "SUCCESS":
            break
        time.sleep(0.2)
    assert task["state"] == "SUCCESS", task
    assert task["result"]["marker"] == "from-api"
    assert task["result"]["correlation_id"] == "corr-redis-1"
    assert task["result"]["pid"] != celery_worker.popen.pid  # ran in a pool child, not in this process
    celery_worker.wait_until(
        lambda: "corr-redis-1" in celery_worker.output(), timeout=10, what="the worker log to carry the id"
    )


def test_chord_across_worker_processes_on_redis(celery_worker):
    outcome = check_chord(size=20, timeout=60)
    assert outcome["value"] == sum(2 * i for i in range(20))


def test_countdown_retry_waits_between_attempts_on_redis(celery_worker):
    outcome = check_retry(failures=2, countdown=1.0, timeout=60)
    assert outcome["attempts"] == 3
    assert all(gap >= 0.9 for gap in outcome["gaps"])


def test_beat_sends_a_database_scheduled_task_on_redis(celery_worker, celery_beat):
    outcome = check_beat(timeout=60)
    assert outcome["ok"]
    assert "Sending due task selfcheck-" in celery_beat.output()
