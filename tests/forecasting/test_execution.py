"""The executor on the database with an in-process dispatcher: transitions, retries, fan-out, redrive, cancel."""

from __future__ import annotations

import pytest
from django.db import transaction

from forecasting import services
from forecasting.engine.builder import Machine, catch, retry
from forecasting.errors import DefinitionRejected, InvalidPipelineName, RunNameTaken, RunNotRedrivable, RunNotRunning
from forecasting.models import HistoryEvent, Run, StateAttempt
from supplychain.events.models import OutboxEvent

pytestmark = pytest.mark.django_db(transaction=True)


def start(machine: Machine, payload=None, *, name="p", run_name=None) -> Run:
    services.save_pipeline(name=name, definition=machine.build())
    with transaction.atomic():
        run, _ = services.start_run(pipeline=name, input=payload or {}, name=run_name)
    return run


def reload(run: Run) -> Run:
    return Run.objects.get(id=run.id)


def history(run: Run) -> list[str]:
    return list(HistoryEvent.objects.filter(run=run).values_list("type", flat=True))


def test_inline_states_finish_in_the_start_with_no_message(inline):
    machine = Machine().pass_("A", result={"x": 1}, result_path="$.a").wait("W", seconds=0).succeed("Done")
    run = reload(start(machine, {"in": 1}))
    assert inline.queue == []
    assert (run.status, run.output) == ("SUCCEEDED", {"in": 1, "a": {"x": 1}})
    assert history(run) == [
        "ExecutionStarted",
        "PassStateEntered",
        "PassStateExited",
        "WaitStateEntered",
        "WaitStateExited",
        "SucceedStateEntered",
        "SucceedStateExited",
        "ExecutionSucceeded",
    ]
    assert OutboxEvent.objects.filter(type="forecasting.run_succeeded").count() == 1


def test_task_retries_with_recorded_delays_then_succeeds(inline, probe_store):
    machine = Machine().task(
        "Poll",
        "probe.fail_until",
        retry=[retry(["ResourcePending"], interval=1, max_attempts=100, backoff_rate=1.0)],
        result_path="$.result",
    )
    run = start(machine, {"key": "poll", "failures": 5})
    inline.drain()
    run = reload(run)
    assert run.status == "SUCCEEDED"
    assert run.output["result"] == {"attempts": 6}
    attempts = list(StateAttempt.objects.filter(run=run).order_by("attempt"))
    assert [a.attempt for a in attempts] == [1, 2, 3, 4, 5, 6]
    assert [a.delay for a in attempts] == [0, 1, 1, 1, 1, 1]
    assert [a.status for a in attempts] == ["FAILED"] * 5 + ["SUCCEEDED"]
    assert inline.countdowns == [0, 1, 1, 1, 1, 1]
    assert history(run).count("TaskFailed") == 5


def test_catch_with_result_path_after_retries(inline, probe_store):
    machine = (
        Machine()
        .task(
            "Load",
            "probe.fail_until",
            retry=[retry(["Database.Down"], interval=2, max_attempts=2, backoff_rate=3)],
            catch=[catch(["States.ALL"], "Fallback", result_path="$.error")],
            next="Done",
        )
        .pass_("Fallback", result="cache", result_path="$.used")
        .succeed("Done")
    )
    run = start(machine, {"key": "c", "failures": 10, "error": "Database.Down"})
    inline.drain()
    run = reload(run)
    assert run.status == "SUCCEEDED"
    assert run.output["error"] == {"Error": "Database.Down", "Cause": "attempt 3 of c"}
    assert run.output["used"] == "cache"
    assert inline.countdowns == [0, 2, 6]


