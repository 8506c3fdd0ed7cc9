"""`make run`'s stack on the embedded default: SQLite + the bundled Redis, every process separate.

Starts ``manage.py runstack`` in a fresh folder (its own SQLite file and broker socket), then checks
readiness, a ping sent through the API and seen in Flower, a chord, a countdown retry and beat
(``manage.py selfcheck`` from another process), and a clean stop on Ctrl-C.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.processes import ROOT, ManagedProcess

pytestmark = pytest.mark.integration

WEB_PORT, FLOWER_PORT = 18000, 15555
PUBLISH_ON_SQLITE = """
from django.db import transaction
from supplychain.events.models import Subscription
from supplychain.events.services import publish
for name in ("probe-a", "probe-b"):
    Subscription.objects.create(name=name, event_types=["probe.*"], target="handler", handler=name)
with transaction.atomic():
    for quantity in (1, 2, 3):
        publish("probe.thing_happened", {"sku": "ham", "quantity": quantity})
"""


def http(method: str, url: str, headers: dict | None = None, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def embedded_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY"}}
    env.update(SUPPLYCHAIN_VAR_DIR=str(tmp_path / "var"), PYTHONUNBUFFERED="1", ADMIN_PASSWORD="stack-test-pw")
    return env


def manage(env, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_run_stack_on_the_embedded_default(embedded_env, tmp_path):
    migrated = manage(embedded_env, "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    bootstrapped = manage(embedded_env, "bootstrap", "--json")
    tokens = json.loads(bootstrapped.stdout)["tokens"]
    token, operations_token = tokens["platform"]["token"], tokens["operations"]["token"]

    stack = ManagedProcess(
        "runstack",
        [sys.executable, "manage.py", "runstack", "--port", str(WEB_PORT), "--flower-port", str(FLOWER_PORT)],
        embedded_env,
        tmp_path / "runstack.log",
    )
    try:
        stack.wait_until(lambda: "supplychain is running" in stack.output(), timeout=90, what="the stack banner")
        assert token in stack.output() and operations_token in stack.output()  # both printed, each with its role
        for queue in ("events", "dispatch", "ingest", "forecast", "default"):
            stack.wait_until(  # each queue's own worker announces "<queue>@<host> ready."
                lambda q=queue: re.search(rf"\b{q}@\S+ ready\.", stack.output()),
                timeout=60,
                what=f"worker {queue}",
            )

        status, ready = http("GET", f"http://127.0.0.1:{WEB_PORT}/readyz")
        assert status == 200, ready
        assert ready["checks"]["database"]["vendor"] == "sqlite"
        assert ready["checks"]["broker"]["embedded"] is True

        status, queued = http(
            "POST",
            f"http://127.0.0.1:{WEB_PORT}/api/v1/diagnostics/ping/",
            {"Authorization": f"Token {token}", "Content-Type": "application/json"},
            b'{"marker": "seen-in-flower"}',
        )
        assert status == 202, queued
        import base64

        def flower_status(credentials: bytes | None) -> int | None:
            request = urllib.request.Request(f"http://127.0.0.1:{FLOWER_PORT}/api/tasks")
            if credentials:
                request.add_header("Authorization", f"Basic {base64.b64encode(credentials).decode()}")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code
            except OSError:
                return None  # not listening yet

        stack.wait_until(lambda: flower_status(None) is not None, timeout=60, what="Flower to listen")
        assert flower_status(None) == 401  # Flower refuses whoever is not the admin
        assert flower_status(b"admin:wrong-password") == 401
        assert flower_status(b"admin:stack-test-pw") == 200
        basic = base64.b64encode(b"admin:stack-test-pw").decode()
        deadline, seen = time.monotonic() + 30, {}
        while time.monotonic() < deadline:
            try:
                _, seen = http("GET", f"http://127.0.0.1:{FLOWER_PORT}/api/tasks", {"Authorization": f"Basic {basic}"})
            except (OSError, json.JSONDecodeError):
                seen = {}
            if seen.get(queued["task_id"], {}).get("state") == "SUCCESS":
                break
            time.sleep(0.5)
        assert seen.get(queued["task_id"], {}).get("state") == "SUCCESS", seen
        assert seen[queued["task_id"]]["name"] == "supplychain.ping"

        created = manage(embedded_env, "shell", "-v", "0", "-c", PUBLISH_ON_SQLITE)
        assert created.returncode == 0, created.stderr
        count_effects = "from tests.probe.models import Effect; print(Effect.objects.count())"
        stack.wait_until(
            lambda: manage(embedded_env, "shell", "-v", "0", "-c", count_effects).stdout.strip() == "6",
            timeout=60,
            what="3 events delivered to 2 subscribers on SQLite + the embedded broker",
        )

        checked = manage(embedded_env, "selfcheck", "--timeout", "60", timeout=240)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        report = json.loads(checked.stdout)
        assert report["chord"]["value"] == 90
        assert report["retry"]["attempts"] == 3
        assert report["beat"]["ok"] is True
    finally:
        stack.signal(signal.SIGINT)
        try:
            stack.popen.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stack.stop()
            pytest.fail("runstack did not stop within 60 s of Ctrl-C")
    output = stack.output()
    assert stack.popen.returncode == 0, output[-3000:]
    assert "All stopped." in output
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], f"processes left running: {leftovers}"
