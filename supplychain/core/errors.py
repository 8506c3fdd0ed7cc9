"""Domain errors: the small hierarchy services raise and the API maps to one JSON error shape."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A business rule said no. ``status`` is the HTTP status the API answers with."""

    status = 400
    type = "domain_error"
    title = "The request breaks a business rule."

    def __init__(self, detail: str = "", *, errors: dict[str, Any] | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors or {}
        self.extra = extra


class NotFound(DomainError):
    status = 404
    type = "not_found"
    title = "Not found."


class Conflict(DomainError):
    status = 409
    type = "conflict"
    title = "The request conflicts with the current state."


class Unprocessable(DomainError):
    status = 422
    type = "unprocessable"
    title = "The request cannot be processed as sent."


# ---- Operator access (supplychain.core.bootstrap) ----


class UnknownRole(DomainError):
    type = "unknown_role"
    title = "No such role."


class UnknownUser(NotFound):
    type = "unknown_user"
    title = "No such user."


class InvalidUsername(DomainError):
    type = "invalid_username"
    title = "Not a valid user name."
