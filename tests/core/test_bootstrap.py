"""``manage.py bootstrap`` is idempotent and gives platforms a least-privilege token."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from supplychain.core.bootstrap import bootstrap
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
