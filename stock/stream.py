"""The live stream of stock levels as Server-Sent Events (what the seed puts on a Kinesis stream).

``GET /api/v1/stock/levels/stream?sku=ham,mushroom`` sends the current levels, then every
``stock.level_changed`` event as it is committed, read from the outbox in commit order (see
``selectors.level_changes_since``). Each event's SSE id is the stream's position after it: a client
resuming with ``Last-Event-ID`` gets exactly what committed since, nothing twice and nothing skipped.

Each open stream holds one server thread, so a web process serves at most ``STOCK_STREAMS_PER_PROCESS``
at once (the rest of its threads stay free for the API); one more gets a 503 with ``Retry-After``, or,
when it is a browser's EventSource (``Accept: text/event-stream``), an empty stream with a ``retry`` hint.
A stream ends after ``STOCK_STREAM_SECONDS``: the last event of each read carries the position and the
stream starts with a ``retry`` hint, so an ``EventSource`` reconnects by itself and resumes where it
stopped, while the slot goes back to the pool and a load balancer can move the client. A client that
closes its connection gives its slot back within ``POLL_SECONDS`` (at once, if another client is waiting
for one); an unknown sku is a 404 before any stream starts.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from decimal import Decimal

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from stock import selectors
from stock.errors import IngredientNotFound
from supplychain.core.api.errors import error_body

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15
RECONNECT_MILLISECONDS = 2000
BUSY_RETRY_SECONDS = 5


def _quantity(value) -> str:
    """Three decimals, as the events and the API write quantities (SQLite hands back ``Decimal("9")``)."""
    return format(Decimal(value), ".3f")


def _sse(event: str, data: dict, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _connection_probe(request) -> Callable[[], bool] | None:
    """A check whether the client has closed its connection, where the server hands us the socket.

    gunicorn puts the client socket in the WSGI environ. A closed connection reads as end-of-file at once
    (a peek, so nothing is consumed), long before the next write would fail (keep-alives are 15 s apart).
    Without a socket (another server, the test client, TLS in the process) a disconnect is still seen on
    the next write.
    """
    sock = request.META.get("gunicorn.socket")
    if not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket):
        return None

    def gone() -> bool:
        # poll() first: a socket with a timeout waits that long in recv(), whatever the flags say.
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
        try:
            ready = poller.poll(0)
            if not ready:
                return False  # open, nothing sent: the usual state of a stream's connection
            if ready[0][1] & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                return True
            return sock.recv(1, socket.MSG_PEEK) == b""  # readable: end-of-file, or bytes we leave alone
        except OSError:
            return True  # reset by the peer, or closed by the server

    return gone


class _Slots:
    """How many streams this process serves now, never more than ``STOCK_STREAMS_PER_PROCESS``.

    When all are taken, the slots of clients that have gone away are taken back first, so a client that
    drops its connection and reconnects at once gets a stream rather than a 503.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[_Slot] = set()
        self.open = 0

    def take(self, probe: Callable[[], bool] | None = None) -> _Slot | None:
        with self._lock:
            if self.open >= settings.STOCK_STREAMS_PER_PROCESS:
                for slot in [s for s in self._held if s.client_gone()]:
                    if slot.give_up():
                        self._held.discard(slot)
                        self.open -= 1
            if self.open >= settings.STOCK_STREAMS_PER_PROCESS:
                return None
            self.open += 1
            slot = _Slot(self, probe)
            self._held.add(slot)
            return slot

    def reset(self) -> None:
        """Forget every slot (tests: after one that leaked, so the next starts clean)."""
        with self._lock:
            self._held.clear()
            self.open = 0

    def _give_back(self, slot: _Slot) -> None:
        with self._lock:
            if slot in self._held:
                self._held.discard(slot)
                self.open -= 1


class _Slot:
    """One stream's place; given back exactly once, whoever gets there first."""

    def __init__(self, slots: _Slots, probe: Callable[[], bool] | None = None) -> None:
        self._slots = slots
        self._probe = probe
        self._lock = threading.Lock()
        self._held = True

    @property
    def held(self) -> bool:
        return self._held

    def client_gone(self) -> bool:
        """Whether the client closed its connection (never, when there is no way to tell)."""
        return self._probe is not None and self._probe()

    def give_up(self) -> bool:
        """Mark the slot free; true only for the first caller (who then does the counting)."""
        with self._lock:
            if not self._held:
                return False
            self._held = False
            return True

    def release(self) -> None:
        if self.give_up():
            self._slots._give_back(self)


slots = _Slots()


class _Stream:
    """The events, holding a slot until they end or the response is closed (also if they never started).

    The events give the slot back themselves when they run out, before the server writes the last chunk,
    so a client that sees its stream end and reconnects at once finds the slot free.
    """

    def __init__(self, events, slot: _Slot):
        self._events = events
        self._slot = slot

    def __iter__(self):
        return self._events

    def close(self) -> None:
        try:
            self._events.close()
        finally:
            self._slot.release()


