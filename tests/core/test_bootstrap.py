"""``manage.py bootstrap`` is idempotent and gives platforms and operators least-privilege tokens; ``issue_token``."""

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from supplychain.core.bootstrap import bootstrap, issue_token
from supplychain.core.models import Milestone

pytestmark = pytest.mark.django_db


def test_bootstrap_twice_keeps_one_admin_and_the_same_token():
    first = bootstrap()
    second = bootstrap()
    User = get_user_model()
    assert User.objects.filter(username="admin", is_superuser=True).count() == 1
    assert first.api_token == second.api_token
    assert first.admin_password == second.admin_password


def test_api_user_is_not_staff():
    bootstrap()
    api_user = get_user_model().objects.get(username="platform")
    assert not api_user.is_staff and not api_user.is_superuser


def test_demo_data_loads_once(settings, tmp_path):
    from stock.models import Ingredient, Recipe
    from supplychain.core.storage import get_storage

    settings.OBJECT_STORAGE = {**settings.OBJECT_STORAGE, "BUCKET": "", "LOCAL_DIR": tmp_path}
    assert bootstrap().demo_loaded_now is True
    assert bootstrap().demo_loaded_now is False
    assert Ingredient.objects.count() == 6
    assert Recipe.objects.count() == 2
    assert len(list(get_storage().list("receipts/"))) == 1  # one demo receipt dropped for the poll
    assert Milestone.objects.filter(name="demo-data-loaded").count() == 1


def test_bootstrap_command_prints_the_token(capsys):
    call_command("bootstrap", "--no-demo")
    out = capsys.readouterr().out
    token = bootstrap(demo=False).api_token
    assert token in out


# ---- Operator access: the operations token, issue_token, and what each role may call ----------------


def client_with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_bootstrap_creates_an_operations_api_user_with_its_own_token():
    credentials = bootstrap(demo=False)
    assert credentials.operations_token != credentials.api_token
    user = get_user_model().objects.get(username="operations")
    assert not user.is_staff and not user.is_superuser and not user.has_usable_password()
    assert list(user.groups.values_list("name", flat=True)) == ["operations"]
    assert bootstrap(demo=False).operations_token == credentials.operations_token


@pytest.mark.parametrize("url", ["/api/v1/subscriptions/", "/api/v1/deliveries/", "/api/v1/audit/"])
def test_operators_read_what_the_platform_token_may_not(url):
    credentials = bootstrap(demo=False)
    assert client_with(credentials.api_token).get(url).status_code == 403
    assert client_with(credentials.operations_token).get(url).status_code == 200


def test_the_platform_role_cannot_master_data_and_the_erp_role_can():
    bootstrap(demo=False)
    platform = get_user_model().objects.get(username="platform")
    erp = get_user_model().objects.get(username=issue_token(username="erp-sync", role="erp", create_user=True).username)
    for model in ("ingredient", "recipe", "supplier"):
        assert not platform.has_perm(f"stock.add_{model}") and not platform.has_perm(f"stock.change_{model}")
        assert erp.has_perm(f"stock.add_{model}") and erp.has_perm(f"stock.change_{model}")
    assert not erp.has_perm("events.view_delivery") and not erp.has_perm("stock.add_reservation")


def test_bootstrap_command_prints_both_tokens_with_what_each_may_do(capsys):
    call_command("bootstrap", "--no-demo")
    out = capsys.readouterr().out
    credentials = bootstrap(demo=False)
    platform_line = next(line for line in out.splitlines() if credentials.api_token in line)
    operations_line = next(line for line in out.splitlines() if credentials.operations_token in line)
    assert "platform token" in platform_line and "(user platform)" in platform_line
    assert "operations token" in operations_line and "(user operations)" in operations_line
    assert "may subscriptions" not in out and "deliveries" in out


def test_bootstrap_json_is_for_scripts(capsys):
    call_command("bootstrap", "--no-demo", "--json")
    printed = json.loads(capsys.readouterr().out)
    credentials = bootstrap(demo=False)
    assert printed["tokens"]["platform"]["token"] == credentials.api_token
    assert printed["tokens"]["operations"]["token"] == credentials.operations_token
    assert printed["tokens"]["operations"]["username"] == "operations"
    assert set(printed["admin"]) == {"username", "password"}
    assert printed["demo_loaded_now"] is False


