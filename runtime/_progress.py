"""Live progress of a run: a consumer of its event stream.

:class:`Progress` counts a run's events (requests started, done, failed and
cancelled; the slowest request in flight; routine events per routine for
graph jobs) and draws one status line. On a terminal the line is redrawn in
place (``\\r`` and erase-line), at most every *interval* seconds; elsewhere
(a pipe, a CI log) it prints plain lines, at most one a second, and always a
last one. With ``rich`` installed (``trioflow[rich]``) the terminal line is
drawn by ``rich.live`` in colour; without it, nothing but the standard library.

A :class:`Progress` is a plain subscriber, ``Flow(subscribers=[progress])``
(:func:`arun_with_progress` adds a timer that redraws the elapsed time while
no event comes), or follows a :class:`~runtime.Subscription` with :func:`follow`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol, TextIO, final

import trio

from ._publisher import EventKind
from ._show import format_duration, shorten, terminal_safe

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._core import RunResult
    from ._job import Job
    from ._publisher import Event, Subscription
    from ._util import AnyFlow


class _Screen(Protocol):
    def update(self, line: str, *, final: bool) -> None: ...


@final
class _PlainScreen:
    """Lines for a log, or one line redrawn in place on a terminal."""

    def __init__(self, out: TextIO, *, live: bool) -> None:
        self._out = out
        self._live = live

    def update(self, line: str, *, final: bool) -> None:
        if self._live:
            self._out.write(f"\r\x1b[2K{line}" + ("\n" if final else ""))
        else:
            self._out.write(line + "\n")
        self._out.flush()


@final
class _RichScreen:
    """The live line drawn by ``rich`` (colour, no flicker)."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console  # optional extra
        from rich.live import Live
        from rich.text import Text

        self._text = Text
        self._live = Live(console=Console(file=out), auto_refresh=False, transient=False)
        self._started = False

    def update(self, line: str, *, final: bool) -> None:
        text = self._text(line)
        text.highlight_regex(r"\d+ failed", "bold red")
        text.highlight_regex(r"\d+ done", "green")
        text.highlight_regex(r"\d+ cancelled", "yellow")
        if not self._started:
            self._live.start()
            self._started = True
        self._live.update(text, refresh=True)
        if final:
            self._live.stop()


def _has_rich() -> bool:
    try:
        import rich.live  # noqa: F401
    except ImportError:
        return False
    return True


