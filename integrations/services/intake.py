"""Order intake: validate orders against their JSON Schema, store them set-based, publish ``order.received``.

Idempotent on ``order_id``: the same order again changes nothing and is answered as the first time;
the same id with another body is refused (422). A bulk call of 1,000 orders costs a handful of
statements: one lookup of the ids, one of recipes and skus, COPY of orders, timeline and events.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import fastjsonschema
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from jsonschema import Draft202012Validator

from integrations.errors import InvalidOrder, OrderIdReused
from integrations.models import Order, OrderTransition
from stock.models import Ingredient, Recipe
from supplychain.core.db import copy_rows
from supplychain.core.errors import DomainError
from supplychain.core.identifiers import IDENTIFIER_RULE, is_identifier
from supplychain.events import kicks
from supplychain.events.services import Kicker, NewEvent, publish_many

BULK_LIMIT = 1000
# Path segments of /api/v1/orders/ that are not orders: an order so named could never be read.
RESERVED_ORDER_IDS = frozenset({"bulk"})
DELIVERY_HORIZON_DAYS = 366
MAX_REPORTED_ERRORS = 100
ORDER_SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "payloads" / "order.v1.json"
_QUANTITY_EXPONENT = -3  # the stock quantity columns keep three decimals

_INTAKE_ATTEMPTS = 3


@functools.cache
def order_schema() -> dict:
    """The order's JSON Schema (integrations/schemas/payloads/order.v1.json), also shown in the API docs."""
    return json.loads(ORDER_SCHEMA_PATH.read_text())


@functools.cache
def _validators():
    schema = order_schema()
    Draft202012Validator.check_schema(schema)
    # Only keywords that mean the same in draft 7 are used, so a compiled check (about ten times faster
    # than jsonschema) answers the common case; jsonschema names the failing paths when it refuses. A line is
    # a recipe or a sku by if/then/else, not oneOf: compiled, oneOf cost 240 ms per 1,000 orders, this 30.
    compiled = fastjsonschema.compile({**schema, "$schema": "http://json-schema.org/draft-07/schema#"})
    return compiled, Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _error_path(error, prefix: str) -> str:
    parts = [str(part) for part in error.absolute_path]
    if error.validator == "required":
        missing = re.match(r"'([^']+)' is a required property", error.message)
        if missing:
            parts.append(missing.group(1))
    elif error.validator == "additionalProperties":
        extra = re.findall(r"'([^']+)'", error.message)
        if extra:
            parts.append(extra[0])
    return ".".join(part for part in [prefix, *parts] if part) or "non_field_errors"


def _schema_errors(document, prefix: str) -> dict[str, list[str]]:
    compiled, validator = _validators()
    try:
        compiled(document)
        return {}
    except fastjsonschema.JsonSchemaException:
        pass
    errors: dict[str, list[str]] = {}
    for error in sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]):
        errors.setdefault(_error_path(error, prefix), []).append(error.message)
    return errors


def _text_errors(value, path: str, errors: dict[str, list[str]]) -> None:
    """NUL characters and lone surrogates cannot be stored (PostgreSQL refuses them): name where they are."""
    if isinstance(value, str):
        if "\x00" in value:
            errors.setdefault(path, []).append("NUL characters are not allowed.")
        else:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                errors.setdefault(path, []).append("Lone surrogate characters are not allowed.")
    elif isinstance(value, dict):
        for key, item in value.items():
            _text_errors(item, f"{path}.{key}" if path else str(key), errors)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _text_errors(item, f"{path}.{index}" if path else str(index), errors)


def _storable(document: dict) -> bool:
    text = json.dumps(document, ensure_ascii=False)
    if "\\u0000" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _at(prefix: str, *parts) -> str:
    return ".".join(str(part) for part in (prefix, *parts) if part != "")


@dataclass
class _Checked:
    position: int
    canonical: dict
    digest: str
    delivery_date: date


