"""``manage.py selfcheck``: prove workers, chords, countdown retries and beat work end to end."""

import json

from django.core.management.base import BaseCommand, CommandError

from supplychain.core.selfcheck import CHECKS, run_checks


class Command(BaseCommand):
    help = "Send a chord, a retrying task and a beat-scheduled task through the broker and wait for them."

    def add_arguments(self, parser):
        parser.add_argument("--checks", default=",".join(CHECKS), help="Comma-separated: chord,retry,beat.")
        parser.add_argument("--timeout", type=float, default=60.0, help="Seconds to wait for each check.")

    def handle(self, *args, checks, timeout, **options):
        names = [name.strip() for name in checks.split(",") if name.strip()]
        unknown = sorted(set(names) - set(CHECKS))
        if unknown:
            raise CommandError(f"Unknown check(s): {', '.join(unknown)}. Known: {', '.join(CHECKS)}.")
        report = run_checks(names, timeout=timeout)
        self.stdout.write(json.dumps(report, indent=2))
        failed = [name for name, outcome in report.items() if not outcome["ok"]]
        if failed:
            raise CommandError(f"Failed: {', '.join(failed)}")
