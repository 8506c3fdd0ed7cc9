"""Partner adapters: one module per partner, holding its format, its vocabulary, its signature and its HTTP client.

Between adapters travel only our own terms: an inbound message comes out of ``parse`` as an ``Inbound``
(message id, order, raw status, data); an outbound call goes in as our order data. The rest of the app
never sees a partner's format. Adding a partner: a module here with the same functions, an entry in
``ADAPTERS``, its settings (``PARTNER_<NAME>_URL`` / ``_SECRET``) and, for a courier, its vocabulary rows.

Every adapter module provides:

- ``NAME``, ``KIND`` (``"wms"`` or ``"courier"``), ``SIGNATURE`` (how its webhooks are signed, for the docs);
- ``verify(body, headers, secret, now=None) -> str``: the partner's message id, or ``SignatureRejected``;
- ``parse(body, headers) -> Inbound``: the translation in, or ``InvalidMessage`` (never another error);
- an HTTP client for the calls out (``send_pick_requests`` for the WMS, ``book_shipment`` for a courier),
  raising ``PartnerUnavailable`` on anything but a 2xx, so the backbone's delivery retries it.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import requests
from django.conf import settings

from supplychain.core.api.limits import JSON_MAX_DEPTH, first_bad_value


class SignatureRejected(Exception):
    """The webhook is not provably from the partner (bad, missing or stale signature): 401."""

    def __init__(self, reason: str, message_id: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.message_id = message_id


class InvalidMessage(Exception):
    """An authentic message we cannot read (not JSON, a field missing or of the wrong type): 400."""

    def __init__(self, detail: str, errors: dict[str, list[str]] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or {}


class PartnerUnavailable(Exception):
    """The partner did not take the call (down, slow, an error answer): the delivery is retried by its policy."""


class PartnerNotConfigured(PartnerUnavailable):
    """No URL for the partner in the settings: every attempt fails (visibly, as a dead letter) until one is set."""


@dataclass
class Inbound:
    """One inbound partner message in our own terms."""

    message_id: str
    kind: str  # pick_confirmation | tracking_update
    order_reference: str
    raw_status: str = ""
    occurred_at: str | None = None
    data: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "message_id": self.message_id,
            "kind": self.kind,
            "order_reference": self.order_reference,
            "raw_status": self.raw_status,
            "occurred_at": self.occurred_at,
            "data": self.data,
        }


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def load_json(body: bytes) -> Any:
    """A partner body as JSON, bounded like the API's (depth, text PostgreSQL can store); ``InvalidMessage`` if not."""
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        raise InvalidMessage(f"The body nests deeper than {JSON_MAX_DEPTH} levels.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidMessage(f"The body is not JSON: {exc}") from None
    bad = first_bad_value(data)
    if bad:
        raise InvalidMessage(f"{bad.where}: {bad.message}", {bad.where: [bad.message]})
    return data


def text_at(data: Any, path: str, *, max_length: int = 200, required: bool = True, where: str = "") -> str:
    """The non-empty string at a dotted ``path`` of a JSON document, or ``InvalidMessage`` naming the path."""
    value: Any = data
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            value = None
            break
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value or len(value) > max_length:
        message = f"A string of 1 to {max_length} characters is required."
        where = f"{where}.{path}" if where else path
        raise InvalidMessage(f"{where}: {message}", {where: [message]})
    return value


def partner_settings(name: str) -> dict:
    """``{"url", "secret", "timeout"}`` of a partner, from ``settings.PARTNERS`` (the environment)."""
    return settings.PARTNERS.get(name, {"url": "", "secret": "", "timeout": 10.0})


class Client:
    """An adapter's HTTP client: one session per partner, its own timeouts, any non-2xx is ``PartnerUnavailable``."""

    def __init__(self, name: str, user_agent: str):
        self.name = name
        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent

    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> requests.Response:
        config = partner_settings(self.name)
        if not config["url"]:
            raise PartnerNotConfigured(f"PARTNER_{self.name.upper()}_URL is not set: no {self.name} to call.")
        try:
            response = self.session.post(
                config["url"] + path,
                data=body,
                headers={"Content-Type": "application/json", **headers},
                timeout=(3.05, config["timeout"]),
            )
        except requests.RequestException as exc:
            raise PartnerUnavailable(f"{self.name}: {type(exc).__name__}: {exc}") from None
        if not 200 <= response.status_code < 300:
            raise PartnerUnavailable(f"{self.name}: HTTP {response.status_code}: {response.text[:300]}")
        return response


def adapters() -> dict[str, ModuleType]:
    from integrations.adapters import parcelpost, swiftship, wms

    return {module.NAME: module for module in (wms, swiftship, parcelpost)}


def adapter(name: str) -> ModuleType | None:
    return adapters().get(name)


def couriers() -> list[str]:
    return [name for name, module in adapters().items() if module.KIND == "courier"]


def courier_for(order_id: str) -> str:
    """The courier that carries an order: one of ``PARTNER_COURIERS``, by a stable hash of the order id."""
    choices = [name for name in settings.PARTNER_COURIERS if name in couriers()] or couriers()
    return choices[zlib.crc32(order_id.encode()) % len(choices)]
