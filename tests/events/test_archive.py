"""The audit archive end to end (local folder and a real S3 server), its command, and object storage itself."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import uuid
from datetime import timedelta
from io import StringIO

import boto3
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone
from moto.server import ThreadedMotoServer

from supplychain.core.errors import DomainError
from supplychain.core.storage import (
    InvalidObjectKey,
    LocalStorage,
    ObjectNotFound,
    S3Storage,
    get_storage,
)
from supplychain.events import archive
from supplychain.events.management.commands.archive_audit import parse_age
from supplychain.events.models import AuditArchive, AuditEntry

KEY_PATTERN = re.compile(r"^audit/\d{4}/\d{2}/\d{2}/audit-(\d+)-(\d+)\.jsonl\.gz$")
MONTH = timedelta(days=30)


# ---- Fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_server():
    """A real S3-compatible HTTP server (moto) on a free local port, for the whole module."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_server, monkeypatch) -> S3Storage:
    """A fresh bucket on the server, reached the production way: credentials from AWS_* variables."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    bucket = f"audit-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_server, region_name="eu-west-1")
    client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return S3Storage(bucket, endpoint_url=s3_server, region="eu-west-1")


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "objects")
    return request.getfixturevalue("s3_bucket")


def audit(days_ago: float, number: int, **fields) -> AuditEntry:
    return AuditEntry(
        occurred_at=timezone.now() - timedelta(days=days_ago),
        kind=fields.pop("kind", AuditEntry.Kind.PUBLISHED),
        event_id=uuid.uuid4(),
        event_type="probe.thing_happened",
        correlation_id=f"corr-{number}",
        entity_key=f"batch-{number}",
        data={"n": number, "note": "žluťoučký kůň"},
        **fields,
    )


@pytest.fixture
def entries(db):
    """Seven old entries (31 to 90 days) and three recent ones, interleaved in id order."""
    rows = [
        audit(90, 1),
        audit(
            60,
            2,
            kind=AuditEntry.Kind.ATTEMPT,
            subscription="sub-a",
            delivery_id=4,
            attempt=2,
            http_status=503,
            duration_ms=12.5,
            delay_seconds=2.0,
            outcome="retry",
            error="Service Unavailable",
        ),
        audit(1, 3),
        audit(45, 4, kind=AuditEntry.Kind.RECEIVED, partner="acme"),
        audit(0.01, 5),
        audit(31, 6, kind=AuditEntry.Kind.REDRIVEN, outcome="redriven"),
        audit(40, 7),
        audit(2, 8),
        audit(35, 9),
        audit(33, 10),
    ]
    created = AuditEntry.objects.bulk_create(rows)
    old = [row for row in created if row.occurred_at < timezone.now() - MONTH]
    new = [row for row in created if row not in old]
    assert len(old) == 7
    assert len(new) == 3
    return {
        "old_ids": sorted(row.id for row in old),
        "new_ids": sorted(row.id for row in new),
        "old_records": [AuditEntry.objects.get(id=row.id).as_record() for row in sorted(old, key=lambda r: r.id)],
    }


def read_lines(storage, key: str) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress(storage.get(key)).decode("utf-8").splitlines()]


# ---- The archive service --------------------------------------------------------------------------


@pytest.mark.django_db
def test_old_entries_are_archived_verified_and_deleted_while_recent_ones_stay(storage, entries):
    seen = []
    report = archive.archive_audit(
        older_than=MONTH, batch_size=3, storage=storage, progress=lambda file, done, total: seen.append((done, total))
    )

    assert sorted(AuditEntry.objects.values_list("id", flat=True)) == entries["new_ids"]
    assert report.entries == 7
    assert [file.entries for file in report.files] == [3, 3, 1]
    assert seen == [(3, 7), (6, 7), (7, 7)]
    assert report.storage == storage.describe()

    archived_records = []
    for file in report.files:
        match = KEY_PATTERN.match(file.key)
        assert match, file.key
        records = read_lines(storage, file.key)
        assert (records[0]["id"], records[-1]["id"]) == (int(match.group(1)), int(match.group(2)))
        archived_records.extend(records)
    assert archived_records == entries["old_records"]  # exactly the old rows, in id order, nothing else
    assert sorted(storage.list("audit/")) == sorted(file.key for file in report.files)

    recorded = {row.key: row for row in AuditArchive.objects.all()}
    assert set(recorded) == {file.key for file in report.files}
    for file in report.files:
        row = recorded[file.key]
        content = gzip.decompress(storage.get(file.key))
        assert row.entries == file.entries
        assert row.storage == storage.describe()
        assert row.size_bytes == storage.head(file.key).size == file.size_bytes
        assert row.sha256 == hashlib.sha256(content).hexdigest()
        assert row.first_occurred_at <= row.last_occurred_at
    assert report.bytes == sum(file.size_bytes for file in report.files)


@pytest.mark.django_db
def test_archive_lines_have_sorted_keys_and_the_file_date_is_its_oldest_entry(entries, tmp_path):
    storage = LocalStorage(tmp_path)
    report = archive.archive_audit(older_than=MONTH, storage=storage)

    [file] = report.files
    lines = gzip.decompress(storage.get(file.key)).decode("utf-8").splitlines()
    assert all(list(json.loads(line)) == sorted(json.loads(line)) for line in lines)
    oldest = min(record["occurred_at"] for record in entries["old_records"])
    assert file.key.startswith("audit/" + oldest[:10].replace("-", "/") + "/")


@pytest.mark.django_db
def test_second_run_archives_nothing_more(storage, entries):
    archive.archive_audit(older_than=MONTH, batch_size=4, storage=storage)
    keys = sorted(storage.list())

    again = archive.archive_audit(older_than=MONTH, batch_size=4, storage=storage)

    assert again.entries == 0
    assert again.files == []
    assert sorted(storage.list()) == keys
    assert AuditArchive.objects.count() == 2
    assert sorted(AuditEntry.objects.values_list("id", flat=True)) == entries["new_ids"]


@pytest.mark.django_db
def test_dry_run_counts_and_changes_nothing(storage, entries):
    report = archive.archive_audit(older_than=MONTH, batch_size=3, storage=storage, dry_run=True)

    assert report.as_dict()["files"] == 3
    assert report.as_dict()["entries"] == 7
    assert AuditEntry.objects.count() == 10
    assert AuditArchive.objects.count() == 0
    assert list(storage.list()) == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "corrupted",
    [
        b"not gzip at all",
        gzip.compress(b'{"id":1}\n'),  # valid gzip, too few lines
        None,  # same number of lines, one byte changed
    ],
    ids=["not-gzip", "missing-lines", "changed-byte"],
)
def test_verification_failure_deletes_nothing_and_names_the_key(storage, entries, monkeypatch, corrupted):
    real_get = storage.get

    def corrupt(key):
        if corrupted is not None:
            return corrupted
        content = gzip.decompress(real_get(key)).replace(b"kind", b"kinD", 1)
        return gzip.compress(content)

    monkeypatch.setattr(storage, "get", corrupt)

    with pytest.raises(archive.ArchiveVerificationFailed) as failure:
        archive.archive_audit(older_than=MONTH, storage=storage)

    assert isinstance(failure.value, DomainError)
    [key] = list(storage.list())
    assert key in str(failure.value)
    assert failure.value.extra["key"] == key
    assert AuditEntry.objects.count() == 10
    assert AuditArchive.objects.count() == 0


@pytest.mark.django_db
def test_a_file_left_by_an_interrupted_run_is_verified_and_accepted(storage, entries, monkeypatch):
    with monkeypatch.context() as patch, pytest.raises(archive.ArchiveVerificationFailed):
        patch.setattr(storage, "get", lambda key: b"lost in transit")
        archive.archive_audit(older_than=MONTH, storage=storage)
    [left_behind] = list(storage.list())

    report = archive.archive_audit(older_than=MONTH, storage=storage)

    [file] = report.files
    assert file.key == left_behind
    assert file.reused
    assert [record["id"] for record in read_lines(storage, file.key)] == entries["old_ids"]
    assert sorted(AuditEntry.objects.values_list("id", flat=True)) == entries["new_ids"]
    assert AuditArchive.objects.get().key == left_behind


@pytest.mark.django_db
def test_an_existing_file_with_other_content_is_never_overwritten(storage, entries):
    oldest_day = min(record["occurred_at"] for record in entries["old_records"])[:10].replace("-", "/")
    key = f"audit/{oldest_day}/audit-{entries['old_ids'][0]}-{entries['old_ids'][-1]}.jsonl.gz"
    other = gzip.compress(b'{"id":0}\n')
    storage.put(key, other, "application/gzip")

    with pytest.raises(archive.ArchiveConflict, match=re.escape(key)):
        archive.archive_audit(older_than=MONTH, storage=storage)

    assert storage.get(key) == other
    assert AuditEntry.objects.count() == 10
    assert AuditArchive.objects.count() == 0


@pytest.mark.django_db
def test_bad_arguments_are_refused_before_anything_happens(tmp_path, entries):
    with pytest.raises(DomainError, match="batch_size"):
        archive.archive_audit(older_than=MONTH, batch_size=0, storage=LocalStorage(tmp_path))
    with pytest.raises(DomainError, match="older_than"):
        archive.archive_audit(older_than=-MONTH, storage=LocalStorage(tmp_path))
    assert AuditEntry.objects.count() == 10


# ---- The command ----------------------------------------------------------------------------------


@pytest.fixture
def local_settings(tmp_path):
    with override_settings(OBJECT_STORAGE={"BUCKET": "", "ENDPOINT_URL": None, "REGION": None, "LOCAL_DIR": tmp_path}):
        yield tmp_path


@pytest.mark.django_db
def test_command_prints_progress_per_file_and_a_json_summary(local_settings, entries):
    out = StringIO()
    call_command("archive_audit", "--older-than", "30d", "--batch-size", "2", stdout=out)

    lines = out.getvalue().splitlines()
    assert [line.split(" ")[0] for line in lines[:-1]] == ["2/7", "4/7", "6/7", "7/7"]
    assert all("entries archived: audit/" in line for line in lines[:-1])
    summary = json.loads(lines[-1])
    assert summary["files"] == 4
    assert summary["entries"] == 7
    assert summary["bytes"] == sum(row.size_bytes for row in AuditArchive.objects.all())
    assert summary["storage"] == str((local_settings / "supplychain").resolve())
    assert summary["dry_run"] is False
    assert sorted(AuditEntry.objects.values_list("id", flat=True)) == entries["new_ids"]


@pytest.mark.django_db
def test_command_dry_run_reports_counts_and_changes_nothing(local_settings, entries):
    out = StringIO()
    call_command("archive_audit", "--older-than", "30d", "--batch-size", "5", "--dry-run", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Dry run: 7 entries older than")
    assert json.loads(lines[-1]) | {"cutoff": None} == {
        "files": 2,
        "entries": 7,
        "bytes": 0,
        "storage": str((local_settings / "supplychain").resolve()),
        "cutoff": None,
        "dry_run": True,
    }
    assert AuditEntry.objects.count() == 10
    assert not (local_settings / "supplychain").exists()


@pytest.mark.django_db
def test_command_turns_a_verification_failure_into_a_command_error(local_settings, entries, monkeypatch):
    monkeypatch.setattr(LocalStorage, "get", lambda self, key: b"garbage")

    with pytest.raises(CommandError, match=r"audit/.*\.jsonl\.gz.*nothing was deleted"):
        call_command("archive_audit", "--older-than", "30d", stdout=StringIO())

    assert AuditEntry.objects.count() == 10


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        (" 7d ", MONTH / 30 * 7),
    ],
)
def test_older_than_accepts_days_hours_and_minutes(text, expected):
    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["30", "30x", "d", "-5d", "1.5d", "30 days", "", "0d"])
def test_a_bad_older_than_is_a_command_error_that_shows_the_accepted_forms(text):
    with pytest.raises(CommandError) as error:
        call_command("archive_audit", f"--older-than={text}", stdout=StringIO())

    message = str(error.value)
    assert "--older-than" in message
    assert repr(text) in message
    if text != "0d":
        assert "30d, 12h or 90m" in message


def test_older_than_is_required():
    with pytest.raises(CommandError, match="--older-than"):
        call_command("archive_audit", stdout=StringIO())


@pytest.mark.parametrize("text", ["0", "-3", "many"])
def test_a_bad_batch_size_is_a_command_error(text):
    with pytest.raises(CommandError, match="--batch-size"):
        call_command("archive_audit", "--older-than", "30d", f"--batch-size={text}", stdout=StringIO())


# ---- Object storage -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../outside",
        "a/../../outside",
        "a/..",
        "/etc/passwd",
        "C:/windows",
        "a\\b",
        "a//b",
        "./a",
        "a/",
        "a\x00b",
        "line\nbreak",
        ".tmp/staging",
        "x" * 1025,
    ],
)
def test_local_storage_refuses_keys_that_could_escape_or_mislead(tmp_path, key):
    storage = LocalStorage(tmp_path / "objects")

    for operation in (
        lambda: storage.put(key, b"data"),
        lambda: storage.get(key),
        lambda: storage.head(key),
        lambda: storage.open_stream(key),
        lambda: storage.delete(key),
    ):
        with pytest.raises(InvalidObjectKey):
            operation()
    assert not (tmp_path / "outside").exists()
    assert list(storage.list()) == []


@pytest.mark.parametrize("prefix", ["../", "/abs", "a/../b"])
def test_local_storage_refuses_prefixes_that_escape(tmp_path, prefix):
    with pytest.raises(InvalidObjectKey):
        list(LocalStorage(tmp_path).list(prefix))


def test_local_storage_refuses_a_key_that_a_symlink_leads_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "objects"
    root.mkdir()
    (root / "link").symlink_to(outside)

    with pytest.raises(InvalidObjectKey, match="outside"):
        LocalStorage(root).put("link/file", b"data")
    assert list(outside.iterdir()) == []


def test_storage_round_trip(storage):
    info = storage.put("receipts/2024/01/a.csv", b"sku,qty\nham,3\n", "text/csv")
    storage.put("receipts/2024/02/b.csv", b"sku,qty\n", "text/csv")
    storage.put("receipts-other/c.csv", b"x", "text/csv")

    assert info.key == "receipts/2024/01/a.csv"
    assert info.size == 14
    assert info.sha256 == hashlib.sha256(b"sku,qty\nham,3\n").hexdigest()
    assert storage.get("receipts/2024/01/a.csv") == b"sku,qty\nham,3\n"
    head = storage.head("receipts/2024/01/a.csv")
    assert (head.size, head.sha256) == (14, info.sha256)
    assert storage.head("receipts/missing.csv") is None
    with pytest.raises(ObjectNotFound):
        storage.get("receipts/missing.csv")
    with pytest.raises(ObjectNotFound):
        storage.open_stream("receipts/missing.csv")

    assert list(storage.list("receipts/")) == ["receipts/2024/01/a.csv", "receipts/2024/02/b.csv"]
    assert list(storage.list("receipts/2024/0")) == ["receipts/2024/01/a.csv", "receipts/2024/02/b.csv"]
    assert list(storage.list("receipts")) == [
        "receipts-other/c.csv",
        "receipts/2024/01/a.csv",
        "receipts/2024/02/b.csv",
    ]  # S3's byte order: '-' sorts before '/'
    assert list(storage.list("nothing/")) == []

    with io.TextIOWrapper(storage.open_stream("receipts/2024/01/a.csv"), encoding="utf-8") as text:
        assert list(text) == ["sku,qty\n", "ham,3\n"]

    storage.put("receipts/2024/01/a.csv", b"replaced", "text/csv")
    assert storage.get("receipts/2024/01/a.csv") == b"replaced"

    storage.delete("receipts/2024/01/a.csv")
    storage.delete("receipts/2024/01/a.csv")  # deleting twice is fine
    assert storage.head("receipts/2024/01/a.csv") is None
    assert list(storage.list("receipts/")) == ["receipts/2024/02/b.csv"]


def test_open_stream_reads_a_large_object_in_pieces(storage):
    rows = b"".join(f"sku-{n},{n}\n".encode() for n in range(200_000))
    storage.put("receipts/big.csv", rows, "text/csv")

    with storage.open_stream("receipts/big.csv") as stream:
        first = stream.read(1024)
        rest = b"".join(iter(lambda: stream.read(64 * 1024), b""))

    assert first + rest == rows


def test_local_storage_writes_atomically_and_leaves_no_staging_files(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.put("a/b.bin", b"1")
    storage.put("a/b.bin", b"2")

    assert (tmp_path / "a" / "b.bin").read_bytes() == b"2"
    assert list((tmp_path / ".tmp").iterdir()) == []
    assert list(storage.list()) == ["a/b.bin"]
    assert storage.describe() == str(tmp_path.resolve())

    storage.delete("a/b.bin")
    assert not (tmp_path / "a").exists()  # emptied folders go too
    assert tmp_path.exists()


def test_s3_listing_follows_pagination(s3_bucket):
    s3_bucket.list_page_size = 2
    keys = [f"audit/k{n}" for n in range(5)]
    for key in keys:
        s3_bucket.put(key, b"x")

    assert list(s3_bucket.list("audit/")) == keys
    assert s3_bucket.describe() == f"s3://{s3_bucket.bucket}"


def test_get_storage_follows_settings(tmp_path, s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    local = {"BUCKET": "", "ENDPOINT_URL": None, "REGION": None, "LOCAL_DIR": tmp_path}
    with override_settings(OBJECT_STORAGE=local):
        storage = get_storage()
    assert isinstance(storage, LocalStorage)
    assert storage.describe() == str((tmp_path / "supplychain").resolve())

    remote = {"BUCKET": "receipts", "ENDPOINT_URL": s3_server, "REGION": "eu-west-1", "LOCAL_DIR": tmp_path}
    with override_settings(OBJECT_STORAGE=remote):
        storage = get_storage()
    assert isinstance(storage, S3Storage)
    assert storage.describe() == "s3://receipts"
    assert storage.client.meta.endpoint_url == s3_server
    assert storage.client.meta.region_name == "eu-west-1"
