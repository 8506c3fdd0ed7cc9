"""Suite-wide fixtures: the real servers behind the integration tier and real Celery processes.

``make test`` points DATABASE_URL at PostgreSQL and CELERY_BROKER_URL at Redis (both made sure of by
``scripts/ensure-services.sh``). Integration tests fail, never skip, when those are not what they run on;
the summary says which servers the integration tier ran against.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import TransactionTestCase

from tests.processes import ManagedProcess, celery_argv, worker_ready

SERVERS: dict[str, str] = {}


LIVE_WORKERS: list = []  # the session's worker while it runs, see _quiet_before_flush


def _quiet_before_flush(original):
    """A transactional test ends by flushing the database: one TRUNCATE of every table, locking them in turn.

    The session's Celery worker may still be relaying or delivering that test's events then (workers
    and beat started for one test have stopped by now). Its transactions lock two tables or more (a
    relay: the outbox, subscriptions, deliveries; a claim: deliveries joined to the outbox), in an order
    no single TRUNCATE can share with all of them: TRUNCATE holding one table and waiting for another
    while the worker holds that one and waits for the first is a deadlock. So before the flush the
    worker is given nothing that spans tables: every subscription is switched off (a delivery task,
    also one waiting on a countdown, then claims nothing) and every event marked relayed (a relay then
    reads the outbox alone); the flush waits until no other connection is inside a transaction and the
    broker's queues are empty. A transaction on one table cannot deadlock with TRUNCATE.
    """

    def teardown(self):
        if LIVE_WORKERS and connection.vendor == "postgresql":
            _idle_workers()
        return original(self)

    return teardown


def _idle_workers(timeout: float = 30.0) -> None:
    from django.db import transaction
    from django.utils import timezone

    from supplychain.events.models import OutboxEvent, Subscription

    with transaction.atomic():
        Subscription.objects.filter(active=True).update(active=False)
        OutboxEvent.objects.filter(relayed_at__isnull=True).update(relayed_at=timezone.now())
    deadline = time.monotonic() + timeout
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
            )
            busy = {"connections in a transaction": cursor.fetchone()[0], "queued tasks": _queued_tasks()}
        if not any(busy.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the worker did not go idle before the flush: {busy}")
        time.sleep(0.05)


def _queued_tasks() -> int:
    try:
        broker = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1)
        return sum(broker.llen(queue) for queue in settings.CELERY_QUEUES)
    except redis.RedisError:  # a test stopped the broker: no worker can take a task either
        return 0


TransactionTestCase._fixture_teardown = _quiet_before_flush(TransactionTestCase._fixture_teardown)
OUTCOMES = {"passed": 0, "failed": 0, "skipped": 0}
INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"
FLOOR_FILE = INTEGRATION_DIR / "FLOOR"
COLLECTED = {"integration": 0}


def pytest_runtest_logreport(report):
    if "integration" not in report.keywords:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        OUTCOMES[report.outcome] += 1


def pytest_collectreport(report):
    """A module of the integration tier skipped whole at import (``pytest.skip(allow_module_level=True)``,
    ``pytest.importorskip``) never reaches the run reports: count it as a skipped integration test."""
    if report.outcome == "skipped" and _in_integration_dir(report.nodeid):
        OUTCOMES["skipped"] += 1


def _in_integration_dir(nodeid: str) -> bool:
    path = Path(nodeid.split("::", 1)[0])
    return path.suffix == ".py" and (Path.cwd() / path).resolve().is_relative_to(INTEGRATION_DIR)


def pytest_collection_finish(session):
    COLLECTED["integration"] = sum(1 for item in session.items if item.get_closest_marker("integration"))


def _floor() -> int:
    return int(FLOOR_FILE.read_text().split()[0])


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    ran = OUTCOMES["passed"] + OUTCOMES["failed"]
    where = ", ".join(f"{name} {version}" for name, version in SERVERS.items()) or "no servers reached"
    terminalreporter.write_sep(
        "=",
        f"integration tier: {OUTCOMES['passed']} passed, {OUTCOMES['failed']} failed, "
        f"{OUTCOMES['skipped']} skipped, against {where}",
    )
    if ran == 0 and _full_run(config):
        terminalreporter.write_line("ERROR: the integration tier did not run.", red=True)
    if OUTCOMES["skipped"]:
        terminalreporter.write_line("ERROR: integration tests were skipped (see the skip reasons above).", red=True)
    if _full_run(config) and COLLECTED["integration"] < _floor():
        terminalreporter.write_line(
            f"ERROR: {COLLECTED['integration']} integration tests collected, fewer than the floor of {_floor()} "
            f"in {FLOOR_FILE.relative_to(Path.cwd()) if FLOOR_FILE.is_relative_to(Path.cwd()) else FLOOR_FILE}.",
            red=True,
        )


def _full_run(config) -> bool:
    """True for a plain ``pytest`` (the whole suite), false when a subset was asked for."""
    return (
        not config.option.markexpr
        and not config.option.keyword
        and not config.option.ignore
        and not config.option.ignore_glob
        and not config.option.deselect
        and config.args_source != pytest.Config.ArgsSource.ARGS
    )


def pytest_sessionfinish(session, exitstatus):
    """A full run in which no integration test executed, or fewer were collected than the floor, fails."""
    config = session.config
    ran = OUTCOMES["passed"] + OUTCOMES["failed"]
    if _full_run(config) and ran == 0 and exitstatus == 0:
        session.exitstatus = 1
    if OUTCOMES["skipped"] and exitstatus == 0:
        session.exitstatus = 1  # an integration test must never be skipped silently
    if _full_run(config) and COLLECTED["integration"] < _floor() and exitstatus == 0:
        session.exitstatus = 1


@pytest.fixture(autouse=True)
def stream_slots_given_back():
    """A test that leaves a live-stream slot taken fails (in its teardown), so a leak shows where it happens.

    The count is then set back, so one leak fails one test and not every test after it.
    """
    from stock import stream

    yield
    left = stream.slots.open
    stream.slots.reset()
    assert left == 0, f"{left} live-stream slot(s) still taken after the test: a stream's response was not closed"


@pytest.fixture(autouse=True)
def no_kick_pending_from_an_earlier_test():
    """A kick guard an earlier test left (its kick sent to no worker) must not hold back this test's kicks."""
    from supplychain.events import kicks

    client = kicks._redis()
    if client is None:
        return
    try:
        for key in client.scan_iter(match=kicks.PREFIX + "*"):
            client.delete(key)
    except redis.RedisError:  # no Redis in this run: nothing was guarded
        pass


