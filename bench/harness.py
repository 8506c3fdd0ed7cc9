"""Shared set-up for benchmarks: a scratch PostgreSQL database, a Redis db, Django, worker processes.

Benchmarks run against real servers (the same ones ``make test`` makes sure of) and print JSON.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://supplychain:supplychain@127.0.0.1:5432/supplychain_bench"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/14"


def configure(database_url: str | None = None, broker_url: str | None = None) -> dict[str, str]:
    """Point this process (and the workers it starts) at the bench database and broker; migrate."""
    env = {
        "DATABASE_URL": database_url or os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        "CELERY_BROKER_URL": broker_url or os.environ.get("BENCH_BROKER_URL", DEFAULT_BROKER_URL),
        "SUPPLYCHAIN_EXTRA_APPS": "tests.probe",
        "DJANGO_SETTINGS_MODULE": "supplychain.settings",
        "LOG_LEVEL": "WARNING",
        "DEBUG": "false",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    _create_database(env["DATABASE_URL"])
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=os.environ, check=True)
    import django

    sys.path.insert(0, str(ROOT))
    django.setup()
    import redis

    redis.Redis.from_url(env["CELERY_BROKER_URL"]).flushdb()
    return dict(os.environ)


def _create_database(url: str) -> None:
    import psycopg

    parts = urllib.parse.urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


class Workers:
    """Celery worker processes for a benchmark (``-P solo``: two of them beat one prefork pair here)."""

    def __init__(self, env: dict[str, str], count: int, queues: str, pool: str = "solo"):
        self.processes = []
        for index in range(count):
            argv = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "supplychain",
                "worker",
                "-P",
                pool,
                "-Q",
                queues,
                "-n",
                f"bench{index}@localhost",
                "-l",
                "WARNING",
                "--without-mingle",
                "--without-gossip",
            ]
            log = open(ROOT / "var" / f"bench-worker-{index}.log", "w")  # noqa: SIM115
            self.processes.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        from supplychain.celery import app

        names = [f"bench{index}@localhost" for index in range(count)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            replies = app.control.ping(destination=names, timeout=0.5)
            if len(replies) == count:
                return
        raise RuntimeError("bench workers did not start; see var/bench-worker-*.log")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=30)


def broker_idle(queues: list[str]) -> bool:
    """True when no message waits in ``queues`` and none is unacknowledged."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return all(client.llen(queue) == 0 for queue in queues) and client.hlen("unacked") == 0


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
