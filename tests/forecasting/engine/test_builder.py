"""The Python builder produces the same States Language JSON as one would write by hand."""

import json

import pytest

from forecasting.engine import DefinitionInvalid
from forecasting.engine.builder import Machine, any_of, catch, retry, when


def test_builder_matches_hand_written_json():
    built = (
        Machine(comment="seed")
        .task(
            "Load",
            "forecast.load_history",
            retry=[retry(["ResourcePending"], interval=1, max_attempts=100, backoff_rate=1.0)],
            catch=[catch(["States.ALL"], "Failed", result_path="$.error")],
            result_path="$.history",
            timeout_seconds=60,
        )
        .choice(
            "Day",
            [any_of(when("$.day", StringEquals="Fri"), when("$.day", StringEquals="Sat"), next="Done")],
            default="Done",
        )
        .fail("Failed", error="LoadFailed")
        .succeed("Done")
        .build()
    )
    hand_written = json.loads(
        """{
      "Comment": "seed",
      "StartAt": "Load",
      "States": {
        "Load": {"Type": "Task", "Resource": "forecast.load_history", "ResultPath": "$.history", "TimeoutSeconds": 60,
                 "Retry": [{"ErrorEquals": ["ResourcePending"], "IntervalSeconds": 1, "MaxAttempts": 100,
                            "BackoffRate": 1.0}],
                 "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Failed", "ResultPath": "$.error"}],
                 "Next": "Day"},
        "Day": {"Type": "Choice", "Choices": [{"Or": [{"Variable": "$.day", "StringEquals": "Fri"},
                                                      {"Variable": "$.day", "StringEquals": "Sat"}], "Next": "Done"}],
                "Default": "Done"},
        "Failed": {"Type": "Fail", "Error": "LoadFailed"},
        "Done": {"Type": "Succeed"}
      }
    }"""
    )
    assert built == hand_written


def test_result_path_none_is_json_null_and_last_state_ends():
    built = Machine().pass_("A", result_path=None).build()
    assert built["States"]["A"] == {"Type": "Pass", "ResultPath": None, "End": True}


def test_nested_machines_and_validation_errors():
    built = Machine().map("M", Machine().pass_("P"), items_path="$.xs", max_concurrency=3).build()
    assert built["States"]["M"]["ItemProcessor"] == {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    assert built["States"]["M"]["ItemsPath"] == "$.xs"
    with pytest.raises(DefinitionInvalid) as raised:
        Machine().pass_("A", next="Missing").build()
    assert raised.value.problems[0].state == "A"
    with pytest.raises(ValueError, match="added twice"):
        Machine().pass_("A").pass_("A")
