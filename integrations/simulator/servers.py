"""The simulator's servers: one ThreadingHTTPServer per partner, a scheduler for the webhooks they send back."""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import logging
import random
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from standardwebhooks import Webhook, WebhookVerificationError

logger = logging.getLogger(__name__)

CONTROL_PATH = "/_simulator"
# What each courier says along the way, in its own words.
COURIER_WORDS = {
    "swiftship": ["InfoReceived", "InTransit", "OutForDelivery", "Delivered"],
    "parcelpost": ["pre_transit", "in_transit", "out_for_delivery", "delivered"],
}
UNKNOWN_WORD = {"swiftship": "AvailableForPickup", "parcelpost": "available_for_pickup"}


@dataclass
class Behaviour:
    """How one simulated partner behaves; every field can be changed while it runs."""

    delay: list[float] = field(default_factory=lambda: [0.5, 2.0])  # seconds between the updates it sends
    slow: float = 0.0  # seconds before it answers a request
    fail_rate: float = 0.0  # fraction of requests answered 503
    down_until: float = 0.0  # unix time until which every request is answered 503
    duplicates: bool = False  # every webhook sent twice, same id
    out_of_order: bool = False  # the last two updates of a shipment swapped
    unknown_status: bool = False  # a word without a vocabulary row before the others

    def change(self, changes: dict) -> None:
        for name, value in changes.items():
            if name == "down_for":
                self.down_until = time.time() + float(value)
            elif name == "delay":
                low, high = (float(value), float(value)) if isinstance(value, int | float) else map(float, value)
                self.delay = [max(0.0, low), max(low, high)]
            elif name in ("slow", "fail_rate"):
                setattr(self, name, max(0.0, float(value)))
            elif name in ("duplicates", "out_of_order", "unknown_status"):
                setattr(self, name, bool(value))
            else:
                raise ValueError(f"unknown setting {name!r}")

    def state(self) -> dict:
        state = asdict(self)
        state["down_for"] = max(0.0, round(self.down_until - time.time(), 1))
        return state


class Outbox:
    """Webhooks to send at given times, posted by one thread; a failed post is retried a few times."""

    def __init__(self, callback_url: str):
        self.callback_url = callback_url.rstrip("/")
        self._queue: list = []
        self._counter = itertools.count()
        self._wake = threading.Condition()
        self._stopped = False
        self.sent: list[dict] = []
        self.session = requests.Session()
        self.thread = threading.Thread(target=self._run, name="simulator-outbox", daemon=True)

    def schedule(self, at: float, partner: str, body: bytes, headers: dict, attempt: int = 0) -> None:
        with self._wake:
            heapq.heappush(self._queue, (at, next(self._counter), partner, body, headers, attempt))
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and (not self._queue or self._queue[0][0] > time.time()):
                    self._wake.wait(timeout=(self._queue[0][0] - time.time()) if self._queue else None)
                if self._stopped:
                    return
                _, _, partner, body, headers, attempt = heapq.heappop(self._queue)
            self._post(partner, body, headers, attempt)

    def _post(self, partner: str, body: bytes, headers: dict, attempt: int) -> None:
        url = f"{self.callback_url}/api/v1/webhooks/{partner}/"
        signed = headers() if callable(headers) else headers  # signed at sending time (a fresh timestamp)
        try:
            response = self.session.post(
                url, data=body, headers={"Content-Type": "application/json", **signed}, timeout=10
            )
            status = response.status_code
        except requests.RequestException as exc:
            status, response = None, exc
        self.sent.append({"partner": partner, "status": status, "at": time.time(), "body": body.decode()})
        logger.info("%s webhook → %s: %s", partner, url, status)
        if (status is None or status >= 500) and attempt < 5:
            self.schedule(time.time() + 2**attempt, partner, body, headers, attempt + 1)


