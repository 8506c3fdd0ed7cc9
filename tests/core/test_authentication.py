"""Token authentication in one query: the user, their own and their groups' permissions, nothing cached."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.test import APIClient

from supplychain.core.api.authentication import TokenAuthentication

pytestmark = pytest.mark.django_db


def permission(name: str) -> Permission:
    app_label, codename = name.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


@pytest.fixture
def clerk():
    user = get_user_model().objects.create_user("clerk", email="clerk@example.com", first_name="Cleo")
    group = Group.objects.create(name="pickers")
    group.permissions.add(permission("stock.add_reservation"), permission("stock.view_batch"))
    user.groups.add(group)
    user.user_permissions.add(permission("stock.view_reservation"))
    return user, Token.objects.create(user=user)


def test_after_the_first_one_query_loads_the_user_and_their_own_and_group_permissions(clerk):
    user, token = clerk
    TokenAuthentication().authenticate_credentials(token.key)  # the first one also loads the permission names
    with CaptureQueriesContext(connection) as queries:
        found, auth = TokenAuthentication().authenticate_credentials(token.key)
        assert found.has_perm("stock.add_reservation")  # from the group
        assert found.has_perm("stock.view_reservation")  # the user's own
        assert not found.has_perm("stock.delete_reservation")
        assert found.get_all_permissions() == {"stock.add_reservation", "stock.view_batch", "stock.view_reservation"}
    assert len(queries) == 1
    assert (found.pk, found.username, found.email, found.first_name) == (user.pk, "clerk", "clerk@example.com", "Cleo")
    assert found.is_authenticated and not found._state.adding
    assert auth.key == token.key and auth.user is found
    # The same answers as Django's own permission loading.
    fresh = get_user_model().objects.get(pk=user.pk)
    assert found.get_all_permissions() == fresh.get_all_permissions()
    assert found.get_group_permissions() == fresh.get_group_permissions()
    assert found.get_user_permissions() == fresh.get_user_permissions()


def test_a_user_without_permissions_is_still_found(clerk):
    user, token = clerk
    user.groups.clear()
    user.user_permissions.clear()
    found, _ = TokenAuthentication().authenticate_credentials(token.key)
    assert found.pk == user.pk
    assert found.get_all_permissions() == set()


def test_unknown_token_and_inactive_user_are_refused(clerk):
    user, token = clerk
    with pytest.raises(AuthenticationFailed, match="Invalid token"):
        TokenAuthentication().authenticate_credentials("no-such-key")
    user.is_active = False
    user.save()
    with pytest.raises(AuthenticationFailed, match="inactive"):
        TokenAuthentication().authenticate_credentials(token.key)


def test_a_withdrawn_permission_or_token_takes_effect_on_the_next_request(clerk):
    user, token = clerk
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    reserve = {"transaction_id": "t-1", "items": [{"sku": "no-such-sku", "quantity": 1}]}
    assert client.post("/api/v1/stock/reservations/", reserve, format="json").status_code == 400  # allowed, bad sku
    assert client.get("/api/v1/stock/reservations/t-404/").status_code == 404  # allowed, not there
    Group.objects.get(name="pickers").permissions.remove(permission("stock.add_reservation"))
    user.user_permissions.remove(permission("stock.view_reservation"))
    assert client.post("/api/v1/stock/reservations/", reserve, format="json").status_code == 403
    assert client.get("/api/v1/stock/reservations/t-404/").status_code == 403
    token.delete()
    assert client.get("/api/v1/stock/batches/").status_code == 401


def test_a_permission_made_after_the_names_were_loaded_is_found(clerk):
    user, token = clerk
    TokenAuthentication().authenticate_credentials(token.key)  # loads the id -> name mapping
    from django.contrib.contenttypes.models import ContentType

    new = Permission.objects.create(
        codename="pick_rush_orders", name="Can pick rush orders", content_type=ContentType.objects.get(model="batch")
    )
    user.user_permissions.add(new)
    found, _ = TokenAuthentication().authenticate_credentials(token.key)
    assert found.has_perm("stock.pick_rush_orders")


def test_a_superuser_keeps_every_permission_and_dates_come_back_as_the_orm_gives_them(clerk):
    user, token = clerk
    user.is_superuser = True
    user.save()
    found, _ = TokenAuthentication().authenticate_credentials(token.key)
    fresh = get_user_model().objects.get(pk=user.pk)
    assert found.has_perm("stock.delete_batch")
    assert found.get_all_permissions() == fresh.get_all_permissions()
    assert len(found.get_all_permissions()) > 50
    assert found.date_joined == fresh.date_joined
    assert found.date_joined.tzinfo is not None
