"""What each state of a run did, derived from its persisted branches, attempts and history (the run picture)."""

from __future__ import annotations

import pytest
from django.db import transaction

from forecasting import diagram, selectors, services
from forecasting.engine.builder import Machine, catch, retry
from forecasting.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def start(machine: Machine, payload=None, *, name="p") -> Run:
    services.save_pipeline(name=name, definition=machine.build())
    with transaction.atomic():
        run, _ = services.start_run(pipeline=name, input=payload or {})
    return run


def failing_run_machine() -> Machine:
    """Poll is retried, Fanout's first branch fails and is caught, Last fails the run, Skipped never runs."""
    poll = {"key": "poll", "failures": 2}
    return (
        Machine()
        .task("Poll", "probe.fail_until", parameters=poll, retry=[retry(["ResourcePending"], interval=1)])
        .parallel(
            "Fanout",
            [
                Machine().task("Boom", "probe.fail_until", parameters={"key": "boom", "failures": 99, "error": "Boom"}),
                Machine().pass_("Fine"),
            ],
            catch=[catch(["States.ALL"], "Recover", result_path="$.error")],
        )
        .pass_("Recover", next="Last")
        .task(
            "Last",
            "probe.fail_until",
            parameters={"key": "last", "failures": 99, "error": "Final"},
            catch=[catch(["Nope"], "Skipped")],
            end=True,
        )
        .pass_("Skipped", end=True)
    )


def test_a_failed_runs_states_are_retried_caught_failed_succeeded_and_not_run(inline, probe_store):
    run = start(failing_run_machine())
    inline.drain()
    run.refresh_from_db()
    assert run.status == "FAILED" and run.error == "Final"
    assert selectors.state_statuses(run) == {
        "Poll": diagram.RETRIED,
        "Fanout": diagram.CAUGHT,
        "Fanout/Branches[0]/Boom": diagram.FAILED,
        "Fanout/Branches[1]/Fine": diagram.SUCCEEDED,
        "Recover": diagram.SUCCEEDED,
        "Last": diagram.FAILED,
        "Skipped": diagram.NOT_RUN,
    }


def test_a_waiting_state_is_running_and_a_cancelled_one_aborted(inline, probe_store):
    machine = Machine().pass_("First").wait("Hold", seconds=600).pass_("After")
    run = start(machine)
    assert selectors.state_statuses(run) == {
        "First": diagram.SUCCEEDED,
        "Hold": diagram.RUNNING,
        "After": diagram.NOT_RUN,
    }
    services.cancel_run(run_id=run.id)
    assert selectors.state_statuses(run)["Hold"] == diagram.ABORTED


def test_a_map_state_shows_a_failed_item_over_the_items_that_succeeded(inline, probe_store):
    processor = Machine().task("Work", "probe.flaky_item")
    machine = Machine().map("Each", processor, items_path="$.items", end=True)
    items = [{"key": "m", "item": n, "bad": n == 2} for n in range(4)]
    run = start(machine, {"items": items})
    inline.drain()
    run.refresh_from_db()
    assert run.status == "FAILED"
    statuses = selectors.state_statuses(run)
    assert statuses == {"Each": diagram.FAILED, "Each/ItemProcessor/Work": diagram.FAILED}


def test_a_redriven_state_shows_what_it_did_since(inline, probe_store):
    processor = Machine().task("Work", "probe.flaky_item")
    machine = Machine().map("Each", processor, items_path="$.items", end=True)
    run = start(machine, {"items": [{"key": "r", "item": 1, "bad": True}]})
    inline.drain()
    probe_store.store().set(probe_store.PREFIX + "fixed:r", "1")
    services.redrive_run(run_id=run.id)
    inline.drain()
    run.refresh_from_db()
    assert run.status == "SUCCEEDED"
    assert selectors.state_statuses(run) == {"Each": diagram.SUCCEEDED, "Each/ItemProcessor/Work": diagram.SUCCEEDED}