@final
class Progress:
    """Counts a run's events and draws its progress line (see the module docs).

    Args:
        out: where to draw, e.g. ``sys.stderr``.
        live: redraw one line in place (a terminal); ``None`` asks ``out.isatty()``.
        interval: seconds between two redraws at most.
        use_rich: draw with ``rich`` when it is installed and *live* (default).
        clock: the wall clock used for throttling (tests give a fake one).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        out: TextIO,
        *,
        live: bool | None = None,
        interval: float | None = None,
        use_rich: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.live = out.isatty() if live is None else live
        self.interval = interval if interval is not None else (0.1 if self.live else 1.0)
        self._screen: _Screen = (
            _RichScreen(out) if self.live and use_rich and _has_rich() else _PlainScreen(out, live=self.live)
        )
        self._clock = clock
        #: Where the routines' queues are read from at each draw (set by
        #: :func:`arun_with_progress` for a graph flow): ``{routine: {"handled", "queued"}}``.
        self.probe: Callable[[], Mapping[str, Mapping[str, int]]] | None = None
        self._reset()

    def _reset(self) -> None:
        self._last_draw = self._clock()  # a run shorter than one interval draws its last line only
        self.started = self.done = self.failed = self.cancelled = 0
        self.in_flight: dict[str, tuple[str, float]] = {}
        self.routine_events: dict[str, int] = {}
        self.offset = 0.0
        self.finished: str | None = None

    def __call__(self, event: Event) -> None:
        """Take one event (the subscriber interface) and redraw if it is time."""
        self.feed(event)
        self.maybe_draw()

    def feed(self, event: Event) -> None:
        """Count *event*; no drawing."""
        kind = event.kind
        if kind is EventKind.RUN_STARTED and self.finished is not None:
            self._reset()  # a subscriber of a flow sees every run of it: count each afresh
        self.offset = max(self.offset, event.offset)
        if kind is EventKind.REQUEST_CREATED and event.request_id is not None:
            self.started += 1
            self.in_flight[event.request_id] = (event.node or "?", event.offset)
        elif kind is EventKind.REQUEST_SUCCEEDED:
            self.done += 1
            self.in_flight.pop(event.request_id or "", None)
        elif kind is EventKind.REQUEST_FAILED:
            self.failed += 1
            self.in_flight.pop(event.request_id or "", None)
        elif kind is EventKind.REQUEST_CANCELLED:
            self.cancelled += 1
            self.in_flight.pop(event.request_id or "", None)
        elif kind is EventKind.ROUTINE_EVENT and event.node is not None:
            self.routine_events[event.node] = self.routine_events.get(event.node, 0) + 1
        elif kind is EventKind.RUN_FINISHED:
            data = event.data if isinstance(event.data, dict) else {}
            self.finished = str(data.get("status", "finished"))

    def line(self) -> str:
        """The progress line for what has been counted, terminal-safe."""
        parts = [f"+{format_duration(self.offset)}"]
        if self.started or not self.routine_events:
            parts.append(
                f"requests: {self.started} started, {self.done} done, {self.failed} failed, "
                f"{self.cancelled} cancelled, {len(self.in_flight)} running"
            )
        if self.in_flight and self.finished is None:
            node, since = min(self.in_flight.values(), key=lambda item: item[1])
            parts.append(f"slowest: {shorten(node, 40)} for {format_duration(self.offset - since)}")
        stats = self.probe() if self.probe is not None and self.finished is None else None
        if stats:
            busiest = sorted(stats.items(), key=lambda item: (-item[1]["queued"], -item[1]["handled"]))[:4]
            parts.append(
                "routines handled/queued: "
                + ", ".join(f"{shorten(r, 20)} {s['handled']}/{s['queued']}" for r, s in busiest)
            )
        if self.routine_events:
            total = sum(self.routine_events.values())
            top = sorted(self.routine_events.items(), key=lambda item: -item[1])[:4]
            parts.append(
                f"routine events: {total} (" + ", ".join(f"{shorten(r, 20)} {n}" for r, n in top) + ")"
            )
        if self.finished is not None:
            parts.append(self.finished)
        return terminal_safe(" | ".join(parts))

    def maybe_draw(self) -> None:
        """Draw unless the last draw was less than :attr:`interval` ago; always draw the end."""
        now = self._clock()
        if self.finished is not None or now - self._last_draw >= self.interval:
            self._last_draw = now
            self._screen.update(self.line(), final=self.finished is not None)

    def tick(self, elapsed: float) -> None:
        """The run has gone *elapsed* seconds (no event said so): redraw if due."""
        self.offset = max(self.offset, elapsed)
        self.maybe_draw()


async def follow(subscription: Subscription, progress: Progress) -> None:
    """Feed *progress* every event of *subscription* until it ends.

    While no event comes, the line is redrawn every :attr:`Progress.interval`
    with the elapsed time; each wait is a cancellable wait for the next event.
    """
    events = subscription.__aiter__()
    while progress.finished is None:
        with trio.move_on_after(progress.interval) as scope:
            try:
                event = await events.__anext__()
            except StopAsyncIteration:
                return
        if scope.cancelled_caught:
            progress.tick(progress.offset + progress.interval)
        else:
            progress(event)


async def _redraw_while_running(progress: Progress) -> None:
    """Redraw the elapsed time every :attr:`Progress.interval` until cancelled (a display timer)."""
    start = trio.current_time()
    while progress.finished is None:
        await trio.sleep(progress.interval)
        progress.tick(trio.current_time() - start)


async def arun_with_progress(
    flow: AnyFlow, args: tuple[object, ...], kwargs: dict[str, object], progress: Progress | None
) -> RunResult[object]:
    """Run *flow* once, drawing *progress* as it goes (none if ``None``); return its result.

    *progress* is added to the flow's subscribers for this run (the cheapest
    consumer: a callback on the run's own event path, no extra channel), and
    a timer redraws the elapsed time while no event comes.
    """
    if progress is None:
        return await flow._arun(args, kwargs)
    graph = getattr(flow, "_graph", None)
    if graph is not None and graph.routines and progress.probe is None:
        jobs: Mapping[str, Job] = graph.running_jobs

        def probe() -> dict[str, dict[str, int]]:
            merged: dict[str, dict[str, int]] = {}
            for job in list(jobs.values()):
                for routine, stat in job.routine_stats().items():
                    into = merged.setdefault(routine, {"handled": 0, "queued": 0})
                    into["handled"] += stat["handled"]
                    into["queued"] += stat["queued"]
            return merged

        progress.probe = probe
    subscribers = flow.subscribers
    flow.subscribers = (*subscribers, progress)
    error: Exception | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_redraw_while_running, progress)
            try:
                result = await flow._arun(args, kwargs)
            except Exception as exc:  # raised before the run began (bad arguments): not grouped
                error = exc
            nursery.cancel_scope.cancel()
    finally:
        flow.subscribers = subscribers
    if error is not None:
        raise error
    return result


def run_with_progress(
    flow: AnyFlow, kwargs: dict[str, object], progress: Progress | None
) -> RunResult[object]:
    """:func:`arun_with_progress` from synchronous code (the CLI's ``run``)."""
    return trio.run(arun_with_progress, flow, (), kwargs, progress)
