"""``manage.py archive_audit --older-than 30d``: move old audit entries to object storage, then delete them."""

import argparse
import json
import re
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from supplychain.events import archive

UNITS = {"d": "days", "h": "hours", "m": "minutes"}
AGE = re.compile(r"^\s*(\d+)\s*([dhm])\s*$")


def parse_age(value: str) -> timedelta:
    """``30d``, ``12h`` or ``90m`` as a timedelta; anything else is refused with the accepted forms."""
    match = AGE.match(value or "")
    if not match:
        raise argparse.ArgumentTypeError(
            f"expected a whole number and a unit, d (days), h (hours) or m (minutes), like 30d, 12h or 90m; "
            f"got {value!r}"
        )
    amount, unit = int(match.group(1)), match.group(2)
    if amount < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1{unit}; got {value!r}")
    return timedelta(**{UNITS[unit]: amount})


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1; got {value!r}")
    return number


class Command(BaseCommand):
    help = (
        "Archive audit entries older than --older-than to object storage as gzipped JSON lines, verify each "
        "file, then delete the archived entries. Safe to re-run."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than", type=parse_age, required=True, help="Age of entries to archive: 30d, 12h or 90m."
        )
        parser.add_argument("--batch-size", type=positive_int, default=50000, help="Entries per file.")
        parser.add_argument("--dry-run", action="store_true", help="Count what would be archived; change nothing.")

    def handle(self, *args, older_than, batch_size, dry_run, **options):
        try:
            report = archive.archive_audit(
                older_than=older_than, batch_size=batch_size, dry_run=dry_run, progress=self._progress
            )
        except archive.ArchiveError as exc:
            raise CommandError(exc.detail) from exc
        if dry_run:
            self.stdout.write(
                f"Dry run: {report.candidates} entries older than {report.cutoff.isoformat()} would go to "
                f"{report.planned_files} files in {report.storage}; nothing changed."
            )
        self.stdout.write(json.dumps(report.as_dict(), sort_keys=True))

    def _progress(self, file: archive.ArchivedFile, archived: int, total: int) -> None:
        reused = ", already in storage" if file.reused else ""
        self.stdout.write(f"{archived}/{total} entries archived: {file.key} ({file.entries} entries{reused})")
