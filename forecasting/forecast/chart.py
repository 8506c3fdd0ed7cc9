"""A forecast as an SVG line chart drawn on the server (no script, no CDN): the recent history, the forecast
and its prediction interval as a band. Every text in it is escaped; every number is formatted by us."""

from __future__ import annotations

from datetime import date
from html import escape

WIDTH, HEIGHT, MARGIN = 760, 260, 40
HISTORY_SHOWN_DAYS = 56


def forecast_svg(*, history: list[list], points: list[dict], title: str = "") -> str:
    """``history``: ``[[day, orders]]``; ``points``: ``[{"day", "orders", "lower", "upper"}]``."""
    history = history[-HISTORY_SHOWN_DAYS:]
    days = [date.fromisoformat(d) for d, _ in history] + [date.fromisoformat(p["day"]) for p in points]
    if not days:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="40">'
            '<text x="8" y="24">No data</text></svg>'
        )
    values = [float(v) for _, v in history] + [float(p["upper"]) for p in points] + [0.0]
    top = max(values) * 1.08 or 1.0
    first, span = days[0].toordinal(), max(1, days[-1].toordinal() - days[0].toordinal())

    def x(day: str) -> float:
        return MARGIN + (date.fromisoformat(day).toordinal() - first) / span * (WIDTH - 2 * MARGIN)

    def y(value: float) -> float:
        return HEIGHT - MARGIN - float(value) / top * (HEIGHT - 2 * MARGIN)

    def line(pairs) -> str:
        return " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in pairs)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title or "forecast")}" class="forecast-chart">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
        f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - MARGIN}" y2="{HEIGHT - MARGIN}" stroke="#999"/>',
        f'<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{HEIGHT - MARGIN}" stroke="#999"/>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        value = top * fraction
        parts.append(
            f'<text x="{MARGIN - 4}" y="{y(value) + 4:.1f}" font-size="10" text-anchor="end">{value:.0f}</text>'
        )
    if points:
        band = [(p["day"], p["upper"]) for p in points] + [(p["day"], p["lower"]) for p in reversed(points)]
        parts.append(f'<polygon class="interval" points="{line(band)}" fill="#9ecae1" fill-opacity="0.5"/>')
        parts.append(
            f'<polyline class="forecast" points="{line((p["day"], p["orders"]) for p in points)}" '
            'fill="none" stroke="#3182bd" stroke-width="2" stroke-dasharray="5,3"/>'
        )
    if history:
        parts.append(
            f'<polyline class="history" points="{line(history)}" fill="none" stroke="#333" stroke-width="1.5"/>'
        )
    parts.append(f'<text x="{MARGIN}" y="{HEIGHT - 8}" font-size="10">{escape(days[0].isoformat())}</text>')
    parts.append(
        f'<text x="{WIDTH - MARGIN}" y="{HEIGHT - 8}" font-size="10" text-anchor="end">'
        f"{escape(days[-1].isoformat())}</text>"
    )
    parts.append(
        f'<text x="{WIDTH - MARGIN}" y="16" font-size="11" text-anchor="end">history (black), forecast (blue), '
        "interval (band)</text>"
    )
    if title:
        parts.append(f'<text x="{MARGIN}" y="16" font-size="12" font-weight="bold">{escape(title)}</text>')
    parts.append("</svg>")
    return "".join(parts)
