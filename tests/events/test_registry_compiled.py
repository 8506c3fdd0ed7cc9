"""The compiled schema check (fastjsonschema) may only be a faster "valid": never valid where jsonschema says not."""

import itertools

import pytest

from supplychain.events import registry

ODD_VALUES = [
    None,
    True,
    False,
    0,
    1,
    1.0,
    -1,
    1.5,
    10**20,
    "",
    "x",
    "1",
    "-1.000",
    "1e5",
    " 1",
    [],
    [{}],
    {},
    "a" * 300,
]

VALID = {
    ("stock.level_changed", 1): {"sku": "ham", "on_hand": "10.000", "reserved": "2.000", "available": "8.000"},
    ("stock.reservation_created", 1): {
        "transaction_id": "t-1",
        "items": [{"sku": "ham", "batch_id": 7, "quantity": "1.000"}],
    },
}


def mutations(payload: dict):
    yield payload
    for key in payload:
        yield {k: v for k, v in payload.items() if k != key}
        for value in ODD_VALUES:
            yield {**payload, key: value}
    for value in ODD_VALUES:
        yield {**payload, "extra": value}
    items = payload.get("items")
    if isinstance(items, list) and items:
        for key, value in itertools.product(items[0], ODD_VALUES):
            yield {**payload, "items": [{**items[0], key: value}]}


def jsonschema_accepts(event_type: str, version: int, payload) -> bool:
    return not list(registry.schemas()[(event_type, version)].iter_errors(payload))


def test_every_registered_schema_has_a_compiled_check():
    assert set(registry._compiled_checks()) == set(registry.schemas())


@pytest.mark.parametrize("key", list(VALID))
def test_valid_payloads_pass_the_compiled_check(key):
    registry._compiled_checks()[key](VALID[key])
    registry.validate(*key, VALID[key])


def test_the_compiled_check_never_accepts_what_jsonschema_refuses():
    accepted = refused = 0
    for (event_type, version), compiled in registry._compiled_checks().items():
        base = VALID.get((event_type, version), {})
        for payload in itertools.chain(mutations(base), ({"x": value} for value in ODD_VALUES), ODD_VALUES):
            try:
                compiled(payload)
            except registry.fastjsonschema.JsonSchemaException:
                refused += 1
                continue
            accepted += 1
            assert jsonschema_accepts(event_type, version, payload), (event_type, payload)
    assert accepted > 2 and refused > 100


def test_a_payload_the_compiled_check_refuses_is_reported_by_jsonschema_field_by_field():
    with pytest.raises(registry.SchemaError) as refused:
        registry.validate("stock.level_changed", 1, {"sku": "", "on_hand": "lots", "reserved": "1", "available": "1"})
    assert set(refused.value.errors) == {"payload.sku", "payload.on_hand"}