class PartnerServer:
    """One simulated partner: its HTTP server, its behaviour and what it received."""

    name = ""

    def __init__(self, simulator: Simulator, port: int, secret: str):
        self.simulator, self.secret = simulator, secret
        self.behaviour = Behaviour()
        self.received: list[dict] = []
        self.lock = threading.Lock()
        self.rng = random.Random()  # noqa: S311 (delays and failures of a simulation, not secrets)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == CONTROL_PATH:
                    return self._json(200, server.control_state())
                return self._json(404, {"error": "not found"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.path == CONTROL_PATH:
                    try:
                        server.behaviour.change(json.loads(body or b"{}"))
                    except (ValueError, TypeError) as exc:
                        return self._json(400, {"error": str(exc)})
                    return self._json(200, server.control_state())
                if server.behaviour.slow:
                    time.sleep(server.behaviour.slow)
                if time.time() < server.behaviour.down_until:
                    return self._json(503, {"error": "down for maintenance"})
                if server.behaviour.fail_rate and server.rng.random() < server.behaviour.fail_rate:
                    return self._json(503, {"error": "temporarily unavailable"})
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, answer = server.handle(self.path, body, headers)
                self._json(status, answer)

            def _json(self, status: int, data: dict):
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format, *args):
                logger.debug("%s: " + format, server.name, *args)

        self.httpd = ThreadingHTTPServer((simulator.host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_port
        self.url = f"http://{simulator.host}:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"simulator-{self.name}", daemon=True)

    def control_state(self) -> dict:
        return {"partner": self.name, "url": self.url, **self.behaviour.state(), "received": len(self.received)}

    def handle(self, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
        raise NotImplementedError

    def later(self, step: int) -> float:
        low, high = self.behaviour.delay
        return time.time() + sum(self.rng.uniform(low, high) for _ in range(step + 1))

    def send(self, at: float, body: bytes, sign) -> None:
        for copy in range(2 if self.behaviour.duplicates else 1):
            self.simulator.outbox.schedule(at + copy * 0.2, self.name, body, sign)

    # Standard Webhooks, as a partner using the library would sign and verify.
    def standard_verify(self, body: bytes, headers: dict) -> bool:
        try:
            Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError:
            return False
        return True

    def standard_signer(self, body: bytes):
        message_id = f"msg_{uuid.uuid4().hex[:24]}"

        def sign() -> dict:
            now = datetime.now(tz=UTC)
            signature = Webhook(self.secret).sign(msg_id=message_id, timestamp=now, data=body.decode())
            return {
                "webhook-id": message_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signature,
            }

        return sign


class WmsServer(PartnerServer):
    name = "wms"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.picks: dict[str, dict] = {}

    def handle(self, path, body, headers):
        if path != "/pick-lists":
            return 404, {"error": "not found"}
        if not self.standard_verify(body, headers):
            return 401, {"error": "bad signature"}
        try:
            lists = json.loads(body)["pick_lists"]
            picks = [(p["pick_id"], p["client_order_ref"], p["items"]) for p in lists]
        except (ValueError, KeyError, TypeError):
            return 400, {"error": "expected {pick_lists: [{pick_id, client_order_ref, items}]}"}
        with self.lock:
            self.received.append({"path": path, "body": body.decode(), "headers": headers})
            fresh = [pick for pick in picks if pick[0] not in self.picks]
            for pick_id, order_ref, items in fresh:
                self.picks[pick_id] = {"order": order_ref, "items": items}
        for index, (pick_id, order_ref, items) in enumerate(fresh):
            confirmation = {
                "event": "pick.confirmed",
                "pick_id": pick_id,
                "client_order_ref": order_ref,
                "confirmed_at": datetime.now(tz=UTC).isoformat(),
                "items": [{"item_code": i["item_code"], "lot": i["lot"], "qty": i["qty"]} for i in items],
            }
            payload = json.dumps(confirmation).encode()
            self.send(self.later(0) + index * 0.01, payload, self.standard_signer(payload))
        return 202, {"accepted": [pick[0] for pick in picks]}


class CourierServer(PartnerServer):
    """A courier: books shipments (idempotent on Idempotency-Key) and reports tracking updates."""

    path = ""
    prefix = ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.shipments: dict[str, dict] = {}  # by idempotency key

    def verify(self, body: bytes, headers: dict) -> bool:
        raise NotImplementedError

    def reference(self, shipment: dict) -> str:
        raise NotImplementedError

    def update(self, tracking: str, reference: str, word: str) -> tuple[bytes, object]:
        raise NotImplementedError

    def answer(self, tracking: str) -> dict:
        raise NotImplementedError

    def handle(self, path, body, headers):
        if path != self.path:
            return 404, {"error": "not found"}
        if not self.verify(body, headers):
            return 401, {"error": "bad signature"}
        try:
            reference = self.reference(json.loads(body)["shipment"])
        except (ValueError, KeyError, TypeError):
            return 400, {"error": "expected a shipment"}
        key = headers.get("idempotency-key") or uuid.uuid4().hex
        with self.lock:
            self.received.append({"path": path, "body": body.decode(), "headers": headers})
            known = self.shipments.get(key)
            if known is None:
                known = {"tracking": f"{self.prefix}{uuid.uuid4().hex[:10].upper()}", "reference": reference}
                self.shipments[key] = known
                self._track(known["tracking"], reference)
        return 201, self.answer(known["tracking"])

    def _track(self, tracking: str, reference: str) -> None:
        words = list(COURIER_WORDS[self.name])
        if self.behaviour.unknown_status:
            words.insert(1, UNKNOWN_WORD[self.name])
        order = list(range(len(words)))
        if self.behaviour.out_of_order:
            order[-1], order[-2] = order[-2], order[-1]  # delivered is reported before out for delivery
        at = time.time()
        low, high = self.behaviour.delay
        for index in order:
            # Times add up, so updates go out in the order given (only out_of_order swaps them).
            at += self.rng.uniform(low, high)
            body, sign = self.update(tracking, reference, words[index])
            self.send(at, body, sign)


class SwiftShipServer(CourierServer):
    name = "swiftship"
    path = "/v1/shipments"
    prefix = "SS"

    def verify(self, body, headers):
        return self.standard_verify(body, headers)

    def reference(self, shipment):
        return str(shipment["order_id"])

    def answer(self, tracking):
        return {"data": {"tracking_number": tracking, "slug": "swiftship"}}

    def update(self, tracking, reference, word):
        message = {
            "tracking_number": tracking,
            "order_id": reference,
            "tag": word,
            "subtag": f"{word}_001",
            "updated_at": datetime.now(tz=UTC).isoformat(),
        }
        body = json.dumps({"event": "tracking_update", "msg": message}).encode()
        return body, self.standard_signer(body)


class ParcelPostServer(CourierServer):
    name = "parcelpost"
    path = "/v2/shipments"
    prefix = "PP"
    header = "x-parcelpost-signature"

    def _signature(self, timestamp: int, body: bytes) -> str:
        return hmac.new(self.secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()

    def verify(self, body, headers):
        fields = dict(part.split("=", 1) for part in headers.get(self.header, "").split(",") if "=" in part)
        stamp = fields.get("t", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > 300:
            return False
        return hmac.compare_digest(fields.get("v1", ""), self._signature(int(stamp), body))

    def reference(self, shipment):
        return str(shipment["reference"])

    def answer(self, tracking):
        return {"id": f"shp_{uuid.uuid4().hex[:16]}", "object": "Shipment", "tracking_code": tracking}

    def update(self, tracking, reference, word):
        result = {
            "id": f"trk_{hashlib.sha256(tracking.encode()).hexdigest()[:16]}",
            "object": "Tracker",
            "tracking_code": tracking,
            "status": word,
            "reference": reference,
            "updated_at": datetime.now(tz=UTC).isoformat(),
        }
        event = {
            "id": f"evt_{uuid.uuid4().hex[:20]}",
            "object": "Event",
            "description": "tracker.updated",
            "result": result,
        }
        body = json.dumps(event).encode()

        def sign() -> dict:
            now = int(time.time())
            return {"X-ParcelPost-Signature": f"t={now},v1={self._signature(now, body)}"}

        return body, sign


class ErpServer(PartnerServer):
    """A minimal ERP stub: takes any JSON POST (202) and records it (sales orders, purchase orders)."""

    name = "erp"

    def handle(self, path, body, headers):
        with self.lock:
            self.received.append({"path": path, "body": body.decode(errors="replace"), "headers": headers})
        return 202, {"received": True, "path": path}


SERVERS = {cls.name: cls for cls in (WmsServer, ErpServer, SwiftShipServer, ParcelPostServer)}


class Simulator:
    """The four partners, started together. ``ports`` 0 binds ephemeral ports (tests); ``urls`` says where."""

    def __init__(self, *, callback_url: str, secrets: dict[str, str], ports: dict[str, int] | None = None,
                 host: str = "127.0.0.1"):  # fmt: skip
        self.host = host
        self.outbox = Outbox(callback_url)
        ports = ports or {}
        self.partners: dict[str, PartnerServer] = {
            name: cls(self, ports.get(name, 0), secrets.get(name, "")) for name, cls in SERVERS.items()
        }

    @property
    def urls(self) -> dict[str, str]:
        return {name: server.url for name, server in self.partners.items()}

    def __getitem__(self, name: str) -> PartnerServer:
        return self.partners[name]

    def set(self, partner: str | None = None, **changes) -> None:
        for name, server in self.partners.items():
            if partner in (None, name):
                server.behaviour.change(changes)

    def start(self) -> Simulator:
        self.outbox.thread.start()
        for server in self.partners.values():
            server.thread.start()
        return self

    def stop(self) -> None:
        self.outbox.stop()
        for server in self.partners.values():
            server.httpd.shutdown()
            server.httpd.server_close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
