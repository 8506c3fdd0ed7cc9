"""``manage.py purge_finished_events --older-than 7d``: remove old succeeded deliveries and relayed events."""

import json
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand

from supplychain.events import retention
from supplychain.events.management.commands.archive_audit import parse_age, positive_int


class Command(BaseCommand):
    help = (
        "Remove succeeded deliveries and relayed outbox events older than --older-than whose audit entries "
        "exist, in batches; dead deliveries and anything still in progress stay. Safe to re-run."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=parse_age,
            default=None,
            help="Age of rows to remove: 7d, 12h or 90m (default: EVENTS_RETENTION_DAYS).",
        )
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=None,
            help="Rows per DELETE statement (default: EVENTS_RETENTION_BATCH).",
        )

    def handle(self, *args, older_than, batch_size, **options):
        report = retention.purge_finished_events(
            older_than=older_than or timedelta(days=settings.EVENTS_RETENTION_DAYS),
            batch_size=batch_size or settings.EVENTS_RETENTION_BATCH,
            progress=self._progress,
        )
        self.stdout.write(json.dumps(report.as_dict(), sort_keys=True))

    def _progress(self, what: str, removed: int) -> None:
        self.stdout.write(f"{removed} {what} removed")
