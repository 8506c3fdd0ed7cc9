"""A real HTTP endpoint on 127.0.0.1 for delivery tests: records requests, answers a scripted status."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self):
        return json.loads(self.body)


class Endpoint:
    """``fail_first`` requests answer ``fail_status``; after that ``ok_status`` (unless ``always_fail``).

    With ``secret`` it receives like a real subscriber: a request whose Standard Webhooks signature the
    ``standardwebhooks`` library does not accept answers 401 (and counts as a failure). ``slow_first``
    requests are recorded at once but answered only after ``slow_seconds`` (a subscriber still working
    when its caller dies).
    """

    def __init__(
        self,
        *,
        fail_first: int = 0,
        fail_status: int = 500,
        always_fail: bool = False,
        secret: str | None = None,
        slow_first: int = 0,
        slow_seconds: float = 0.0,
    ):
        self.fail_first, self.fail_status, self.always_fail = fail_first, fail_status, always_fail
        self.secret = secret
        self.slow_first, self.slow_seconds = slow_first, slow_seconds
        self.received: list[Received] = []
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with endpoint._lock:
                    failing = endpoint.always_fail or len(endpoint.received) < endpoint.fail_first
                    status = endpoint.fail_status if failing else 200
                    if endpoint.secret is not None and not endpoint.signed_by(body, dict(self.headers)):
                        status = 401
                    endpoint.received.append(Received(time.time(), dict(self.headers), body, status))
                    slow = len(endpoint.received) <= endpoint.slow_first
                if slow:
                    time.sleep(endpoint.slow_seconds)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}' if status == 200 else b'{"error": "scripted failure"}')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def signed_by(self, body: bytes, headers: dict[str, str]) -> bool:
        from standardwebhooks import Webhook, WebhookVerificationError

        try:
            Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError:
            return False
        return True

    def __enter__(self) -> Endpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
