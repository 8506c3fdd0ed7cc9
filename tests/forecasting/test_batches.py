"""Batches of the executor: a Map's items started with a few statements, attempts run many to a message."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from forecasting import services
from forecasting.engine.builder import Machine
from forecasting.models import HistoryEvent, Run, StateAttempt
from forecasting.services import execution

pytestmark = pytest.mark.django_db(transaction=True)


def map_of(items: int, resource: str = "probe.echo") -> Run:
    machine = Machine().map("Each", Machine().task("Work", resource), items_path="$.items")
    services.save_pipeline(name="batched", definition=machine.build())
    with transaction.atomic():
        run, _ = services.start_run(pipeline="batched", input={"items": list(range(items))})
    return run


def queued_attempts(inline) -> list[int]:
    ids = [message[1] for message in inline.queue if message[0] == "attempt"]
    inline.queue.clear()
    return ids


def test_a_map_starts_its_items_with_a_constant_number_of_statements(inline):
    map_of(2)  # the pipeline is created; the runs below replace its definition with the same one
    with CaptureQueriesContext(connection) as small:
        map_of(5)
    Run.objects.all().delete()
    inline.queue.clear()
    with CaptureQueriesContext(connection) as large:
        map_of(300)
    assert len(large) == len(small)
    assert StateAttempt.objects.filter(status="SCHEDULED").count() == 300
    assert len(inline.queue) == 300


def test_a_batch_runs_every_attempt_and_joins_once_per_chunk(inline):
    run = map_of(40)
    ids = queued_attempts(inline)
    with CaptureQueriesContext(connection) as queries:
        services.run_attempts(ids, worker="batch")
    run = Run.objects.get(id=run.id)
    assert (run.status, run.output) == ("SUCCEEDED", list(range(40)))
    assert set(StateAttempt.objects.filter(run=run).values_list("status", flat=True)) == {"SUCCEEDED"}
    types = list(HistoryEvent.objects.filter(run=run).values_list("type", flat=True))
    assert types.count("TaskStarted") == types.count("TaskSucceeded") == types.count("MapIterationSucceeded") == 40
    # Chunks of 1, 4, 16 and 19: a claim, a finish and a join each, not three transactions per attempt.
    assert len(queries) < 80, len(queries)


def test_a_batch_past_its_time_sends_the_rest_one_message_each(inline, settings):
    settings.PIPELINE_BATCH_SECONDS = 0.0
    run = map_of(6)
    ids = queued_attempts(inline)
    services.run_attempts(ids, worker="batch")
    assert StateAttempt.objects.filter(run=run, status="SUCCEEDED").count() == 1  # the first chunk ran
    assert sorted(queued_attempts_kept(inline)) == sorted(ids[1:])
    inline.drain()
    run = Run.objects.get(id=run.id)
    assert (run.status, run.output) == ("SUCCEEDED", list(range(6)))


def queued_attempts_kept(inline) -> list[int]:
    return [message[1] for message in inline.queue if message[0] == "attempt"]


def test_a_batch_skips_attempts_already_taken_or_aborted(inline):
    run = map_of(3)
    ids = queued_attempts(inline)
    services.run_attempt(ids[0], worker="single")  # a duplicate delivery of the first one
    StateAttempt.objects.filter(id=ids[1]).update(status="ABORTED")
    services.run_attempts(ids, worker="batch")
    workers = dict(StateAttempt.objects.filter(run=run).values_list("id", "worker"))
    assert (workers[ids[0]], workers[ids[1]], workers[ids[2]]) == ("single", "", "batch")


def test_the_celery_dispatcher_batches_many_quick_attempts_only():
    sent: list[tuple] = []

    class Recorder:
        @staticmethod
        def apply_async(args, **options):
            sent.append((args, options.get("countdown"), options.get("soft_time_limit")))

    from forecasting import tasks

    def send(attempts):
        sent.clear()
        original = tasks.run_attempts, tasks.run_attempt
        tasks.run_attempts = tasks.run_attempt = Recorder
        try:
            execution.CeleryDispatcher().send(execution.Effects(attempts=attempts))
        finally:
            tasks.run_attempts, tasks.run_attempt = original
        return [args[0] for args, _, _ in sent if isinstance(args[0], list)]

    quick = [(n, f"t{n}", 0.0, None) for n in range(1000)]
    batches = send([*quick, (1001, "t1001", 5.0, None), (1002, "", 0, 30)])
    assert [len(batch) for batch in batches] == [25] * 40
    assert sorted(n for batch in batches for n in batch) == list(range(1000))
    assert ((1001,), 5.0, None) in sent and ((1002,), None, 30) in sent  # a countdown or a time limit: alone
    assert [len(batch) for batch in send(quick[:40])] == [3] * 13 + [1]  # spread over 16 messages or more
    assert send(quick[:6]) == [] and len(sent) == 6  # a few slow items still run side by side


def test_a_worker_follows_a_sequence_with_its_next_task_without_a_message(inline):
    machine = Machine().task("A", "probe.echo").task("B", "probe.echo").task("C", "probe.echo")
    services.save_pipeline(name="sequence", definition=machine.build())
    with transaction.atomic():
        run, _ = services.start_run(pipeline="sequence", input={"x": 1})
    services.run_attempts(queued_attempts(inline), worker="w", follow=True)
    run = Run.objects.get(id=run.id)
    assert (run.status, run.output, inline.queue) == ("SUCCEEDED", {"x": 1}, [])
    assert list(StateAttempt.objects.filter(run=run).order_by("id").values_list("state", "worker")) == [
        ("A", "w"),
        ("B", "w"),
        ("C", "w"),
    ]


def test_a_worker_follows_one_task_of_a_fan_out_and_sends_the_others(inline):
    branches = [Machine().task("One", "probe.echo"), Machine().task("Two", "probe.echo")]
    machine = Machine().task("First", "probe.echo").parallel("Both", branches)
    services.save_pipeline(name="fan", definition=machine.build())
    with transaction.atomic():
        run, _ = services.start_run(pipeline="fan", input={"x": 1})
    services.run_attempts(queued_attempts(inline), worker="w", follow=True)
    assert len(queued_attempts_kept(inline)) == 1  # the other branch's Task runs beside the followed one
    inline.drain()
    run = Run.objects.get(id=run.id)
    assert (run.status, run.output) == ("SUCCEEDED", [{"x": 1}, {"x": 1}])


def test_a_message_limited_by_an_attempts_timeout_follows_nothing(inline):
    machine = Machine().task("A", "probe.echo", timeout_seconds=5).task("B", "probe.echo")
    services.save_pipeline(name="limited", definition=machine.build())
    with transaction.atomic():
        run, _ = services.start_run(pipeline="limited", input={"x": 1})
    services.run_attempts(queued_attempts(inline), worker="w", follow=True)
    assert len(queued_attempts_kept(inline)) == 1  # B goes in a message of its own
    inline.drain()
    assert Run.objects.get(id=run.id).status == "SUCCEEDED"
