"""A pipeline definition drawn as an SVG picture on the server (no script, no CDN), for the admin.

``definition_svg`` lays the states out top to bottom in layers that follow ``StartAt``, ``Next``, Choice rules,
``Default`` and catchers (a loop back is drawn up the right side), draws Parallel branches and a Map's item
processor as nested groups, and colours each box by what the state did in a run (``statuses``, keyed by
``state_path``). A pure function of plain JSON data: no database, no other app. State names are user data:
every text is stripped of what XML cannot hold and escaped; every number is formatted here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape
from typing import Any

# What a state did in a run, as ``forecasting.selectors.state_statuses`` derives it.
NOT_RUN = "NOT_RUN"
RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
CAUGHT = "CAUGHT"
RETRIED = "RETRIED"
ABORTED = "ABORTED"
STATUSES = (NOT_RUN, RUNNING, SUCCEEDED, FAILED, CAUGHT, RETRIED, ABORTED)
# (fill, stroke) per status: ColorBrewer tones, the ones the forecast chart uses for its blues.
COLOURS = {
    NOT_RUN: ("#f0f0f0", "#969696"),
    RUNNING: ("#9ecae1", "#3182bd"),
    SUCCEEDED: ("#a1d99b", "#31a354"),
    FAILED: ("#fc9272", "#de2d26"),
    CAUGHT: ("#fdae6b", "#e6550d"),
    RETRIED: ("#fee391", "#d9a40e"),
    ABORTED: ("#bdbdbd", "#525252"),
}
LABELS = {
    NOT_RUN: "not run",
    RUNNING: "running",
    SUCCEEDED: "succeeded",
    FAILED: "failed",
    CAUGHT: "caught",
    RETRIED: "retried",
    ABORTED: "aborted",
}
PLAIN = ("#ffffff", "#636363")  # a definition drawn without a run

BOX_WIDTH, BOX_HEIGHT = 180, 54
GAP_X, GAP_Y = 28, 46  # between boxes of a layer; between layers (room for arrows and their labels)
GROUP_HEADER, GROUP_PAD, FRAME_HEADER = 30, 12, 16
LANE = 14  # spacing of the lanes loops back are drawn in, right of the boxes
MARGIN, LEGEND_HEIGHT, TITLE_HEIGHT = 16, 28, 24
NAME_CHARS, DETAIL_CHARS, LABEL_CHARS = 24, 30, 30
START, END = "\x00start", "\x00end"  # the top level's Start and End marks (no state name can be these: see _clean)
HALO = 'paint-order="stroke" stroke="#fff" stroke-width="3"'  # labels stay readable over an arrow
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def state_path(address: list | tuple, name: str) -> str:
    """Where a state is, as validation problems name it: ``Load``, ``Fanout/Branches[1]/Load``,
    ``Each/ItemProcessor/Load``. ``address`` is a branch's (``[[state, branch index or None], …]``)."""
    prefix = "".join(
        f"{state}/Branches[{index}]/" if index is not None else f"{state}/ItemProcessor/" for state, index in address
    )
    return prefix + name


def state_paths(definition: Any) -> list[str]:
    """Every state's path in ``definition``, nested ones included, parents before their children."""
    found: list[str] = []

    def walk(scope: Any, address: list) -> None:
        for name, state in _states(scope).items():
            found.append(state_path(address, name))
            for index, branch in enumerate(_branches(state)):
                walk(branch, [*address, (name, index)])
            processor = _processor(state)
            if processor is not None:
                walk(processor, [*address, (name, None)])

    walk(definition, [])
    return found


# ---- the layout ----------------------------------------------------------------------------------------------


@dataclass
class Edge:
    target: str
    label: str = ""
    dashed: bool = False  # a catcher


@dataclass
class Node:
    key: str  # the state's name in its scope (or START / END)
    path: str
    state: dict
    width: float = BOX_WIDTH
    height: float = BOX_HEIGHT
    x: float = 0.0
    y: float = 0.0
    layer: int = 0
    frames: list[tuple[str, Scope]] = field(default_factory=list)  # a group's nested scopes, with a caption
    edges: list[Edge] = field(default_factory=list)

    @property
    def centre(self) -> float:
        return self.x + self.width / 2


@dataclass
class Scope:
    nodes: dict[str, Node]
    width: float
    height: float
    back_edges: list[tuple[Node, Node, Edge]]
    detours: set[tuple[str, str]] = field(default_factory=set)  # forward edges that would cross a box


