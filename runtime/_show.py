"""The complete text view of a run, and its ``--json`` twin.

Everything here reads a :class:`~runtime.JobState`: one returned by a run, or
loaded from a state file. Every string taken from the run (node names,
results, errors, log entries, context) passes through :func:`terminal_safe`
before it is printed, so a run cannot drive the reader's terminal. Trees are
walked without recursion, so a run of any depth renders.
"""

from __future__ import annotations

import json
import unicodedata
from typing import TYPE_CHECKING

import attrs

from ._serialize import dump_state
from ._state import Status

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Mapping

    from ._state import JobState, Request

#: Characters kept of one argument, result or value in the text view.
SHORT = 120

_UNSAFE_CATEGORIES = frozenset(
    ("Cc", "Cf", "Cs")
)  # controls, format characters (bidi overrides), lone surrogates


def format_duration(seconds: float | None) -> str:
    """*seconds* for reading: ``850 µs``, ``12.3 ms``, ``4.05 s``; ``-`` if unknown."""
    if seconds is None:
        return "-"
    if seconds >= 1.0:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def _escape_char(char: str) -> str:
    if unicodedata.category(char) not in _UNSAFE_CATEGORIES:
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def terminal_safe(text: str) -> str:
    """*text* as one line that cannot drive a terminal.

    Line breaks become spaces; every other control character (``ESC``,
    ``CR``, ``BEL``, C1 controls), format character (bidi overrides,
    zero-width characters) and lone surrogate is written as a Python-style
    escape, ``\\x1b``. Everything the CLI prints from a run or a state file
    passes through here (and the SVG and HTML views use it before their own
    markup escaping).
    """
    if text.isprintable():  # the common case, one C-level scan
        return text
    line = " ".join(text.splitlines())
    if line.isprintable():
        return line
    return "".join(map(_escape_char, line))


def shorten(text: str, limit: int = SHORT) -> str:
    """*text* cut to *limit* characters, the last being ``…``, if longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _value(value: object) -> str:
    try:
        return shorten(json.dumps(value, default=repr, ensure_ascii=False))
    except RecursionError:  # loaded, but too deep for the encoder's stack
        return "(data nested too deeply to show)"


def request_label(request: Request) -> str:
    """One request as one line (not yet escaped): node, id, status, time, result or error."""
    line = f"{request.node} ({request.id}) {request.status} in {format_duration(request.duration)}"
    if request.error is not None:
        line += f" !! {request.error.type}: {shorten(request.error.message)}"
    elif request.result is not None:
        line += f" -> {shorten(request.result)}"
    return line


def keep_only(requests: Mapping[str, Request], statuses: Collection[Status]) -> dict[str, Request]:
    """The requests whose status is in *statuses*, with all their ancestors (to keep the tree whole)."""
    kept: dict[str, Request] = {}
    for request in requests.values():
        if request.status not in statuses:
            continue
        current: Request | None = request
        while current is not None and current.id not in kept:
            kept[current.id] = current
            current = requests.get(current.parent_id) if current.parent_id is not None else None
    return {key: value for key, value in requests.items() if key in kept}


def walk_tree(requests: Mapping[str, Request]) -> Iterator[tuple[Request, int, str, bool]]:
    """The request tree depth first, without recursion: ``(request, depth, prefix, last)``.

    *prefix* is the box-drawing indentation above the request's own branch,
    *last* whether it is its parent's last child. A request whose parent is
    not in *requests* is a root. Each request comes once, so even a
    hand-made state with a parent cycle ends (its requests come last, as roots).
    """
    children: dict[str | None, list[Request]] = {}
    for request in requests.values():
        parent = request.parent_id if request.parent_id in requests else None
        children.setdefault(parent, []).append(request)
    drawn: set[str] = set()

    def branches(kids: list[Request], depth: int, prefix: str) -> list[tuple[Request, int, str, bool]]:
        last = len(kids) - 1
        return [(kid, depth, prefix, index == last) for index, kid in reversed(list(enumerate(kids)))]

    stack = branches(children.get(None, []), 0, "")
    stack[:0] = [(r, 0, "", True) for r in reversed(list(requests.values())) if r.parent_id in requests]
    while stack:
        request, depth, prefix, last = stack.pop()
        if request.id in drawn:
            continue
        drawn.add(request.id)
        yield request, depth, prefix, last
        kids = children.get(request.id)
        if kids:
            stack.extend(branches(kids, depth + 1, prefix + ("    " if last else "│   ")))


def _tree_lines(requests: Mapping[str, Request]) -> Iterator[str]:
    for request, _, prefix, last in walk_tree(requests):
        yield f"{prefix}{'└── ' if last else '├── '}{request_label(request)}"


def run_took(state: JobState) -> float | None:
    """Seconds from the run's start to its end, or ``None`` if either is unknown."""
    started, finished = state.started_at, state.finished_at
    return None if started is None or finished is None else (finished - started).total_seconds()