class EventStreamRenderer(BaseRenderer):
    """Lets ``Accept: text/event-stream`` (what a browser's EventSource sends) through content negotiation.

    The stream itself is written by the view; this only renders the errors answered before it (as JSON).
    """

    media_type = "text/event-stream"
    format = "event-stream"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return json.dumps(data).encode() if data is not None else b""


class LevelStreamView(APIView):
    permission_classes = [IsAuthenticated]
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    @extend_schema(
        tags=["stock"],
        summary="Live stock levels (Server-Sent Events)",
        parameters=[
            OpenApiParameter("sku", str, description="Comma-separated skus; all when absent."),
            OpenApiParameter(
                "max_seconds",
                int,
                description="Close the stream after this long (default and at most STOCK_STREAM_SECONDS, 300); "
                "an EventSource reconnects with Last-Event-ID and misses nothing.",
            ),
            OpenApiParameter(
                "Last-Event-ID",
                str,
                location=OpenApiParameter.HEADER,
                description="Resume from this position (an event's id): what was committed since is sent first. "
                "An unknown one starts afresh with the current levels.",
            ),
        ],
        responses={
            200: OpenApiResponse(description="text/event-stream of `level` and `level_changed` events."),
            404: OpenApiResponse(description="A sku in `sku` names no ingredient (`ingredient_not_found`)."),
            503: OpenApiResponse(description="This server process serves as many streams as it may; retry later."),
        },
    )
    def get(self, request, version="v1"):
        skus = [s.strip() for s in request.query_params.get("sku", "").split(",") if s.strip()]
        longest = settings.STOCK_STREAM_SECONDS
        try:
            max_seconds = min(max(float(request.query_params.get("max_seconds", longest)), 1), longest)
        except ValueError:
            max_seconds = longest
        token = request.headers.get("Last-Event-ID", "").strip() or None
        unknown = selectors.unknown_skus(skus)
        if unknown:
            raise IngredientNotFound(f"No ingredient with sku {', '.join(unknown)}.", errors={"sku": unknown})
        slot = slots.take(_connection_probe(request))
        if slot is None:
            return self._busy(request)
        response = StreamingHttpResponse(
            _Stream(self._events(skus, token, max_seconds, slot), slot), content_type="text/event-stream"
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # let nginx pass events through at once
        return response

    @staticmethod
    def _busy(request):
        """No slot free: 503 with Retry-After, or, to a browser's EventSource, an empty stream and a retry hint.

        An EventSource gives up for good on any answer but a 200 event stream, and ignores Retry-After;
        a stream that ends at once makes it come back by itself after the ``retry`` delay.
        """
        detail = (
            f"This process already serves {settings.STOCK_STREAMS_PER_PROCESS} streams; "
            f"retry in {BUSY_RETRY_SECONDS} s."
        )
        if request.accepted_renderer.media_type == EventStreamRenderer.media_type:
            busy = HttpResponse(
                f"retry: {BUSY_RETRY_SECONDS * 1000}\n\n" + _sse("busy", {"detail": detail}),
                content_type="text/event-stream",
            )
            busy["Cache-Control"] = "no-cache"
        else:
            busy = Response(
                error_body(
                    type="streams_busy",
                    title="Too many live streams on this server process.",
                    status=503,
                    detail=detail,
                ),
                status=503,
            )
        busy["Retry-After"] = str(BUSY_RETRY_SECONDS)
        return busy

    def _events(self, skus: list[str], token: str | None, max_seconds: float, slot: _Slot):
        # Django closes this thread's database connection when the response closes (request_finished).
        try:
            yield f"retry: {RECONNECT_MILLISECONDS}\n\n"
            yield from self._changes(skus, token, max_seconds, lambda: slot.held and not slot.client_gone())
        finally:
            slot.release()

    def _changes(self, skus: list[str], token: str | None, max_seconds: float, connected=lambda: True):
        """The stream's events until ``max_seconds`` pass or ``connected()`` says the client went away."""
        deadline = time.monotonic() + max_seconds
        if token is not None and not selectors.valid_stream_token(token):
            token = None
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and connected():
            if token is None:  # a new client, or one too far behind: the current levels first
                token, levels = selectors.level_stream_start(skus)
                yield from self._levels(levels, token)
            try:
                changes, token = selectors.level_changes_since(token, skus)
            except selectors.StreamBehind:  # away too long: fresh levels beat a long replay
                token = None
                continue
            for n, change in enumerate(changes):
                # The position comes after the last change of a read (resuming mid-read resends that read).
                event_id = token if n == len(changes) - 1 else None
                yield _sse("level_changed", {**change["payload"], "at": change["occurred_at"].isoformat()}, event_id)
            if changes:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
                yield f"id: {token}\n: keep-alive\n\n"
                quiet_since = time.monotonic()
            time.sleep(POLL_SECONDS)

    @staticmethod
    def _levels(levels, token: str):
        for ingredient in levels:
            yield _sse(
                "level",
                {
                    "sku": ingredient.sku,
                    "on_hand": _quantity(ingredient.on_hand),
                    "reserved": _quantity(ingredient.reserved),
                    "available": _quantity(ingredient.available),
                },
                token,
            )
