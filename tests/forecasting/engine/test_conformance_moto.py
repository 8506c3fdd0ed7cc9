"""Conformance: the same definitions run through moto's Step Functions interpreter and through the engine.

moto executes state machines with ``@mock_aws(config={"stepfunctions": {"execute_state_machine": True}})``
(the LocalStack ASL interpreter). Every case below was written from the specification; Tasks are modelled with
Pass and Fail states (errors to retry and catch come from a Fail inside a Parallel branch, since Retry and Catch
belong to Task, Parallel and Map). Each case must end with the same status, output, error and cause in both.
Where moto is known to differ from the specification, the case says so, asserts what moto does (so the note
fails when moto changes) and the engine follows the specification.
"""

from __future__ import annotations

import json
import time

import boto3
import pytest
from moto import mock_aws

from forecasting.engine import run_local


def machine(**states):
    return {"StartAt": next(iter(states)), "States": states}


def branch(**states):
    return machine(**states)


def failing_parallel(error="Boom", cause="it broke", **fields):
    return {"Type": "Parallel", "Branches": [branch(F={"Type": "Fail", "Error": error, "Cause": cause})], **fields}


CASES = {
    "pass_data_flow": (
        machine(
            A={
                "Type": "Pass",
                "InputPath": "$.order",
                "Parameters": {"id.$": "$.id", "lines.$": "$.lines[1]", "fixed": {"nested": True}},
                "ResultPath": "$.order.prepared",
                "OutputPath": "$.order",
                "Next": "B",
            },
            B={"Type": "Pass", "Result": {"ok": 1}, "ResultPath": None, "Next": "C"},
            C={"Type": "Pass", "Result": [1, 2], "ResultPath": "$.list", "End": True},
        ),
        {"order": {"id": 7, "lines": ["a", "b"]}, "other": 1},
    ),
    "context_object": (
        machine(A={"Type": "Pass", "Parameters": {"state.$": "$$.State.Name"}, "End": True}),
        {},
    ),
    "intrinsics": (
        machine(
            A={
                "Type": "Pass",
                "Parameters": {
                    "format.$": "States.Format('Hello {}, you have {} items', $.name, $.count)",
                    "to_json.$": "States.StringToJson($.json)",
                    "to_string.$": "States.JsonToString($.obj)",
                    "array.$": "States.Array('a', $.count, $.obj)",
                    "partition.$": "States.ArrayPartition($.numbers, 2)",
                    "contains.$": "States.ArrayContains($.numbers, 3)",
                    "range.$": "States.ArrayRange(1, 9, 2)",
                    "item.$": "States.ArrayGetItem($.numbers, 1)",
                    "length.$": "States.ArrayLength($.numbers)",
                    "unique.$": "States.ArrayUnique($.duplicates)",
                    "add.$": "States.MathAdd($.count, -1)",
                    "split.$": "States.StringSplit($.csv, ',')",
                    "merge.$": "States.JsonMerge($.obj, $.other, false)",
                    "hash.$": "States.Hash($.name, 'SHA-256')",
                    "b64.$": "States.Base64Encode($.name)",
                    "b64_back.$": "States.Base64Decode(States.Base64Encode($.name))",
                },
                "End": True,
            }
        ),
        {
            "name": "Ana",
            "count": 3,
            "json": '{"a": [1, 2]}',
            "obj": {"k": "v"},
            "other": {"k": "w", "z": 1},
            "numbers": [1, 2, 3, 4, 5],
            "duplicates": [1, 1, 2, "2", 2],
            "csv": "a,b,,c",
        },
    ),
    "choice_comparisons": (
        machine(
            C={
                "Type": "Choice",
                "Choices": [
                    {
                        "And": [
                            {"Variable": "$.s", "StringEquals": "b"},
                            {"Variable": "$.s", "StringGreaterThan": "a"},
                            {"Variable": "$.s", "StringLessThanEquals": "b"},
                            {"Variable": "$.n", "NumericGreaterThanEquals": 2},
                            {"Variable": "$.n", "NumericLessThan": 3},
                            {"Variable": "$.n", "NumericEqualsPath": "$.m"},
                            {"Variable": "$.b", "BooleanEquals": True},
                            {"Variable": "$.t", "TimestampLessThan": "2026-02-01T00:00:00Z"},
                            {"Variable": "$.t", "TimestampGreaterThanEqualsPath": "$.t"},
                            {"Variable": "$.file", "StringMatches": "log-*.csv"},
                            {"Variable": "$.nothing", "IsNull": True},
                            {"Variable": "$.absent", "IsPresent": False},
                            {"Variable": "$.n", "IsNumeric": True},
                            {"Variable": "$.s", "IsString": True},
                            {"Variable": "$.b", "IsBoolean": True},
                            {"Variable": "$.t", "IsTimestamp": True},
                            {"Not": {"Variable": "$.s", "StringEquals": "z"}},
                            {"Or": [{"Variable": "$.n", "NumericEquals": 9}, {"Variable": "$.n", "NumericEquals": 2}]},
                        ],
                        "Next": "All",
                    }
                ],
                "Default": "Some",
            },
            All={"Type": "Pass", "Result": "all held", "End": True},
            Some={"Type": "Pass", "Result": "default", "End": True},
        ),
        {"s": "b", "n": 2, "m": 2, "b": True, "t": "2026-01-15T10:00:00Z", "file": "log-1.csv", "nothing": None},
    ),
    "choice_default_and_type_mismatch": (
        machine(
            C={
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.n", "StringEquals": "2", "Next": "Wrong"},
                    {"Variable": "$.n", "NumericGreaterThan": 5, "Next": "Wrong"},
                ],
                "Default": "Fallback",
            },
            Wrong={"Type": "Fail", "Error": "Wrong"},
            Fallback={"Type": "Succeed", "OutputPath": "$.n"},
        ),
        {"n": 2},
    ),
    "fail_state": (
        machine(A={"Type": "Pass", "Next": "F"}, F={"Type": "Fail", "Error": "Order.Invalid", "Cause": "no lines"}),
        {},
    ),
    "parallel_outputs_in_branch_order": (
        machine(
            P={
                "Type": "Parallel",
                "Branches": [
                    branch(A={"Type": "Pass", "Parameters": {"a.$": "$.x"}, "End": True}),
                    branch(
                        B={"Type": "Wait", "Seconds": 0, "Next": "B2"}, B2={"Type": "Pass", "Result": 2, "End": True}
                    ),
                ],
                "ResultSelector": {"first.$": "$[0].a", "second.$": "$[1]"},
                "ResultPath": "$.results",
                "End": True,
            }
        ),
        {"x": 1},
    ),
    "parallel_failing_branch_fails_the_state": (
        machine(
            P={
                "Type": "Parallel",
                "Branches": [
                    branch(A={"Type": "Pass", "End": True}),
                    branch(F={"Type": "Fail", "Error": "Branch.Broken", "Cause": "branch 2"}),
                ],
                "End": True,
            }
        ),
        {},
    ),
    "retry_then_catch_with_result_path": (
        machine(
            P=failing_parallel(
                Retry=[{"ErrorEquals": ["Boom"], "IntervalSeconds": 1, "MaxAttempts": 1}],
                Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Recovered"}],
                End=True,
            ),
            Recovered={"Type": "Pass", "Result": "recovered", "ResultPath": "$.note", "End": True},
        ),
        {"order": 1},
    ),
    "catch_picks_the_first_matching_catcher": (
        machine(
            P=failing_parallel(
                error="Specific",
                Catch=[
                    {"ErrorEquals": ["Other"], "Next": "Wrong"},
                    {"ErrorEquals": ["Specific", "Else"], "Next": "Right", "ResultPath": None},
                    {"ErrorEquals": ["States.ALL"], "Next": "Wrong"},
                ],
                End=True,
            ),
            Wrong={"Type": "Fail", "Error": "Wrong"},
            Right={"Type": "Pass", "Result": "right", "ResultPath": "$.went", "End": True},
        ),
        {"in": 1},
    ),
    "uncaught_error_fails_the_run": (
        machine(P=failing_parallel(Catch=[{"ErrorEquals": ["Other"], "Next": "X"}], End=True), X={"Type": "Succeed"}),
        {},
    ),
    "map_with_item_selector": (
        machine(
            M={
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": 2,
                "ItemSelector": {"index.$": "$$.Map.Item.Index", "value.$": "$$.Map.Item.Value", "batch.$": "$.batch"},
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Shape",
                    "States": {
                        "Shape": {
                            "Type": "Pass",
                            "Parameters": {"label.$": "States.Format('{}-{}', $.batch, $.index)", "v.$": "$.value"},
                            "End": True,
                        }
                    },
                },
                "ResultPath": "$.shaped",
                "End": True,
            }
        ),
        {"items": ["a", "b", "c"], "batch": "B7"},
    ),
    "map_item_failure_is_caught": (
        machine(
            M={
                "Type": "Map",
                "ItemProcessor": branch(
                    C={
                        "Type": "Choice",
                        "Choices": [{"Variable": "$", "NumericGreaterThan": 1, "Next": "Bad"}],
                        "Default": "Good",
                    },
                    Bad={"Type": "Fail", "Error": "Item.TooBig", "Cause": "more than 1"},
                    Good={"Type": "Pass", "End": True},
                ),
                "Catch": [{"ErrorEquals": ["Item.TooBig"], "ResultPath": "$", "Next": "Caught"}],
                "End": True,
            },
            Caught={"Type": "Pass", "End": True},
        ),
        [0, 1, 2],
    ),
    "nested_map_in_parallel": (
        machine(
            P={
                "Type": "Parallel",
                "Branches": [
                    branch(
                        M={
                            "Type": "Map",
                            "ItemsPath": "$.xs",
                            "Iterator": branch(I={"Type": "Pass", "Parameters": {"x.$": "$"}, "End": True}),
                            "End": True,
                        }
                    ),
                    branch(L={"Type": "Pass", "Parameters": {"n.$": "States.ArrayLength($.xs)"}, "End": True}),
                ],
                "OutputPath": "$",
                "End": True,
            }
        ),
        {"xs": [1, 2]},
    ),
    "wait_zero_seconds_and_timestamp_in_the_past": (
        machine(
            W={"Type": "Wait", "SecondsPath": "$.s", "Next": "T"},
            T={"Type": "Wait", "Timestamp": "2020-01-01T00:00:00Z", "Next": "Done"},
            Done={"Type": "Succeed"},
        ),
        {"s": 0},
    ),
    "choice_no_match": (
        machine(
            C={"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 9, "Next": "D"}]},
            D={"Type": "Succeed"},
        ),
        {"n": 1},
    ),
}