def headline(state: JobState) -> str:
    """The run's first line: flow, run id, status and time (not yet escaped)."""
    line = f"flow {state.flow_name!r}, run {state.run_id}: {state.status.value} in {format_duration(run_took(state))}"
    if not state.status.is_final:
        line += " (still in progress: this is a snapshot)"
    return line


def render_run(state: JobState, *, full: bool = False, only: Collection[Status] | None = None) -> str:
    """Render a run as text.

    The short form (``full=False``, what ``run`` prints) is the header, the
    result or error, the request tree and the routine history. The full
    form (``show``) adds the shared log in order, the final context,
    routine states, shared data and undelivered messages. *only* cuts the
    request tree to the requests with those statuses and their ancestors.

    Multi-line values are kept on one line each and control characters are
    escaped (:func:`terminal_safe`); long values are shortened (:func:`shorten`).
    """
    lines = [headline(state)]
    if state.error is not None:
        lines.append(f"error: {state.error.type}: {state.error.message}")
    elif state.status is Status.COMPLETED:
        lines.append(f"result: {state.result}")
    requests = state.requests if only is None else keep_only(state.requests, only)
    if requests:
        label = "requests:" if only is None else f"requests ({len(requests)} of {len(state.requests)} shown):"
        lines.append(label)
        lines.extend(_tree_lines(requests))
    elif only is not None and state.requests:
        lines.append(f"requests: none of {len(state.requests)} is {', '.join(map(str, only))}")
    if state.history:
        lines.append("history:")
        lines.extend(
            f"  +{format_duration(entry.offset)} {entry.routine_id}.{entry.event_name} {_value(entry.data)}"
            for entry in state.history
        )
    if full:
        lines.extend(_full_sections(state))
    return "\n".join(map(terminal_safe, lines))


def _full_sections(state: JobState) -> Iterator[str]:
    if state.shared_log:
        yield "log:"
        for entry in state.shared_log:
            rest = {k: v for k, v in entry.items() if k != "timestamp"}
            yield f"  {entry.get('timestamp', '-')} {_value(rest)}"
    for title, mapping in (
        ("context", state.context),
        ("routine states", state.routine_states),
        ("shared data", state.shared_data),
    ):
        if mapping:
            yield f"{title}:"
            yield from (f"  {key}: {_value(value)}" for key, value in mapping.items())
    if state.undelivered:
        yield "undelivered:"
        yield from (
            f"  {d.source}.{d.event} -> {d.target}.{d.slot} {_value(d.data)}" for d in state.undelivered
        )


def render_json(state: JobState, *, only: Collection[Status] | None = None) -> str:
    """The run as its state document (JSON text), cut to *only* like :func:`render_run`.

    Values that are not JSON are replaced as :func:`~runtime.dump_state`
    does with ``strict=False``. JSON escapes every control character, so the
    text is safe for a terminal.
    """
    if only is not None:
        state = attrs.evolve(state, requests=keep_only(state.requests, only))
    return json.dumps(dump_state(state, strict=False), indent=2)
