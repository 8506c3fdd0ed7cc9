"""The synchronous runner: every state type end to end, with the pure logic the Celery executor drives."""

import random
import time

import pytest

from forecasting.engine import StepError, StepRegistry, run_local
from forecasting.engine.builder import Machine, all_of, catch, not_, retry, when


class ResourcePending(Exception):
    pass


def test_the_seeds_pending_poll_retries_every_second_up_to_100_times():
    calls = []

    def create_predictor(payload):
        calls.append(payload)
        if len(calls) < 100:
            raise ResourcePending("predictor still CREATE_PENDING")
        return {"status": "ACTIVE"}

    definition = (
        Machine()
        .task(
            "CreatePredictor",
            "forecast.create_predictor",
            retry=[retry(["ResourcePending"], interval=1, max_attempts=100, backoff_rate=1.0)],
        )
        .build()
    )
    execution = run_local(definition, {"dataset": "orders"}, steps={"forecast.create_predictor": create_predictor})
    assert execution.status == "SUCCEEDED"
    assert execution.output == {"status": "ACTIVE"}
    assert len(calls) == 100
    assert execution.waits == [("CreatePredictor", 1.0)] * 99


def test_the_pending_poll_fails_after_its_100_retries():
    def never_ready(payload):
        raise ResourcePending("still pending")

    definition = (
        Machine()
        .task("Poll", "poll", retry=[retry(["ResourcePending"], interval=1, max_attempts=100, backoff_rate=1.0)])
        .build()
    )
    execution = run_local(definition, {}, steps={"poll": never_ready})
    assert (execution.status, execution.error, execution.cause) == ("FAILED", "ResourcePending", "still pending")
    assert len(execution.waits) == 100
    assert execution.event_types().count("TaskFailed") == 101


def test_retry_backoff_capped_and_then_caught_with_result_path():
    attempts = []

    def flaky(payload):
        attempts.append(1)
        raise StepError("Database.Unavailable", "connection refused")

    definition = (
        Machine()
        .task(
            "Load",
            "load",
            retry=[retry(["Database.Unavailable"], interval=2, max_attempts=4, backoff_rate=3, max_delay=20)],
            catch=[catch(["States.ALL"], "Fallback", result_path="$.error")],
            next="Done",
        )
        .pass_("Fallback", result="used the cache", result_path="$.note")
        .succeed("Done")
        .build()
    )
    execution = run_local(definition, {"day": 1}, steps={"load": flaky})
    assert execution.status == "SUCCEEDED"
    assert [delay for _, delay in execution.waits] == [2, 6, 18, 20]
    assert len(attempts) == 5
    assert execution.output == {
        "day": 1,
        "error": {"Error": "Database.Unavailable", "Cause": "connection refused"},
        "note": "used the cache",
    }


