"""Webhook signatures: HMAC-SHA256 over timestamp and body, refused when altered or stale."""

from supplychain.events.signing import sign, verify


def test_signature_verifies_with_the_same_secret():
    header = sign("s3cret", b'{"a":1}', timestamp=1_700_000_000)
    assert verify("s3cret", b'{"a":1}', header, now=1_700_000_010)


def test_wrong_secret_altered_body_or_stale_timestamp_fail():
    header = sign("s3cret", b'{"a":1}', timestamp=1_700_000_000)
    assert not verify("other", b'{"a":1}', header, now=1_700_000_000)
    assert not verify("s3cret", b'{"a":2}', header, now=1_700_000_000)
    assert not verify("s3cret", b'{"a":1}', header, now=1_700_000_000 + 301)
    assert not verify("s3cret", b'{"a":1}', "garbage", now=1_700_000_000)
