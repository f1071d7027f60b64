"""The run-state model shared by node runs and routine-graph jobs.

One :class:`JobState` records everything about one run: its status and times,
the request tree of node calls, the execution history of routine events,
per-routine state, shared data, the shared log and the run's context. The
runtime fills it in; users read it, and routines write their own state into it.

Times inside a run come from Trio's clock, so under
:class:`trio.testing.MockClock` they are exact and reproducible.
"""

from __future__ import annotations

import contextvars
import datetime
import enum
import time
import uuid
from typing import TYPE_CHECKING, Protocol, final

import attrs
import trio

from ._exceptions import InvokeInsideTrioError, JobStateError
from ._publisher import EventKind

if TYPE_CHECKING:
    import os
    import pathlib
    import threading
    from collections.abc import Mapping

_RESULT_LIMIT = 200

#: The shared-data key under which a routine job keeps its ``send_output`` outputs.
OUTPUT_KEY = "output_log"


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _isolate(value: object, memo: dict[int, object] | None = None) -> object:
    """Copy the container structure of *value* so no caller can alias it.

    Dicts, lists, sets and tuples are copied recursively (cycles included);
    scalars are immutable and anything else is kept as is, since an opaque
    object (a socket, a client) cannot be copied safely.
    """
    cls = type(value)
    if cls not in (dict, list, set, tuple):
        return value
    if memo is None:
        memo = {}
    key = id(value)
    if key in memo:
        return memo[key]
    if isinstance(value, dict):
        new_dict: dict[object, object] = {}
        memo[key] = new_dict
        for k, v in value.items():
            new_dict[k] = _isolate(v, memo)
        return new_dict
    if isinstance(value, list):
        new_list: list[object] = []
        memo[key] = new_list
        new_list.extend(_isolate(v, memo) for v in value)
        return new_list
    items = [_isolate(v, memo) for v in value]  # type: ignore[attr-defined]
    copied: object = tuple(items) if cls is tuple else set(items)
    memo[key] = copied
    return copied


def summarize(value: object) -> str:
    """Return the short summary of a result kept in the state: its ``repr``.

    A ``repr`` longer than 200 characters is cut to 200, the last three
    being ``...``.

    .. versionadded:: 0.1.0
    """
    text = repr(value)
    if len(text) > _RESULT_LIMIT:
        text = text[: _RESULT_LIMIT - 3] + "..."
    return text


@final
class Status(enum.StrEnum):
    """The status of a run, a job or one request in it.

    A ``str`` subclass: ``str(status)`` and f-strings give the value, e.g.
    ``completed``.

    Two endings belong to requests whose node ran on an executor (see
    :func:`runtime.processes`, :func:`runtime.ray`) and was cancelled there:
    ``killed`` (the work was stopped by killing its worker) and ``orphaned``
    (the work could not be stopped or confirmed stopped, and may still be
    running; the run no longer waits for it). A plainly ``cancelled``
    request's work stopped, or never began.

    .. versionadded:: 0.1.0
    """

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    KILLED = "killed"
    ORPHANED = "orphaned"

    @property
    def is_final(self) -> bool:
        """Whether the status can no longer change (completed, failed, ...)."""
        return self in _FINAL_STATUSES


_FINAL_STATUSES = frozenset(
    {Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT, Status.KILLED, Status.ORPHANED}
)


@final
@attrs.define(frozen=True)
class ErrorSummary:
    """What the state keeps of an exception: its class, message and where it happened.

    Attributes:
        type: the exception class, qualified by its module unless it is a
            builtin, e.g. ``ValueError`` or ``runtime._exceptions.RunTimeoutError``.
        message: ``str()`` of the exception.
        path: the request path (node names) or routine ids where it was
            raised, outermost first; empty if unknown.

    .. versionadded:: 0.1.0
    """

    type: str
    message: str
    path: tuple[str, ...] = ()

    @classmethod
    def from_exception(cls, exc: BaseException, path: tuple[str, ...] = ()) -> ErrorSummary:
        """Summarize *exc*, raised at *path*."""
        exc_type = type(exc)
        name = exc_type.__qualname__
        if exc_type.__module__ != "builtins":
            name = f"{exc_type.__module__}.{name}"
        return cls(type=name, message=str(exc), path=tuple(path))