# Where moto differs from the specification: what moto answers, and why the engine does otherwise.
MOTO_DIFFERS = {
    "choice_no_match": (
        # states-language.net, Choice: "If no Choice Rule matches and no Default is specified, the interpreter
        # raises States.NoChoiceMatched". moto fails with States.Runtime instead.
        ("FAILED", None, "States.Runtime"),
        ("FAILED", None, "States.NoChoiceMatched"),
    ),
    "parallel_outputs_in_branch_order": (
        # A definite path (``$[0].a``: an index, then a field) selects one value. moto's JSONPath has a tweak
        # (moto json_path.py, getmoto/moto#7825) that wraps it in a list after an index: ``[1]``.
        ("SUCCEEDED", {"x": 1, "results": {"first": [1], "second": 2}}, None),
        ("SUCCEEDED", {"x": 1, "results": {"first": 1, "second": 2}}, None),
    ),
}


@pytest.fixture(scope="module")
def moto_results():
    """Every case run through moto in one mocked account (starting moto's interpreter costs seconds)."""
    results = {}
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        client = boto3.client("stepfunctions", region_name="us-east-1")
        started = {}
        for name, (definition, payload) in CASES.items():
            arn = client.create_state_machine(
                name=name, definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/conformance"
            )["stateMachineArn"]
            started[name] = client.start_execution(stateMachineArn=arn, input=json.dumps(payload))["executionArn"]
        deadline = time.monotonic() + 120
        for name, execution in started.items():
            while (described := client.describe_execution(executionArn=execution))["status"] == "RUNNING":
                assert time.monotonic() < deadline, f"moto did not finish {name}"
                time.sleep(0.05)
            results[name] = (
                described["status"],
                _output(described),
                described.get("error"),
                described.get("cause"),
            )
    return results


