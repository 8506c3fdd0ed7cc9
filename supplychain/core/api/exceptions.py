"""The API's own exceptions for the request limits; the exception handler renders them in the one error shape.

Kept apart from ``errors`` (which imports DRF's views) so the parsers can raise them at import time safely.
"""

from django.conf import settings
from rest_framework import exceptions


class RequestTooLarge(exceptions.APIException):
    status_code = 413
    default_code = "request_too_large"
    default_detail = "The request body is larger than the server accepts."


class TooManyFields(exceptions.APIException):
    status_code = 400
    default_code = "too_many_fields"
    default_detail = f"At most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields are accepted."


class TooManyFiles(exceptions.APIException):
    status_code = 400
    default_code = "too_many_files"
    default_detail = f"At most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files are accepted."


class InvalidValue(exceptions.APIException):
    status_code = 400
    default_code = "invalid_value"
    default_detail = "A value does not fit what the server stores (too long, too large or not storable text)."
