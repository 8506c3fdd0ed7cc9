"""``manage.py partner_simulator``: the WMS, the ERP and the two couriers as real HTTP servers on 127.0.0.1.

What ``make run`` starts (``runstack``): the partners our settings point at in development
(``PARTNER_<NAME>_URL``, ports 8700-8703), signing with the same development secrets, calling back
``PARTNER_CALLBACK_URL``. The flags set how every partner (or ``--partner`` only) behaves at start; change it
while it runs with ``curl -X POST 127.0.0.1:8702/_simulator -d '{"down_for": 60}'``.
"""

from __future__ import annotations

import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from integrations.simulator import Simulator
from integrations.simulator.servers import CONTROL_PATH, SERVERS


class Command(BaseCommand):
    help = "Run the simulated WMS, ERP and couriers on 127.0.0.1 (started by make run)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.PARTNER_SIMULATOR_HOST)
        for name, port in settings.PARTNER_SIMULATOR_PORTS.items():
            parser.add_argument(f"--{name}-port", type=int, default=port, help=f"Port of the {name} (0: any free one).")
        parser.add_argument("--callback-url", default=settings.PARTNER_CALLBACK_URL, help="Our base URL.")
        parser.add_argument("--partner", choices=sorted(SERVERS), help="Apply the behaviour flags to this one only.")
        parser.add_argument("--delay", type=float, nargs=2, metavar=("MIN", "MAX"), help="Seconds between updates.")
        parser.add_argument("--slow", type=float, help="Seconds before answering each request.")
        parser.add_argument("--fail-rate", type=float, help="Fraction of requests answered 503 (0 to 1).")
        parser.add_argument("--down-for", type=float, help="Answer 503 to everything for this many seconds.")
        parser.add_argument("--duplicates", action="store_true", help="Send every webhook twice (same id).")
        parser.add_argument("--out-of-order", action="store_true", help="Report delivered before out for delivery.")
        parser.add_argument("--unknown-status", action="store_true", help="Send a word without a vocabulary row.")
        parser.add_argument("--run-for", type=float, default=0, help="Stop after this many seconds (0: until Ctrl-C).")

    def handle(self, *args, **options):
        ports = {name: options[f"{name}_port"] for name in settings.PARTNER_SIMULATOR_PORTS}
        secrets = {name: config["secret"] for name, config in settings.PARTNERS.items()}
        try:
            simulator = Simulator(
                callback_url=options["callback_url"], secrets=secrets, ports=ports, host=options["host"]
            )
        except OSError as exc:
            raise CommandError(f"cannot listen: {exc} (another simulator running? pass --<partner>-port 0)") from exc
        changes = {
            key: value
            for key, value in {
                "delay": options["delay"],
                "slow": options["slow"],
                "fail_rate": options["fail_rate"],
                "down_for": options["down_for"],
                "duplicates": options["duplicates"] or None,
                "out_of_order": options["out_of_order"] or None,
                "unknown_status": options["unknown_status"] or None,
            }.items()
            if value is not None
        }
        simulator.set(options["partner"], **changes)
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *a: stop.set())
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
        simulator.start()
        for name, server in simulator.partners.items():
            self.stdout.write(f"{name:<10} {server.url}  (control: {server.url}{CONTROL_PATH})")
        self.stdout.write(f"calling back {options['callback_url']}/api/v1/webhooks/<partner>/")
        self.stdout.flush()
        deadline = time.monotonic() + options["run_for"] if options["run_for"] else None
        sent = 0
        while not stop.wait(1.0):
            for entry in simulator.outbox.sent[sent:]:
                self.stdout.write(f"{entry['partner']:<10} webhook → {entry['status']}")
            sent = len(simulator.outbox.sent)
            self.stdout.flush()
            if deadline and time.monotonic() > deadline:
                break
        simulator.stop()