def _check_one(document, position: int, prefix: str, errors: dict[str, list[str]]) -> _Checked | None:
    """Schema, alphabet, dates and quantities of one order; its canonical form if all is well."""
    found = _schema_errors(document, prefix)
    if found:
        errors.update(found)
        return None
    if not _storable(document):
        _text_errors(document, prefix, errors)
        return None
    order_id = document["order_id"]
    if not is_identifier(order_id):
        errors.setdefault(_at(prefix, "order_id"), []).append(f"Not a valid identifier: {IDENTIFIER_RULE}.")
    elif order_id in RESERVED_ORDER_IDS:
        errors.setdefault(_at(prefix, "order_id"), []).append(f"'{order_id}' is reserved; choose another order id.")
    today = timezone.localdate()
    delivery_date = date.fromisoformat(document["delivery_date"])  # the schema checked the format
    if delivery_date < today:
        errors.setdefault(_at(prefix, "delivery_date"), []).append("The delivery date has passed.")
    elif delivery_date > today + timedelta(days=DELIVERY_HORIZON_DAYS):
        errors.setdefault(_at(prefix, "delivery_date"), []).append(f"At most {DELIVERY_HORIZON_DAYS} days ahead.")
    lines = []
    for index, line in enumerate(document["lines"]):
        if "recipe" in line:
            lines.append({"recipe": line["recipe"], "portions": int(line["portions"])})
            continue
        try:
            quantity = Decimal(str(line["quantity"]))
        except InvalidOperation:  # pragma: no cover - the schema let only numbers through
            quantity = Decimal(0)
        if quantity.as_tuple().exponent < _QUANTITY_EXPONENT and quantity != quantity.quantize(Decimal("0.001")):
            errors.setdefault(_at(prefix, "lines", index, "quantity"), []).append("At most three decimals.")
            continue
        lines.append({"sku": line["sku"], "quantity": format(quantity.quantize(Decimal("0.001")).normalize(), "f")})
    canonical = {
        "order_id": order_id,
        "customer_reference": document["customer_reference"],
        "delivery_date": delivery_date.isoformat(),
        "delivery_address": dict(sorted(document["delivery_address"].items())),
        "lines": lines,
    }
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
    return _Checked(position, canonical, digest, delivery_date)


def _check_catalogue(checked: list[_Checked], prefix_of, errors: dict[str, list[str]]) -> None:
    """Every recipe and sku must exist (one query each for the whole call)."""
    recipes = {line["recipe"] for c in checked for line in c.canonical["lines"] if "recipe" in line}
    skus = {line["sku"] for c in checked for line in c.canonical["lines"] if "sku" in line}
    known_recipes = set(Recipe.objects.filter(code__in=recipes).values_list("code", flat=True)) if recipes else set()
    known_skus = set(Ingredient.objects.filter(sku__in=skus).values_list("sku", flat=True)) if skus else set()
    for c in checked:
        for index, line in enumerate(c.canonical["lines"]):
            if "recipe" in line and line["recipe"] not in known_recipes:
                errors.setdefault(_at(prefix_of(c.position), "lines", index, "recipe"), []).append("Unknown recipe.")
            if "sku" in line and line["sku"] not in known_skus:
                errors.setdefault(_at(prefix_of(c.position), "lines", index, "sku"), []).append("Unknown sku.")


def _raise_if(errors: dict[str, list[str]]) -> None:
    if not errors:
        return
    shown = dict(list(errors.items())[:MAX_REPORTED_ERRORS])
    detail = "; ".join(f"{path}: {' '.join(messages)}" for path, messages in shown.items())
    if len(errors) > len(shown):
        detail += f"; and {len(errors) - len(shown)} more"
    raise InvalidOrder(detail, errors=shown)


@dataclass
class IntakeResult:
    """The answer to one order of an intake call.

    ``outcome`` is ``accepted`` (stored now), ``replayed`` (the same order was received before: nothing
    changed) or ``refused`` (``error`` says why: the id was used with another body).
    """

    order_id: str
    outcome: str
    received_at: datetime | None = None
    error: DomainError | None = None

    @property
    def http_status(self) -> int:
        return self.error.status if self.error is not None else 202

    def answer(self) -> dict:
        """The 202 body, the same for the first time and every identical repeat."""
        return {"order_id": self.order_id, "status": Order.Status.RECEIVED, "received_at": self.received_at}


def receive_order(*, document, source: str = "platform") -> IntakeResult:
    """Receive one order; raises ``InvalidOrder`` (400, fields by path) or ``OrderIdReused`` (422)."""
    result = _receive([document], prefix_of=lambda position: "", source=source)[0]
    if result.error is not None:
        raise result.error
    return result


def receive_orders(*, documents, source: str = "platform") -> list[IntakeResult]:
    """Receive up to ``BULK_LIMIT`` orders in one transaction; one result per order, in order.

    A malformed order refuses the whole call (``InvalidOrder``, the order named by its index, e.g.
    ``orders.3.lines.0.portions``) before anything is written; an order id used before with another
    body is refused on its own (``refused``, 422) and never undoes the others.
    """
    if not isinstance(documents, list) or not documents:
        _raise_if({"orders": ["A non-empty list of orders is required."]})
    if len(documents) > BULK_LIMIT:
        _raise_if({"orders": [f"At most {BULK_LIMIT} orders per call, got {len(documents)}."]})
    return _receive(documents, prefix_of=lambda position: f"orders.{position}", source=source)


