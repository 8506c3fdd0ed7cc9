"""The API's filter backend: django-filter's, with every numeric filter bounded to what a column holds."""

from __future__ import annotations

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django_filters.rest_framework import DjangoFilterBackend

from supplychain.core.api.limits import BIGINT_MAX, BIGINT_MIN


def bound_numbers(form: forms.Form) -> None:
    """Give each numeric field without bounds the widest a column holds (64 bits), so a filter such as
    ``?id=99999999999999999999`` is a 400 naming it, not an error from the database."""
    for field in form.fields.values():
        if not isinstance(field, forms.IntegerField):  # DecimalField and FloatField are IntegerFields too
            continue
        if field.max_value is None:
            field.max_value = BIGINT_MAX
            field.validators.append(MaxValueValidator(BIGINT_MAX))
        if field.min_value is None:
            field.min_value = BIGINT_MIN
            field.validators.append(MinValueValidator(BIGINT_MIN))


class FilterBackend(DjangoFilterBackend):
    def get_filterset(self, request, queryset, view):
        filterset = super().get_filterset(request, queryset, view)
        if filterset is not None:
            bound_numbers(filterset.form)
        return filterset
