"""OpenTelemetry traces of runs: a recorder (or subscriber) that turns each run into a trace.

Needs the optional extra ``trioflow[otel]`` (``opentelemetry-api``; an SDK
such as ``opentelemetry-sdk`` to export). Attach a :class:`TraceExporter` to a
flow as a recorder, ``rt.Flow(..., recorders=[TraceExporter()])`` (or as a
live subscriber, ``subscribers=[...]``, which costs the run more), and each run becomes a
trace: one span for the run, one per request (its parent the calling
request's span, so the spans form the request tree), and one per routine
event of a graph job. A failed request or run gets status ``ERROR`` with the
error; a cancelled or timed-out one gets ``ERROR`` with that description and
a ``trioflow.status`` attribute. Span times are the events' times.

The events are the only input, so this works the same for node runs and
graph jobs, and will work unchanged when the runs are fed from a record store.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, final

from ._publisher import EventKind
from ._state import ErrorSummary

if TYPE_CHECKING:
    from collections.abc import Sequence

    from opentelemetry.trace import Span, Tracer, TracerProvider

    from ._context import RequestMetadata
    from ._publisher import Event

#: The most run metadata held for runs not started yet.
_HELD_METADATA = 10_000

_OUTCOMES = {
    EventKind.REQUEST_SUCCEEDED: "completed",
    EventKind.REQUEST_FAILED: "failed",
    EventKind.REQUEST_CANCELLED: "cancelled",
}


@final
class _RunTrace:
    __slots__ = ("base_ns", "requests", "root")

    def __init__(self, root: Span, base_ns: int) -> None:
        self.root = root
        self.base_ns = base_ns
        self.requests: dict[str, Span] = {}


@final
class TraceExporter:
    """A run subscriber that records each run as an OpenTelemetry trace.

    Args:
        tracer_provider: where spans go; default the global provider
            (``opentelemetry.trace.get_tracer_provider()``).

    Raises:
        ImportError: ``opentelemetry-api`` is not installed; install
            ``trioflow[otel]``.

    .. versionadded:: 0.1
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        try:
            from opentelemetry import trace  # optional extra
        except ImportError as exc:
            msg = (
                "TraceExporter needs the OpenTelemetry API, which is not installed. "
                "Install it with: pip install 'trioflow[otel]'."
            )
            raise ImportError(msg) from exc
        self._trace = trace
        self._tracer: Tracer = trace.get_tracer("trioflow", tracer_provider=tracer_provider)
        self._runs: dict[str, _RunTrace] = {}
        self._metadata: dict[str, RequestMetadata] = {}

    def describe_run(self, metadata: RequestMetadata) -> None:
        """Give the run ``metadata.run_id`` its metadata: user and conversation ids become attributes.

        A flow calls it for each run started with request metadata (each run
        of a :class:`~runtime.SessionManager` session) on every subscriber and
        recorder that has it, before the run starts: a session's user id,
        conversation id, message id and trace id reach the run's span
        without any call of yours. Call it yourself only for metadata given
        some other way.
        """
        if metadata.run_id is not None:
            held = self._metadata
            if len(held) >= _HELD_METADATA:  # runs that never started (refused arguments)
                del held[next(iter(held))]
            held[metadata.run_id] = metadata

    def describe(self, metadata: RequestMetadata) -> None:
        """The same as :meth:`describe_run` (its first name)."""
        self.describe_run(metadata)

    def _time(self, run: _RunTrace, offset: float) -> int:
        return run.base_ns + int(offset * 1e9)

    def _start_run(self, event: Event, anchor: float | None = None) -> _RunTrace:
        # The run's start on the wall clock: now, less how far into the run the
        # newest record at hand (*anchor*, else this one) was made.
        base_ns = time.time_ns() - int((event.offset if anchor is None else anchor) * 1e9)
        attributes: dict[str, str] = {"trioflow.run_id": event.run_id}
        if isinstance(event.data, str) and event.kind is EventKind.RUN_STARTED:
            attributes["trioflow.flow"] = event.data
        metadata = self._metadata.pop(event.run_id, None)
        if metadata is not None:
            for key in ("user_id", "conversation_id", "user_message_id", "trace_id"):
                value = getattr(metadata, key)
                if value is not None:
                    attributes[f"trioflow.{key}"] = str(value)
        name = f"run {attributes.get('trioflow.flow', event.run_id)}"
        root = self._tracer.start_span(name, attributes=attributes, start_time=base_ns)
        run = self._runs[event.run_id] = _RunTrace(root, base_ns)
        return run

    async def record(self, records: Sequence[Event]) -> None:
        """Take the next records of one run, in order (the recorder interface).

        A recorder gets a run's records in batches, not one by one as it
        goes: it costs the run less than a live subscriber. Span times come
        from the records' offsets, anchored on the wall clock when the batch
        arrives.
        """
        for event in records:
            if event.run_id not in self._runs:
                self._start_run(event, anchor=records[-1].offset)
            self(event)

    def __call__(self, event: Event) -> None:
        """Take one event of a run (the subscriber interface)."""
        run = self._runs.get(event.run_id)
        if run is None:
            run = self._start_run(event)
        kind = event.kind
        at = self._time(run, event.offset)
        if kind is EventKind.REQUEST_CREATED and event.request_id is not None:
            parent = run.requests.get(event.parent_id or "", run.root)
            run.requests[event.request_id] = self._tracer.start_span(
                event.node or "request",
                context=self._trace.set_span_in_context(parent),
                attributes={
                    "trioflow.run_id": event.run_id,
                    "trioflow.request_id": event.request_id,
                    "trioflow.node": event.node or "",
                },
                start_time=at,
            )
        elif kind in _OUTCOMES:
            span = run.requests.pop(event.request_id or "", None)
            if span is not None:
                self._end(span, _OUTCOMES[kind], event.data, at)
        elif kind is EventKind.ROUTINE_EVENT:
            data = event.data if isinstance(event.data, dict) else {}
            name = f"{event.node}.{data.get('event', '?')}"
            span = self._tracer.start_span(
                name,
                context=self._trace.set_span_in_context(run.root),
                attributes={
                    "trioflow.routine": event.node or "",
                    "trioflow.event": str(data.get("event", "")),
                },
                start_time=at,
            )
            span.end(end_time=at)
        elif kind is EventKind.RUN_FINISHED:
            data = event.data if isinstance(event.data, dict) else {}
            for span in run.requests.values():  # never left open, whatever the stream held
                self._end(span, "cancelled", None, at)
            self._end(run.root, str(data.get("status", "completed")), data.get("error"), at)
            del self._runs[event.run_id]

    def _end(self, span: Span, status: str, error: object, at: int) -> None:
        from opentelemetry.trace import Status, StatusCode  # optional extra

        span.set_attribute("trioflow.status", status)
        if status != "completed":
            if isinstance(error, ErrorSummary):
                description = f"{error.type}: {error.message}"
                span.add_event(
                    "exception",
                    {"exception.type": error.type, "exception.message": error.message},
                    timestamp=at,
                )
            else:
                description = str(error) if error is not None else status
            span.set_status(Status(StatusCode.ERROR, description))
        span.end(end_time=at)
