"""Pictures of a run with no dependency: an SVG timeline, a connection graph, Mermaid text.

The timeline has one lane per request (node runs) or per routine (routine
graph jobs), bars from start to end, failures and cancels marked, and a
``<title>`` on every mark (a browser shows it on hover) with the error. The
connection graph draws a routine graph's routines and connections with the
number of messages delivered on each. Every name and message from the run is
first made terminal-safe, then escaped for XML (or Mermaid), so a node called
``<script>`` is text in the picture, never markup.
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING

from ._show import format_duration, run_took, shorten, terminal_safe, walk_tree
from ._state import Status

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from ._state import JobState, Request

_MARKUP = re.compile(r"[&<>\"']")
_LABEL_W = 280
_PLOT_W = 900
_LANE_H = 18
_TOP = 30
# By the status's text, e.g. "failed": a str hashes in C, an enum member in Python (looked up per request).
_COLOURS = {
    "completed": "#3f9e6a",
    "failed": "#d64541",
    "cancelled": "#9a9a9a",
    "timed_out": "#e08a1e",
    "running": "#4a7fd6",
    "pending": "#c9c9c9",
    "paused": "#b98ad6",
}


def xml_text(text: str, limit: int = 200) -> str:
    """*text* made terminal-safe, shortened to *limit* and escaped for XML and HTML."""
    if len(text) <= limit and text.isprintable() and _MARKUP.search(text) is None:
        return text  # the common case: nothing to do, found in two C-level scans
    return html.escape(shorten(terminal_safe(text), limit), quote=True)


def _span(state: JobState) -> float:
    end = 0.0
    for request in state.requests.values():
        for t in (request.finished_at, request.started_at, request.created_at):
            if t is not None:
                end = max(end, t)
                break
    if state.history:
        end = max(end, max(entry.offset for entry in state.history))
    took = run_took(state)
    if took is not None:
        end = max(end, took)
    return end if end > 0 else 1.0


def _request_title(request: Request) -> str:
    title = f"{request.node} ({request.id}) {request.status} in {format_duration(request.duration)}"
    if request.error is not None:
        title += f"\n{request.error.type}: {request.error.message}"
    return title


def _svg_open(width: int, height: int, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">'
        f"<title>{xml_text(title)}</title>"
        f'<rect width="{width}" height="{height}" fill="#fff"/>'
    )


def _axis(span: float, height: int) -> Iterator[str]:
    for i in range(5):
        x = _LABEL_W + _PLOT_W * i / 4
        yield f'<line x1="{x:.1f}" y1="{_TOP - 6}" x2="{x:.1f}" y2="{height}" stroke="#eee"/>'
        anchor = ("start", "middle", "middle", "middle", "end")[i]
        yield (
            f'<text x="{x:.1f}" y="{_TOP - 10}" fill="#666" text-anchor="{anchor}">'
            f"+{xml_text(format_duration(span * i / 4))}</text>"
        )


def timeline_svg(state: JobState) -> str:
    """The run's timeline as a standalone SVG document.

    Node runs get one lane per request, in tree order, indented by depth;
    routine graph jobs one lane per routine, with a tick per event it
    emitted. Failed requests are red and crossed, cancelled ones grey and
    dashed, unfinished ones run to the end of the picture. Built in one pass
    over the state: a 100,000-request run draws in well under a second.
    """
    span = _span(state)
    scale = _PLOT_W / span
    parts: list[str] = []
    if state.requests:
        lanes = len(state.requests)
        height = _TOP + lanes * _LANE_H + 10
        for lane, (request, depth, _, _) in enumerate(walk_tree(state.requests)):
            parts.extend(_request_lane(request, depth, _TOP + lane * _LANE_H, scale, span))
    else:
        routines = list(dict.fromkeys(entry.routine_id for entry in state.history))
        routines += [r for r in state.routine_states if r not in routines]
        lanes = len(routines)
        height = _TOP + max(lanes, 1) * _LANE_H + 10
        parts.extend(_routine_lanes(state, routines, scale))
    width = _LABEL_W + _PLOT_W + 20
    title = f"{state.flow_name} {state.run_id}: {state.status.value}"
    head = [_svg_open(width, height, title), *_axis(span, height)]
    if state.status in (Status.CANCELLED, Status.TIMED_OUT, Status.FAILED) and not state.requests:
        x = _LABEL_W + span * scale
        why = f"job {state.status.value}" + (
            f": {state.error.type}: {state.error.message}" if state.error is not None else ""
        )
        parts.append(
            f'<line x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}" y2="{height}" stroke="{_COLOURS[f"{state.status}"]}" '
            f'stroke-width="2" stroke-dasharray="4 3"><title>{xml_text(why, 2000)}</title></line>'
        )
    return "".join(head) + "\n" + "\n".join(parts) + "\n</svg>\n"


def _request_lane(request: Request, depth: int, y: int, scale: float, span: float) -> Iterator[str]:
    label = shorten(terminal_safe(f"{request.node} ({request.id})"), 40)
    yield f'<text x="{4 + min(depth, 20) * 8}" y="{y + 12}">{html.escape(label)}</text>'
    start = request.started_at if request.started_at is not None else request.created_at
    end = request.finished_at if request.finished_at is not None else span
    x = _LABEL_W + start * scale
    w = max((end - start) * scale, 1.5)
    status = f"{request.status}"
    colour = _COLOURS[status]
    dash = ' stroke="#555" stroke-dasharray="3 2"' if status == "cancelled" else ""
    title = xml_text(_request_title(request), 2000)
    yield (
        f'<rect class="{status}" x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{_LANE_H - 6}" '
        f'fill="{colour}"{dash}><title>{title}</title></rect>'
    )
    if status == "failed":
        xe = x + w
        yield (
            f'<path d="M{xe - 4:.1f} {y + 3}l8 {_LANE_H - 6}m0 -{_LANE_H - 6}l-8 {_LANE_H - 6}" '
            f'stroke="{colour}" stroke-width="2"><title>{title}</title></path>'
        )


def _routine_lanes(state: JobState, routines: list[str], scale: float) -> Iterator[str]:
    lane_of = {routine: i for i, routine in enumerate(routines)}
    failed = set(state.error.path) if state.error is not None else set()
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for entry in state.history:
        first.setdefault(entry.routine_id, entry.offset)
        last[entry.routine_id] = entry.offset
    for routine, lane in lane_of.items():
        y = _TOP + lane * _LANE_H
        yield f'<text x="4" y="{y + 12}">{xml_text(routine, 40)}</text>'
        if routine in first:
            x = _LABEL_W + first[routine] * scale
            w = max((last[routine] - first[routine]) * scale, 1.5)
            colour = _COLOURS["failed"] if routine in failed else "#cfe0f5"
            yield f'<rect x="{x:.1f}" y="{y + 6}" width="{w:.1f}" height="{_LANE_H - 12}" fill="{colour}"/>'
    for entry in state.history:
        y = _TOP + lane_of[entry.routine_id] * _LANE_H
        x = _LABEL_W + entry.offset * scale
        title = xml_text(
            f"{entry.routine_id}.{entry.event_name} at +{format_duration(entry.offset)} {entry.data!r}", 500
        )
        yield (
            f'<rect class="event" x="{x - 1:.1f}" y="{y + 2}" width="3" height="{_LANE_H - 4}" '
            f'fill="#4a7fd6"><title>{title}</title></rect>'
        )


def delivery_counts(
    state: JobState, connections: Sequence[tuple[str, str, str, str]]
) -> dict[tuple[str, str, str, str], int]:
    """Messages delivered on each connection: the source's emissions of the event, minus those undelivered."""
    emitted: dict[tuple[str, str], int] = {}
    for entry in state.history:
        key = (entry.routine_id, entry.event_name)
        emitted[key] = emitted.get(key, 0) + 1
    lost: dict[tuple[str, str, str, str], int] = {}
    for d in state.undelivered:
        key4 = (d.source, d.event, d.target, d.slot)
        lost[key4] = lost.get(key4, 0) + 1
    return {c: max(emitted.get((c[0], c[1]), 0) - lost.get(c, 0), 0) for c in connections}


