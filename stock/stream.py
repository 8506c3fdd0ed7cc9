"""The live stream of stock levels as Server-Sent Events (what the seed puts on a Kinesis stream).

``GET /api/v1/stock/levels/stream?sku=ham,mushroom`` sends the current levels, then every
``stock.level_changed`` event as it is committed (read from the outbox, so nothing committed is
missed and a client resuming with ``Last-Event-ID`` gets what it missed). Each stream holds one
server thread: serve it from gunicorn's ``gthread`` workers or a dedicated process.
"""

from __future__ import annotations

import json
import time

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.views import APIView

from stock import selectors

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15


def _sse(event: str, data: dict, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class LevelStreamView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["stock"],
        summary="Live stock levels (Server-Sent Events)",
        parameters=[
            OpenApiParameter("sku", str, description="Comma-separated skus; all when absent."),
            OpenApiParameter("max_seconds", int, description="Close the stream after this long (default 3600)."),
        ],
        responses={200: OpenApiResponse(description="text/event-stream of `level` and `level_changed` events.")},
    )
    def get(self, request, version="v1"):
        skus = [s for s in request.query_params.get("sku", "").split(",") if s]
        try:
            max_seconds = min(max(float(request.query_params.get("max_seconds", 3600)), 1), 86400)
        except ValueError:
            max_seconds = 3600
        try:
            last_id = int(request.headers.get("Last-Event-ID", "") or -1)
        except ValueError:
            last_id = -1
        response = StreamingHttpResponse(self._events(skus, last_id, max_seconds), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # let nginx pass events through at once
        return response

    def _events(self, skus: list[str], last_id: int, max_seconds: float):
        # Django closes this thread's database connection when the response closes (request_finished).
        if last_id < 0:  # a new client: the current levels first
            last_id = selectors.latest_event_id()
            levels = selectors.stock_levels()
            if skus:
                levels = levels.filter(sku__in=skus)
            for ingredient in levels:
                yield _sse(
                    "level",
                    {
                        "sku": ingredient.sku,
                        "on_hand": str(ingredient.on_hand),
                        "reserved": str(ingredient.reserved),
                        "available": str(ingredient.available),
                    },
                )
        deadline = time.monotonic() + max_seconds
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            changes = selectors.level_changes_after(last_id, skus)
            for change in changes:
                last_id = change["id"]
                yield _sse(
                    "level_changed", {**change["payload"], "at": change["occurred_at"].isoformat()}, change["id"]
                )
            if changes:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
            time.sleep(POLL_SECONDS)