def test_issue_token_creates_the_user_when_asked_and_prints_a_working_token(capsys):
    bootstrap(demo=False)
    with pytest.raises(CommandError, match="No user 'alice'"):
        call_command("issue_token", "--user", "alice", "--role", "operations")
    assert not get_user_model().objects.filter(username="alice").exists()
    call_command("issue_token", "--user", "alice", "--role", "operations", "--create")
    token = capsys.readouterr().out.strip()
    assert client_with(token).get("/api/v1/deliveries/").status_code == 200
    call_command("issue_token", "--user", "alice", "--role", "operations")
    assert capsys.readouterr().out.strip() == token  # the same token again: one per user
    alice = get_user_model().objects.get(username="alice")
    assert not alice.is_staff and list(alice.groups.values_list("name", flat=True)) == ["operations"]


def test_issue_token_json_and_rotate(capsys):
    call_command("issue_token", "--user", "erp-sync", "--role", "erp", "--create", "--json")
    first = json.loads(capsys.readouterr().out)
    assert first["username"] == "erp-sync" and first["role"] == "erp"
    assert first["user_created"] is True and first["token_created"] is True and "master data" in first["may"]
    call_command("issue_token", "--user", "erp-sync", "--role", "erp", "--rotate", "--json")
    second = json.loads(capsys.readouterr().out)
    assert second["token"] != first["token"] and second["user_created"] is False
    assert client_with(first["token"]).get("/api/v1/stock/ingredients/").status_code == 401
    assert client_with(second["token"]).get("/api/v1/stock/ingredients/").status_code == 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "bob", "--role", "root", "--create"], "invalid choice"),
        (["--user", "bob smith", "--role", "erp", "--create"], "Not a valid user name"),
    ],
)
def test_issue_token_refuses_unknown_roles_and_bad_names(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("issue_token", *args)
    assert not get_user_model().objects.filter(username__startswith="bob").exists()


def test_bootstrap_installs_the_forecast_pipeline_and_its_daily_schedule_disabled_and_kept_as_staff_change_it():
    from django_celery_beat.models import PeriodicTask

    from forecasting.models import Pipeline

    bootstrap(demo=False)
    assert Pipeline.objects.filter(name="order-simulation-forecast").exists()
    (task,) = PeriodicTask.objects.filter(task="forecasting.start_scheduled")
    assert task.enabled is False
    assert (task.crontab.hour, task.crontab.minute, task.crontab.day_of_week) == ("4", "30", "*")
    assert json.loads(task.args) == ["order-simulation-forecast"]
    assert json.loads(task.kwargs)["input"]["horizon_days"] == 28

    task.enabled = True  # what staff do in the admin
    task.kwargs = json.dumps({"input": {"horizon_days": 14}})
    task.save()
    bootstrap(demo=False)
    (kept,) = PeriodicTask.objects.filter(task="forecasting.start_scheduled")
    assert kept.enabled is True and json.loads(kept.kwargs) == {"input": {"horizon_days": 14}}


def test_the_schedule_starts_a_run_of_the_forecast_pipeline_with_its_input():
    from django_celery_beat.models import PeriodicTask

    from forecasting import tasks
    from forecasting.models import Run

    bootstrap(demo=False)
    task = PeriodicTask.objects.get(task="forecasting.start_scheduled")
    run_id = tasks.start_scheduled(*json.loads(task.args), **json.loads(task.kwargs))  # what beat sends
    run = Run.objects.get(id=run_id)
    assert run.pipeline.name == "order-simulation-forecast" and run.name.startswith("scheduled-")
    assert run.input == json.loads(task.kwargs)["input"] and run.status == "RUNNING"


def test_the_roles_hold_the_forecasting_permissions():
    bootstrap(demo=False)
    operations = get_user_model().objects.get(username="operations")
    assert operations.has_perm("forecasting.view_run") and operations.has_perm("forecasting.view_pipeline")
    assert not operations.has_perm("forecasting.add_run") and not operations.has_perm("forecasting.redrive_run")
    planner = get_user_model().objects.get(
        username=issue_token(username="plan", role="planner", create_user=True).username
    )
    for permission in ("view_run", "view_pipeline", "add_run", "redrive_run", "cancel_run", "view_forecast"):
        assert planner.has_perm(f"forecasting.{permission}"), permission
    assert planner.has_perm("django_celery_beat.change_periodictask")
    assert not planner.has_perm("events.view_delivery")
