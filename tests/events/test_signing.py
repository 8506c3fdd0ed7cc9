"""Standard Webhooks signatures: checked against the specification's vector, the `standardwebhooks`
library and an HMAC-SHA256 computed here, in both directions; stale, future, SHA-1 and timestamp-less
signatures refused."""

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from supplychain.events import signing

# The test vector of the specification's reference libraries (standard-webhooks/standard-webhooks,
# libraries/python/tests/test_webhooks.py, test_sign_function).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
BODY = b'{"id":"0b7a","type":"stock.level_changed","payload":{"sku":"ham"}}'


def by_hand(secret: str, message_id: str, timestamp: int, body: bytes, digest=hashlib.sha256) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, digest).digest()
    return "v1," + base64.b64encode(mac).decode()


def test_the_signer_reproduces_the_specifications_test_vector():
    assert signing.sign(SPEC_SECRET, message_id=SPEC_ID, timestamp=SPEC_TIMESTAMP, body=SPEC_BODY) == SPEC_SIGNATURE
    headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TIMESTAMP), "webhook-signature": SPEC_SIGNATURE}
    assert signing.verify(SPEC_SECRET, SPEC_BODY, headers, now=SPEC_TIMESTAMP + 10)


def test_the_projects_signature_verifies_with_the_library_and_with_an_hmac_computed_here():
    secret = signing.generate_secret()
    headers = signing.headers(message_id="evt-1", body=BODY, secrets=[secret])
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert Webhook(secret).verify(BODY, headers)["type"] == "stock.level_changed"
    timestamp = int(headers["webhook-timestamp"])
    assert abs(timestamp - time.time()) < 5
    assert headers["webhook-signature"] == by_hand(secret, "evt-1", timestamp, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.generate_secret()).verify(BODY, headers)


def test_a_library_made_signature_verifies_with_the_projects_verifier():
    secret = signing.generate_secret()
    moment = datetime.now(tz=UTC)
    signature = Webhook(secret).sign("evt-2", moment, BODY.decode())
    headers = {"Webhook-Id": "evt-2", "Webhook-Timestamp": str(int(moment.timestamp())), "Webhook-Signature": signature}
    assert signing.verify(secret, BODY, headers)
    assert not signing.verify(secret, BODY + b" ", headers)
    assert not signing.verify(signing.generate_secret(), BODY, headers)
    assert not signing.verify(secret, BODY, {**headers, "Webhook-Id": "evt-3"})


def test_stale_and_future_timestamps_are_refused():
    secret = signing.generate_secret()
    now = 1_800_000_000
    for offset, accepted in ((0, True), (-300, True), (300, True), (-301, False), (301, False), (-86400, False)):
        headers = signing.headers(message_id="evt", body=BODY, secrets=[secret], timestamp=now + offset)
        assert signing.verify(secret, BODY, headers, now=now) is accepted, offset
    headers = signing.headers(message_id="evt", body=BODY, secrets=[secret], timestamp=now)
    for bad in ("", "soon", "1.8e9", "-1", " 1800000000", "\uff11\uff18\uff10\uff10"):  # the last: full-width digits
        assert not signing.verify(secret, BODY, {**headers, "webhook-timestamp": bad}, now=now), bad


def test_sha1_a_signature_without_the_timestamp_and_missing_headers_are_refused():
    secret = signing.generate_secret()
    now = 1_800_000_000
    sha1 = by_hand(secret, "evt", now, BODY, digest=hashlib.sha1)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    no_timestamp = "v1," + base64.b64encode(hmac.new(key, b"evt." + BODY, hashlib.sha256).digest()).decode()
    good = by_hand(secret, "evt", now, BODY)
    base = {"webhook-id": "evt", "webhook-timestamp": str(now)}
    assert signing.verify(secret, BODY, {**base, "webhook-signature": good}, now=now)
    assert not signing.verify(secret, BODY, {**base, "webhook-signature": sha1}, now=now)
    assert not signing.verify(secret, BODY, {**base, "webhook-signature": no_timestamp}, now=now)
    assert not signing.verify(secret, BODY, {**base, "webhook-signature": good.replace("v1,", "v2,")}, now=now)
    assert not signing.verify(secret, BODY, {"webhook-id": "evt", "webhook-signature": good}, now=now)
    assert not signing.verify(secret, BODY, {**base}, now=now)
    assert not signing.verify(secret, BODY, {"webhook-timestamp": str(now), "webhook-signature": good}, now=now)


def test_rotation_signs_with_both_secrets_space_separated_and_either_verifies():
    old, new = signing.generate_secret(), signing.generate_secret()
    headers = signing.headers(message_id="evt", body=BODY, secrets=[new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert signing.verify(secret, BODY, headers)
        assert Webhook(secret).verify(BODY, headers)
    assert not signing.verify(signing.generate_secret(), BODY, headers)


def test_secrets_must_be_whsec_base64_of_24_to_64_bytes():
    assert signing.secret_problem(signing.generate_secret()) is None
    assert signing.secret_problem(SPEC_SECRET) is None
    for bad in (
        "",
        "plain-secret",
        "whsec_",
        "whsec_***",
        "whsec_c2hvcnQ=",
        "whsec_" + base64.b64encode(b"x" * 65).decode(),
    ):
        assert signing.secret_problem(bad), bad
    with pytest.raises(ValueError, match="whsec_"):
        signing.sign("plain-secret", message_id="evt", timestamp=0, body=BODY)