@pytest.fixture(scope="session")
def real_services(django_db_setup, django_db_blocker) -> dict[str, str]:
    """The test database's URL and the Redis broker URL; fails unless they are PostgreSQL and Redis."""
    if connection.vendor != "postgresql":
        pytest.fail(f"integration tests need PostgreSQL (DATABASE_URL), got {connection.vendor}: run `make test`")
    broker = settings.CELERY_BROKER_URL
    if not broker.startswith("redis://"):
        pytest.fail(f"integration tests need a Redis server (CELERY_BROKER_URL), got {broker}: run `make test`")
    client = redis.Redis.from_url(broker)
    client.flushdb()  # leftovers of an earlier run must not leak into this one
    SERVERS["Redis"] = client.info("server")["redis_version"]
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        SERVERS["PostgreSQL"] = cursor.fetchone()[0]
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return {"DATABASE_URL": database_url, "CELERY_BROKER_URL": broker}


@pytest.fixture(scope="session")
def partner_simulator():
    """The partner simulator for the session, on ephemeral ports, down (503) until a test brings it up.

    Its URLs are the session worker's partner URLs, so no worker ever calls a developer's ``make run``
    simulator on 8700-8703; tests that use it (tests/integration/test_partners_worker.py) set it up and
    point its callbacks at their live server.
    """
    from integrations.simulator import Simulator

    secrets = {name: config["secret"] for name, config in settings.PARTNERS.items()}
    simulator = Simulator(callback_url="http://127.0.0.1:9", secrets=secrets).start()
    simulator.set(down_for=10**9)
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture(scope="session")
def process_env(real_services, partner_simulator) -> dict[str, str]:
    """Environment for worker/beat subprocesses: the same test database and broker as this process."""
    return {
        **os.environ,
        **real_services,
        "PYTHONUNBUFFERED": "1",
        "SUPPLYCHAIN_ENV": "development",
        "EVENTS_SWEEP_SECONDS": "1",  # beat's safety net every second, so recovery tests are quick
        # The session's simulator (down until a test brings it up), never a developer's on 8700-8703.
        **{f"PARTNER_{name.upper()}_URL": url for name, url in partner_simulator.urls.items()},
        "ALERTS_SWEEP_SECONDS": "1",  # and the alert sweep, so grouped messages come within seconds
    }


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("process-logs")


@pytest.fixture(scope="session")
def celery_worker(process_env, log_dir):
    """A real Celery worker (prefork, 2 processes) consuming every queue, on PostgreSQL + Redis."""
    from supplychain.celery import app

    name = f"test-{uuid.uuid4().hex[:8]}@localhost"
    argv = celery_argv(
        "worker", "-Q", ",".join(settings.CELERY_QUEUES), "-n", name, "-c", "2", "-l", "INFO", "--without-mingle"
    )
    process = ManagedProcess("worker", argv, process_env, log_dir / "worker.log")
    try:
        process.wait_until(worker_ready(app, name), timeout=60, what="the worker to answer ping")
        process.node_name = name
        LIVE_WORKERS.append(process)
        yield process
    finally:
        if process in LIVE_WORKERS:
            LIVE_WORKERS.remove(process)
        process.stop()


@pytest.fixture
def start_worker(process_env, log_dir):
    """Start extra workers for one test (own queues/env); all stopped at the end of the test."""
    from supplychain.celery import app

    started: list[ManagedProcess] = []

    def start(queues: str, *, label: str = "extra", name: str | None = None, **env) -> ManagedProcess:
        """``name``: the node name (``-n``), to restart a worker under the name it had; a fresh one by default."""
        name = name or f"{label}-{uuid.uuid4().hex[:6]}@localhost"
        argv = celery_argv("worker", "-Q", queues, "-n", name, "-c", "1", "-l", "INFO", "--without-mingle")
        process = ManagedProcess(label, argv, {**process_env, **env}, log_dir / f"{name}.log")
        started.append(process)
        process.wait_until(worker_ready(app, name), timeout=60, what=f"worker {name} to answer ping")
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def celery_beat(process_env, log_dir):
    """A real beat process using the database scheduler, for one test."""
    process = ManagedProcess(
        "beat",
        celery_argv("beat", "-l", "INFO", "-s", str(log_dir / "beat-schedule")),
        process_env,
        log_dir / "beat.log",
    )
    try:
        process.wait_until(lambda: "beat: Starting" in process.output(), timeout=60, what="beat to start")
        yield process
    finally:
        process.stop()
