"""Webhook signatures per the Standard Webhooks specification (https://www.standardwebhooks.com/).

Every outbound HTTP delivery carries ``webhook-id`` (the event id, the same on every retry: what
receivers deduplicate on), ``webhook-timestamp`` (unix seconds of this attempt) and
``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``, one per secret,
space-separated (two while a rotated secret's grace period lasts). Secrets are ``whsec_<base64>``.
The signature is made by the ``standardwebhooks`` library; ``verify`` is the receiving side, with an
explicit clock and tolerance, for tests and for partners that sign the same way.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from standardwebhooks import Webhook

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix every Standard Webhooks secret starts with)
# The specification asks for secrets of 24 to 64 random bytes; generated ones have 32.
SECRET_BYTES_RANGE = (24, 64)
GENERATED_SECRET_BYTES = 32
DEFAULT_TOLERANCE_SECONDS = 300  # the specification's (and the libraries') five minutes, both ways


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(GENERATED_SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ValueError when it is not one."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"A secret is {SECRET_PREFIX}<base64>.")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"A secret is {SECRET_PREFIX}<base64>; the part after {SECRET_PREFIX} is not base64.") from exc
    if not key:
        raise ValueError("A secret may not be empty.")
    return key


def secret_problem(secret: str, *, check_length: bool = True) -> str | None:
    """Why ``secret`` cannot sign (not ``whsec_<base64>``, or outside 24 to 64 bytes), or None."""
    try:
        key = _key(secret)
    except ValueError as exc:
        return str(exc)
    low, high = SECRET_BYTES_RANGE
    if check_length and not low <= len(key) <= high:
        return f"The secret must hold {low} to {high} bytes after {SECRET_PREFIX} (this one holds {len(key)})."
    return None


def sign(secret: str, *, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64>``: the Standard Webhooks signature of one message with one secret."""
    _key(secret)  # the library would quietly decode anything; refuse what is not whsec_<base64>
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return Webhook(secret).sign(msg_id=message_id, timestamp=moment, data=body.decode())


def headers(*, message_id: str, body: bytes, secrets: Iterable[str], timestamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every secret given (the current one first)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signatures = [sign(secret, message_id=message_id, timestamp=timestamp, body=body) for secret in secrets]
    return {ID_HEADER: message_id, TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: " ".join(signatures)}


def verify(
    secrets: str | Iterable[str],
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True when one ``v1`` signature in ``headers`` signs id, timestamp and body with one of ``secrets``.

    False when a header is missing, the timestamp is not whole unix seconds or lies more than
    ``tolerance`` seconds in the past or the future, or no signature matches (other versions are ignored).
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    message_id = lowered.get(ID_HEADER, "")
    stamp = lowered.get(TIMESTAMP_HEADER, "")
    given = lowered.get(SIGNATURE_HEADER, "")
    if not (message_id and stamp.isascii() and stamp.isdigit() and given):
        return False
    timestamp = int(stamp)
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        return False
    offered = []
    for part in given.split(" "):
        version, _, signature = part.partition(",")
        if version == "v1" and signature:
            offered.append(signature)
    for secret in [secrets] if isinstance(secrets, str) else secrets:
        try:
            expected = sign(secret, message_id=message_id, timestamp=timestamp, body=body).split(",", 1)[1]
        except ValueError:
            continue
        if any(hmac.compare_digest(expected.encode(), signature.encode()) for signature in offered):
            return True
    return False
