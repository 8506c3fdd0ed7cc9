"""The admin of pipelines and runs: the run picture, its history, inputs and outputs, filters, actions."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from django.urls import reverse

from forecasting import diagram, services
from forecasting.engine.builder import Machine
from forecasting.models import Pipeline, Run

pytestmark = pytest.mark.django_db(transaction=True)
SVG = "{http://www.w3.org/2000/svg}"
NAME = "Load <script>alert(1)</script> & co"


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(user)
    return user


def failed_run(inline, *, payload=None, name="nightly") -> Run:
    machine = (
        Machine()
        .pass_("Prepare", result={"ready": True}, result_path="$.prepared")
        .task(NAME, "probe.fail_until", parameters={"key": "admin", "failures": 99, "error": "Broken"})
        .pass_("Unreached", end=True)
    )
    definition = machine.build()
    definition["States"][NAME]["Catch"] = [{"ErrorEquals": ["NeverThis"], "Next": "Unreached"}]
    services.save_pipeline(name="nightly-forecast", definition=definition)
    with transaction.atomic():
        run, _ = services.start_run(pipeline="nightly-forecast", input=payload or {"weekday": "Friday"}, name=name)
    inline.drain()
    run.refresh_from_db()
    assert run.status == "FAILED"
    return run


def picture_of(page: str) -> ET.Element:
    svg = re.search(r"<svg xmlns=\"http://www.w3.org/2000/svg\" id=.*?</svg>", page, re.S).group(0)
    return ET.fromstring(svg)  # noqa: S314 (our own page)


def box(root: ET.Element, path: str) -> ET.Element:
    (group,) = [g for g in root.iter(f"{SVG}g") if g.get("data-path") == path]
    return group


def test_the_run_page_shows_the_picture_history_inputs_outputs_and_attempts(client, staff, inline, probe_store):
    run = failed_run(inline)
    page = client.get(reverse("admin:forecasting_run_change", args=[run.id])).content.decode()
    root = picture_of(page)
    failed = box(root, NAME)
    assert failed.get("data-status") == diagram.FAILED
    assert failed.find(f"{SVG}rect").get("fill") == diagram.COLOURS[diagram.FAILED][0]
    assert box(root, "Prepare").get("data-status") == diagram.SUCCEEDED
    assert box(root, "Unreached").get("data-status") == diagram.NOT_RUN
    assert "<script>alert(1)" not in page

    history = re.search(r'<table id="run-history">.*?</table>', page, re.S).group(0)
    kinds = re.findall(r'<tr class="history-(\w+)">', history)
    assert kinds == [
        "ExecutionStarted",
        "PassStateEntered",
        "PassStateExited",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskFailed",
        "ExecutionFailed",
    ]
    times = re.findall(r"<td>(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})</td>", history)
    assert len(times) == len(kinds) and times == sorted(times)

    attempts = re.search(r'<table id="run-attempts">.*?</table>', page, re.S).group(0)
    assert "Broken" in attempts and "attempt 1 of admin" in attempts  # the error and the cause
    assert "&quot;failures&quot;: 99" in attempts  # the attempt's input, as indented JSON
    assert "&quot;weekday&quot;: &quot;Friday&quot;" in page  # the run's input


def test_a_huge_input_is_cut_saying_how_much_is_left_out(client, staff, inline, probe_store):
    run = failed_run(inline, payload={"rows": ["x" * 100] * 2000})
    page = client.get(reverse("admin:forecasting_run_change", args=[run.id])).content.decode()
    assert re.search(r"… [\d,]+ more characters", page)
    assert len(page) < 600_000  # the run's input alone is 200 KB, shown twice (run and attempt) it would be more


def test_the_pipeline_page_shows_the_picture_uncoloured(client, staff, inline, probe_store):
    failed_run(inline)
    pipeline = Pipeline.objects.get(name="nightly-forecast")
    page = client.get(reverse("admin:forecasting_pipeline_change", args=[pipeline.pk])).content.decode()
    root = picture_of(page)
    boxes = [g for g in root.iter(f"{SVG}g") if "state" in (g.get("class") or "").split()]
    assert len(boxes) == 3
    assert {g.find(f"{SVG}rect").get("fill") for g in boxes} == {diagram.PLAIN[0]}
    assert not [g for g in boxes if g.get("data-status")]


def test_a_pipeline_saved_in_the_admin_is_validated_by_the_service(client, staff):
    url = reverse("admin:forecasting_pipeline_add")
    bad = {"name": "p1", "description": "", "definition": '{"StartAt": "A", "States": {"A": {"Type": "Task", '
           '"Resource": "nobody.registered", "End": true}}}'}  # fmt: skip
    answer = client.post(url, bad)
    assert answer.status_code == 200 and "no step is registered as" in answer.content.decode()
    assert not Pipeline.objects.exists()
    good = {**bad, "definition": '{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "probe.echo", '
            '"End": true}}}'}  # fmt: skip
    assert client.post(url, good).status_code == 302
    assert Pipeline.objects.get(name="p1").definition["States"]["A"]["Resource"] == "probe.echo"


def test_runs_are_filtered_by_status_and_pipeline_and_searched_by_name_and_id(client, staff, inline, probe_store):
    run = failed_run(inline)
    services.save_pipeline(name="other", definition=Machine().pass_("A").build())
    with transaction.atomic():
        services.start_run(pipeline="other", name="fine-one")
    changelist = reverse("admin:forecasting_run_changelist")

    def names(query: str) -> set[str]:
        page = client.get(changelist + query).content.decode()
        return set(re.findall(r'<th class="field-name"><a href="[^"]+">([^<]+)</a>', page))

    assert names("") == {"nightly", "fine-one"}
    assert names("?status__exact=FAILED") == {"nightly"}
    assert names(f"?pipeline__id__exact={run.pipeline_id}") == {"nightly"}
    assert names("?q=fine") == {"fine-one"}
    assert names(f"?q={run.id}") == {"nightly"}


def test_redrive_from_the_admin_needs_the_redrive_permission(client, inline, probe_store):
    run = failed_run(inline)
    user = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_run"))
    client.force_login(user)
    changelist = reverse("admin:forecasting_run_changelist")
    page = client.get(changelist).content.decode()
    assert 'value="redrive"' not in page
    client.post(changelist, {"action": "redrive", "_selected_action": [str(run.id)]})
    assert Run.objects.get(id=run.id).redrive_count == 0

    user.user_permissions.add(Permission.objects.get(codename="redrive_run"))
    user = get_user_model().objects.get(pk=user.pk)
    client.force_login(user)
    assert 'value="redrive"' in client.get(changelist).content.decode()
    client.post(changelist, {"action": "redrive", "_selected_action": [str(run.id)]})
    assert Run.objects.get(id=run.id).redrive_count == 1
