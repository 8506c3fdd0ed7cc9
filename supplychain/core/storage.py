"""Object storage for the whole project (audit archive, CSV receipts): a local folder or an S3 bucket.

``get_storage()`` picks the implementation from ``settings.OBJECT_STORAGE``: with a ``BUCKET`` it is
``S3Storage`` (AWS, MinIO, Ceph… through ``ENDPOINT_URL``), without one it is ``LocalStorage`` under
``LOCAL_DIR``. Both answer the same small interface, so callers never test which one they hold.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from django.conf import settings

from supplychain.core.errors import DomainError, NotFound

LOCAL_BUCKET = "supplychain"  # the folder under LOCAL_DIR that plays the part of the bucket
STREAM_BUFFER_BYTES = 1024 * 1024
MAX_KEY_BYTES = 1024  # the S3 limit, enforced everywhere so a key valid locally is valid in S3
_TEMP_DIR = ".tmp"  # LocalStorage's staging folder for atomic writes; never a key
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class InvalidObjectKey(DomainError):
    status = 400
    type = "invalid_object_key"
    title = "Not a valid object key."


class ObjectNotFound(NotFound):
    type = "object_not_found"
    title = "No object with that key."


@dataclass(frozen=True)
class ObjectInfo:
    """What storage knows about one object.

    ``etag`` is the backend's own version tag (S3's ETag; the SHA-256 for local files); ``sha256`` is
    the hex SHA-256 of the content when known (always after ``put``; from metadata on S3 ``head``).
    """

    key: str
    size: int
    etag: str
    sha256: str | None = None


class ObjectStorage(Protocol):
    """The operations every backend provides. Keys are relative, ``/``-separated paths."""

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> ObjectInfo:
        """Store ``data`` under ``key`` in one step: readers see the old object or the new one, never a part."""

    def get(self, key: str) -> bytes:
        """The whole object; raises ``ObjectNotFound``."""

    def head(self, key: str) -> ObjectInfo | None:
        """The object's size and tags, or None when it does not exist."""

    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with ``prefix``, in key order, fetched lazily."""

    def open_stream(self, key: str) -> BinaryIO:
        """A buffered binary reader over the object, for files too big to hold; close it (or use ``with``)."""

    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""

    def describe(self) -> str:
        """Where objects go, for logs and reports: ``s3://bucket`` or the local folder."""


def validate_key(key: str) -> str:
    """Refuse keys that could escape a folder or mean different things on different backends."""
    if not isinstance(key, str) or not key:
        raise InvalidObjectKey("An object key is a non-empty string.", key=key)
    _validate_path_like(key, what="key")
    if key.endswith("/"):
        raise InvalidObjectKey(f"Object key {key!r} ends with '/': that names a folder, not an object.", key=key)
    return key


def validate_prefix(prefix: str) -> str:
    """Like ``validate_key``, but empty and ``/``-terminated prefixes are allowed."""
    if not isinstance(prefix, str):
        raise InvalidObjectKey("A key prefix is a string.", key=prefix)
    if prefix:
        _validate_path_like(prefix.rstrip("/") or "/", what="prefix")
    return prefix


