"""Service that moves old audit entries to object storage as gzipped JSON lines, then removes them.

The promise: an audit entry leaves the database only after a file holding it has been read back from
storage and found identical to what was written, and its ``AuditArchive`` row is committed in the same
transaction as the delete.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from supplychain.core.errors import DomainError, Unprocessable
from supplychain.core.storage import ObjectStorage, get_storage
from supplychain.events.models import AuditArchive, AuditEntry

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/gzip"
READ_CHUNK_ROWS = 2000  # rows fetched per round trip while streaming one file's entries
DELETE_CHUNK_IDS = 5000  # ids per DELETE statement: far below PostgreSQL's and SQLite's parameter limits


class ArchiveError(DomainError):
    status = 502
    type = "audit_archive_failed"
    title = "The audit archive could not be written safely."


class ArchiveVerificationFailed(ArchiveError):
    """The object read back differs from what was written; nothing was deleted."""

    type = "audit_archive_verification_failed"
    title = "The archive file read back from storage does not match what was written."


class ArchiveConflict(ArchiveError):
    """Storage or the database already holds something different for this file; nothing was deleted."""

    status = 409
    type = "audit_archive_conflict"
    title = "An archive file with this key already exists with different content."


@dataclass(frozen=True)
class ArchivedFile:
    """One file written (or found already written, ``reused``) and committed."""

    key: str
    entries: int
    size_bytes: int
    sha256: str
    first_id: int
    last_id: int
    reused: bool = False


@dataclass
class ArchiveReport:
    """What a run did (or, with ``dry_run``, would do: ``files`` is then the number of files to write)."""

    cutoff: datetime
    storage: str
    dry_run: bool = False
    candidates: int = 0
    entries: int = 0
    bytes: int = 0
    files: list[ArchivedFile] = field(default_factory=list)
    planned_files: int = 0

    def as_dict(self) -> dict:
        return {
            "files": self.planned_files if self.dry_run else len(self.files),
            "entries": self.candidates if self.dry_run else self.entries,
            "bytes": self.bytes,
            "storage": self.storage,
            "cutoff": self.cutoff.isoformat(),
            "dry_run": self.dry_run,
        }


Progress = Callable[[ArchivedFile, int, int], None]


def archive_audit(
    *,
    older_than: timedelta,
    batch_size: int = 50000,
    storage: ObjectStorage | None = None,
    progress: Progress | None = None,
    dry_run: bool = False,
) -> ArchiveReport:
    """Archive every audit entry older than ``older_than``, ``batch_size`` entries per file, in id order.

    Each file is ``audit/YYYY/MM/DD/audit-<first_id>-<last_id>.jsonl.gz`` (the date of its oldest
    entry, UTC): one ``as_record()`` per line, keys sorted. It is verified by reading it back (line
    count and SHA-256 of the uncompressed bytes) before exactly its entries are deleted, so a run that
    fails leaves every unarchived entry in place, and running again is safe: archived entries are gone,
    and a file already in storage with the same content is accepted. ``progress(file, archived, total)``
    is called after each committed file. Memory holds one compressed file and its ids, never all rows.
    """
    if older_than < timedelta(0):
        raise Unprocessable("older_than must not be negative.", errors={"older_than": "Not negative."})
    if batch_size < 1:
        raise Unprocessable("batch_size must be at least 1.", errors={"batch_size": "At least 1."})
    storage = storage or get_storage()
    cutoff = timezone.now() - older_than
    candidates = AuditEntry.objects.filter(occurred_at__lt=cutoff).order_by("id")
    report = ArchiveReport(cutoff=cutoff, storage=storage.describe(), dry_run=dry_run)
    report.candidates = candidates.count()
    if dry_run:
        report.planned_files = -(-report.candidates // batch_size)
        return report

    after_id = 0
    while True:
        chunk = candidates.filter(id__gt=after_id)[:batch_size]
        written = _write_file(chunk)
        if written is None:
            break
        archived = _store_and_commit(storage, written)
        after_id = archived.last_id
        report.files.append(archived)
        report.entries += archived.entries
        report.bytes += archived.size_bytes
        logger.info("Archived %s audit entries to %s/%s", archived.entries, report.storage, archived.key)
        if progress is not None:
            progress(archived, report.entries, report.candidates)
    return report


@dataclass
class _PendingFile:
    """One chunk serialised in memory, not yet in storage."""

    compressed: bytes
    sha256: str
    lines: int
    ids: list[int]
    first_occurred_at: datetime
    last_occurred_at: datetime

    @property
    def key(self) -> str:
        day = self.first_occurred_at.astimezone(UTC)
        return f"audit/{day:%Y/%m/%d}/audit-{self.ids[0]}-{self.ids[-1]}.jsonl.gz"


def _write_file(chunk) -> _PendingFile | None:
    """Stream one chunk of entries into gzipped JSON lines; None when there are no entries left."""
    buffer = io.BytesIO()
    digest = hashlib.sha256()
    ids: list[int] = []
    earliest = latest = None
    # mtime=0 and no file name: the same entries always give the same bytes.
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) as compressed:
        for entry in chunk.iterator(chunk_size=READ_CHUNK_ROWS):
            line = json.dumps(entry.as_record(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            data = line.encode("utf-8") + b"\n"
            compressed.write(data)
            digest.update(data)
            ids.append(entry.id)
            earliest = entry.occurred_at if earliest is None else min(earliest, entry.occurred_at)
            latest = entry.occurred_at if latest is None else max(latest, entry.occurred_at)
    if not ids:
        return None
    return _PendingFile(
        compressed=buffer.getvalue(),
        sha256=digest.hexdigest(),
        lines=len(ids),
        ids=ids,
        first_occurred_at=earliest,
        last_occurred_at=latest,
    )


def _store_and_commit(storage: ObjectStorage, pending: _PendingFile) -> ArchivedFile:
    key = pending.key
    existing = storage.head(key)
    expected = (pending.lines, pending.sha256)
    if existing is None:
        storage.put(key, pending.compressed, CONTENT_TYPE)
        found = _read_back(storage, key)
        if found != expected:
            raise ArchiveVerificationFailed(
                f"{key} read back from {storage.describe()} holds {found[0]} lines (sha256 {found[1]}), "
                f"expected {pending.lines} (sha256 {pending.sha256}); nothing was deleted.",
                key=key,
            )
    elif _read_back(storage, key) != expected:
        # Left by an earlier run that stopped before committing, yet not these entries: never overwrite.
        raise ArchiveConflict(
            f"{key} already exists in {storage.describe()} with different content; nothing was deleted.", key=key
        )
    size = existing.size if existing is not None else len(pending.compressed)
    try:
        with transaction.atomic():
            AuditArchive.objects.create(
                key=key,
                storage=storage.describe(),
                entries=pending.lines,
                first_occurred_at=pending.first_occurred_at,
                last_occurred_at=pending.last_occurred_at,
                sha256=pending.sha256,
                size_bytes=size,
            )
            deleted = _delete_entries(pending.ids)
            if deleted != pending.lines:
                raise ArchiveConflict(
                    f"{key}: {deleted} of its {pending.lines} entries were still in the database (another "
                    "archive run?); nothing was deleted.",
                    key=key,
                )
    except IntegrityError as exc:
        raise ArchiveConflict(f"{key} is already recorded as archived; nothing was deleted.", key=key) from exc
    return ArchivedFile(
        key=key,
        entries=pending.lines,
        size_bytes=size,
        sha256=pending.sha256,
        first_id=pending.ids[0],
        last_id=pending.ids[-1],
        reused=existing is not None,
    )


def _read_back(storage: ObjectStorage, key: str) -> tuple[int, str | None]:
    """Line count and SHA-256 of the object's uncompressed content; (-1, None) when it is not gzip."""
    try:
        content = gzip.decompress(storage.get(key))
    except (OSError, EOFError, zlib.error):
        return -1, None
    return content.count(b"\n"), hashlib.sha256(content).hexdigest()


def _delete_entries(ids: list[int]) -> int:
    """Delete exactly these entries, bound by their id range too; returns how many rows went."""
    bounds = AuditEntry.objects.filter(id__gte=ids[0], id__lte=ids[-1])
    deleted = 0
    for start in range(0, len(ids), DELETE_CHUNK_IDS):
        count, _ = bounds.filter(id__in=ids[start : start + DELETE_CHUNK_IDS]).delete()
        deleted += count
    return deleted