def test_full_jitter_delays_stay_under_the_capped_backoff():
    definition = (
        Machine()
        .task(
            "T",
            "t",
            retry=[retry(["States.ALL"], interval=4, max_attempts=6, backoff_rate=2, max_delay=10, jitter="FULL")],
        )
        .build()
    )
    execution = run_local(definition, {}, steps={"t": lambda p: 1 / 0}, rng=random.Random(3))
    delays = [delay for _, delay in execution.waits]
    caps = [4, 8, 10, 10, 10, 10]
    assert len(delays) == 6 and all(0 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    assert delays != caps
    assert execution.error == "ZeroDivisionError"


def test_parallel_returns_branch_outputs_in_order_and_a_failing_branch_fails_the_state():
    steps = {"double": lambda p: p["n"] * 2, "boom": lambda p: (_ for _ in ()).throw(KeyError("gone"))}
    ok = Machine().parallel(
        "Both",
        [Machine().task("A", "double"), Machine().pass_("B", result="b")],
        result_path="$.results",
    )
    execution = run_local(ok.build(), {"n": 4}, steps=steps)
    assert execution.output == {"n": 4, "results": [8, "b"]}

    failing = Machine().parallel("Both", [Machine().task("A", "double"), Machine().task("B", "boom")])
    execution = run_local(failing.build(), {"n": 4}, steps=steps)
    assert (execution.status, execution.error) == ("FAILED", "KeyError")
    assert "ParallelStateFailed" in execution.event_types()

    caught = (
        Machine()
        .parallel("Both", [Machine().task("B", "boom")], catch=[catch(["KeyError"], "Recovered", result_path="$.e")])
        .pass_("Recovered")
    )
    execution = run_local(caught.build(), {"n": 4}, steps=steps)
    assert execution.status == "SUCCEEDED"
    assert execution.output["e"]["Error"] == "KeyError"


def test_map_with_item_selector_and_order_of_results():
    definition = Machine().map(
        "Each",
        Machine().task("Square", "square"),
        items_path="$.numbers",
        item_selector={"value.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index", "offset.$": "$.offset"},
        max_concurrency=2,
        result_path="$.squares",
    )
    execution = run_local(
        definition.build(),
        {"numbers": [1, 2, 3], "offset": 10},
        steps={"square": lambda p: p["value"] ** 2 + p["offset"] + p["index"] / 10},
    )
    assert execution.output["squares"] == [11.0, 14.1, 19.2]
    assert execution.event_types().count("MapIterationSucceeded") == 3


def test_map_tolerated_failures_and_the_threshold():
    def odd_fails(payload):
        if payload % 2:
            raise ValueError(f"odd {payload}")
        return payload

    tolerant = Machine().map("Each", Machine().task("T", "t"), tolerated_failure_count=2)
    execution = run_local(tolerant.build(), [0, 1, 2, 3], steps={"t": odd_fails})
    assert execution.status == "SUCCEEDED"
    assert execution.output == [
        0,
        {"Error": "ValueError", "Cause": "odd 1"},
        2,
        {"Error": "ValueError", "Cause": "odd 3"},
    ]

    strict = Machine().map("Each", Machine().task("T", "t"), tolerated_failure_percentage=25)
    execution = run_local(strict.build(), [0, 1, 2, 3, 5], steps={"t": odd_fails})
    assert (execution.status, execution.error) == ("FAILED", "States.ExceedToleratedFailureThreshold")

    default = Machine().map("Each", Machine().task("T", "t"))
    execution = run_local(default.build(), [0, 1], steps={"t": odd_fails})
    assert (execution.status, execution.error, execution.cause) == ("FAILED", "ValueError", "odd 1")
    assert "MapIterationFailed" in execution.event_types()


def test_choice_routes_like_the_seed_weekday_and_feature_flag():
    definition = (
        Machine()
        .choice(
            "Route",
            [
                all_of(
                    when("$.flags.new_model", IsPresent=True),
                    when("$.flags.new_model", BooleanEquals=True),
                    next="NewModel",
                ),
                when("$.weekday", StringEquals="Friday", next="FactoryA"),
                when("$.weekday", StringEquals="Monday", next="FactoryB"),
                not_(when("$.weekday", StringMatches="*day"), next="Bad"),
            ],
            default="Both",
        )
        .pass_("NewModel", result="new", end=True)
        .pass_("FactoryA", result="A", end=True)
        .pass_("FactoryB", result="B", end=True)
        .fail("Bad", error="BadWeekday")
        .pass_("Both", result="A+B")
    )
    built = definition.build()
    route = {w: run_local(built, {"weekday": w}).output for w in ("Friday", "Monday", "Tuesday")}
    assert route == {"Friday": "A", "Monday": "B", "Tuesday": "A+B"}
    assert run_local(built, {"weekday": "Friday", "flags": {"new_model": True}}).output == "new"
    assert run_local(built, {"weekday": "Noon"}).error == "BadWeekday"


def test_no_choice_matched_fails_the_run():
    definition = Machine().choice("C", [when("$.x", NumericEquals=1, next="One")]).succeed("One").build()
    execution = run_local(definition, {"x": 2})
    assert (execution.status, execution.error) == ("FAILED", "States.NoChoiceMatched")


def test_waits_are_recorded_not_slept():
    definition = (
        Machine()
        .wait("Long", seconds=3600)
        .wait("FromInput", seconds_path="$.s")
        .wait("Past", timestamp="2020-01-01T00:00:00Z")
        .pass_("Done")
        .build()
    )
    started = time.monotonic()
    execution = run_local(definition, {"s": 5})
    assert time.monotonic() - started < 1
    assert execution.waits == [("Long", 3600.0), ("FromInput", 5.0), ("Past", 0.0)]


def test_task_timeout_is_states_timeout_and_task_failed_does_not_catch_it():
    def slow(payload):
        time.sleep(1.1)
        return 1

    definition = (
        Machine()
        .task("Slow", "slow", timeout_seconds=1, catch=[catch(["States.TaskFailed"], "Caught")], next="Done")
        .pass_("Caught", end=True)
        .succeed("Done")
        .build()
    )
    execution = run_local(definition, {}, steps={"slow": slow})
    assert (execution.status, execution.error) == ("FAILED", "States.Timeout")
    assert "TaskTimedOut" in execution.event_types()


def test_an_unknown_resource_fails_the_task():
    execution = run_local(Machine().task("T", "nowhere").build(), {}, steps={})
    assert (execution.status, execution.error) == ("FAILED", "States.TaskFailed")


def test_runtime_errors_are_not_caught_by_states_all():
    definition = (
        Machine()
        .task("T", "t", input_path="$.missing", catch=[catch(["States.ALL"], "Caught")], next="Done")
        .pass_("Caught", end=True)
        .succeed("Done")
        .build()
    )
    execution = run_local(definition, {}, steps={"t": lambda p: p})
    assert (execution.status, execution.error) == ("FAILED", "States.Runtime")


def test_the_registry_is_used_by_default():
    registry = StepRegistry()

    @registry.step("demo.hello")
    def hello(payload):
        return f"hello {payload['name']}"

    execution = run_local(Machine().task("Hi", "demo.hello").build(), {"name": "Ana"}, steps=registry)
    assert execution.output == "hello Ana"
    with pytest.raises(ValueError, match="dotted lower-case"):
        registry.step("Not A Name")


def test_history_names_follow_step_functions():
    definition = Machine().task("T", "t").build()
    execution = run_local(definition, {}, steps={"t": lambda p: p})
    assert execution.event_types() == [
        "ExecutionStarted",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
        "TaskStateExited",
        "ExecutionSucceeded",
    ]
