"""Validation on save: every problem names its state and field."""

import json

import pytest

from forecasting.engine import DefinitionInvalid, load, validate
from forecasting.engine.definition import check, parse_timestamp


def problems(definition) -> set[tuple[str, str]]:
    return {(problem.state, problem.field) for problem in check(definition)}


def messages(definition) -> str:
    return " | ".join(str(problem) for problem in check(definition))


def machine(**states):
    return {"StartAt": next(iter(states)), "States": states}


def test_a_valid_definition_passes_and_is_returned_unchanged():
    definition = machine(
        A={"Type": "Pass", "Next": "B"},
        B={"Type": "Choice", "Choices": [{"Variable": "$.x", "NumericEquals": 1, "Next": "C"}], "Default": "D"},
        C={"Type": "Succeed"},
        D={"Type": "Fail", "Error": "E", "Cause": "c"},
    )
    assert validate(definition) is definition
    assert list(check(definition)) == []


def test_text_that_is_not_json_is_one_clear_problem():
    with pytest.raises(DefinitionInvalid) as raised:
        load("{not json")
    assert "not JSON" in str(raised.value)


def test_unknown_state_in_next_names_the_state_and_field():
    definition = machine(A={"Type": "Pass", "Next": "Nowhere"})
    assert ("A", "Next") in problems(definition)
    assert "unknown state 'Nowhere'" in messages(definition)


def test_unknown_start_at():
    assert ("", "StartAt") in problems({"StartAt": "X", "States": {"A": {"Type": "Succeed"}}})


def test_unreachable_state_is_reported():
    definition = machine(A={"Type": "Succeed"}, Orphan={"Type": "Succeed"})
    assert ("Orphan", "") in problems(definition)
    assert "unreachable" in messages(definition)


def test_states_reached_only_through_choice_default_or_catch_are_reachable():
    definition = machine(
        A={"Type": "Task", "Resource": "x", "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "Next": "B"},
        B={"Type": "Choice", "Choices": [{"Variable": "$.x", "IsPresent": True, "Next": "C"}], "Default": "D"},
        C={"Type": "Succeed"},
        D={"Type": "Succeed"},
        Caught={"Type": "Succeed"},
    )
    assert list(check(definition)) == []


def test_missing_next_and_both_next_and_end():
    assert ("A", "Next") in problems(machine(A={"Type": "Task", "Resource": "x"}))
    both = machine(A={"Type": "Pass", "Next": "B", "End": True}, B={"Type": "Succeed"})
    assert "either Next or End" in messages(both)


def test_states_all_must_be_alone_and_last():
    definition = machine(
        A={
            "Type": "Task",
            "Resource": "x",
            "End": True,
            "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["Other"]}],
            "Catch": [{"ErrorEquals": ["States.ALL", "Other"], "Next": "B"}],
        },
        B={"Type": "Succeed"},
    )
    found = problems(definition)
    assert ("A", "Retry[0].ErrorEquals") in found
    assert ("A", "Catch[0].ErrorEquals") in found
    assert "must be in the last retrier" in messages(definition)
    assert "must appear alone" in messages(definition)


def test_bad_paths_are_named():
    definition = machine(
        A={"Type": "Pass", "InputPath": "x.y", "ResultPath": "$.a[*]", "OutputPath": "$.[", "End": True}
    )
    found = problems(definition)
    assert {("A", "InputPath"), ("A", "ResultPath"), ("A", "OutputPath")} <= found
    assert "bad path" in messages(definition)


def test_bad_parameter_templates_and_intrinsics():
    definition = machine(
        A={
            "Type": "Pass",
            "Parameters": {"a.$": "nope", "b": {"c.$": "States.Nope(1)"}, "d.$": "States.Format('x'"},
            "End": True,
        }
    )
    found = problems(definition)
    assert {("A", "Parameters.a.$"), ("A", "Parameters.b.c.$"), ("A", "Parameters.d.$")} <= found
    assert "unknown intrinsic function States.Nope" in messages(definition)


def test_bad_choice_rules():
    definition = machine(
        C={
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.x", "NumericEquals": "one", "Next": "D"},
                {"Variable": "$.x", "Next": "D"},
                {"And": [{"Variable": "$.x", "IsNull": True, "Next": "D"}], "Next": "D"},
                {"Variable": "$.x", "StringEquals": "a"},
                {"Variable": "$.t", "TimestampEquals": "yesterday", "Next": "D"},
                {"Variable": "$.x", "Frobnicates": 1, "Next": "D"},
            ],
        },
        D={"Type": "Succeed"},
    )
    found = problems(definition)
    assert ("C", "Choices[0].NumericEquals") in found
    assert ("C", "Choices[1]") in found
    assert ("C", "Choices[2].And[0].Next") in found
    assert ("C", "Choices[3].Next") in found
    assert ("C", "Choices[4].TimestampEquals") in found
    assert ("C", "Choices[5].Frobnicates") in found


