"""``python -m runtime report``: one self-contained HTML page of a run.

The page holds the summary, the timeline and (for routine graphs, given their
connections) the connection graph as inline SVG, the request tree with each
request expandable, the shared log and the history table. It loads nothing:
its Content-Security-Policy is ``default-src 'none'`` with inline styles
only, it has no script and no external URL, so it opens offline and can be
attached to a ticket. Every string from the run is escaped (:func:`xml_text`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ._picture import graph_svg, timeline_svg, xml_text
from ._show import format_duration, headline, run_took, walk_tree
from ._state import Status

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from ._state import JobState

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em;border-bottom:1px solid #ddd}
.completed{color:#3f9e6a}.failed,.timed_out{color:#d64541}.cancelled{color:#888}.running{color:#4a7fd6}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
details{margin:0}summary{cursor:pointer;white-space:nowrap}pre{margin:2px 0 4px 1.5em;white-space:pre-wrap}
.pic{overflow:auto;max-height:70vh;border:1px solid #eee}
"""


def _count(state: JobState) -> str:
    counts: dict[str, int] = {}
    for request in state.requests.values():
        counts[f"{request.status}"] = counts.get(f"{request.status}", 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items()) or "none"


def _tree(state: JobState) -> Iterator[str]:
    for request, depth, _, _ in walk_tree(state.requests):
        status = f"{request.status}"
        head = (
            f"{xml_text(request.node, 80)} ({xml_text(request.id, 40)}) "
            f'<span class="{status}">{status}</span> in {format_duration(request.duration)}'
        )
        body = [
            f"created +{format_duration(request.created_at)}, started +{format_duration(request.started_at)}, "
            f"finished +{format_duration(request.finished_at)}"
        ]
        if request.error is not None:
            head += f" — {xml_text(request.error.type, 80)}: {xml_text(request.error.message, 120)}"
            body.append(f"error: {xml_text(request.error.type)}: {xml_text(request.error.message, 4000)}")
            body.append(f"at: {xml_text(' / '.join(request.error.path), 4000)}")
        elif request.result is not None:
            body.append(f"result: {xml_text(request.result, 4000)}")
        yield (
            f'<details style="margin-left:{min(depth, 40) * 1.2}em"><summary>{head}</summary>'
            f"<pre>{'<br>'.join(body)}</pre></details>"
        )


def _table(headers: Sequence[str], rows: Iterator[Sequence[str]]) -> Iterator[str]:
    yield "<table><tr>" + "".join(f"<th>{h}</th>" for h in headers) + "</tr>"
    for row in rows:
        yield "<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
    yield "</table>"


def _json(value: object, limit: int = 400) -> str:
    return xml_text(json.dumps(value, default=repr, ensure_ascii=False), limit)


def _inline(svg: str) -> str:
    """An SVG document as an element of the page (HTML needs no namespace URL)."""
    return svg.replace(' xmlns="http://www.w3.org/2000/svg"', "", 1)


def render_report(state: JobState, connections: Sequence[tuple[str, str, str, str]] = ()) -> str:
    """The run as one self-contained HTML page (a string).

    Args:
        state: the run, finished or a snapshot of one in progress.
        connections: a routine graph's connections (``flow.connections``), to
            draw its connection graph with delivery counts.
    """
    title = xml_text(f"{state.flow_name} — {state.run_id}", 200)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>trioflow run {title}</title><style>{_CSS}</style></head><body>",
        f"<h1>{xml_text(headline(state), 400)}</h1>",
        "<h2>Summary</h2><ul>",
        f'<li>status: <span class="{state.status.value}">{state.status.value}</span>'
        f"{'' if state.status.is_final else ' (in progress: a snapshot)'}</li>",
        f"<li>took: {format_duration(run_took(state))}</li>",
        f"<li>requests: {len(state.requests)} ({_count(state)})</li>",
        f"<li>routine events: {len(state.history)}; log entries: {len(state.shared_log)}; "
        f"undelivered: {len(state.undelivered)}</li>",
    ]
    if state.error is not None:
        out.append(
            f'<li class="failed">error: {xml_text(state.error.type)}: {xml_text(state.error.message, 4000)}</li>'
        )
    elif state.status is Status.COMPLETED:
        out.append(f"<li>result: {xml_text(state.result or '', 4000)}</li>")
    out.append("</ul>")
    failed = [r for r in state.requests.values() if r.status in (Status.FAILED, Status.TIMED_OUT)]
    if failed:
        out.append("<h2>Failed requests</h2><ul>")
        out.extend(
            f"<li>{xml_text(r.node, 80)} ({xml_text(r.id, 40)}): "
            f"{xml_text(r.error.type if r.error else '-')}: {xml_text(r.error.message if r.error else '-')}</li>"
            for r in failed[:100]
        )
        out.append(f"<li>… and {len(failed) - 100} more</li></ul>" if len(failed) > 100 else "</ul>")
    out.append(f'<h2>Timeline</h2><div class="pic">{_inline(timeline_svg(state))}</div>')
    if connections:
        out.append(f'<h2>Connections</h2><div class="pic">{_inline(graph_svg(state, connections))}</div>')
    if state.requests:
        out.append("<h2>Request tree</h2>")
        out.extend(_tree(state))
    if state.shared_log:
        out.append("<h2>Log</h2>")
        out.extend(
            _table(
                ("time", "entry"),
                (
                    (
                        xml_text(str(e.get("timestamp", "-"))),
                        _json({k: v for k, v in e.items() if k != "timestamp"}),
                    )
                    for e in state.shared_log
                ),
            )
        )
    if state.history:
        out.append("<h2>History</h2>")
        out.extend(
            _table(
                ("offset", "routine", "event", "data"),
                (
                    (
                        f"+{format_duration(e.offset)}",
                        xml_text(e.routine_id),
                        xml_text(e.event_name),
                        _json(e.data),
                    )
                    for e in state.history
                ),
            )
        )
    for name, mapping in (
        ("Context", state.context),
        ("Routine states", state.routine_states),
        ("Shared data", state.shared_data),
    ):
        if mapping:
            out.append(f"<h2>{name}</h2>")
            out.extend(_table(("key", "value"), ((xml_text(k), _json(v, 4000)) for k, v in mapping.items())))
    if state.undelivered:
        out.append("<h2>Undelivered</h2>")
        out.extend(
            _table(
                ("from", "to", "data"),
                (
                    (xml_text(f"{d.source}.{d.event}"), xml_text(f"{d.target}.{d.slot}"), _json(d.data))
                    for d in state.undelivered
                ),
            )
        )
    out.append(f"<p><small>{'made by trioflow'}</small></p></body></html>")
    return "\n".join(out) + "\n"
