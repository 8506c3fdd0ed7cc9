"""Serializer fields bounded to what the database holds, for input the API declares by hand.

A model serializer takes its bounds from the model field; a hand-declared ``IntegerField`` has none,
and a value past 64 bits then fails in the database. Use these instead.
"""

from __future__ import annotations

from rest_framework import serializers

from supplychain.core.api.limits import BIGINT_MAX, BIGINT_MIN


class BoundedIntegerField(serializers.IntegerField):
    """An integer a ``bigint`` column holds, unless narrower bounds are given."""

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", BIGINT_MIN)
        kwargs.setdefault("max_value", BIGINT_MAX)
        super().__init__(**kwargs)
