"""Pagination: page-number pages with a caller-chosen size up to a ceiling, refused when out of its bounds."""

from rest_framework import exceptions
from rest_framework.pagination import PageNumberPagination

PAGE_MAX = 1_000_000  # far past any list here; keeps the OFFSET a bounded number


def _positive(request, name: str, maximum: int) -> None:
    value = request.query_params.get(name)
    if value is None:
        return
    if not (value.isascii() and value.isdigit() and 1 <= int(value) <= maximum):
        raise exceptions.ValidationError({name: [f"A whole number from 1 to {maximum}."]})


class DefaultPagination(PageNumberPagination):
    """``?page=`` from 1 (a page past the last is a 404 not_found) and ``?page_size=`` from 1 to 500.

    What the schema says is what is checked: ``page=0``, ``page=last`` or ``page_size=0`` are a 400
    naming the parameter, not silently read as something else.
    """

    page_size_query_param = "page_size"
    max_page_size = 500
    last_page_strings = ()

    def paginate_queryset(self, queryset, request, view=None):
        _positive(request, self.page_query_param, PAGE_MAX)
        _positive(request, self.page_size_query_param, self.max_page_size)
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"].update(minimum=1, maximum=PAGE_MAX)
                parameter["description"] = "A page number from 1; a page past the last answers 404."
            elif parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
        return parameters
