"""Start the project's real processes (Celery worker, beat, the whole run stack) for tests.

Each helper returns a handle that stops its process group on exit and keeps the output in a log
file, printed when a wait fails so the reason is visible in the test report.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class ManagedProcess:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path):
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_path
        self.log = open(log_path, "w")  # noqa: SIM115 (closed in stop)
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)

    def stop(self, timeout: float = 20.0) -> int:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait()
        self.log.close()
        return self.popen.returncode

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if not self.alive():
                raise AssertionError(
                    f"{self.name} exited ({self.popen.returncode}) before {what}:\n{self.output()[-4000:]}"
                )
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{self.output()[-4000:]}")


def celery_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "supplychain", *args]


@contextlib.contextmanager
def running(name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> Iterator[ManagedProcess]:
    process = ManagedProcess(name, argv, env, log_dir / f"{name}.log")
    try:
        yield process
    finally:
        process.stop()


def worker_ready(app, name: str) -> Callable[[], bool]:
    def ready() -> bool:
        replies = app.control.ping(destination=[name], timeout=0.5)
        return any(name in reply for reply in replies)

    return ready


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
