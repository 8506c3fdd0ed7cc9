"""The one alphabet for identifiers that callers choose and that appear in URLs.

A transaction id, an order id, a sku or a supplier code names a resource in a path
(``/api/v1/stock/reservations/{transaction_id}/``), so it must survive a URL unencoded and
never be a path of its own (``a/b``, ``.``, ``..``). The alphabet: 1 to 100 characters of
``A-Z a-z 0-9 . _ : -``, starting with a letter or a digit. Checked where the identifier is
created; a URL pattern with the same expression refuses anything else with a 404 before a view runs.
"""

from __future__ import annotations

import re

from django.core.validators import RegexValidator
from rest_framework import serializers

IDENTIFIER_MAX_LENGTH = 100
IDENTIFIER_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}"
IDENTIFIER_RULE = "1 to 100 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-', starting with a letter or a digit"
_IDENTIFIER = re.compile(rf"\A{IDENTIFIER_PATTERN}\Z")

identifier_validator = RegexValidator(_IDENTIFIER, message=f"Not a valid identifier: {IDENTIFIER_RULE}.")


def is_identifier(value: object) -> bool:
    return isinstance(value, str) and _IDENTIFIER.match(value) is not None


class IdentifierField(serializers.CharField):
    """A caller-chosen identifier in the one alphabet (documented in the OpenAPI schema as its pattern)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", IDENTIFIER_MAX_LENGTH)
        kwargs.setdefault("help_text", f"Identifier: {IDENTIFIER_RULE}.")
        super().__init__(**kwargs)
        self.validators.append(identifier_validator)
