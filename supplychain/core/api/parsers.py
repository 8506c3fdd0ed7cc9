"""The API's request parsers: DRF's, bounded to what the server can store (the project's default parsers).

JSON bodies are read up to ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (413 past it), parsed without NaN or
Infinity, and refused as a 400 naming the place when they nest deeper than ``JSON_MAX_DEPTH``, hold
text PostgreSQL cannot store (NUL, lone surrogates, in values and keys), integers past 64 bits or
numbers that overflow to infinity (``1e400``). Form and multipart fields are checked for the same text.
"""

from __future__ import annotations

import json

from django.conf import settings
from rest_framework import exceptions, parsers

from supplychain.core.api.exceptions import RequestTooLarge
from supplychain.core.api.limits import JSON_MAX_DEPTH, BadValue, first_bad_value, shown_key, text_problem


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _refuse(bad) -> None:
    raise exceptions.ValidationError({bad.where: [bad.message]})


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise RequestTooLarge(f"The body is larger than {limit} bytes.")
        try:
            data = json.loads(raw.decode(encoding), parse_constant=_refuse_constant)
        except RecursionError:
            raise exceptions.ParseError(f"JSON parse error - nested deeper than {JSON_MAX_DEPTH} levels.") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        bad = first_bad_value(data)
        if bad:
            _refuse(bad)
        return data


def _check_fields(data, files=None) -> None:
    """Form fields (names, values and file names) hold only text PostgreSQL can store."""
    texts = [(key, [key, *values]) for key, values in data.lists()]
    texts += [
        (key, [key, *(upload.name or "" for upload in uploads)])
        for key, uploads in (files.lists() if files is not None else [])
    ]
    for key, values in texts:
        for value in values:
            problem = isinstance(value, str) and text_problem(value)
            if problem:
                _refuse(BadValue(shown_key(key), problem))


class FormParser(parsers.FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        _check_fields(data)
        return data


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        _check_fields(parsed.data, parsed.files)
        return parsed