def test_parallel_failing_branch_fails_the_run_and_aborts_the_other(inline, probe_store):
    machine = Machine().parallel("Both", [Machine().task("Slow", "probe.echo"), Machine().task("Bad", "probe.boom")])
    run = start(machine, {})
    inline.queue.reverse()  # the failing branch's task runs first
    inline.drain()
    run = reload(run)
    assert (run.status, run.error) == ("FAILED", "KeyError")
    assert "ParallelStateFailed" in history(run)
    assert StateAttempt.objects.get(run=run, state="Slow").status == "ABORTED"
    assert inline.revoked
    assert OutboxEvent.objects.filter(type="forecasting.run_failed").count() == 1


def test_map_respects_max_concurrency_and_keeps_item_order(inline):
    machine = Machine().map(
        "Each",
        Machine().task("Echo", "probe.echo"),
        items_path="$.items",
        item_selector={"i.$": "$$.Map.Item.Index", "v.$": "$$.Map.Item.Value"},
        max_concurrency=2,
    )
    run = start(machine, {"items": list("abcde")})
    assert len(inline.queue) == 2  # two at a time
    inline.drain()
    run = reload(run)
    assert run.status == "SUCCEEDED"
    assert run.output == [{"i": i, "v": v} for i, v in enumerate("abcde")]
    assert history(run).count("MapIterationSucceeded") == 5


def test_redrive_runs_only_the_failed_items(inline, probe_store):
    machine = Machine().map(
        "Each",
        Machine().task("Work", "probe.flaky_item"),
        items_path="$.items",
        item_selector={"key": "r", "item.$": "$$.Map.Item.Index", "bad.$": "$$.Map.Item.Value"},
        max_concurrency=0,
    )
    run = start(machine, {"items": [False, True, False, True]})
    inline.drain()
    run = reload(run)
    assert (run.status, run.error) == ("FAILED", "ValueError")
    probe_store.store().set(probe_store.PREFIX + "fixed:r", 1)
    assert [probe_store.calls(f"r:{item}") for item in range(4)] == [1, 1, 0, 0]  # 2 and 3 aborted
    with pytest.raises(RunNotRunning):
        services.cancel_run(run_id=run.id)
    services.redrive_run(run_id=run.id)
    inline.drain()
    run = reload(run)
    assert run.status == "SUCCEEDED", run.error
    assert run.redrive_count == 1 and run.redrive_date is not None
    assert [item["item"] for item in run.output] == [0, 1, 2, 3]
    # item 0 succeeded the first time and is not run again; the failed one and the aborted ones run
    assert [probe_store.calls(f"r:{item}") for item in range(4)] == [1, 2, 1, 1]
    with pytest.raises(RunNotRedrivable):
        services.redrive_run(run_id=run.id)
    assert "ExecutionRedriven" in history(run)


def test_cancel_stops_a_run_and_nothing_new_starts(inline, probe_store):
    machine = Machine().task("First", "probe.echo").task("Second", "probe.echo")
    run = start(machine, {})
    services.cancel_run(run_id=run.id)
    inline.drain()
    run = reload(run)
    assert run.status == "ABORTED"
    assert not StateAttempt.objects.filter(run=run, state="Second").exists()
    assert StateAttempt.objects.get(run=run, state="First").status == "ABORTED"
    assert "ExecutionAborted" in history(run)


def test_run_names_are_idempotent(inline):
    services.save_pipeline(name="p", definition=Machine().pass_("A").build())
    first, created = services.start_run(pipeline="p", input={"a": 1}, name="daily-1")
    again, created_again = services.start_run(pipeline="p", input={"a": 1}, name="daily-1")
    assert created and not created_again and first.id == again.id
    with pytest.raises(RunNameTaken):
        services.start_run(pipeline="p", input={"a": 2}, name="daily-1")


def test_saving_checks_the_definition_the_name_and_the_steps():
    with pytest.raises(DefinitionRejected) as raised:
        services.save_pipeline(
            name="p",
            definition={"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "nope.nothing", "End": True}}},
        )
    assert raised.value.errors["definition"][0]["field"] == "Resource"
    for name in ("runs", "validate", "Bad Name"):
        with pytest.raises(InvalidPipelineName):
            services.save_pipeline(name=name, definition=Machine().pass_("A").build())
