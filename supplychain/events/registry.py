"""Registries of the backbone: versioned JSON Schemas of event types and the internal handlers.

Schemas live in each app's ``schemas/`` folder as ``<type>.v<version>.json`` (for example
``stock/schemas/stock.batch_expired.v1.json``). Handlers register themselves with ``@subscriber``.

Who may publish a type: every type is an internal fact, published only by the services of the app
that owns it, except the types of the ``platform`` namespace (``platform.message_posted``), which
outside callers publish through the API when they hold the permission the schema names in
``x-publish-permission`` (``events.publish_platform_event`` when it names none).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import fastjsonschema
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from jsonschema import Draft202012Validator

from supplychain.core.errors import DomainError

SCHEMA_FILE = re.compile(r"^(?P<type>[a-z0-9_]+(?:\.[a-z0-9_]+)+)\.v(?P<version>\d+)\.json$")
# The one namespace outside callers publish in, and the schema keyword naming the permission it takes.
PLATFORM_NAMESPACE = "platform"
PUBLISH_PERMISSION_KEYWORD = "x-publish-permission"
DEFAULT_PUBLISH_PERMISSION = "events.publish_platform_event"


class SchemaError(DomainError):
    """An event payload does not match its schema (or its type has none)."""

    status = 400
    type = "invalid_event"
    title = "The event does not match its schema."


@functools.cache
def schemas() -> dict[tuple[str, int], Draft202012Validator]:
    found: dict[tuple[str, int], Draft202012Validator] = {}
    for config in apps.get_app_configs():
        folder = Path(config.path) / "schemas"
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            match = SCHEMA_FILE.match(path.name)
            if not match:
                continue
            schema = json.loads(path.read_text())
            Draft202012Validator.check_schema(schema)
            check_publishable(match["type"], schema, where=str(path))
            found[(match["type"], int(match["version"]))] = Draft202012Validator(schema)
    return found


def check_publishable(event_type: str, schema: dict, *, where: str) -> None:
    """Refuse a schema that would open an internal type to outside callers."""
    if PUBLISH_PERMISSION_KEYWORD in schema and event_type.split(".", 1)[0] != PLATFORM_NAMESPACE:
        raise ImproperlyConfigured(
            f"{where}: only {PLATFORM_NAMESPACE}.* types may be published from outside; "
            f"{event_type} is an internal fact of its app, so it cannot carry {PUBLISH_PERMISSION_KEYWORD}."
        )


def latest_version(event_type: str) -> int:
    versions = [version for (name, version) in schemas() if name == event_type]
    if not versions:
        raise SchemaError(
            f"Unknown event type {event_type!r}: add schemas/{event_type}.v1.json to the app that owns it.",
            errors={"type": [f"No schema for {event_type!r}."]},
        )
    return max(versions)


def publish_permission(event_type: str) -> str | None:
    """The permission an outside caller needs to publish ``event_type``; None for an internal fact.

    An unknown type raises ``SchemaError`` (a 400 naming ``type``), like publishing it would.
    """
    version = latest_version(event_type)
    if event_type.split(".", 1)[0] != PLATFORM_NAMESPACE:
        return None
    return schemas()[(event_type, version)].schema.get(PUBLISH_PERMISSION_KEYWORD, DEFAULT_PUBLISH_PERMISSION)


def _path_of(error) -> str:
    parts = [str(part) for part in error.absolute_path]
    if error.validator == "required":
        missing = re.match(r"'([^']+)' is a required property", error.message)
        if missing:
            parts.append(missing.group(1))
    if error.validator == "additionalProperties":
        extra = re.findall(r"'([^']+)'", error.message)
        if extra:
            parts.append(extra[0])
    return ".".join(["payload", *parts])


# Keywords that mean the same in draft 7, which fastjsonschema compiles to Python, and in 2020-12, which
# the schemas declare. A schema using only these gets a compiled check first: about ten times faster than
# jsonschema's (a group reservation publishes hundreds of events per transaction). The compiled check is
# at most stricter (it checks "format"), never looser, and only its "valid" is trusted: anything it refuses
# goes to jsonschema, whose answer and messages count.
_SAME_IN_DRAFT_7 = frozenset(
    {
        "$schema", "title", "description", "$comment", "examples", "default", "type", "enum", "const",
        "properties", "required", "additionalProperties", "patternProperties", "propertyNames",
        "minProperties", "maxProperties", "items", "minItems", "maxItems", "uniqueItems", "contains",
        "pattern", "minLength", "maxLength", "format", "minimum", "maximum", "exclusiveMinimum",
        "exclusiveMaximum", "multipleOf", "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
    }
)  # fmt: skip
_NAMED_SUBSCHEMAS = ("properties", "patternProperties")


def _only_draft_7_keywords(schema) -> bool:
    if not isinstance(schema, dict):
        return isinstance(schema, bool)
    for keyword, value in schema.items():
        if keyword.startswith("x-"):
            continue  # an annotation of ours (x-publish-permission): no validator reads it
        if keyword not in _SAME_IN_DRAFT_7:
            return False
        if keyword in _NAMED_SUBSCHEMAS and not all(_only_draft_7_keywords(sub) for sub in value.values()):
            return False
        single = keyword in ("items", "additionalProperties", "propertyNames", "contains", "not", "if", "then", "else")
        if single and not _only_draft_7_keywords(value):  # "items" as a list means something else in 2020-12
            return False
        if keyword in ("allOf", "anyOf", "oneOf") and not all(_only_draft_7_keywords(sub) for sub in value):
            return False
    return True


@functools.cache
def _compiled_checks() -> dict[tuple[str, int], Callable]:
    checks = {}
    for key, validator in schemas().items():
        if _only_draft_7_keywords(validator.schema):
            draft_7 = {**validator.schema, "$schema": "http://json-schema.org/draft-07/schema#"}
            checks[key] = fastjsonschema.compile(draft_7)
    return checks


def validate(event_type: str, version: int, payload) -> None:
    """Raise ``SchemaError`` naming every failing field (``payload.items.0.sku``)."""
    validator = schemas().get((event_type, version))
    if validator is None:
        raise SchemaError(
            f"No schema for {event_type!r} version {version}.", errors={"version": [f"Unknown version {version}."]}
        )
    compiled = _compiled_checks().get((event_type, version))
    if compiled is not None:
        try:
            compiled(payload)
            return
        except fastjsonschema.JsonSchemaException:
            pass  # jsonschema decides, and names every failing field
    errors: dict[str, list[str]] = {}
    for error in sorted(validator.iter_errors(payload), key=lambda e: list(e.absolute_path)):
        errors.setdefault(_path_of(error), []).append(error.message)
    if errors:
        detail = "; ".join(f"{path}: {' '.join(messages)}" for path, messages in errors.items())
        raise SchemaError(f"{event_type} v{version} payload is invalid: {detail}", errors=errors)


@dataclass(frozen=True)
class HandlerSpec:
    """An internal subscriber: the function and the subscription it asks for by default."""

    name: str
    function: Callable[[dict], None]
    event_types: list[str]
    filter_policy: dict = field(default_factory=dict)
    queue: str = "events"
    max_attempts: int = 5
    initial_interval: float = 1.0
    backoff_rate: float = 2.0
    max_interval: float = 3600.0
    jitter: str = "full"
    auto_subscribe: bool = True
    batch: bool = False


_HANDLERS: dict[str, HandlerSpec] = {}


def subscriber(name: str, *, event_types: list[str], auto_subscribe: bool = True, **options):
    """Register ``function(envelope)`` as internal handler ``name``.

    With ``auto_subscribe`` a subscription of the same name is created on migrate (operations may then
    change its filter and retry policy in the admin; later deploys do not overwrite that).
    A handler runs in a database transaction together with marking its delivery done, so its
    database effects happen once; effects outside the database must be idempotent on ``envelope["id"]``.
    With ``batch=True`` the function takes a list of envelopes (one bulk write for many events); if a
    batch raises, each event is retried on its own so one bad entity never fails the others.
    """

    def register(function: Callable[[dict], None]) -> Callable[[dict], None]:
        _HANDLERS[name] = HandlerSpec(
            name=name, function=function, event_types=event_types, auto_subscribe=auto_subscribe, **options
        )
        return function

    return register


def handlers() -> dict[str, HandlerSpec]:
    _import_handler_modules()
    return _HANDLERS


@functools.cache
def _import_handler_modules() -> None:
    """Import ``<app>.handlers`` of every installed app so their ``@subscriber`` run."""
    import importlib

    for config in apps.get_app_configs():
        module = f"{config.name}.handlers"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