def _layers(routines: list[str], connections: Sequence[tuple[str, str, str, str]]) -> dict[str, int]:
    """Each routine's column: its breadth-first distance from the routines nothing feeds.

    In a graph that is all cycle, the first routine is the start; a routine
    no start reaches gets column 0. Back edges then simply point left.
    """
    targets: dict[str, list[str]] = {r: [] for r in routines}
    fed: set[str] = set()
    for src, _, dst, _ in connections:
        targets[src].append(dst)
        if src != dst:
            fed.add(dst)
    starts = [r for r in routines if r not in fed] or routines[:1]
    layer = dict.fromkeys(starts, 0)
    queue = list(starts)
    for routine in queue:  # grows while it is walked: breadth first
        for dst in targets[routine]:
            if dst not in layer:
                layer[dst] = layer[routine] + 1
                queue.append(dst)
    return {r: layer.get(r, 0) for r in routines}


_BOX_W, _BOX_H, _COL_W, _ROW_H = 160, 30, 260, 80


def graph_svg(state: JobState, connections: Sequence[tuple[str, str, str, str]]) -> str:
    """A routine graph's connection graph as an SVG document, each connection labelled with its deliveries.

    Routines are boxes in columns by their distance from the start;
    connections that go forward are arrows between columns, the others
    (back edges, same column, a routine to itself) loop below the boxes.
    """
    routines = list(
        dict.fromkeys([*(c[0] for c in connections), *(c[2] for c in connections), *state.routine_states])
    )
    layer = _layers(routines, connections)
    rows: dict[int, int] = {}
    pos: dict[str, tuple[int, int]] = {}
    for routine in routines:
        row = rows.get(layer[routine], 0)
        rows[layer[routine]] = row + 1
        pos[routine] = (20 + layer[routine] * _COL_W, 40 + row * _ROW_H)
    failed = set(state.error.path) if state.error is not None else set()
    counts = delivery_counts(state, connections)
    edges: list[str] = []
    lowest = 40 + max(rows.values(), default=1) * _ROW_H
    bend = 0
    for (src, event, dst, slot), count in counts.items():
        (sx, sy), (dx, dy) = pos[src], pos[dst]
        title = f"<title>{xml_text(f'{src}.{event} -> {dst}.{slot}: {count} delivered')}</title>"
        label = xml_text(f"{event} → {slot}: {count}", 60)
        if layer[dst] > layer[src]:
            x1, y1, x2, y2 = sx + _BOX_W, sy + _BOX_H // 2, dx, dy + _BOX_H // 2
            path = f"M{x1} {y1}C{x1 + 50} {y1} {x2 - 50} {y2} {x2} {y2}"
            lx, ly, anchor = x2 - 8.0, y2 - 6.0, "end"  # by the target: labels from one source never meet
        else:
            bend += 22
            x1, y1, x2, y2 = sx + _BOX_W * 2 // 3, sy + _BOX_H, dx + _BOX_W // 3, dy + _BOX_H
            low = max(y1, y2) + bend
            path = f"M{x1} {y1}C{x1} {low} {x2} {low} {x2} {y2}"
            lx, ly, anchor = (x1 + x2) / 2, low - bend * 0.25 + 4, "middle"
            lowest = max(lowest, low + 10)
        edges.append(f'<path d="{path}" fill="none" stroke="#555" marker-end="url(#arrow)">{title}</path>')
        edges.append(f'<text x="{lx:.0f}" y="{ly:.0f}" text-anchor="{anchor}" fill="#333">{label}</text>')
    width = 40 + (max(layer.values(), default=0) + 1) * _COL_W
    parts = [
        _svg_open(width, lowest + 20, f"{state.flow_name} {state.run_id}: connections"),
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
        'orient="auto"><path d="M0 0L10 5L0 10z" fill="#555"/></marker></defs>',
    ]
    for routine, (x, y) in pos.items():
        fill = "#f6d5d4" if routine in failed else "#e7eefa"
        parts.append(
            f'<rect x="{x}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="6" fill="{fill}" stroke="#4a7fd6">'
            f"<title>{xml_text(routine, 2000)}</title></rect>"
            f'<text x="{x + _BOX_W // 2}" y="{y + 19}" text-anchor="middle">{xml_text(routine, 26)}</text>'
        )
    parts.extend(edges)  # after the boxes: labels are never hidden under one
    return "".join(parts[:2]) + "\n" + "\n".join(parts[2:]) + "\n</svg>\n"