def test_choice_without_choices_and_with_next():
    found = problems(machine(C={"Type": "Choice", "Choices": [], "Next": "C"}))
    assert {("C", "Choices"), ("C", "Next")} <= found


def test_wait_needs_exactly_one_form():
    assert ("W", "Seconds") in problems(machine(W={"Type": "Wait", "End": True}))
    assert ("W", "Seconds") in problems(machine(W={"Type": "Wait", "Seconds": 1, "SecondsPath": "$.s", "End": True}))
    assert ("W", "Timestamp") in problems(machine(W={"Type": "Wait", "Timestamp": "soon", "End": True}))
    assert list(check(machine(W={"Type": "Wait", "TimestampPath": "$.at", "End": True}))) == []


def test_retrier_fields_are_bounded():
    definition = machine(
        A={
            "Type": "Task",
            "Resource": "x",
            "End": True,
            "Retry": [
                {
                    "ErrorEquals": ["E"],
                    "IntervalSeconds": 0,
                    "MaxAttempts": -1,
                    "BackoffRate": 0.5,
                    "MaxDelaySeconds": 0,
                    "JitterStrategy": "HALF",
                    "Extra": 1,
                }
            ],
        }
    )
    found = problems(definition)
    for field in ("IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds", "JitterStrategy", "Extra"):
        assert ("A", f"Retry[0].{field}") in found


def test_catcher_needs_next_naming_a_state():
    definition = machine(
        A={
            "Type": "Task",
            "Resource": "x",
            "End": True,
            "Catch": [{"ErrorEquals": ["E"]}, {"ErrorEquals": ["F"], "Next": "Z"}],
        }
    )
    assert {("A", "Catch[0].Next"), ("A", "Catch[1].Next")} <= problems(definition)


def test_nested_scopes_are_checked_with_their_path_in_the_state_name():
    definition = machine(
        P={
            "Type": "Parallel",
            "End": True,
            "Branches": [
                {"StartAt": "Ok", "States": {"Ok": {"Type": "Succeed"}}},
                {"StartAt": "Bad", "States": {"Bad": {"Type": "Pass", "Next": "Missing"}}},
            ],
        },
        M={"Type": "Map", "End": True, "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Task"}}}},
    )
    found = problems(definition)
    assert ("P/Branches[1]/Bad", "Next") in found
    assert ("M/ItemProcessor/I", "Resource") in found
    assert ("M/ItemProcessor/I", "Next") in found
    assert ("M", "") in found  # unreachable from P


def test_map_fields():
    definition = machine(
        M={
            "Type": "Map",
            "End": True,
            "MaxConcurrency": -1,
            "ToleratedFailurePercentage": 101,
            "ToleratedFailureCount": "x",
            "ItemsPath": "items",
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED"},
                "StartAt": "I",
                "States": {"I": {"Type": "Succeed"}},
            },
        }
    )
    found = problems(definition)
    for field in ("MaxConcurrency", "ToleratedFailurePercentage", "ToleratedFailureCount", "ItemsPath"):
        assert ("M", field) in found
    assert ("M", "ItemProcessor.ProcessorConfig.Mode") in found


def test_unknown_type_and_unknown_fields():
    found = problems(
        machine(
            A={"Type": "Lambda", "End": True},
        )
    )
    assert ("A", "Type") in found
    found = problems(machine(A={"Type": "Succeed", "Next": "A", "Colour": "red"}))
    assert {("A", "Next"), ("A", "Colour")} <= found


def test_fail_error_and_error_path_exclude_each_other():
    assert ("F", "Error") in problems(machine(F={"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}))
    assert list(check(machine(F={"Type": "Fail", "ErrorPath": "$.e", "CausePath": "States.Format('{}', $.c)"}))) == []


def test_jsonata_is_refused():
    assert ("", "QueryLanguage") in problems({**machine(A={"Type": "Succeed"}), "QueryLanguage": "JSONata"})


def test_invalid_definition_error_lists_all_problems_as_dicts():
    with pytest.raises(DefinitionInvalid) as raised:
        validate(machine(A={"Type": "Pass", "Next": "X"}, B={"Type": "Succeed"}))
    listed = [problem.as_dict() for problem in raised.value.problems]
    assert {"state": "A", "field": "Next", "message": "unknown state 'X'"} in listed
    assert any(problem["state"] == "B" for problem in listed)
    json.dumps(listed)


def test_timestamps_need_a_zone_and_a_t():
    assert parse_timestamp("2026-01-31T12:00:00Z") is not None
    assert parse_timestamp("2026-01-31T12:00:00.123+01:00") is not None
    assert parse_timestamp("2026-01-31 12:00:00Z") is None
    assert parse_timestamp("2026-01-31T12:00:00") is None
    assert parse_timestamp(5) is None
