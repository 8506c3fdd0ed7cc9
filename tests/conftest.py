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
from django.core.management.base import CommandError
from django.db import connection
from django.test import TransactionTestCase

from tests.processes import ManagedProcess, celery_argv, worker_ready

SERVERS: dict[str, str] = {}


def _flush_retrying_deadlocks(original):
    """A transactional test ends by flushing the database (TRUNCATE of every table, one lock at a time).

    The session's live Celery worker may be relaying or delivering that test's events meanwhile; when
    PostgreSQL breaks the resulting lock cycle by aborting the flush rather than the worker's transaction,
    the flush is simply tried again (the worker's side has been rolled back or has finished by then).
    """

    def teardown(self):
        for attempt in range(1, 6):
            try:
                return original(self)
            except CommandError as exc:
                if attempt == 5 or "deadlock detected" not in str(exc.__cause__):
                    raise
                time.sleep(0.2 * attempt)

    return teardown


TransactionTestCase._fixture_teardown = _flush_retrying_deadlocks(TransactionTestCase._fixture_teardown)
OUTCOMES = {"passed": 0, "failed": 0, "skipped": 0}


def pytest_runtest_logreport(report):
    if "integration" not in report.keywords:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        OUTCOMES[report.outcome] += 1


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


def _full_run(config) -> bool:
    """True for a plain ``pytest`` (the whole suite), false when a subset was asked for."""
    return (
        not config.option.markexpr and not config.option.keyword and config.args_source != pytest.Config.ArgsSource.ARGS
    )


def pytest_sessionfinish(session, exitstatus):
    """A full run in which no integration test executed is a failure, not a quiet pass."""
    config = session.config
    ran = OUTCOMES["passed"] + OUTCOMES["failed"]
    if _full_run(config) and ran == 0 and exitstatus == 0:
        session.exitstatus = 1
    if OUTCOMES["skipped"] and exitstatus == 0:
        session.exitstatus = 1  # an integration test must never be skipped silently


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
def process_env(real_services) -> dict[str, str]:
    """Environment for worker/beat subprocesses: the same test database and broker as this process."""
    return {
        **os.environ,
        **real_services,
        "PYTHONUNBUFFERED": "1",
        "SUPPLYCHAIN_ENV": "development",
        "EVENTS_SWEEP_SECONDS": "1",  # beat's safety net every second, so recovery tests are quick
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
        yield process
    finally:
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