def _states(scope: Any) -> dict:
    states = scope.get("States") if isinstance(scope, dict) else None
    return (
        {name: state for name, state in states.items() if isinstance(state, dict)} if isinstance(states, dict) else {}
    )


def _branches(state: dict) -> list:
    branches = state.get("Branches") if state.get("Type") == "Parallel" else None
    return [branch for branch in branches if isinstance(branch, dict)] if isinstance(branches, list) else []


def _processor(state: dict) -> dict | None:
    if state.get("Type") != "Map":
        return None
    processor = state.get("ItemProcessor") or state.get("Iterator")
    return processor if isinstance(processor, dict) else None


def _rule_label(rule: dict) -> str:
    """A Choice rule in a few characters: ``$.weekday = "Friday"``; compound rules by their operator."""
    for logical in ("And", "Or", "Not"):
        if logical in rule:
            return logical
    operators = [key for key in rule if key not in ("Variable", "Next", "Comment")]
    if not operators:
        return ""
    operator = operators[0]
    value = rule[operator]
    shown = value if isinstance(value, str) and operator.endswith("Path") else _json_short(value)
    return f"{rule.get('Variable', '')} {operator} {shown}"


def _json_short(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _edges(state: dict) -> list[Edge]:
    edges: list[Edge] = []
    if isinstance(state.get("Next"), str):
        edges.append(Edge(state["Next"]))
    for rule in state.get("Choices") or [] if isinstance(state.get("Choices"), list) else []:
        if isinstance(rule, dict) and isinstance(rule.get("Next"), str):
            edges.append(Edge(rule["Next"], _rule_label(rule)))
    if isinstance(state.get("Default"), str):
        edges.append(Edge(state["Default"], "Default"))
    for catcher in state.get("Catch") or [] if isinstance(state.get("Catch"), list) else []:
        if isinstance(catcher, dict) and isinstance(catcher.get("Next"), str):
            errors = catcher.get("ErrorEquals") if isinstance(catcher.get("ErrorEquals"), list) else []
            edges.append(Edge(catcher["Next"], "catch " + ", ".join(str(e) for e in errors), dashed=True))
    merged: dict[tuple[str, bool], Edge] = {}  # two rules to one state: one arrow, both labels
    for edge in edges:
        known = merged.get((edge.target, edge.dashed))
        if known is None:
            merged[(edge.target, edge.dashed)] = edge
        elif edge.label:
            known.label = f"{known.label}; {edge.label}" if known.label else edge.label
    return list(merged.values())


def _layout(scope: Any, address: list, *, top: bool) -> Scope:
    states = _states(scope)
    nodes: dict[str, Node] = {}
    for name, state in states.items():
        node = Node(key=name, path=state_path(address, name), state=state)
        node.edges = [edge for edge in _edges(state) if edge.target in states]
        for index, branch in enumerate(_branches(state)):
            node.frames.append((f"branch {index + 1}", _layout(branch, [*address, (name, index)], top=False)))
        processor = _processor(state)
        if processor is not None:
            node.frames.append(("each item", _layout(processor, [*address, (name, None)], top=False)))
        if node.frames:
            inner_width = sum(frame.width for _, frame in node.frames) + GAP_X / 2 * (len(node.frames) - 1)
            inner_height = max(frame.height for _, frame in node.frames) + FRAME_HEADER
            node.width = max(BOX_WIDTH, inner_width + 2 * GROUP_PAD)
            node.height = GROUP_HEADER + inner_height + GROUP_PAD
        nodes[name] = node
    start = scope.get("StartAt") if isinstance(scope, dict) else None
    if top and nodes:
        ends = [node for node in nodes.values() if _is_terminal(node.state)]
        nodes[START] = Node(key=START, path="", state={}, width=64, height=24)
        if isinstance(start, str) and start in states:
            nodes[START].edges = [Edge(start)]
        nodes[END] = Node(key=END, path="", state={}, width=64, height=24)
        for node in ends:
            node.edges.append(Edge(END))
        start = START
    order = _discovery_order(nodes, start)
    back = _back_edges(nodes, order)
    _assign_layers(nodes, order, back)
    layers = _order_layers(nodes, order, back)
    return _place(nodes, layers, back)


def _is_terminal(state: dict) -> bool:
    return state.get("Type") in ("Succeed", "Fail") or state.get("End") is True


def _discovery_order(nodes: dict[str, Node], start: str | None) -> list[str]:
    """Depth-first from ``start`` (then from any state not reached), following each state's edges in order."""
    seen: set[str] = set()
    order: list[str] = []
    roots = ([start] if start in nodes else []) + list(nodes)
    for root in roots:
        if root in seen:
            continue
        stack = [root]
        while stack:
            key = stack.pop()
            if key in seen:
                continue
            seen.add(key)
            order.append(key)
            stack.extend(edge.target for edge in reversed(nodes[key].edges) if edge.target not in seen)
    return order


def _back_edges(nodes: dict[str, Node], order: list[str]) -> set[tuple[str, str]]:
    """Edges that close a loop (to a state still on the depth-first path): drawn up the side, not layered."""
    back: set[tuple[str, str]] = set()
    colour: dict[str, int] = {}  # 1 on the path, 2 done
    for root in order:
        if root in colour:
            continue
        colour[root] = 1
        stack = [(root, iter(nodes[root].edges))]
        while stack:
            key, edges = stack[-1]
            edge = next(edges, None)
            if edge is None:
                colour[key] = 2
                stack.pop()
                continue
            if colour.get(edge.target) == 1:
                back.add((key, edge.target))
            elif edge.target not in colour:
                colour[edge.target] = 1
                stack.append((edge.target, iter(nodes[edge.target].edges)))
    return back


def _assign_layers(nodes: dict[str, Node], order: list[str], back: set[tuple[str, str]]) -> None:
    """Longest path from the start over the forward edges: a state sits below everything that leads to it."""
    incoming = {key: 0 for key in nodes}
    for key, node in nodes.items():
        for edge in node.edges:
            if (key, edge.target) not in back:
                incoming[edge.target] += 1
    position = {key: index for index, key in enumerate(order)}
    ready = sorted((key for key, n in incoming.items() if n == 0), key=position.__getitem__)
    while ready:
        key = ready.pop(0)
        for edge in nodes[key].edges:
            if (key, edge.target) in back:
                continue
            target = nodes[edge.target]
            target.layer = max(target.layer, nodes[key].layer + 1)
            incoming[edge.target] -= 1
            if incoming[edge.target] == 0:
                ready.append(edge.target)
    if END in nodes:  # the End mark below everything
        nodes[END].layer = max(node.layer for key, node in nodes.items() if key != END) + 1


def _order_layers(nodes: dict[str, Node], order: list[str], back: set[tuple[str, str]]) -> list[list[str]]:
    """States per layer, ordered by discovery and then by where the states leading to them are (barycentres)."""
    count = max((node.layer for node in nodes.values()), default=-1) + 1
    layers: list[list[str]] = [[] for _ in range(count)]
    for key in order:
        layers[nodes[key].layer].append(key)
    parents: dict[str, list[str]] = {key: [] for key in nodes}
    for key, node in nodes.items():
        for edge in node.edges:
            if (key, edge.target) not in back:
                parents[edge.target].append(key)
    for _ in range(2):
        rank = {key: index for layer in layers for index, key in enumerate(layer)}
        for layer in layers[1:]:
            current = {key: index for index, key in enumerate(layer)}

            def barycentre(key: str, current=current, rank=rank) -> float:
                above = [rank[parent] for parent in parents[key] if nodes[parent].layer == nodes[key].layer - 1]
                return sum(above) / len(above) if above else current[key]

            layer.sort(key=lambda key, barycentre=barycentre, current=current: (barycentre(key), current[key]))
            rank.update({key: index for index, key in enumerate(layer)})
    return layers


def _place(nodes: dict[str, Node], layers: list[list[str]], back: set[tuple[str, str]]) -> Scope:
    widths = [sum(nodes[key].width for key in layer) + GAP_X * max(0, len(layer) - 1) for layer in layers]
    content = max(widths, default=BOX_WIDTH)
    y = 0.0
    for layer, width in zip(layers, widths, strict=True):
        x = (content - width) / 2
        for key in layer:
            node = nodes[key]
            node.x, node.y = x, y
            x += node.width + GAP_X
        y += max(nodes[key].height for key in layer) + GAP_Y
    detours = {
        (source, edge.target)
        for source in nodes
        for edge in nodes[source].edges
        if (source, edge.target) not in back and _crosses(nodes[source], nodes[edge.target], layers, nodes)
    }
    left = len(detours) * LANE + (LANE if detours else 0)  # lanes for edges going round, left of the boxes
    for node in nodes.values():
        node.x += left
    lanes = len(back) * LANE + (LANE if back else 0)
    back_edges = [
        (nodes[source], nodes[edge.target], edge)
        for source in nodes
        for edge in nodes[source].edges
        if (source, edge.target) in back
    ]
    return Scope(nodes, left + content + lanes, max(0.0, y - GAP_Y), back_edges, detours)


def _crosses(source: Node, target: Node, layers: list[list[str]], nodes: dict[str, Node]) -> bool:
    """Whether the straight line from ``source`` down to ``target`` passes through a box of a layer between."""
    if target.layer - source.layer < 2:
        return False
    x1, y1, x2, y2 = source.centre, source.y + source.height, target.centre, target.y
    for layer in layers[source.layer + 1 : target.layer]:
        for key in layer:
            node = nodes[key]
            for y in (node.y, node.y + node.height):
                x = x1 + (x2 - x1) * (y - y1) / (y2 - y1) if y2 != y1 else x1
                if node.x - 6 <= x <= node.x + node.width + 6:
                    return True
    return False


# ---- drawing -------------------------------------------------------------------------------------------------


def _clean(text: Any, limit: int | None = None) -> str:
    """``text`` as XML text or attribute: characters XML cannot hold replaced, escaped, cut with an ellipsis."""
    value = _NOT_XML.sub("\ufffd", str(text))
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "…"
    return escape(value, quote=True)


def _draw_scope(parts: list[str], scope: Scope, dx: float, dy: float, statuses: dict | None, marker: str) -> None:
    loops = {(source.key, target.key) for source, target, _ in scope.back_edges}
    lane = 0
    for node in scope.nodes.values():
        forward = [edge for edge in node.edges if (node.key, edge.target) not in loops]
        for index, edge in enumerate(forward):
            target = scope.nodes[edge.target]
            if (node.key, edge.target) in scope.detours:
                lane += 1
                _draw_detour(parts, node, target, edge, dx, dy, _fan(node, index, len(forward)), lane, marker)
            else:
                _draw_edge(parts, node, target, edge, dx, dy, _fan(node, index, len(forward)), marker)
    right = dx + scope.width
    for lane, (source, target, edge) in enumerate(scope.back_edges):
        _draw_back_edge(parts, source, target, edge, dx, dy, right - (lane + 1) * LANE, marker)
    for node in scope.nodes.values():
        _draw_node(parts, node, dx, dy, statuses, marker)


def _fan(node: Node, index: int, count: int) -> float:
    """Where the ``index``-th of ``count`` arrows leaves the bottom of ``node`` (spread over its middle half)."""
    if count == 1:
        return node.centre
    return node.x + node.width * (0.25 + 0.5 * index / (count - 1))


def _draw_edge(parts, source: Node, target: Node, edge: Edge, dx: float, dy: float, x1: float, marker: str) -> None:
    x1, y1 = dx + x1, dy + source.y + source.height
    x2, y2 = dx + target.centre, dy + target.y
    bend = max(12.0, (y2 - y1) / 2)
    dash = ' stroke-dasharray="5,3"' if edge.dashed else ""
    kind = "catch" if edge.dashed else "next"
    parts.append(
        f'<path class="transition {kind}" d="M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 + bend:.1f} {x2:.1f},{y2 - bend:.1f} '
        f'{x2:.1f},{y2 - 2:.1f}" fill="none" stroke="#737373" stroke-width="1.3"{dash} marker-end="url(#{marker})"/>'
    )
    if edge.label:  # near the target, where arrows fanned out of one state no longer overlap
        t = 0.78
        mx = (1 - t) ** 3 * x1 + 3 * (1 - t) ** 2 * t * x1 + 3 * (1 - t) * t**2 * x2 + t**3 * x2
        my = (1 - t) ** 3 * y1 + 3 * (1 - t) ** 2 * t * (y1 + bend) + 3 * (1 - t) * t**2 * (y2 - bend) + t**3 * y2
        parts.append(
            f'<text class="transition-label" x="{mx:.1f}" y="{my:.1f}" font-size="10" fill="#525252" '
            f'text-anchor="middle" {HALO}>{_clean(edge.label, LABEL_CHARS)}<title>{_clean(edge.label)}</title></text>'
        )


def _draw_detour(parts, source: Node, target: Node, edge: Edge, dx, dy, x1: float, lane: int, marker: str) -> None:
    """A forward edge that would cross boxes: down, left to its lane, down the lane, back to the target."""
    x1, y1 = dx + x1, dy + source.y + source.height
    x2, y2 = dx + target.centre, dy + target.y
    lane_x = dx + lane * LANE
    turn_out, turn_in = y1 + 8 + 2 * (lane % 3), y2 - 10 - 2 * (lane % 3)
    dash = ' stroke-dasharray="5,3"' if edge.dashed else ""
    kind = "catch" if edge.dashed else "next"
    parts.append(
        f'<path class="transition detour {kind}" d="M{x1:.1f},{y1:.1f} V{turn_out:.1f} H{lane_x:.1f} V{turn_in:.1f} '
        f'H{x2:.1f} V{y2 - 2:.1f}" fill="none" stroke="#737373" stroke-width="1.3"{dash} '
        f'marker-end="url(#{marker})"/>'
    )
    if edge.label:
        parts.append(
            f'<text class="transition-label" x="{lane_x + 3:.1f}" y="{turn_in - 3:.1f}" font-size="10" '
            f'fill="#525252" {HALO}>{_clean(edge.label, LABEL_CHARS)}<title>{_clean(edge.label)}</title></text>'
        )


def _draw_back_edge(parts, source: Node, target: Node, edge: Edge, dx, dy, lane_x: float, marker: str) -> None:
    sx, sy = dx + source.x + source.width, dy + source.y + source.height / 2
    tx, ty = dx + target.x + target.width, dy + target.y + target.height / 2
    if source is target:
        sy, ty = sy - 8, sy + 8
    dash = ' stroke-dasharray="5,3"' if edge.dashed else ""
    kind = "catch" if edge.dashed else "next"
    parts.append(
        f'<path class="transition loop {kind}" d="M{sx:.1f},{sy:.1f} H{lane_x:.1f} V{ty:.1f} H{tx + 2:.1f}" '
        f'fill="none" stroke="#737373" stroke-width="1.3"{dash} marker-end="url(#{marker})"/>'
    )
    if edge.label:
        parts.append(
            f'<text class="transition-label" x="{lane_x + 3:.1f}" y="{(sy + ty) / 2:.1f}" font-size="10" '
            f'fill="#525252" {HALO}>{_clean(edge.label, LABEL_CHARS)}<title>{_clean(edge.label)}</title></text>'
        )


def _draw_node(parts: list[str], node: Node, dx: float, dy: float, statuses: dict | None, marker: str) -> None:
    x, y = dx + node.x, dy + node.y
    if node.key in (START, END):
        label = "Start" if node.key == START else "End"
        parts.append(
            f'<g class="mark"><rect x="{x:.1f}" y="{y:.1f}" width="{node.width:.0f}" height="{node.height:.0f}" '
            f'rx="12" fill="#525252"/><text x="{x + node.width / 2:.1f}" y="{y + 16:.1f}" font-size="11" '
            f'text-anchor="middle" fill="#fff">{label}</text></g>'
        )
        return
    status = (statuses or {}).get(node.path, NOT_RUN) if statuses is not None else None
    if status not in COLOURS and status is not None:
        status = NOT_RUN
    fill, stroke = COLOURS[status] if status is not None else PLAIN
    kind = str(node.state.get("Type", "?"))
    shown = f"{kind} · {LABELS[status]}" if status is not None else kind
    css = f"state status-{status.lower().replace('_', '-')}" if status is not None else "state"
    attributes = f'class="{css}" data-path="{_clean(node.path)}" data-type="{_clean(kind)}"'
    if status is not None:
        attributes += f' data-status="{status}"'
    tooltip = f"{node.path} ({kind})" + (f": {LABELS[status]}" if status is not None else "")
    parts.append(f"<g {attributes}><title>{_clean(tooltip)}</title>")
    if node.frames:
        parts.append(
            f'<rect class="box" x="{x:.1f}" y="{y:.1f}" width="{node.width:.1f}" height="{node.height:.1f}" rx="6" '
            f'fill="#fbfbfb" stroke="{stroke}" stroke-width="1.5"/>'
            f'<rect class="header" x="{x:.1f}" y="{y:.1f}" width="{node.width:.1f}" height="{GROUP_HEADER}" rx="6" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
            f'<text x="{x + 10:.1f}" y="{y + 19:.1f}" font-size="12" font-weight="bold">'
            f"{_clean(node.key, NAME_CHARS + 10)}</text>"
            f'<text x="{x + node.width - 10:.1f}" y="{y + 19:.1f}" font-size="10" text-anchor="end" fill="#252525">'
            f"{_clean(shown)}</text></g>"
        )
        fx = x + GROUP_PAD
        for caption, frame in node.frames:
            fy = y + GROUP_HEADER + 4
            parts.append(
                f'<rect class="frame" x="{fx - 4:.1f}" y="{fy:.1f}" width="{frame.width + 8:.1f}" '
                f'height="{frame.height + FRAME_HEADER + 4:.1f}" rx="4" fill="none" stroke="#bdbdbd" '
                f'stroke-dasharray="2,2"/><text x="{fx:.1f}" y="{fy + 11:.1f}" font-size="9" fill="#737373">'
                f"{_clean(caption)}</text>"
            )
            _draw_scope(parts, frame, fx, fy + FRAME_HEADER, statuses, marker)
            fx += frame.width + GAP_X / 2
        return
    detail = f"{kind}: {node.state.get('Resource', '')}" if kind == "Task" else kind
    parts.append(
        f'<rect class="box" x="{x:.1f}" y="{y:.1f}" width="{node.width:.0f}" height="{node.height:.0f}" rx="6" '
        f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
        f'<text x="{x + node.width / 2:.1f}" y="{y + 17:.1f}" font-size="12" font-weight="bold" '
        f'text-anchor="middle">{_clean(node.key, NAME_CHARS)}</text>'
        f'<text x="{x + node.width / 2:.1f}" y="{y + 32:.1f}" font-size="10" text-anchor="middle" fill="#252525">'
        f"{_clean(detail, DETAIL_CHARS)}</text>"
    )
    if status is not None:
        parts.append(
            f'<text class="status" x="{x + node.width / 2:.1f}" y="{y + 46:.1f}" font-size="10" '
            f'text-anchor="middle" font-style="italic" fill="#252525">{LABELS[status]}</text>'
        )
    parts.append("</g>")


def _legend(parts: list[str], x: float, y: float, statuses: dict | None) -> float:
    """The legend at ``y``; returns its width."""
    start = x
    if statuses is not None:
        for status in STATUSES:
            fill, stroke = COLOURS[status]
            parts.append(
                f'<rect class="legend-swatch" data-status="{status}" x="{x:.1f}" y="{y:.1f}" width="14" '
                f'height="14" rx="3" fill="{fill}" stroke="{stroke}"/>'
                f'<text x="{x + 19:.1f}" y="{y + 11:.1f}" font-size="11">{LABELS[status]}</text>'
            )
            x += 26 + 7 * len(LABELS[status]) + 8
    for label, dash in (("transition", ""), ("catch", ' stroke-dasharray="5,3"')):
        parts.append(
            f'<line x1="{x:.1f}" y1="{y + 7:.1f}" x2="{x + 26:.1f}" y2="{y + 7:.1f}" stroke="#737373" '
            f'stroke-width="1.3"{dash}/><text x="{x + 31:.1f}" y="{y + 11:.1f}" font-size="11">{label}</text>'
        )
        x += 31 + 7 * len(label) + 12
    return x - start


def definition_svg(
    definition: Any, *, statuses: dict[str, str] | None = None, title: str = "", element_id: str = "pipeline"
) -> str:
    """The picture of ``definition``; with ``statuses`` ({state path: status}) each box takes its status's colour
    (a state missing from it is not run), without it the boxes are plain. ``element_id`` names the SVG element
    (and prefixes its marker's id), so two pictures can share a page."""
    element_id = re.sub(r"[^A-Za-z0-9_-]", "-", element_id)[:60] or "pipeline"
    marker = f"{element_id}-arrow"
    scope = _layout(definition, [], top=True)
    if not scope.nodes:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" id="{element_id}" width="320" height="40">'
            '<text x="8" y="24">No states</text></svg>'
        )
    body: list[str] = []
    top = MARGIN + (TITLE_HEIGHT if title else 0)
    _draw_scope(body, scope, MARGIN, top, statuses, marker)
    legend: list[str] = []
    legend_y = top + scope.height + MARGIN
    legend_width = _legend(legend, MARGIN, legend_y, statuses)
    width = max(scope.width, legend_width) + 2 * MARGIN
    height = legend_y + LEGEND_HEIGHT
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{element_id}" class="pipeline-diagram" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="{_clean(title or "pipeline")}" font-family="sans-serif">',
        f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#737373"/></marker></defs>',
        f'<rect width="{width:.0f}" height="{height:.0f}" fill="#fff"/>',
    ]
    if title:
        parts.append(f'<text x="{MARGIN}" y="{MARGIN + 10}" font-size="13" font-weight="bold">{_clean(title)}</text>')
    parts.extend(body)
    parts.extend(legend)
    parts.append("</svg>")
    return "".join(parts)