def _validate_path_like(value: str, *, what: str) -> None:
    if value.startswith("/") or re.match(r"^[A-Za-z]:", value):
        raise InvalidObjectKey(f"Object {what} {value!r} is absolute; keys are relative paths.", key=value)
    if "\\" in value:
        raise InvalidObjectKey(f"Object {what} {value!r} contains '\\'; separate folders with '/'.", key=value)
    if _CONTROL_CHARACTERS.search(value):
        raise InvalidObjectKey(f"Object {what} {value!r} contains a control character.", key=value)
    if len(value.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidObjectKey(f"Object {what} is longer than {MAX_KEY_BYTES} bytes.", key=value)
    segments = value.split("/")
    if any(segment in {"", ".", ".."} for segment in segments):
        raise InvalidObjectKey(f"Object {what} {value!r} has an empty, '.' or '..' segment.", key=value)
    if segments[0] == _TEMP_DIR:
        raise InvalidObjectKey(f"Object {what} {value!r} uses the reserved folder {_TEMP_DIR!r}.", key=value)


class LocalStorage:
    """Objects as files under ``root``: the embedded default, and handy in tests.

    Writes go to a temporary file in ``root/.tmp`` and are moved into place with ``os.replace``, so a
    crash never leaves a half-written object. ``content_type`` is not kept (files have none).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / validate_key(key)).resolve()
        if not path.is_relative_to(self.root):  # a symlink inside root pointing out of it
            raise InvalidObjectKey(f"Object key {key!r} resolves outside the storage folder.", key=key)
        return path

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> ObjectInfo:
        path = self._path(key)
        staging = self.root / _TEMP_DIR
        staging.mkdir(parents=True, exist_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temp_name = tempfile.mkstemp(dir=staging, prefix=path.name[:100] + ".")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise
        digest = hashlib.sha256(data).hexdigest()
        return ObjectInfo(key=key, size=len(data), etag=digest, sha256=digest)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(f"No object {key!r} in {self.describe()}.", key=key) from exc

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        if not path.is_file():
            return None
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(STREAM_BUFFER_BYTES), b""):
                digest.update(block)
        return ObjectInfo(key=key, size=path.stat().st_size, etag=digest.hexdigest(), sha256=digest.hexdigest())

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        # Walk only the deepest folder the prefix names; sort whole keys to match S3's order.
        folder = self.root.joinpath(*prefix.split("/")[:-1]) if "/" in prefix else self.root
        if not folder.is_dir():
            return iter(())
        keys = []
        for directory, subdirectories, files in os.walk(folder):
            if Path(directory) == self.root and _TEMP_DIR in subdirectories:
                subdirectories.remove(_TEMP_DIR)
            for name in files:
                key = (Path(directory) / name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return iter(sorted(keys))

    def open_stream(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb", buffering=STREAM_BUFFER_BYTES)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(f"No object {key!r} in {self.describe()}.", key=key) from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        # Drop folders the delete left empty, so listing stays cheap; never the root itself.
        parent = path.parent
        while parent != self.root and parent.is_relative_to(self.root):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def describe(self) -> str:
        return str(self.root)


class S3Storage:
    """Objects in an S3 bucket (AWS or any S3-compatible server at ``endpoint_url``).

    Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a
    profile, or an instance role); none are ever read from settings. The SHA-256 of each object is
    kept in its metadata, so ``head`` can report it without downloading.
    """

    list_page_size = 1000  # keys per ListObjectsV2 request (S3's maximum)

    def __init__(self, bucket: str, endpoint_url: str | None = None, region: str | None = None, *, client=None):
        if not bucket:
            raise ValueError("S3Storage needs a bucket name.")
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self.client = client or self._make_client()

    def _make_client(self):
        import boto3
        from botocore.config import Config

        config = Config(
            retries={"mode": "standard", "max_attempts": 5},
            # Self-hosted servers (MinIO, Ceph) rarely have wildcard DNS for virtual-host buckets.
            s3={"addressing_style": "path"} if self.endpoint_url else {},
        )
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config)

    @staticmethod
    def _missing(exc) -> bool:
        error = getattr(exc, "response", {}).get("Error", {})
        return str(error.get("Code")) in {"404", "NoSuchKey", "NotFound"}

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> ObjectInfo:
        validate_key(key)
        digest = hashlib.sha256(data).hexdigest()
        response = self.client.put_object(
            Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, Metadata={"sha256": digest}
        )
        return ObjectInfo(key=key, size=len(data), etag=response.get("ETag", "").strip('"'), sha256=digest)

    def get(self, key: str) -> bytes:
        body = self._get_object(key)["Body"]
        try:
            return body.read()  # a whole read also checks the length against Content-Length
        finally:
            body.close()

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        validate_key(key)
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if self._missing(exc):
                return None
            raise
        return ObjectInfo(
            key=key,
            size=response["ContentLength"],
            etag=response.get("ETag", "").strip('"'),
            sha256=response.get("Metadata", {}).get("sha256"),
        )

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": self.list_page_size}
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"]

    def open_stream(self, key: str) -> BinaryIO:
        return io.BufferedReader(self._get_object(key)["Body"], buffer_size=STREAM_BUFFER_BYTES)

    def _get_object(self, key: str) -> dict:
        from botocore.exceptions import ClientError

        validate_key(key)
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if self._missing(exc):
                raise ObjectNotFound(f"No object {key!r} in {self.describe()}.", key=key) from exc
            raise

    def delete(self, key: str) -> None:
        validate_key(key)
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def describe(self) -> str:
        return f"s3://{self.bucket}"


def get_storage() -> ObjectStorage:
    """The storage ``settings.OBJECT_STORAGE`` configures: S3 when a bucket is set, else the local folder."""
    config = settings.OBJECT_STORAGE
    if config.get("BUCKET"):
        return S3Storage(config["BUCKET"], endpoint_url=config.get("ENDPOINT_URL"), region=config.get("REGION"))
    return LocalStorage(Path(config["LOCAL_DIR"]) / LOCAL_BUCKET)
