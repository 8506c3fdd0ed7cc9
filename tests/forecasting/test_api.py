"""The pipelines API: list and validate definitions, start (idempotent name), list/show runs, cancel, redrive."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from forecasting import services
from forecasting.engine.builder import Machine

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api():
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-for-tests-only")
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def pipeline(inline):
    definition = Machine().task("Echo", "probe.echo", result_path="$.echoed").build()
    return services.save_pipeline(name="daily", definition=definition)


def test_lists_and_shows_pipelines(api, pipeline):
    listed = api.get("/api/v1/pipelines/").json()
    assert [row["name"] for row in listed["results"]] == ["daily"]
    assert api.get("/api/v1/pipelines/daily/").json()["definition"]["StartAt"] == "Echo"
    missing = api.get("/api/v1/pipelines/nope/")
    assert missing.status_code == 404 and missing.json()["type"] == "pipeline_not_found"


def test_validate_names_every_problem(api):
    answer = api.post(
        "/api/v1/pipelines/validate/",
        {"definition": {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}}},
        format="json",
    )
    assert answer.status_code == 200
    assert answer.json() == {
        "valid": False,
        "problems": [{"state": "A", "field": "Next", "message": "unknown state 'Nowhere'"}],
    }
    good = api.post("/api/v1/pipelines/validate/", {"definition": Machine().pass_("A").build()}, format="json")
    assert good.json() == {"valid": True, "problems": []}
    assert api.post("/api/v1/pipelines/validate/", {}, format="json").status_code == 400


def test_start_is_idempotent_by_name_then_show_cancel_and_redrive(api, pipeline, inline):
    first = api.post("/api/v1/pipelines/daily/runs/", {"name": "d-1", "input": {"a": 1}}, format="json")
    assert first.status_code == 201
    again = api.post("/api/v1/pipelines/daily/runs/", {"name": "d-1", "input": {"a": 1}}, format="json")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    clash = api.post("/api/v1/pipelines/daily/runs/", {"name": "d-1", "input": {"a": 2}}, format="json")
    assert clash.status_code == 409 and clash.json()["type"] == "run_name_taken"
    run_id = first.json()["id"]
    cancelled = api.post(f"/api/v1/pipelines/runs/{run_id}/cancel/")
    assert cancelled.json()["status"] == "ABORTED"
    assert api.post(f"/api/v1/pipelines/runs/{run_id}/cancel/").status_code == 409
    redriven = api.post(f"/api/v1/pipelines/runs/{run_id}/redrive/")
    assert redriven.status_code == 200 and redriven.json()["redrive_count"] == 1
    inline.drain()
    shown = api.get(f"/api/v1/pipelines/runs/{run_id}/").json()
    assert shown["status"] == "SUCCEEDED"
    assert shown["output"] == {"a": 1, "echoed": {"a": 1}}
    assert shown["states"]["Echo"] == "SUCCEEDED"
    assert "ExecutionRedriven" in [event["type"] for event in shown["history"]]
    assert api.post(f"/api/v1/pipelines/runs/{run_id}/redrive/").status_code == 409
    listed = api.get("/api/v1/pipelines/runs/?pipeline=daily&status=SUCCEEDED").json()
    assert [row["id"] for row in listed["results"]] == [run_id]
    assert api.get("/api/v1/pipelines/runs/?status=BOGUS").status_code == 400


def test_unknown_runs_and_pipelines_are_404(api, pipeline):
    assert api.get("/api/v1/pipelines/runs/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert api.post("/api/v1/pipelines/nope/runs/", {}, format="json").status_code == 404
    assert api.post("/api/v1/pipelines/daily/runs/", {"name": "has space"}, format="json").status_code == 400


def test_without_permission_is_403(pipeline):
    user = get_user_model().objects.create_user("nobody", password="pw-for-tests-only")
    client = APIClient()
    client.force_authenticate(user)
    assert client.get("/api/v1/pipelines/").status_code == 403
    assert client.post("/api/v1/pipelines/daily/runs/", {}, format="json").status_code == 403


def role_client(role: str) -> APIClient:
    from supplychain.core.bootstrap import issue_token

    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Token {issue_token(username=f'{role}-1', role=role, create_user=True).token}"
    )
    return client


def test_operations_read_runs_and_a_planner_starts_redrives_and_cancels_them(pipeline, inline):
    operations, planner = role_client("operations"), role_client("planner")
    assert operations.get("/api/v1/pipelines/").status_code == 200
    assert operations.post("/api/v1/pipelines/daily/runs/", {"name": "r1"}, format="json").status_code == 403

    started = planner.post("/api/v1/pipelines/daily/runs/", {"name": "r1", "input": {"a": 1}}, format="json")
    assert started.status_code == 201, started.content
    run_id = started.json()["id"]
    assert operations.get(f"/api/v1/pipelines/runs/{run_id}/").status_code == 200
    assert operations.post(f"/api/v1/pipelines/runs/{run_id}/cancel/").status_code == 403
    assert planner.post(f"/api/v1/pipelines/runs/{run_id}/cancel/").json()["status"] == "ABORTED"
    assert operations.post(f"/api/v1/pipelines/runs/{run_id}/redrive/").status_code == 403
    redriven = planner.post(f"/api/v1/pipelines/runs/{run_id}/redrive/")
    assert redriven.status_code == 200 and redriven.json()["redrive_count"] == 1
    assert role_client("platform").get("/api/v1/pipelines/runs/").status_code == 403
