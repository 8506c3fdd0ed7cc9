"""API permissions shared by the apps."""

from rest_framework.permissions import DjangoModelPermissions


class ModelPermissions(DjangoModelPermissions):
    """Django model permissions, reads included: roles get them through groups (see bootstrap)."""

    perms_map = {**DjangoModelPermissions.perms_map, "GET": ["%(app_label)s.view_%(model_name)s"]}


def require(request, permission: str) -> None:
    """Raise 403 unless the user holds ``permission`` (for actions that are not plain model writes)."""
    from rest_framework.exceptions import PermissionDenied

    if not request.user.has_perm(permission):
        raise PermissionDenied(f"This needs the {permission} permission.")
