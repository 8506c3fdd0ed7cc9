"""The pure next-state logic: data flow in the specification's order, Choice rules, Retry and Catch decisions."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from forecasting.engine import machine
from forecasting.engine.errors import StatesError

CONTEXT = {"Execution": {"Id": "run:1", "Name": "run-1"}, "State": {"Name": "S"}}


def test_data_flow_runs_in_the_specifications_order():
    state = {
        "Type": "Task",
        "Resource": "x",
        "InputPath": "$.order",
        "Parameters": {"id.$": "$.id", "run.$": "$$.Execution.Name", "tag": "fixed", "n.$": "States.MathAdd($.qty, 1)"},
        "ResultSelector": {"total.$": "$.sum", "kept": True},
        "ResultPath": "$.order.result",
        "OutputPath": "$.order",
        "End": True,
    }
    raw = {"order": {"id": 7, "qty": 2}, "other": 1}
    effective = machine.effective_input(state, raw, CONTEXT)
    assert effective == {"id": 7, "run": "run-1", "tag": "fixed", "n": 3}
    output = machine.state_output(state, raw, {"sum": 42, "noise": 0}, CONTEXT)
    # ResultPath writes into the *raw* input (not the InputPath selection), then OutputPath selects.
    assert output == {"id": 7, "qty": 2, "result": {"total": 42, "kept": True}}
    assert raw == {"order": {"id": 7, "qty": 2}, "other": 1}


def test_result_path_null_discards_the_result_and_null_paths_give_empty_objects():
    state = {"Type": "Task", "ResultPath": None}
    assert machine.state_output(state, {"in": 1}, {"out": 2}, CONTEXT) == {"in": 1}
    assert machine.effective_input({"Type": "Task", "InputPath": None}, {"in": 1}, CONTEXT) == {}
    assert machine.state_output({"Type": "Task", "OutputPath": None}, {"in": 1}, 5, CONTEXT) == {}


def test_parameters_nest_and_reach_into_lists():
    state = {"Type": "Pass", "Parameters": {"outer": {"inner.$": "$.a"}, "list": [{"x.$": "$.b"}, 3]}}
    assert machine.effective_input(state, {"a": 1, "b": 2}, CONTEXT) == {"outer": {"inner": 1}, "list": [{"x": 2}, 3]}


@pytest.mark.parametrize(
    ("field", "state", "error"),
    [
        ("InputPath", {"Type": "Task", "InputPath": "$.nope"}, "States.Runtime"),
        ("Parameters", {"Type": "Task", "Parameters": {"a.$": "$.nope"}}, "States.ParameterPathFailure"),
        ("intrinsic", {"Type": "Task", "Parameters": {"a.$": "States.ArrayLength($.x)"}}, "States.IntrinsicFailure"),
    ],
)
def test_input_failures_have_the_specifications_error_names(field, state, error):
    with pytest.raises(StatesError) as raised:
        machine.effective_input(state, {"x": "not an array"}, CONTEXT)
    assert raised.value.error == error


def test_output_failures_have_the_specifications_error_names():
    with pytest.raises(StatesError) as raised:
        machine.state_output({"Type": "Task", "ResultPath": "$.x.y"}, {"x": 1}, 2, CONTEXT)
    assert raised.value.error == "States.ResultPathMatchFailure"
    with pytest.raises(StatesError) as raised:
        machine.state_output({"Type": "Task", "ResultSelector": {"a.$": "$.nope"}}, {}, {}, CONTEXT)
    assert raised.value.error == "States.ParameterPathFailure"
    with pytest.raises(StatesError) as raised:
        machine.state_output({"Type": "Task", "OutputPath": "$.nope"}, {}, {}, CONTEXT)
    assert raised.value.error == "States.Runtime"


def test_pass_uses_result_or_its_input():
    assert machine.inline_step(
        {"Type": "Pass", "Result": {"a": 1}, "ResultPath": "$.r", "End": True}, {"x": 1}, CONTEXT
    ) == (machine.Step(None, {"x": 1, "r": {"a": 1}}))
    step = machine.inline_step({"Type": "Pass", "Parameters": {"y.$": "$.x"}, "Next": "N"}, {"x": 1}, CONTEXT)
    assert step == machine.Step("N", {"y": 1})


def test_fail_raises_its_error_and_cause_from_paths_or_intrinsics():
    with pytest.raises(StatesError) as raised:
        machine.inline_step({"Type": "Fail", "Error": "Bad", "Cause": "why"}, {}, CONTEXT)
    assert (raised.value.error, raised.value.cause) == ("Bad", "why")
    state = {"Type": "Fail", "ErrorPath": "$.e", "CausePath": "States.Format('lost {}', $.n)"}
    with pytest.raises(StatesError) as raised:
        machine.inline_step(state, {"e": "Custom", "n": 3}, CONTEXT)
    assert (raised.value.error, raised.value.cause) == ("Custom", "lost 3")


def test_wait_forms():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    later = (now + timedelta(seconds=90)).isoformat().replace("+00:00", "Z")
    assert machine.wait_seconds({"Seconds": 5}, {}, now=now) == 5
    assert machine.wait_seconds({"SecondsPath": "$.s"}, {"s": 7}, now=now) == 7
    assert machine.wait_seconds({"Timestamp": later}, {}, now=now) == 90
    assert machine.wait_seconds({"TimestampPath": "$.t"}, {"t": later}, now=now) == 90
    assert machine.wait_seconds({"Timestamp": "2020-01-01T00:00:00Z"}, {}, now=now) == 0
    for bad in ({"SecondsPath": "$.s"}, {"TimestampPath": "$.s"}):
        with pytest.raises(StatesError):
            machine.wait_seconds(bad, {"s": "soon"}, now=now)


def rule(**fields):
    return {"Variable": "$.v", **fields}


@pytest.mark.parametrize(
    ("value", "rule_fields", "holds"),
    [
        ("b", {"StringEquals": "b"}, True),
        ("a", {"StringLessThan": "b"}, True),
        ("c", {"StringGreaterThan": "b"}, True),
        ("b", {"StringLessThanEquals": "b"}, True),
        ("b", {"StringGreaterThanEquals": "c"}, False),
        (3, {"StringEquals": "3"}, False),
        (3, {"NumericEquals": 3.0}, True),
        (2, {"NumericLessThan": 3}, True),
        (4, {"NumericGreaterThan": 3}, True),
        (3, {"NumericLessThanEquals": 3}, True),
        (3, {"NumericGreaterThanEquals": 4}, False),
        (True, {"NumericEquals": 1}, False),
        (True, {"BooleanEquals": True}, True),
        (1, {"BooleanEquals": True}, False),
        ("2026-01-01T00:00:00Z", {"TimestampEquals": "2026-01-01T01:00:00+01:00"}, True),
        ("2026-01-01T00:00:00Z", {"TimestampLessThan": "2026-01-02T00:00:00Z"}, True),
        ("2026-01-03T00:00:00Z", {"TimestampGreaterThan": "2026-01-02T00:00:00Z"}, True),
        ("2026-01-02T00:00:00Z", {"TimestampLessThanEquals": "2026-01-02T00:00:00Z"}, True),
        ("2026-01-01T00:00:00Z", {"TimestampGreaterThanEquals": "2026-01-02T00:00:00Z"}, False),
        ("not a time", {"TimestampEquals": "2026-01-02T00:00:00Z"}, False),
        ("log-2026.csv", {"StringMatches": "log-*.csv"}, True),
        ("log-2026.txt", {"StringMatches": "log-*.csv"}, False),
        ("a*b", {"StringMatches": "a\\*b"}, True),
        ("axb", {"StringMatches": "a\\*b"}, False),
        (None, {"IsNull": True}, True),
        (0, {"IsNull": False}, True),
        (1.5, {"IsNumeric": True}, True),
        (False, {"IsNumeric": True}, False),
        ("s", {"IsString": True}, True),
        (False, {"IsBoolean": True}, True),
        ("2026-01-01T00:00:00Z", {"IsTimestamp": True}, True),
        ("2026-01-01", {"IsTimestamp": True}, False),
    ],
)
def test_comparisons(value, rule_fields, holds):
    assert machine.evaluate_rule(rule(**rule_fields), {"v": value}) is holds


def test_path_comparisons_compare_with_another_field():
    data = {
        "v": 5,
        "w": 5,
        "s": "a",
        "t": "b",
        "b": True,
        "c": True,
        "d1": "2026-01-01T00:00:00Z",
        "d2": "2026-01-02T00:00:00Z",
    }
    assert machine.evaluate_rule({"Variable": "$.v", "NumericEqualsPath": "$.w"}, data)
    assert machine.evaluate_rule({"Variable": "$.s", "StringLessThanPath": "$.t"}, data)
    assert machine.evaluate_rule({"Variable": "$.b", "BooleanEqualsPath": "$.c"}, data)
    assert machine.evaluate_rule({"Variable": "$.d1", "TimestampLessThanPath": "$.d2"}, data)
    assert not machine.evaluate_rule({"Variable": "$.v", "NumericGreaterThanPath": "$.w"}, data)


def test_and_or_not_short_circuit_so_is_present_guards():
    guarded = {"And": [{"Variable": "$.v", "IsPresent": True}, {"Variable": "$.v", "NumericGreaterThan": 1}]}
    assert machine.evaluate_rule(guarded, {}) is False
    assert machine.evaluate_rule(guarded, {"v": 2}) is True
    assert machine.evaluate_rule({"Or": [rule(NumericEquals=1), rule(NumericEquals=2)]}, {"v": 2})
    assert machine.evaluate_rule({"Not": rule(NumericEquals=1)}, {"v": 2})


def test_a_comparison_of_a_missing_variable_is_a_runtime_error():
    with pytest.raises(StatesError) as raised:
        machine.evaluate_rule(rule(NumericEquals=1), {})
    assert raised.value.error == "States.Runtime"


def test_choice_takes_the_first_match_then_default_then_no_choice_matched():
    state = {
        "Choices": [{**rule(NumericGreaterThan=10), "Next": "Big"}, {**rule(NumericGreaterThan=0), "Next": "Small"}]
    }
    assert machine.choose(state, {"v": 11}) == "Big"
    assert machine.choose(state, {"v": 1}) == "Small"
    assert machine.choose({**state, "Default": "Other"}, {"v": -1}) == "Other"
    with pytest.raises(StatesError) as raised:
        machine.choose(state, {"v": -1})
    assert raised.value.error == "States.NoChoiceMatched"


def test_error_matching():
    assert machine.error_matches(["States.ALL"], "ValueError")
    assert not machine.error_matches(["States.ALL"], "States.Runtime")
    assert machine.error_matches(["States.Runtime"], "States.Runtime")
    assert machine.error_matches(["States.TaskFailed"], "ValueError")
    assert not machine.error_matches(["States.TaskFailed"], "States.Timeout")
    assert machine.error_matches(["States.Timeout"], "States.Timeout")
    assert not machine.error_matches(["KeyError"], "ValueError")


def test_retry_delays_back_off_and_are_capped():
    retrier = {"ErrorEquals": ["E"], "IntervalSeconds": 2, "BackoffRate": 3, "MaxDelaySeconds": 30}
    assert [machine.retry_delay(retrier, n) for n in range(5)] == [2, 6, 18, 30, 30]
    assert machine.retry_delay({"ErrorEquals": ["E"]}, 2) == 4  # defaults: 1 s, rate 2.0


def test_full_jitter_draws_below_the_computed_delay():
    retrier = {"ErrorEquals": ["E"], "IntervalSeconds": 10, "BackoffRate": 2, "JitterStrategy": "FULL"}
    rng = random.Random(1)
    delays = [machine.retry_delay(retrier, 3, rng=rng) for _ in range(200)]
    assert all(0 <= delay <= 80 for delay in delays)
    assert len(set(delays)) > 150 and min(delays) < 20 and max(delays) > 60


def test_each_retrier_counts_separately_across_errors_and_then_catch_takes_over():
    state = {
        "Retry": [{"ErrorEquals": ["A", "B"], "MaxAttempts": 2}, {"ErrorEquals": ["C"], "MaxAttempts": 1}],
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught", "ResultPath": "$.error"}],
    }
    counts: list[int] = []
    decisions = []
    for error in ["A", "C", "B", "A", "C"]:
        decision = machine.handle_error(state, {"in": 1}, error, "why", counts)
        decisions.append(type(decision).__name__)
        if isinstance(decision, machine.Retry):
            counts = decision.counts
    # A and B share the first retrier's two attempts; C has its own one.
    assert decisions == ["Retry", "Retry", "Retry", "Caught", "Caught"]
    assert counts == [2, 1]
    caught = machine.handle_error(state, {"in": 1}, "A", "why", counts)
    assert caught == machine.Caught("Caught", {"in": 1, "error": {"Error": "A", "Cause": "why"}}, 0)


def test_max_attempts_zero_never_retries_and_no_handler_is_unhandled():
    state = {"Retry": [{"ErrorEquals": ["E"], "MaxAttempts": 0}]}
    assert machine.handle_error(state, {}, "E", "c", []) == machine.Unhandled("E", "c")


def test_a_retrier_that_is_spent_does_not_fall_through_to_a_later_retrier():
    state = {"Retry": [{"ErrorEquals": ["E"], "MaxAttempts": 1}, {"ErrorEquals": ["States.ALL"], "MaxAttempts": 5}]}
    first = machine.handle_error(state, {}, "E", "", [])
    assert isinstance(first, machine.Retry)
    assert isinstance(machine.handle_error(state, {}, "E", "", first.counts), machine.Unhandled)


def test_catch_result_path_default_replaces_the_input_and_null_keeps_it():
    state = {"Catch": [{"ErrorEquals": ["E"], "Next": "N"}]}
    assert machine.handle_error(state, {"in": 1}, "E", "c", []).output == {"Error": "E", "Cause": "c"}
    state = {"Catch": [{"ErrorEquals": ["E"], "Next": "N", "ResultPath": None}]}
    assert machine.handle_error(state, {"in": 1}, "E", "c", []).output == {"in": 1}


def test_map_items_selector_and_tolerance():
    state = {
        "ItemsPath": "$.xs",
        "ItemSelector": {"i.$": "$$.Map.Item.Index", "v.$": "$$.Map.Item.Value", "k.$": "$.k"},
    }
    data = {"xs": ["a", "b"], "k": 1}
    assert machine.map_items(state, data) == ["a", "b"]
    assert machine.map_item_input(state, data, 1, "b", CONTEXT) == {"i": 1, "v": "b", "k": 1}
    with pytest.raises(StatesError):
        machine.map_items(state, {"xs": "nope"})
    assert machine.tolerance_exceeded({}, {}, 1, 10)
    assert not machine.tolerance_exceeded({"ToleratedFailureCount": 1}, {}, 1, 10)
    assert machine.tolerance_exceeded({"ToleratedFailureCount": 1}, {}, 2, 10)
    assert not machine.tolerance_exceeded({"ToleratedFailurePercentage": 20}, {}, 2, 10)
    assert machine.tolerance_exceeded({"ToleratedFailurePercentage": 20}, {}, 3, 10)
    assert machine.tolerance_exceeded({"ToleratedFailurePercentage": 50, "ToleratedFailureCount": 1}, {}, 2, 10)
