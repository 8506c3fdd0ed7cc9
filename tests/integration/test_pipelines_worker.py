"""The pipeline engine on a real Celery worker, Redis and PostgreSQL: retries and their delays, catches,
Parallel and Map (concurrency, tolerated failures), the seed's 100-times pending poll, redrive, cancel, and a
worker process killed in the middle of a Task."""

from __future__ import annotations

import itertools
import os
import signal
import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from forecasting import services
from forecasting.engine.builder import Machine, catch, retry
from forecasting.models import HistoryEvent, Run, StateAttempt
from forecasting.services import execution
from tests.processes import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def probe(celery_worker):
    from tests.probe import steps

    client = steps.store()
    for key in client.scan_iter(steps.PREFIX + "*"):
        client.delete(key)
    return steps


def start(machine: Machine, payload, *, name: str = "p") -> Run:
    services.save_pipeline(name=name, definition=machine.build())
    with transaction.atomic():
        run, _ = services.start_run(pipeline=name, input=payload)
    return run


def finished(run: Run, timeout: float = 60) -> Run:
    def done():
        current = Run.objects.get(id=run.id)
        return current if current.status != "RUNNING" else None

    return wait_for(done, timeout, f"run {run.name} to finish")


def history(run: Run) -> list[str]:
    return list(HistoryEvent.objects.filter(run=run).values_list("type", flat=True))


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def test_retries_wait_their_backoff_capped_by_max_delay(probe):
    machine = Machine().task(
        "Load",
        "probe.fail_until",
        retry=[retry(["Database.Down"], interval=1, backoff_rate=2, max_delay=2, max_attempts=3)],
    )
    run = finished(start(machine, {"key": "backoff", "failures": 3, "error": "Database.Down"}))
    assert (run.status, run.output) == ("SUCCEEDED", {"attempts": 4})
    attempts = list(StateAttempt.objects.filter(run=run).order_by("attempt"))
    assert [a.delay for a in attempts] == [0, 1, 2, 2]
    assert [a.status for a in attempts] == ["FAILED", "FAILED", "FAILED", "SUCCEEDED"]
    observed = gaps(probe.call_times("backoff"))
    for gap, delay in zip(observed, [1, 2, 2], strict=True):
        assert delay - 0.05 <= gap < delay + 1.5, observed


def test_full_jitter_delays_are_recorded_and_waited(probe):
    machine = Machine().task(
        "Load",
        "probe.fail_until",
        retry=[retry(["States.ALL"], interval=2, backoff_rate=2, max_delay=3, max_attempts=3, jitter="FULL")],
    )
    run = finished(start(machine, {"key": "jitter", "failures": 3}))
    assert run.status == "SUCCEEDED"
    delays = [a.delay for a in StateAttempt.objects.filter(run=run).order_by("attempt")][1:]
    assert all(0 <= delay <= cap for delay, cap in zip(delays, [2, 3, 3], strict=True)), delays
    assert delays != [2, 3, 3]
    for gap, delay in zip(gaps(probe.call_times("jitter")), delays, strict=True):
        assert delay - 0.05 <= gap < delay + 1.5


def test_spent_retries_are_caught_with_result_path(probe):
    machine = (
        Machine()
        .task(
            "Load",
            "probe.fail_until",
            retry=[retry(["Database.Down"], interval=1, max_attempts=1)],
            catch=[catch(["States.ALL"], "Fallback", result_path="$.error")],
        )
        .pass_("Fallback", result="cache", result_path="$.used")
    )
    run = finished(start(machine, {"key": "caught", "failures": 5, "error": "Database.Down"}))
    assert run.status == "SUCCEEDED"
    assert run.output["error"] == {"Error": "Database.Down", "Cause": "attempt 2 of caught"}
    assert probe.calls("caught") == 2
    assert "CatchTaken" in history(run)


def test_a_failing_parallel_branch_fails_the_state_unless_caught(probe):
    branches = [Machine().task("Sleep", "probe.sleep"), Machine().task("Boom", "probe.boom")]
    failed = finished(start(Machine().parallel("Both", branches), {"seconds": 0.2}, name="par"))
    assert (failed.status, failed.error) == ("FAILED", "KeyError")
    caught = (
        Machine()
        .parallel("Both", branches, catch=[catch(["KeyError"], "Recovered", result_path="$.failure")])
        .pass_("Recovered")
    )
    run = finished(start(caught, {"seconds": 0.2}, name="par-caught"))
    assert run.status == "SUCCEEDED"
    assert run.output["failure"]["Error"] == "KeyError"


@pytest.mark.parametrize(("limit", "peak"), [(1, 1), (0, 2)])
def test_map_concurrency_is_never_exceeded(probe, limit, peak):
    machine = Machine().map(
        "Each",
        Machine().task("Sleep", "probe.sleep"),
        items_path="$.items",
        item_selector={"seconds": 0.4, "key": "map", "index.$": "$$.Map.Item.Index"},
        max_concurrency=limit,
    )
    run = finished(start(machine, {"items": list(range(6))}))
    assert run.status == "SUCCEEDED"
    assert [item["index"] for item in run.output] == list(range(6))
    assert probe.peak("map") == peak  # the worker runs two at once when the Map lets it