@final
@attrs.define
class Request:
    """One node invocation in a run's request tree.

    Times are seconds since the run started, on Trio's clock.

    Attributes:
        id: unique within the run.
        parent_id: the id of the calling request; ``None`` for the entry point.
        node: the node's name.
        status: where the request is in its life.
        created_at: when the call was made.
        started_at: when the node began running, or ``None``.
        finished_at: when the node ended, however it ended, or ``None``.
        result: a summary of the return value (see :func:`summarize`).
        error: what the node raised, if it failed.
        executor: the name of the executor the node ran on (``threads``,
            ``processes``, ``ray``, ...), or ``None`` for a node run on the
            event loop (async, or plain and inline).

    .. versionadded:: 0.1.0
    """

    id: str
    parent_id: str | None
    node: str
    status: Status = Status.PENDING
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    result: str | None = None
    error: ErrorSummary | None = None
    executor: str | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish, or ``None`` until the request has both."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@final
@attrs.define(frozen=True)
class HistoryEntry:
    """One event emitted by a routine, as recorded in the execution history.

    Attributes:
        routine_id: the emitting routine.
        event_name: the event emitted.
        data: the event's parameters.
        timestamp: wall time of the emission (aware, UTC), derived from the
            run's start and *offset*.
        offset: seconds since the run started, on Trio's clock.

    .. versionadded:: 0.1.0
    """

    routine_id: str
    event_name: str
    data: dict[str, object]
    timestamp: datetime.datetime
    offset: float


@final
@attrs.define(frozen=True)
class Delivery:
    """A message from an event to a slot, recorded when a cancelled job never delivered it.

    .. versionadded:: 0.1.0
    """

    source: str
    event: str
    target: str
    slot: str
    data: dict[str, object]


class JobControls(Protocol):
    """What a job's handle offers its state's Routilux-style delegations (``runtime._job.Job``)."""

    @property
    def state(self) -> JobState: ...

    def pause(self, reason: str | None = None) -> None: ...

    def resume(self) -> None: ...

    def cancel(self, reason: str | None = None) -> None: ...

    def state_changed(self, kind: EventKind, node: str | None, data: object) -> None: ...


#: The handle of the job whose routine handler runs in this task. Set by the
#: graph engine in each routine actor's own task, so a handler's
#: ``ctx.job_state.pause()`` reaches its job while the state itself holds no
#: reference to any engine.
current_job: contextvars.ContextVar[JobControls] = contextvars.ContextVar("trioflow_job")


class JobFinder(Protocol):
    """A flow as :meth:`JobState.wait_for_completion` sees it: it knows its running jobs."""

    def _job_finished(self, job_id: str) -> threading.Event | None: ...


@attrs.define
class _RunClock:
    """Maps Trio's clock (or the monotonic clock outside Trio) to wall time."""

    trio_t0: float | None = None
    mono_t0: float = 0.0
    anchor: datetime.datetime | None = None

    def start(self) -> datetime.datetime:
        try:
            self.trio_t0 = trio.current_time()
        except RuntimeError:
            self.trio_t0 = None
        self.mono_t0 = time.monotonic()
        self.anchor = _utc_now()
        return self.anchor

    def offset(self) -> float:
        if self.anchor is None:
            self.start()
        if self.trio_t0 is not None:
            try:
                return trio.current_time() - self.trio_t0
            except RuntimeError:
                pass
        return time.monotonic() - self.mono_t0

    def wall_time(self, offset: float) -> datetime.datetime:
        anchor = self.anchor if self.anchor is not None else self.start()
        return anchor + datetime.timedelta(seconds=offset)


#: ``JobState(flow_id)``, ``JobState(flow_id=...)``, ``JobState()``: what was not given (identity-checked).
_NO_FLOW = "\x00(flow id not given)"
_NO_ID = "\x00(job id not given)"


def _touch(state: JobState, _: attrs.Attribute[Status], value: Status) -> Status:
    """``on_setattr`` of :attr:`JobState.status`: a new status is a change of the state."""
    state._touched()
    return value


class FlatCodec(Protocol):
    """Routilux's flat JobState documents, as :mod:`runtime._serialize` (registered there) makes and reads them."""

    def dump(self, state: JobState, *, strict: bool) -> dict[str, object]: ...

    def load(self, doc: object, what: str) -> JobState: ...

    def save(self, state: JobState, path: str | os.PathLike[str]) -> pathlib.Path: ...

    def read(self, path: str | os.PathLike[str], max_bytes: int) -> JobState: ...


