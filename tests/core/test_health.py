"""Health endpoints answer JSON without authentication; readiness names a failing dependency."""

import json
import os
import subprocess
import sys

import pytest
from django.test import Client

from tests.processes import ROOT


def test_liveness_answers_ok_without_touching_dependencies():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readiness_checks_the_real_database_and_broker():
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    checks = response.json()["checks"]
    assert checks["database"] == {"ok": True, "vendor": "postgresql", "ms": checks["database"]["ms"]}
    assert checks["broker"]["ok"] is True
    assert checks["broker"]["transport"] == "redis"
    assert set(checks["broker"]["queues"]) == {"events", "dispatch", "ingest", "forecast", "default"}


def test_readiness_is_503_and_names_the_broker_when_it_is_down():
    """A web process whose broker does not answer reports not-ready, naming the broker."""
    code = (
        "import django, json; django.setup(); from django.test import Client; "
        "r = Client().get('/readyz', HTTP_HOST='localhost'); print(r.status_code); print(r.content.decode())"
    )
    env = {**os.environ, "CELERY_BROKER_URL": "redis://127.0.0.1:1/0", "DJANGO_SETTINGS_MODULE": "supplychain.settings"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    status, body = result.stdout.strip().split("\n", 1)
    body = json.loads(body)
    assert status == "503"
    assert body["status"] == "fail"
    assert body["checks"]["broker"]["ok"] is False
    assert "Error" in body["checks"]["broker"]["error"]
    assert body["checks"]["database"]["ok"] is True