def test_tolerated_failures_let_the_map_succeed(probe):
    machine = Machine().map(
        "Each",
        Machine().task("Work", "probe.flaky_item"),
        items_path="$.items",
        item_selector={"key": "tol", "item.$": "$$.Map.Item.Index", "bad.$": "$$.Map.Item.Value"},
        tolerated_failure_count=1,
    )
    run = finished(start(machine, {"items": [False, True, False]}))
    assert run.status == "SUCCEEDED"
    assert run.output[1] == {"Error": "ValueError", "Cause": "item 1 is bad"}
    assert history(run).count("MapIterationFailed") == 1


def test_redrive_runs_only_the_failed_part(probe):
    machine = (
        Machine()
        .task("Prepare", "probe.fail_until", result_path="$.prepared")
        .map(
            "Each",
            Machine().task("Work", "probe.flaky_item"),
            items_path="$.items",
            item_selector={"key": "red", "item.$": "$$.Map.Item.Index", "bad.$": "$$.Map.Item.Value"},
            max_concurrency=1,
            result_path="$.results",
        )
    )
    run = finished(start(machine, {"key": "prepare", "failures": 0, "items": [False, False, True, False]}))
    assert (run.status, run.error) == ("FAILED", "ValueError")
    assert [probe.calls(f"red:{i}") for i in range(4)] == [1, 1, 1, 0]
    probe.store().set(probe.PREFIX + "fixed:red", 1)
    services.redrive_run(run_id=run.id)
    run = finished(run)
    assert run.status == "SUCCEEDED"
    assert (run.redrive_count, probe.calls("prepare")) == (1, 1)  # the succeeded Task is not run again
    assert [probe.calls(f"red:{i}") for i in range(4)] == [1, 1, 2, 1]
    assert run.output["prepared"] == {"attempts": 1}
    assert "ExecutionRedriven" in history(run)


def test_cancel_stops_the_run_and_starts_nothing_new(probe):
    machine = Machine().task("Sleep", "probe.sleep").task("After", "probe.echo")
    run = start(machine, {"seconds": 3, "key": "cancel"})
    wait_for(lambda: probe.calls("cancel") == 1, 30, "the first task to start")
    services.cancel_run(run_id=run.id)
    time.sleep(4)
    run = Run.objects.get(id=run.id)
    assert run.status == "ABORTED"
    assert not StateAttempt.objects.filter(run=run, state="After").exists()
    assert StateAttempt.objects.get(run=run, state="Sleep").status == "ABORTED"


def test_a_worker_process_killed_mid_task_is_run_again_after_its_lease(probe):
    machine = Machine().task("Sleep", "probe.sleep").pass_("Done")
    run = start(machine, {"seconds": 2, "key": "killed"})
    attempt = wait_for(lambda: StateAttempt.objects.filter(run=run, status="RUNNING").first(), 30, "the task to start")
    wait_for(lambda: probe.calls("killed") == 1, 30, "the step to be called")
    pid = int(attempt.worker.rsplit("pid ", 1)[1])
    os.kill(pid, signal.SIGKILL)  # the prefork child running the step dies; the attempt stays RUNNING
    time.sleep(1)
    assert StateAttempt.objects.get(id=attempt.id).status == "RUNNING"
    # Its lease runs out (PIPELINE_TASK_LEASE_SECONDS, longer than any task: shortened here), then the sweep
    # takes the attempt back and sends it again.
    StateAttempt.objects.filter(id=attempt.id).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert execution.sweep()["taken_back"] == 1
    run = finished(run)
    assert run.status == "SUCCEEDED"
    assert probe.calls("killed") == 2
    assert "TaskLost" in history(run)


def test_the_seeds_pending_poll_retries_every_second_100_times_without_holding_a_worker(probe):
    poll = Machine().task(
        "CreatePredictor",
        "probe.fail_until",
        retry=[retry(["ResourcePending"], interval=1, max_attempts=100, backoff_rate=1.0)],
    )
    run = start(poll, {"key": "pending", "failures": 100}, name="poll")
    wait_for(lambda: probe.calls("pending") >= 3, 30, "the poll to start")
    # While the poll waits between its tries, the worker's two processes are free for other runs.
    others = [start(Machine().task("Quick", "probe.echo"), {"n": n}, name=f"quick-{n}") for n in range(4)]
    started = time.monotonic()
    assert all(finished(other, 20).status == "SUCCEEDED" for other in others)
    assert time.monotonic() - started < 15
    run = finished(run, timeout=200)
    assert (run.status, run.output) == ("SUCCEEDED", {"attempts": 101})
    attempts = StateAttempt.objects.filter(run=run)
    assert attempts.count() == 101
    assert sorted(set(attempts.exclude(attempt=1).values_list("delay", flat=True))) == [1.0]
    observed = gaps(probe.call_times("pending"))
    assert len(observed) == 100 and min(observed) >= 0.95, min(observed)