def _receive(documents: list, *, prefix_of, source: str) -> list[IntakeResult]:
    errors: dict[str, list[str]] = {}
    checked: list[_Checked] = []
    seen: dict[str, int] = {}
    for position, document in enumerate(documents):
        one = _check_one(document, position, prefix_of(position), errors)
        if one is None:
            continue
        order_id = one.canonical["order_id"]
        if order_id in seen:
            errors.setdefault(_at(prefix_of(position), "order_id"), []).append(
                f"Appears more than once in this call (first at {seen[order_id]})."
            )
            continue
        seen[order_id] = position
        checked.append(one)
    if not errors:
        _check_catalogue(checked, prefix_of, errors)
    _raise_if(errors)
    for attempt in range(1, _INTAKE_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                return _store(checked, source)
        except IntegrityError:  # a concurrent call stored one of these ids first: answer it as a repeat
            if attempt == _INTAKE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _store(checked: list[_Checked], source: str) -> list[IntakeResult]:
    existing = {
        order_id: (digest, received_at)
        for order_id, digest, received_at in Order.objects.filter(
            order_id__in=[c.canonical["order_id"] for c in checked]
        ).values_list("order_id", "request_hash", "received_at")
    }
    now = timezone.now()
    results: list[IntakeResult] = []
    fresh: list[_Checked] = []
    for c in checked:
        order_id = c.canonical["order_id"]
        if order_id in existing:
            digest, received_at = existing[order_id]
            if digest == c.digest:
                results.append(IntakeResult(order_id, "replayed", received_at))
            else:
                results.append(
                    IntakeResult(
                        order_id,
                        "refused",
                        error=OrderIdReused(
                            f"Order {order_id} was already received with a different body.",
                            errors={"order_id": ["Already used with a different body."]},
                        ),
                    )
                )
            continue
        fresh.append(c)
        results.append(IntakeResult(order_id, "accepted", now))
    if fresh:
        _insert(fresh, now, source)
        transaction.on_commit(orders_kicker.kick)
    return results


def _insert(fresh: list[_Checked], now: datetime, source: str) -> None:
    ids = _new_ids(len(fresh))
    rows = []
    for new_id, c in zip(ids, fresh, strict=True):
        doc = c.canonical
        rows.append(
            (
                new_id,
                doc["order_id"],
                doc["customer_reference"],
                c.delivery_date,
                doc["delivery_address"],
                doc["lines"],
                c.digest,
                Order.Status.RECEIVED,
                now,
                now,
            )
        )
    copy_rows(
        Order,
        [
            "id",
            "order_id",
            "customer_reference",
            "delivery_date",
            "delivery_address",
            "lines",
            "request_hash",
            "status",
            "received_at",
            "status_changed_at",
        ],
        rows,
    )
    copy_rows(
        OrderTransition,
        ["order", "from_status", "to_status", "occurred_at", "source", "detail"],
        ((new_id, "", Order.Status.RECEIVED, now, source, {}) for new_id in ids),
    )
    publish_many(
        [
            NewEvent(
                "order.received",
                {
                    "order_id": c.canonical["order_id"],
                    "customer_reference": c.canonical["customer_reference"],
                    "delivery_date": c.canonical["delivery_date"],
                    "lines": c.canonical["lines"],
                },
                key=c.canonical["order_id"],
            )
            for c in fresh
        ],
        with_keys=False,
        kick_relay=False,  # the processing task this intake kicks relays them: one message, not two
    )


def _new_ids(count: int) -> list[int]:
    """Primary keys for ``count`` new orders: from the table's sequence in one query on PostgreSQL."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence('integrations_order', 'id')) FROM generate_series(1, %s)",
                [count],
            )
            return [row[0] for row in cursor.fetchall()]
    # SQLite (the embedded default): one writer at a time, so the next ids are the ones after the highest.
    highest = Order.objects.order_by("-id").values_list("id", flat=True).first() or 0
    return list(range(highest + 1, highest + 1 + count))


def _send_processing() -> None:
    """One processing kick pending at a time, across processes; the task clears the guard when it starts."""
    from integrations import tasks

    if not kicks.claim(PROCESSING_KICK):
        return
    try:
        tasks.process_orders.apply_async(retry=False)
    except Exception:
        kicks.clear(PROCESSING_KICK)
        raise


PROCESSING_KICK = "orders:process"


# Received orders are processed in batches: a commit of new orders kicks the batch task, at most once per
# ORDERS_KICK_INTERVAL per process (beat sweeps as well, so nothing waits if a kick is lost).
orders_kicker = Kicker(getattr(settings, "ORDERS_KICK_INTERVAL", 0.05), _send_processing, what="orders processing")