def _output(described: dict):
    """The execution's output. moto returns a bare string output unquoted (``all held``, not ``"all held"``,
    which is what the API documents: the output is JSON text); such an output is taken as that string."""
    if "output" not in described:
        return None
    try:
        return json.loads(described["output"])
    except ValueError:
        return described["output"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_engine_ends_like_moto(name, moto_results):
    definition, payload = CASES[name]
    engine = run_local(definition, payload)
    moto = moto_results[name]
    if name in MOTO_DIFFERS:
        moto_does, specification = MOTO_DIFFERS[name]
        assert moto[:3] == moto_does, "moto changed: re-check this known difference"
        assert (engine.status, engine.output, engine.error) == specification
        return
    assert (engine.status, engine.output, engine.error, engine.cause or None) == moto


def test_the_conformance_set_covers_every_state_type_and_intrinsic():
    text = json.dumps([definition for definition, _ in CASES.values()])
    for kind in ("Pass", "Choice", "Parallel", "Map", "Wait", "Succeed", "Fail"):
        assert f'"Type": "{kind}"' in text
    for field in ("Retry", "Catch", "ResultSelector", "ItemSelector", "InputPath", "OutputPath", "ResultPath"):
        assert f'"{field}"' in text
    for function in ("Format", "StringToJson", "JsonToString", "ArrayPartition", "Hash", "Base64Decode", "MathAdd"):
        assert f"States.{function}(" in text