def _mermaid_text(text: str, limit: int = 80) -> str:
    """*text* for a quoted Mermaid label: anything but plain letters and punctuation as an entity."""
    safe = shorten(terminal_safe(text), limit)
    return "".join(ch if ch.isalnum() or ch in " _-.,:()/+→!?'" else f"#{ord(ch)};" for ch in safe)


def mermaid(state: JobState, connections: Sequence[tuple[str, str, str, str]] = ()) -> str:
    """The request tree (or, given *connections*, the routine graph) as Mermaid ``flowchart`` text."""
    lines: list[str] = []
    if connections:
        lines.append("flowchart LR")
        counts = delivery_counts(state, connections)
        ids = {r: f"n{i}" for i, r in enumerate(dict.fromkeys(x for c in connections for x in (c[0], c[2])))}
        lines.extend(f'    {node}["{_mermaid_text(routine)}"]' for routine, node in ids.items())
        for (src, event, dst, slot), count in counts.items():
            label = _mermaid_text(f"{event} → {slot}: {count}")
            lines.append(f'    {ids[src]} -- "{label}" --> {ids[dst]}')
        return "\n".join(lines)
    lines.append("flowchart TD")
    ids = {request_id: f"n{i}" for i, request_id in enumerate(state.requests)}
    for request, _, _, _ in walk_tree(state.requests):
        text = f"{request.node} ({request.id}) {request.status} {format_duration(request.duration)}"
        lines.append(f'    {ids[request.id]}["{_mermaid_text(text)}"]:::{request.status}')
        if request.parent_id in ids:
            lines.append(f"    {ids[request.parent_id]} --> {ids[request.id]}")
    lines.extend(
        [
            "    classDef failed fill:#f6d5d4,stroke:#d64541",
            "    classDef cancelled fill:#eee,stroke:#999,stroke-dasharray:3 2",
            "    classDef timed_out fill:#fbe3c6,stroke:#e08a1e",
        ]
    )
    return "\n".join(lines)
