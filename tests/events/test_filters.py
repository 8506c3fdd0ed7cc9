"""Filter policies: the SNS subset (exact, any-of, prefix, numeric range, exists, nested)."""

import pytest

from supplychain.events.filters import matches, validate_policy

PAYLOAD = {"sku": "ham-sliced", "quantity": 12, "site": {"country": "GB"}, "tags": ["chilled", "meat"]}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({}, True),
        ({"sku": ["ham-sliced"]}, True),
        ({"sku": ["cheese", "ham-sliced"]}, True),
        ({"sku": ["cheese"]}, False),
        ({"sku": [{"prefix": "ham-"}]}, True),
        ({"sku": [{"prefix": "cheese"}]}, False),
        ({"quantity": [{"numeric": [">", 10, "<=", 12]}]}, True),
        ({"quantity": [{"numeric": [">", 12]}]}, False),
        ({"quantity": [{"numeric": ["=", 12]}]}, True),
        ({"missing": [{"exists": False}]}, True),
        ({"sku": [{"exists": False}]}, False),
        ({"sku": [{"exists": True}]}, True),
        ({"site": {"country": ["GB"]}}, True),
        ({"site": {"country": ["FR"]}}, False),
        ({"tags": ["meat"]}, True),
        ({"tags": ["frozen"]}, False),
        ({"sku": [{"prefix": "ham"}], "quantity": [{"numeric": ["<", 5]}]}, False),
        ({"sku": [12]}, False),
        ({"quantity": ["12"]}, False),
    ],
)
def test_policy_matching(policy, expected):
    validate_policy(policy)
    assert matches(policy, PAYLOAD) is expected


@pytest.mark.parametrize(
    ("policy", "complaint"),
    [
        ([], "policy"),
        ({"sku": []}, "sku"),
        ({"sku": "ham"}, "sku"),
        ({"quantity": [{"numeric": [">"]}]}, "quantity"),
        ({"quantity": [{"numeric": ["~", 3]}]}, "quantity"),
        ({"sku": [{"prefix": 3}]}, "sku"),
        ({"sku": [{"wat": 1}]}, "sku"),
        ({"site": {"country": "GB"}}, "site.country"),
    ],
)
def test_malformed_policies_are_refused_naming_the_attribute(policy, complaint):
    with pytest.raises(ValueError, match=complaint):
        validate_policy(policy)
