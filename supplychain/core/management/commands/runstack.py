"""``manage.py runstack``: web, one worker per queue, beat, Flower, the partner simulator and a demo order
source together (what ``make run`` starts).

On the embedded default it first starts the bundled Redis as a child process. Output of every process
is prefixed with its name; a process that exits is restarted (five exits within a minute stop the
stack). Ctrl-C (or SIGTERM) stops them all cleanly: workers finish or requeue their
tasks, then the broker shuts down last, keeping its append-only file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management import get_commands
from django.core.management.base import BaseCommand, CommandError

from supplychain import embedded
from supplychain.core.bootstrap import bootstrap

COLOURS = ["36", "33", "35", "32", "34", "31", "96", "93", "95"]


class Process:
    def __init__(self, name: str, argv: list[str], colour: str, env: dict[str, str]):
        self.name, self.argv, self.colour, self.env = name, argv, colour, env
        self.popen: subprocess.Popen | None = None

    def start(self, out, width: int) -> None:
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,  # our own Ctrl-C handling decides when children stop
            text=True,
            bufsize=1,
        )
        label = f"\033[{self.colour}m{self.name:<{width}}\033[0m |" if out.isatty() else f"{self.name:<{width}} |"
        threading.Thread(target=self._pump, args=(out, label), daemon=True).start()

    def _pump(self, out, label: str) -> None:
        for line in self.popen.stdout:
            out.write(f"{label} {line}")
            out.flush()

    def signal(self, signum: int) -> None:
        if self.popen and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signum)


class Command(BaseCommand):
    help = "Start web, a worker for every queue, beat and Flower (and the embedded broker when used)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("WEB_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("WEB_PORT", "8000")))
        parser.add_argument("--flower-port", type=int, default=settings.FLOWER_PORT)
        parser.add_argument("--stop-timeout", type=float, default=20.0, help="Seconds to wait on Ctrl-C.")

    def handle(self, *args, host, port, flower_port, stop_timeout, **options):
        self.stopping = False
        credentials = bootstrap(demo=False)
        broker = None
        if settings.USES_EMBEDDED_BROKER:
            broker = embedded.start(settings.EMBEDDED_BROKER_DIR)
            self.stdout.write(f"embedded broker: {settings.CELERY_BROKER_URL}")
        # Counters of an earlier run's processes would be summed in forever: start the metrics afresh.
        for stale in Path(settings.PROMETHEUS_MULTIPROC_DIR).glob("*.db"):
            stale.unlink()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        celery = [sys.executable, "-m", "celery", "-A", "supplychain"]
        flower_auth = os.environ.get(
            "FLOWER_BASIC_AUTH", f"{credentials.admin_username}:{credentials.admin_password or ''}"
        )
        specs = [("web", [sys.executable, "manage.py", "runserver", f"{host}:{port}", "--noreload"])]
        for queue in settings.CELERY_QUEUES:
            specs.append(
                (
                    f"worker-{queue}",
                    [*celery, "worker", "-Q", queue, "-n", f"{queue}@%h", "-c", "1", "-l", "INFO"],
                )
            )
        specs.append(("beat", [*celery, "beat", "-l", "INFO", "-s", str(settings.VAR_DIR / "celerybeat")]))
        specs.append(
            (
                "flower",
                [*celery, "flower", f"--address={host}", f"--port={flower_port}", f"--basic-auth={flower_auth}"],
            )
        )
        # The demo's partners and platform, when their apps provide them (core imports no app: by command name).
        manage, commands = [sys.executable, "manage.py"], get_commands()
        if "partner_simulator" in commands:
            specs.append(("partners", [*manage, "partner_simulator"]))
        if settings.DEMO_ORDERS_PER_MINUTE > 0 and "demo_orders" in commands:
            url, rate = f"http://{host}:{port}", str(settings.DEMO_ORDERS_PER_MINUTE)
            specs.append(("orders", [*manage, "demo_orders", "--url", url, "--rate", rate]))
        width = max(len(name) for name, _ in specs)
        processes = [Process(name, argv, COLOURS[i % len(COLOURS)], env) for i, (name, argv) in enumerate(specs)]

        def request_stop(signum, frame):
            self.stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        for process in processes:
            process.start(self.stdout, width)

        self._announce(host, port, flower_port, credentials)
        exit_code = 0
        restarts: dict[str, list[float]] = {}
        while not self.stopping:
            for process in processes:
                if process.popen.poll() is None:
                    continue
                # Supervise like systemd or Docker's restart policy would: restart, unless it keeps dying.
                recent = [t for t in restarts.get(process.name, []) if time.monotonic() - t < 60]
                if len(recent) >= 5:
                    self.stderr.write(f"{process.name} exited 5 times within a minute; stopping all.")
                    self.stopping, exit_code = True, 1
                    break
                self.stderr.write(f"{process.name} exited with status {process.popen.returncode}; restarting it.")
                restarts[process.name] = [*recent, time.monotonic()]
                process.start(self.stdout, width)
            if broker is not None and broker.poll() is not None:
                self.stderr.write("the embedded broker exited; stopping all.")
                self.stopping, exit_code = True, 1
            time.sleep(0.2)

        self.stdout.write("\nStopping: workers finish or requeue their tasks…")
        for process in processes:
            process.signal(signal.SIGTERM)
        deadline = time.monotonic() + stop_timeout
        for process in processes:
            try:
                process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{process.name} did not stop in time; killing it.")
                process.signal(signal.SIGKILL)
                process.popen.wait()
        if broker is not None:
            broker.terminate()  # redis saves its append-only file and exits on SIGTERM
            broker.wait(timeout=stop_timeout)
        self.stdout.write("All stopped.")
        if exit_code:
            raise CommandError("a process of the stack exited unexpectedly (see its output above)")

    def _announce(self, host: str, port: int, flower_port: int, credentials) -> None:
        base = f"http://{host}:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.stopping:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1):  # noqa: S310 (our own URL)
                    break
            except OSError:
                time.sleep(0.3)
        lines = [
            "",
            "supplychain is running (Ctrl-C stops everything).",
            f"  API            {base}/api/v1/",
            f"  API docs       {base}/api/docs/",
            f"  admin          {base}/admin/   user {credentials.admin_username}"
            f"  password {credentials.admin_password or '(changed; not shown)'}",
            f"  Flower         http://{host}:{flower_port}/   (same user and password)",
            f"  readiness      {base}/readyz",
            *(
                line
                for token in credentials.tokens()
                for line in (
                    f"  {token['role']:<15}{token['token']}   (API token of user {token['username']})",
                    f"  {'':<15}may {token['may']}",
                )
            ),
            f"  try            curl -X POST -H 'Authorization: Token {credentials.api_token}' "
            f"{base}/api/v1/diagnostics/ping/",
            f"                 curl -H 'Authorization: Token {credentials.operations_token}' {base}/api/v1/deliveries/",
            "  more tokens    manage.py issue_token --user NAME --role platform|operations|erp --create",
            "",
        ]
        self.stdout.write("\n".join(lines))