#: Set by :mod:`runtime._serialize` when it is imported (the package always imports it): the
#: state model stays below the document code, which builds on it.
flat_codec: list[FlatCodec] = []


def _codec() -> FlatCodec:
    # Importing any runtime module imports the package first, whose __init__ imports _serialize.
    return flat_codec[0]


def _to_status(value: Status | str) -> Status:
    """*value* as a :class:`Status` (Routilux code assigns ``job_state.status = "running"``)."""
    if isinstance(value, Status):
        return value
    try:
        return Status(value)
    except ValueError:
        choices = ", ".join(repr(s.value) for s in Status)
        msg = f"JobState.status={value!r}: a status is one of {choices} (or an rt.Status)."
        raise ValueError(msg) from None


@final
@attrs.define
class JobState:
    """The whole state of one run or job; isolated from every other run.

    The runtime creates one per run; users read it (or load it from a state
    file) and routines keep their state in it through the methods below.
    Values passed in are copied (dicts, lists, sets and tuples, recursively),
    and values handed out are copies, so no two runs ever share a container.

    Attributes:
        job_id: the run's id (also :attr:`run_id`).
        flow_id: the flow's id or name (also :attr:`flow_name`).
        status: the run's status.
        created_at: when the state was made (aware, UTC).
        started_at: when the run started, or ``None``.
        finished_at: when the run ended, or ``None``.
        requests: the request tree, by request id, in creation order.
        history: one entry per event emission, in order.
        routine_states: each routine's (or node's) own state.
        shared_data: data shared by the whole run.
        shared_log: timestamped log entries of the run.
        context: the run's context (its own copy).
        result: a summary of the run's result.
        error: what ended the run, if it failed.
        undelivered: messages not delivered because the job was cancelled.
        metrics: numeric measurements of the run.
        current_routine_id: Routilux's name: the routine a routine-graph job
            started from, set when it starts (routines of a job run
            concurrently, so no single routine is "current"); assignable.
        updated_at: when the state last changed (aware, UTC, on the run's
            clock): a status, a routine state, shared data, the shared log
            or the history. At first :attr:`created_at`.

    ``current_routine_id`` and ``updated_at`` are not part of trioflow's
    state document (:func:`~runtime.dump_state`); Routilux's flat form
    (:meth:`serialize`, :meth:`save`) carries them.

    ``JobState(flow_id)`` or ``JobState(flow_id=...)`` (Routilux's forms)
    makes a fresh state of that flow with a new job id, to fill in or test
    with; ``JobState()`` one of no flow (``flow_id`` ``""``). The status may
    be set as a string (``state.status = "running"``); it is kept as a
    :class:`Status`.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2
       ``JobState(flow_id)``, ``JobState(flow_id=...)``, ``JobState()``; a
       status set as a string is converted; ``current_routine_id``,
       ``updated_at``, :attr:`pending_tasks`; Routilux's flat documents
       (:meth:`serialize`, :meth:`deserialize`, :meth:`save`, :meth:`load`).
    """

    job_id: str = attrs.field(default=_NO_ID)
    flow_id: str = attrs.field(default=_NO_FLOW)
    status: Status = attrs.field(
        default=Status.PENDING,
        converter=_to_status,
        on_setattr=attrs.setters.pipe(attrs.setters.convert, _touch),
    )
    created_at: datetime.datetime = attrs.field(factory=_utc_now)
    started_at: datetime.datetime | None = None
    finished_at: datetime.datetime | None = None
    requests: dict[str, Request] = attrs.field(factory=dict)
    history: list[HistoryEntry] = attrs.field(factory=list)
    routine_states: dict[str, dict[str, object]] = attrs.field(factory=dict)
    shared_data: dict[str, object] = attrs.field(factory=dict)
    shared_log: list[dict[str, object]] = attrs.field(factory=list)
    context: dict[str, object] = attrs.field(factory=dict)
    result: str | None = None
    error: ErrorSummary | None = None
    undelivered: list[Delivery] = attrs.field(factory=list)
    metrics: dict[str, float] = attrs.field(factory=dict)
    current_routine_id: str | None = attrs.field(default=None, init=False, eq=False, repr=False)
    updated_at: datetime.datetime = attrs.field(
        default=attrs.Factory(lambda self: self.created_at, takes_self=True), init=False, eq=False, repr=False
    )
    _clock: _RunClock = attrs.field(factory=_RunClock, init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.job_id is _NO_ID:
            # Routilux's JobState(flow_id=...) or JobState(): a new job id.
            self.job_id = f"job-{uuid.uuid4().hex[:12]}"
            if self.flow_id is _NO_FLOW:
                self.flow_id = ""
        elif self.flow_id is _NO_FLOW:
            # Routilux's JobState(flow_id): the one argument is the flow's id.
            self.flow_id = self.job_id
            self.job_id = f"job-{uuid.uuid4().hex[:12]}"

    @property
    def run_id(self) -> str:
        """The run's id; the same as :attr:`job_id`."""
        return self.job_id

    @property
    def flow_name(self) -> str:
        """The flow's name; the same as :attr:`flow_id`."""
        return self.flow_id

    @property
    def pending_tasks(self) -> list[dict[str, object]]:
        """Routilux's name for :attr:`undelivered`: each message never handled, in Routilux's keys.

        ``{"slot_routine_id", "slot_name", "data", "connection_source_routine_id",
        "connection_source_event_name"}`` per message: what a job that ended
        before handling them (cancelled, failed, timed out, or paused and
        never resumed) left in its routines' mailboxes, and the emissions it
        held back while paused. A new list of copies; it is read-only, since
        trioflow does not rebuild a job from it.

        .. versionadded:: 0.2
        """
        return [
            {
                "slot_routine_id": d.target,
                "slot_name": d.slot,
                "data": _isolate(d.data),
                "connection_source_routine_id": d.source,
                "connection_source_event_name": d.event,
            }
            for d in self.undelivered
        ]

    # -- Routilux's flat documents ---------------------------------------------

    def serialize(self, *, strict: bool = False) -> dict[str, object]:
        """This state as Routilux's flat document of JSON values (``"_type": "JobState"``).

        Routilux's keys (``flow_id``, ``job_id``, ``status``,
        ``current_routine_id``, ``routine_states``, ``execution_history``,
        ``created_at``, ``updated_at``, ``pending_tasks``, ``shared_data``,
        ``shared_log``, ``output_log``, ...) beside the rest of trioflow's
        state (``requests``, ``context``, ``metrics``, ...; ``undelivered`` is
        ``pending_tasks``), made with
        the state documents' converter. :meth:`deserialize` and :meth:`load`
        read it back. trioflow's own versioned form is :func:`~runtime.dump_state`.

        Args:
            strict: raise on a value that is not JSON, instead of replacing it
                by ``{"$unserializable": repr, "type": name}`` and listing its
                path under ``"unserializable"``.

        Raises:
            UnserializableValueError: *strict*, and a value is not JSON.

        .. versionadded:: 0.2
        """
        return _codec().dump(self, strict=strict)

    def deserialize(self, data: object) -> JobState:
        """Replace this state by the one a flat document holds (Routilux's in-place form); return it.

        Reads what :meth:`serialize` wrote, and Routilux's own JobState
        documents (times without a UTC offset are taken as local time).
        Nothing is changed if the document is refused.

        Raises:
            StateFileError: *data* is not a ``"_type": "JobState"`` object,
                or a value does not fit; the message names it by its path,
                e.g. ``$.status``.

        .. versionadded:: 0.2
        """
        loaded = _codec().load(data, "The document given to JobState.deserialize()")
        for field in attrs.fields(JobState):
            object.__setattr__(self, field.name, getattr(loaded, field.name))
        return self

    def save(self, filepath: str | os.PathLike[str]) -> pathlib.Path:
        """Write :meth:`serialize`'s document to *filepath* as JSON, atomically (Routilux's ``save``).

        Exactly at *filepath* (its directory is created), through a temporary
        file beside it: a crash leaves the old file or the new one. Values
        that are not JSON are replaced and listed, as :func:`~runtime.write_state_file`
        does. trioflow's own file form is :func:`~runtime.write_state_file`.

        Returns:
            *filepath*, as a :class:`pathlib.Path`.

        .. versionadded:: 0.2
        """
        return _codec().save(self, filepath)

    @classmethod
    def load(cls, filepath: str | os.PathLike[str], *, max_bytes: int = 64 * 1024 * 1024) -> JobState:
        """Read a state :meth:`save` wrote (or Routilux did) from *filepath*.

        Only a regular file of at most *max_bytes* is read (a FIFO or a device
        is refused without blocking), and nothing the file names is imported,
        opened or run.

        Raises:
            FileNotFoundError: no file at *filepath*.
            StateFileError: not a regular file, too large, not JSON, or not a
                JobState document (``ValueError``, as Routilux raises); the
                message names the file and the place.

        .. versionadded:: 0.2
        """
        return _codec().read(filepath, max_bytes)

    # -- clock (used by the runtime) ---------------------------------------

    def _start_clock(self) -> None:
        """Mark the run as started: anchor the clock, set ``started_at``, status RUNNING."""
        self.started_at = self._clock.start()
        self.status = Status.RUNNING

    def _now_offset(self) -> float:
        """Seconds since the run started, on Trio's clock when inside Trio."""
        return self._clock.offset()

    def _wall_time(self, offset: float) -> datetime.datetime:
        """The wall time (aware, UTC) *offset* seconds after the run started."""
        return self._clock.wall_time(offset)

    def _touched(self) -> None:
        """Mark the state as changed now: :attr:`updated_at`."""
        self.updated_at = self._wall_time(self._now_offset())

    # -- history -------------------------------------------------------------

    def record_event(self, routine_id: str, event_name: str, data: Mapping[str, object]) -> HistoryEntry:
        """Append one event emission to the history, stamped by the run's clock.

        Returns:
            The entry recorded.
        """
        offset = self._now_offset()
        entry = HistoryEntry(
            routine_id=routine_id,
            event_name=event_name,
            data={k: _isolate(v) for k, v in data.items()},
            timestamp=self._wall_time(offset),
            offset=offset,
        )
        self.history.append(entry)
        self.updated_at = entry.timestamp
        return entry

    def get_execution_history(self, routine_id: str | None = None) -> list[HistoryEntry]:
        """Return the history, in order; only *routine_id*'s entries if given.

        The list is a new one: changing it does not change the state.
        """
        if routine_id is None:
            return list(self.history)
        return [entry for entry in self.history if entry.routine_id == routine_id]

    # -- routine state -------------------------------------------------------

    def update_routine_state(self, routine_id: str, updates: Mapping[str, object]) -> None:
        """Merge *updates* into *routine_id*'s state, creating it if needed."""
        state = self.routine_states.setdefault(routine_id, {})
        stored = {key: _isolate(value) for key, value in updates.items()}
        state.update(stored)
        self._touched()
        self._changed(EventKind.ROUTINE_STATE, routine_id, stored)

    def get_routine_state(self, routine_id: str) -> dict[str, object] | None:
        """Return a copy of *routine_id*'s state, or ``None`` if it never stored any."""
        state = self.routine_states.get(routine_id)
        if state is None:
            return None
        return {key: _isolate(value) for key, value in state.items()}

    # -- shared data and log -------------------------------------------------

    def update_shared_data(self, key: str, value: object) -> None:
        """Set *key* in the run's shared data to (a copy of) *value*."""
        self.shared_data[key] = stored = _isolate(value)
        self._touched()
        self._changed(EventKind.SHARED_DATA, None, {"key": key, "value": stored})

    def get_shared_data(self, key: str, default: object = None) -> object:
        """Return a copy of the shared value under *key*, or *default* if absent.

        Changing the returned value changes nothing in the state; store it
        back with :meth:`update_shared_data`.
        """
        if key not in self.shared_data:
            return default
        return _isolate(self.shared_data[key])

    def append_to_shared_log(self, entry: Mapping[str, object]) -> None:
        """Append a copy of *entry* to the shared log.

        The copy gets a ``"timestamp"`` key: the ISO-8601 wall time from the
        run's clock (replacing any ``"timestamp"`` the entry had).
        """
        stored = self._append_log(entry, self._now_offset())
        self._changed(EventKind.LOG, None, stored)

    def _append_log(self, entry: Mapping[str, object], offset: float) -> dict[str, object]:
        """Append a copy of *entry* stamped with the wall time *offset* seconds into the run; return it."""
        stored = {key: _isolate(value) for key, value in entry.items()}
        moment = self._wall_time(offset)
        stored["timestamp"] = moment.isoformat()
        self.shared_log.append(stored)
        self.updated_at = moment
        return stored

    def _changed(self, kind: EventKind, node: str | None, data: object) -> None:
        """Record a change made through a public method, when a handler of this state's job makes it."""
        controls = current_job.get(None)
        if controls is not None and controls.state is self:
            controls.state_changed(kind, node, data)

    def get_shared_log(self) -> list[dict[str, object]]:
        """Return copies of the shared log's entries, in order."""
        return [{key: _isolate(value) for key, value in e.items()} for e in self.shared_log]

    # -- request tree --------------------------------------------------------

    def roots(self) -> list[Request]:
        """Return the requests with no parent, in creation order."""
        return [request for request in self.requests.values() if request.parent_id is None]

    def children_of(self, request_id: str) -> list[Request]:
        """Return the requests made by *request_id*, in creation order."""
        return [r for r in self.requests.values() if r.parent_id == request_id]

    def request_path(self, request_id: str) -> tuple[str, ...]:
        """Return the node names from the root request down to *request_id*.

        Raises:
            KeyError: *request_id*, or one of its ancestors, is not in the tree.
        """
        names: list[str] = []
        seen: set[str] = set()
        current: str | None = request_id
        while current is not None and current not in seen:
            seen.add(current)
            request = self.requests.get(current)
            if request is None:
                msg = f"Run {self.job_id!r} has no request {current!r}."
                raise KeyError(msg)
            names.append(request.node)
            current = request.parent_id
        return tuple(reversed(names))

    # -- routine jobs: pause, resume, cancel, wait ---------------------------
    #
    # A JobState is data: it holds no reference to the job that fills it. The
    # Routilux-style controls below are thin delegations to the job's handle
    # (:class:`~runtime.Job`), found through the routine handler that calls
    # them, or through the flow for :meth:`wait_for_completion`.

    def _controls(self, api: str) -> JobControls:
        controls = current_job.get(None)
        if controls is None or controls.state is not self:
            msg = (
                f"Cannot {api} job {self.job_id!r} of flow {self.flow_id!r} from here (its status is "
                f"{self.status}): a JobState is data. Call it on the job's handle (async with "
                f"flow.open_job(...) as job: job.{api}), with flow.{api.removesuffix('()')}(job_state), or "
                "from a routine handler of the running job (ctx.job_state)."
            )
            raise JobStateError(msg)
        return controls

    def pause(self, reason: str | None = None) -> None:
        """Pause the running job from one of its routine handlers: a delegation to :meth:`Job.pause <runtime.Job.pause>`.

        Outside a handler, call ``job.pause()`` on the handle or
        ``flow.pause(job_state)``.

        Raises:
            JobStateError: not called from a routine handler of this job.

        .. versionadded:: 0.1.0
        """
        self._controls("pause()").pause(reason)

    def resume(self) -> None:
        """Resume the paused job from one of its routine handlers: a delegation to :meth:`Job.resume <runtime.Job.resume>`.

        Raises:
            JobStateError: not called from a routine handler of this job, or
                the job is not paused.

        .. versionadded:: 0.1.0
        """
        self._controls("resume()").resume()

    def cancel(self, reason: str | None = None) -> None:
        """Cancel the running job from one of its routine handlers: a delegation to :meth:`Job.cancel <runtime.Job.cancel>`.

        Cancelling a job that has ended does nothing.

        Raises:
            JobStateError: the job has not ended, and this is not called from
                a routine handler of it.

        .. versionadded:: 0.1.0
        """
        if not self.status.is_final:
            self._controls("cancel()").cancel(reason)

    @staticmethod
    def wait_for_completion(flow: JobFinder, job_state: JobState, timeout: float | None = None) -> bool:
        """Wait until *job_state*'s job has ended; return whether it did within *timeout*.

        ``flow.execute(...)`` returns once its job has ended, so this returns
        ``True`` at once for its state. A job of *flow* running in another
        thread is waited for on an event its engine sets as it ends (no
        polling). A job that is not running and has not ended (a paused job
        whose ``execute()`` returned, a state loaded from a file) never will,
        and this returns ``False`` at once.

        Args:
            flow: the job's flow.
            job_state: the job's state.
            timeout: seconds to wait at most; ``None`` waits as long as it takes.

        Raises:
            InvokeInsideTrioError: called inside a running Trio program while
                the job still runs; use ``await job.wait()`` there.

        .. versionadded:: 0.1.0
        """
        if job_state.status.is_final:
            return True
        finished = flow._job_finished(job_state.job_id)
        if finished is None:
            return False
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            msg = (
                f"JobState.wait_for_completion() was called inside a running Trio program, where it would "
                f"block the loop (job {job_state.job_id!r} is {job_state.status}). Use await job.wait() "
                "on the handle from async with flow.open_job(...)."
            )
            raise InvokeInsideTrioError(msg)
        return finished.wait(timeout) and job_state.status.is_final
