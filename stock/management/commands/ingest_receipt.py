"""``manage.py ingest_receipt PATH|s3://bucket/key``: ingest one CSV receipt, streaming, with progress."""

import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from stock import services
from supplychain.core.errors import DomainError


class Command(BaseCommand):
    help = "Ingest a CSV receipt (sku,quantity,best_before[,lot][,supplier]) from a file or s3://bucket/key."

    def add_arguments(self, parser):
        parser.add_argument("source", help="A local path or s3://bucket/key.")
        parser.add_argument("--key", help="Receipt key (default: the file name, or the S3 key).")

    def handle(self, *args, source, key, **options):
        started = time.monotonic()

        def progress(rows: int, ingested: int) -> None:
            rate = rows / max(time.monotonic() - started, 1e-6)
            self.stderr.write(f"\r  {rows:,} rows read, {ingested:,} ingested ({rate:,.0f} rows/s)", ending="")
            self.stderr.flush()

        try:
            if source.startswith("s3://"):
                from supplychain.core.storage import S3Storage

                bucket, _, object_key = source[5:].partition("/")
                if not bucket or not object_key:
                    raise CommandError("Give s3://bucket/key.")
                storage = S3Storage(bucket)
                outcome = services.ingest_receipt(
                    key=key or object_key,
                    open_stream=lambda: storage.open_stream(object_key),
                    source="s3",
                    progress=progress,
                )
            else:
                path = Path(source)
                if not path.is_file():
                    raise CommandError(f"No such file: {path}")
                outcome = services.ingest_receipt(
                    key=key or path.name, open_stream=lambda: path.open("rb"), source="upload", progress=progress
                )
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        receipt = outcome.receipt
        self.stderr.write("")
        seconds = time.monotonic() - started
        self.stdout.write(
            f"{receipt.key}: {outcome.outcome}; {receipt.rows_ingested:,} of {receipt.rows_total:,} rows ingested, "
            f"{len(receipt.errors):,} reported errors, {seconds:.1f} s"
        )
        for error in receipt.errors[:20]:
            self.stdout.write(f"  line {error['line']} {error['column']}: {error['reason']}")
        if len(receipt.errors) > 20:
            self.stdout.write(f"  … and {len(receipt.errors) - 20} more (see the admin or the API)")
        sys.stdout.flush()
