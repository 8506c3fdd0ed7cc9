"""Signing: the secret rules with their messages, several secrets on the receiving side, and the signature header
parsed as the reference library parses it (mutation survivors, README)."""

import base64
import secrets as random
import time

import pytest
from standardwebhooks import Webhook

from supplychain.events import signing

BODY = b'{"id":"0b7a","type":"stock.level_changed"}'
NOW = 1_800_000_000


def secret_of(size: int) -> str:
    return "whsec_" + base64.b64encode(random.token_bytes(size)).decode()


def test_secrets_of_24_and_64_bytes_sign_and_those_just_outside_do_not():
    for size in (24, 64):
        assert signing.secret_problem(secret_of(size)) is None, size
    for size in (23, 65):
        assert signing.secret_problem(secret_of(size)) == (
            f"The secret must hold 24 to 64 bytes after whsec_ (this one holds {size})."
        )
    assert signing.secret_problem(secret_of(8), check_length=False) is None


def test_each_kind_of_bad_secret_gets_its_own_message():
    valid = base64.b64encode(random.token_bytes(32)).decode()
    assert signing.secret_problem("wh_ab_" + valid) == "A secret is whsec_<base64>."  # a base64 tail, wrong prefix
    assert signing.secret_problem("whsec_" + valid[:10] + "!" + valid[10:]) == (
        "A secret is whsec_<base64>; the part after whsec_ is not base64."
    )
    assert signing.secret_problem("whsec_") == "A secret may not be empty."
    with pytest.raises(ValueError, match=r"^A secret is whsec_<base64>\.$"):
        signing.sign("wh_ab_" + valid, message_id="evt", timestamp=NOW, body=BODY)


def test_generated_secrets_hold_32_random_bytes():
    generated = {signing.generate_secret() for _ in range(3)}
    assert len(generated) == 3
    assert {len(base64.b64decode(secret.removeprefix("whsec_"))) for secret in generated} == {32}


def test_the_receiving_side_accepts_a_list_of_secrets_and_skips_unusable_ones():
    current, previous = signing.generate_secret(), signing.generate_secret()
    headers = signing.headers(message_id="evt", body=BODY, secrets=[previous], timestamp=NOW)
    assert signing.verify([current, previous], BODY, headers, now=NOW)
    assert signing.verify(["not-a-secret", previous], BODY, headers, now=NOW)  # a bad one does not end the search
    assert not signing.verify([current, "not-a-secret"], BODY, headers, now=NOW)


def test_signatures_are_separated_by_single_spaces_as_the_reference_library_reads_them():
    secret = signing.generate_secret()
    now = int(time.time())  # the library checks the timestamp against the real clock
    good = signing.sign(secret, message_id="evt", timestamp=now, body=BODY)
    other = signing.sign(signing.generate_secret(), message_id="evt", timestamp=now, body=BODY)
    base = {"webhook-id": "evt", "webhook-timestamp": str(now)}
    spaced = {**base, "webhook-signature": f"{other} {good}"}
    tabbed = {**base, "webhook-signature": f"{other}\t{good}"}
    assert signing.verify(secret, BODY, spaced)
    assert Webhook(secret).verify(BODY, spaced)
    assert not signing.verify(secret, BODY, tabbed)
    with pytest.raises(ValueError, match="unpack"):  # the library refuses it too (a tab is no separator to it either)
        Webhook(secret).verify(BODY, tabbed)
