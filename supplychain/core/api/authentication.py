"""API token authentication that loads the user and all their permissions in one query.

DRF's ``TokenAuthentication`` fetches the token and user through the ORM, and the first ``has_perm``
then runs two more queries (the user's own permissions, then their groups'). On the reservation
endpoint those three queries and their ORM compilation cost more than the reservation itself. Here
one hand-written query (plain SQL that SQLite and PostgreSQL both run) returns the user row and,
below it, the ids of the permissions they hold directly and through groups, which fill the caches
``ModelBackend`` reads (``_user_perm_cache``, ``_group_perm_cache``, ``_perm_cache``).

Who holds what is never cached across requests: a revoked token, a deactivated user or a withdrawn
permission takes effect on the next request, as before. Only the permission table's id -> name
mapping is kept per process (those rows change only by migrations): it is reloaded when an unknown id
turns up. A migration that renames an existing permission's codename is seen by web processes when
they restart (as on every deploy); until then a name they hold stale fails closed (denied). Joining
the names in the query instead made PostgreSQL plan a five-table join on every request, which cost
more than running it.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.db.models.signals import post_migrate
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token


class _Query:
    """The SQL, built once from the models' table and column names."""

    @cached_property
    def user_fields(self) -> list[str]:
        return [field.attname for field in get_user_model()._meta.concrete_fields]

    @cached_property
    def converters(self) -> list[tuple[int, list, object]]:
        """The database's value converters per user column, as the ORM applies them (SQLite's datetimes)."""
        user_model = get_user_model()
        found = []
        for position, field in enumerate(user_model._meta.concrete_fields):
            column = field.get_col(user_model._meta.db_table)
            functions = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            if functions:
                found.append((position, functions, column))
        return found

    def user_values(self, row) -> list:
        values = list(row)
        for position, functions, column in self.converters:
            for convert in functions:
                values[position] = convert(values[position], column, connection)
        return values

    @cached_property
    def sql(self) -> str:
        user_model = get_user_model()
        qn = connection.ops.quote_name
        user = qn(user_model._meta.db_table)
        token = qn(Token._meta.db_table)
        user_permissions = qn(user_model.user_permissions.through._meta.db_table)
        user_groups = qn(user_model.groups.through._meta.db_table)
        group_permissions = qn(Group.permissions.through._meta.db_table)
        columns = ", ".join(f"u.{qn(name)}" for name in self.user_fields)
        blanks = ", ".join("NULL" for _ in self.user_fields)
        # Only quoted table and column names from the models are formatted in; the key is a parameter.
        holder = f"(SELECT user_id FROM {token} WHERE {qn('key')} = %s)"  # noqa: S608
        return (
            f"SELECT 0, NULL, {columns} FROM {user} u WHERE u.id = {holder}"  # noqa: S608
            f" UNION ALL SELECT 1, up.permission_id, {blanks} FROM {user_permissions} up WHERE up.user_id = {holder}"
            f" UNION ALL SELECT 2, gp.permission_id, {blanks} FROM {user_groups} ug"
            f" JOIN {group_permissions} gp ON gp.group_id = ug.group_id WHERE ug.user_id = {holder}"
        )


_query = _Query()
_permission_names: dict[int, str] = {}  # replaced whole, never changed in place: threads may be reading it


def _names(ids: set[int]) -> set[str]:
    global _permission_names
    names = _permission_names
    if not ids <= names.keys():
        names = {
            pk: f"{app_label}.{codename}"
            for pk, app_label, codename in Permission.objects.values_list("pk", "content_type__app_label", "codename")
        }
        _permission_names = names
    return {names[pk] for pk in ids if pk in names}


def _forget_permission_names(**kwargs) -> None:
    global _permission_names
    _permission_names = {}


post_migrate.connect(_forget_permission_names, dispatch_uid="api-token-permission-names")


class TokenAuthentication(authentication.TokenAuthentication):
    """``Authorization: Token <key>``, answered by one query (see the module's docstring)."""

    def authenticate_credentials(self, key):
        with connection.cursor() as cursor:
            cursor.execute(_query.sql, [key, key, key])
            rows = cursor.fetchall()
        user_row = next((row for row in rows if row[0] == 0), None)
        if user_row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        user = get_user_model().from_db(connection.alias, _query.user_fields, _query.user_values(user_row[2:]))
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        if not user.is_superuser:  # a superuser holds every permission: ModelBackend fills those caches itself
            user._user_perm_cache = _names({row[1] for row in rows if row[0] == 1})
            user._group_perm_cache = _names({row[1] for row in rows if row[0] == 2})
            user._perm_cache = user._user_perm_cache | user._group_perm_cache
        token = Token(key=key, user_id=user.pk)
        token._state.adding, token._state.db = False, connection.alias
        token.user = user
        return user, token
