"""One job of a routine graph, as actors.

A job is one :func:`actors.open_system` block, run by the task that started
the job (the *supervisor*)::

    supervisor          owns the deadline; waits for the job to end, then winds it down
    ├── Publisher       hands the job's records to its subscribers and recorders (when it has any)
    └── RoutineActor    one per routine, on the job's own instance of the routine

Delivery. ``emit`` records the emission and queues one message per connected
slot in the emitting actor's outbox; the outbox is sent when the handler
returns, waiting for mailbox room (backpressure). Messages from one actor to
another keep their order. A send that would close a cycle of actors each
waiting for room in the next one's mailbox parks the message in the
receiver's *overflow* queue instead of deadlocking; a receiver moves its
overflow into its own mailbox as room appears, and while its overflow is
not empty every sender parks behind it, so order is kept.

Records. Every change of the job's state (emissions, routine states, shared
data, log entries, outputs, undelivered messages) is made where it happens and
recorded on the job's :class:`~runtime._record.RunLog`, the record path node
runs share.

Termination. ``_inflight`` counts messages queued but not yet handled: it
goes up when a message is queued (inside ``emit``, before the handler
returns) and down when its handler has finished and sent what it emitted.
The job completes when it reaches 0 while the job is not paused.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import inspect
import logging
import math
import threading
from typing import TYPE_CHECKING, cast, final

import attrs
import trio

import actors

from . import _graph_resume
from ._context import Frame, Invocation, RequestMetadata, copy_context, current_frame, invocation_hook
from ._core import cancelled_error, end_state, save_state, timeout_error
from ._exceptions import JobStateError, RunCancelledError, StepLimitError, StoreError
from ._executor import Submission
from ._publisher import Event, EventKind, Publisher
from ._record import RunLog
from ._routine import EMITTED_ATTR, ErrorStrategy, ExecutionContext, _Call, call_handler, current_host
from ._routine import apply_mapping as _mapped
from ._state import OUTPUT_KEY, Delivery, JobState, Status, _isolate, current_job, summarize
from ._util import NoPublicConstructor

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from ._core import RunSettings
    from ._executor import Executor
    from ._publisher import Subscription
    from ._routine import ErrorHandler, Handler, Routine, RoutineProps, Slot
    from ._util import AnyFlow
    from .store import Store

#: ``Delivery.source`` and ``Delivery.event`` of the message that starts a job.
ENTRY_SOURCE = "(entry)"
ENTRY_EVENT = "(start)"


_ROUTINE_MAILBOX = 64

_routine_logger = logging.getLogger("runtime.routine")

_STATUS_AFTER_FAILURE = {
    ErrorStrategy.STOP: "failed",
    ErrorStrategy.CONTINUE: "error_continued",
    ErrorStrategy.RETRY: "retrying",
    ErrorStrategy.SKIP: "skipped",
}


@functools.lru_cache(maxsize=4096)
def _actor_name(routine_id: str) -> str:
    return f"routine {routine_id!r}"


@final
class _Msg:
    """One message from an event to a slot."""

    __slots__ = ("data", "event", "seq", "slot", "source", "target")

    def __init__(
        self, seq: int, source: str, event: str, target: str, slot: str, data: dict[str, object]
    ) -> None:
        self.seq = seq
        self.source = source
        self.event = event
        self.target = target
        self.slot = slot
        self.data = data

    def delivery(self) -> Delivery:
        return Delivery(self.source, self.event, self.target, self.slot, dict(self.data))


class RoutineActor(actors.Actor[_Msg, None]):
    """One routine of one job: handles its slot messages one at a time."""

    mailbox_size = _ROUTINE_MAILBOX
    keeps_nursery = False  # a routine spawns no child actors

    # Defaults until first changed: a job start builds one actor per routine.
    inbox: actors.ActorRef[_Msg, None] | None = None
    busy = False
    failures = 0
    #: Messages handled to the end, and whether a handler was interrupted (cancelled): the entry routine's status.
    handled = 0
    interrupted = False
    #: ``param_mapping`` of this routine's outgoing connections that have one, by (event, target id, slot).
    mappings: dict[tuple[str, str, str], dict[str, str]] | None = None
    _context: ExecutionContext | None = None
    _merged: dict[str, dict[str, object]] | None = None

    def __init__(
        self,
        job: Job,
        routine_id: str,
        routine: Routine,
        error_handler: ErrorHandler,
        executor: Executor | None = None,
    ) -> None:
        self.job = job
        self.routine_id = routine_id
        self.routine = routine
        self.slots: dict[str, Slot] = routine.__dict__["_slots"]
        self.error_handler = error_handler
        #: Where the routine's plain handlers run (its own executor, else the flow's); None: the loop.
        self.executor = executor
        # Filled in by the job once every actor exists: event -> [(receiver, slot)].
        self.routes: dict[str, list[tuple[RoutineActor, str]]] = {}
        self.outbox: list[tuple[RoutineActor, _Msg]] = []
        self.overflow: collections.deque[_Msg] = collections.deque()

    @property
    def context(self) -> ExecutionContext:
        """What ``get_execution_context()`` returns in this routine's handlers."""
        context = self._context
        if context is None:
            job = self.job
            context = self._context = ExecutionContext(job.flow, job.state, self.routine_id)
        return context

    def release(self) -> None:
        """Forget the job, once the actor has ended."""
        self.__dict__.clear()

    async def on_start(self) -> None:
        # Set in the actor's own task: every handler of this routine sees it,
        # and nothing else does.
        current_host.set(self)
        current_job.set(self.job)
        current_frame.set(Frame(self.job, None, self))

    async def handle(self, message: _Msg) -> None:
        job = self.job
        sequential = job._sequential
        if sequential:
            await job._take_turn(message.seq)
        try:
            while job._paused:
                await job._wait_resumed()
            if job._outcome is not None:
                return
            job._steps += 1
            if job._steps > job._max_steps:
                job._step_limit(self, message)
                return
            del job._pending[message.seq]
            job._running += 1
            self.busy = True
            try:
                await self._handle(message)
            except BaseException:
                self.interrupted = True
                raise
            finally:
                self.busy = False
                job._running -= 1
            self.handled += 1
            if job._outcome is not None:
                return  # the job is ending: what is left stays pending
            if self.overflow:
                self._drain_overflow()
            if job.log.flush_due:
                await job.log.flush()
            job._message_done()
            if job._stores and job.log.seq >= job._snapshot_due:
                _graph_resume.snapshot_if_quiet(job)
        finally:
            if sequential:
                job._pass_turn()

    async def _handle(self, message: _Msg) -> None:
        slot = self.slots[message.slot]
        func = slot._func
        if func is None:
            return
        data = message.data if slot.merge_strategy == "override" else self._merge(slot, message.data)
        # runtime.testing's fault injection: awaited before each call of the handler.
        hook = invocation_hook.get(None)
        attempt = 0
        while True:
            try:
                after = None
                if hook is not None:
                    after = await hook(
                        Invocation("routine", self.routine_id, (self.routine_id, slot.name), (), data)
                    )
                if self.executor is not None and not slot._is_async:
                    result = await self._on_executor(self.executor, slot, func, data)
                else:
                    limiter = self.job._limiter
                    plan = slot._plan
                    if limiter is None and plan.kind is _Call.KWARGS:
                        result = func(self.routine, **data) if slot._on_routine else func(**data)
                    elif limiter is None and plan.kind is _Call.ONE and plan.names[0] in data:
                        value = data[plan.names[0]]
                        result = func(self.routine, value) if slot._on_routine else func(value)
                    else:
                        args, kwargs = slot._arguments(data)
                        if slot._on_routine:
                            args = (self.routine, *args)
                        if limiter is not None and not slot._is_async:
                            result = await trio.to_thread.run_sync(
                                functools.partial(func, *args, **kwargs), limiter=limiter
                            )
                        else:
                            result = func(*args, **kwargs)
                if slot._is_async or (result is not None and inspect.isawaitable(result)):
                    result = await result  # type: ignore[misc]
                if after is not None:
                    await after(result)
            except Exception as exc:
                action = self._failed(message, exc, attempt)
                if action is ErrorStrategy.STOP:
                    self.job._fail(exc, self.routine_id)
                    return
                await self.flush()
                if action is not ErrorStrategy.RETRY:
                    return
                attempt += 1
                self.error_handler.retry_count += 1
                await trio.sleep(self.error_handler.delay_before(attempt))
                continue
            if attempt:
                self.job.state.update_routine_state(
                    self.routine_id, {"status": "recovered", "retry_count": attempt}
                )
            if self.outbox:
                await self.flush()
            return

    async def _on_executor(
        self, executor: Executor, slot: Slot, func: Handler, data: dict[str, object]
    ) -> object:
        """Call *slot*'s handler on *executor*, then apply what it emitted, in order."""
        args, kwargs = slot._arguments(data)
        submission = Submission(
            call_handler,
            (func, self.routine if slot._on_routine else None, self.routine_id, args),
            kwargs,
            node=self.routine_id,
            request=f"slot {slot.name!r}",
            kind="routine",
        )
        try:
            reply = await executor.run(submission)
        except trio.Cancelled:
            self.job.state.update_routine_state(
                self.routine_id, {"status": submission.ending.value, "executor": executor.name}
            )
            raise
        except Exception as exc:
            self._apply(getattr(exc, EMITTED_ATTR, ()))
            with contextlib.suppress(AttributeError):
                delattr(exc, EMITTED_ATTR)
            raise
        result, emitted = cast("tuple[object, list[tuple[str, str, dict[str, object]]]]", reply)
        self._apply(emitted)
        return result

    def _apply(self, emitted: Iterable[tuple[str, str, dict[str, object]]]) -> None:
        """Do what a handler on an executor emitted, as it would have on the loop."""
        for what, name, data in emitted:
            if what == "emit":
                self.emit(name, data)
            elif what == "deferred":
                self.emit_deferred(name, data)
            else:
                self.send_output(name, data)

    def _merge(self, slot: Slot, data: dict[str, object]) -> dict[str, object]:
        if self._merged is None:
            self._merged = {}
        old = self._merged.get(slot.name, {})
        strategy = slot.merge_strategy
        if strategy == "append":
            merged = dict(old)
            for key, value in data.items():
                values = merged.get(key)
                merged[key] = [*values, value] if isinstance(values, list) else [value]
        else:
            merged = dict(strategy(dict(old), dict(data)))  # type: ignore[operator]
        self._merged[slot.name] = merged
        return dict(merged)

    def _failed(self, message: _Msg, exc: Exception, attempt: int) -> ErrorStrategy:
        """Record a handler failure and decide what to do about it."""
        job = self.job
        handler = self.error_handler
        strategy = handler.strategy
        if job._end_on_error:
            action = ErrorStrategy.STOP
        elif strategy is ErrorStrategy.RETRY:
            retryable = isinstance(exc, handler.retryable_exceptions) and attempt < handler.max_retries
            action = ErrorStrategy.RETRY if retryable else ErrorStrategy.STOP
        else:
            action = strategy
        self.failures += 1
        job._record(
            self.routine_id,
            "error",
            {
                "slot": message.slot,
                "error_type": type(exc).__name__,
                "error": str(exc),
                "action": action.value,
                "attempt": attempt + 1,
            },
        )
        update: dict[str, object] = {
            "status": _STATUS_AFTER_FAILURE[action],
            "error": f"{type(exc).__name__}: {exc}",
            "failures": self.failures,
        }
        if strategy is ErrorStrategy.RETRY:
            update["retry_count"] = attempt
        job.state.update_routine_state(self.routine_id, update)
        if action is ErrorStrategy.STOP:
            why = "end_on_error=True" if job._end_on_error else f"error strategy {strategy.value!r}"
            if strategy is ErrorStrategy.RETRY and not job._end_on_error:
                why += f", after {attempt} retries"
            if handler.is_critical:
                why += "; the routine is critical"
            exc.add_note(
                f"raised in routine {self.routine_id!r} (slot {message.slot!r}) of job "
                f"{job.state.job_id!r} of flow {job.flow_name!r}; the job stopped ({why})."
            )
        return action

    # -- what Routine.emit and friends call -------------------------------------

    async def log(self, level: int, message: str, data: dict[str, object]) -> None:
        """``rt.log`` in this routine's handler: the job's shared log, a ``log`` event, :mod:`logging`."""
        job = self.job
        _routine_logger.log(level, "%s [routine %s]: %s", job.flow_name, self.routine_id, message)
        entry = {"level": logging.getLevelName(level), "message": message, **data}
        job.state._append_log({"routine": self.routine_id, **entry}, job.log.offset())
        if job.log.add(EventKind.LOG, self.routine_id, entry):
            await job.log.flush()

    async def broadcast(self, item: object) -> None:
        """``rt.broadcast`` in this routine's handler: a ``stream`` event naming the routine."""
        job = self.job
        if job.log.add(EventKind.STREAM, self.routine_id, item):
            await job.log.flush()

    def emit(self, event: str, data: dict[str, object]) -> None:
        job = self.job
        if job._limiter is not None and threading.get_ident() != job._loop_thread:
            # A sync handler in a worker thread: the job's state is the loop's.
            trio.from_thread.run_sync(self.emit, event, data)
            return
        job._record(self.routine_id, event, data)
        targets = self.routes.get(event)
        if targets:
            outbox = self.outbox
            source = self.routine_id
            mappings = self.mappings
            for target, slot in targets:
                sent = data
                if mappings is not None:
                    mapping = mappings.get((event, target.routine_id, slot))
                    if mapping:
                        sent = _mapped(data, mapping)
                outbox.append((target, job._new_message(source, event, target.routine_id, slot, sent)))

    def emit_deferred(self, event: str, data: dict[str, object]) -> None:
        job = self.job
        if job._limiter is not None and threading.get_ident() != job._loop_thread:
            trio.from_thread.run_sync(self.emit_deferred, event, data)
            return
        if job._paused:
            job._deferred.append((self, event, data))
        else:
            self.emit(event, data)

    def emit_on_resume(self, event: str, data: dict[str, object]) -> None:
        """Emit a deferred event from ``resume()``, which cannot wait."""
        if self.busy:
            # Our handler's flush sends it, after what it emitted earlier.
            self.emit(event, data)
            return
        job = self.job
        job._record(self.routine_id, event, data)
        mappings = self.mappings or {}
        for target, slot in self.routes.get(event, ()):
            mapping = mappings.get((event, target.routine_id, slot))
            sent = _mapped(data, mapping) if mapping else data
            target.deliver_nowait(job._new_message(self.routine_id, event, target.routine_id, slot, sent))

    def send_output(self, output_type: str, data: dict[str, object]) -> None:
        job = self.job
        if job._limiter is not None and threading.get_ident() != job._loop_thread:
            trio.from_thread.run_sync(self.send_output, output_type, data)
            return
        state = job.state
        log = state.shared_data.setdefault(OUTPUT_KEY, [])
        if not isinstance(log, list):
            msg = (
                f"Routine {self.routine_id!r} called send_output({output_type!r}), but the job's shared "
                f"data {OUTPUT_KEY!r} is a {type(log).__name__}, not the list of outputs. Keep that key for "
                "send_output()."
            )
            raise JobStateError(msg)
        stamp = state._wall_time(state._now_offset()).isoformat()
        log.append(
            {
                "routine_id": self.routine_id,
                "output_type": output_type,
                "data": _isolate(data),
                "timestamp": stamp,
            }
        )
        job.log.add(EventKind.STREAM, self.routine_id, {"output_type": output_type, "data": data})

    async def flush(self) -> None:
        """Send the outbox, in order, waiting for mailbox room."""
        outbox = self.outbox
        if not outbox:
            return
        job = self.job
        sent = 0
        try:
            while sent < len(outbox):
                target, message = outbox[sent]
                sent += 1
                if job._sequential:
                    # One handler at a time: waiting for room here would wait
                    # for a handler that needs this turn. Park instead.
                    target.deliver_nowait(message)
                    continue
                if target.overflow:
                    target.overflow.append(message)
                    continue
                inbox = target.inbox
                assert inbox is not None
                try:
                    inbox.tell_nowait(message)
                except actors.MailboxFullError:
                    if job._would_deadlock(self, target):
                        target.overflow.append(message)
                    else:
                        await job._blocked_send(self, target, message)
        except actors.ActorStoppedError:
            # The job is ending and the receiver is gone: the message stays
            # pending, and is reported as undelivered.
            if job._outcome is None:
                raise
        finally:
            del outbox[:sent]

    # -- receiving ---------------------------------------------------------------

    def deliver_nowait(self, message: _Msg) -> None:
        """Put *message* in this actor's mailbox, or at the end of its overflow."""
        if not self.overflow:
            inbox = self.inbox
            assert inbox is not None
            try:
                inbox.tell_nowait(message)
            except actors.MailboxFullError:
                pass
            else:
                return
        self.overflow.append(message)

    def _drain_overflow(self) -> None:
        overflow = self.overflow
        inbox = self.inbox
        assert inbox is not None
        while overflow:
            try:
                inbox.tell_nowait(overflow[0])
            except actors.MailboxFullError:
                return
            overflow.popleft()


@final
class Job(metaclass=NoPublicConstructor):
    """A running job of a routine graph: from ``async with flow.open_job(...) as job``.

    Use it to wait for the job, pause, resume or cancel it, and read its
    :class:`~runtime.JobState` as it changes. Only
    :meth:`Flow.open_job <runtime.Flow.open_job>` makes one.

    .. versionadded:: 0.1
    """

    _use_instead = "flow.open_job(...)"  # named by the error of calling Job(...)

    # Defaults until first changed: a job start sets only what it must.
    _seq = 0
    _inflight = 0
    _running = 0
    _blocked = 0
    _steps = 0
    _paused = False
    _resumed: trio.Event | None = None
    _outcome: Status | None = None
    _error: BaseException | None = None
    _error_path: tuple[str, ...] = ()
    _finished: trio.Event | None = None  # made by the first wait()
    _finished_payload: dict[str, object] | None = None  # the run_finished event's data, once final
    _publisher: actors.ActorRef[list[Event], None] | None = None
    _ended = False
    #: ``"concurrent"``: the worker threads sync handlers run in (made when the job starts).
    _limiter: trio.CapacityLimiter | None = None
    #: The job's Trio run and the thread it runs in, once started.
    _token: trio.lowlevel.TrioToken | None = None
    _loop_thread = 0
    #: ``"sequential"``: whether a handler holds the turn, and who waits for it, by message seq.
    _turn_taken = False
    _turn_waiters: dict[int, trio.Event] | None = None
    #: Why the job was last paused, if a reason was given.
    pause_reason: str | None = None
    #: A durable job (``_graph_resume``): its ``run_started`` value, the stores that keep its
    #: snapshots, its first record's number, the record count at which a snapshot is due, the
    #: last record its last snapshot covers, whether it ended with no handler running, and a
    #: resumed job's messages and deferred events to start with instead of its entry.
    _started_value: dict[str, object] | None = None
    _stores: tuple[Store, ...] = ()
    _first_seq = 0
    _snapshot_due = 0
    _snapshot_seq = -1
    _quiet_end = True
    _restored: tuple[list[_graph_resume.Message], list[_graph_resume.Deferred]] | None = None

    def __init__(
        self,
        *,
        settings: RunSettings,
        flow: AnyFlow,
        job_id: str,
        max_steps: int | None,
        running: dict[str, Job],
        routines: Mapping[str, RoutineProps],
        connections: Mapping[tuple[str, str], Sequence[tuple[str, str]]],
        mappings: Mapping[tuple[str, str, str, str], dict[str, str]],
        strategy: str,
        max_workers: int,
        default_handler: ErrorHandler,
        entry: tuple[str, str, dict[str, object]],
        detached: bool,
        metadata: RequestMetadata | None,
        subscriptions: Sequence[Subscription],
    ) -> None:
        #: The flow the job belongs to, as handlers see it (``ctx.flow``).
        self.flow = flow
        self.settings = settings
        self.flow_name = settings.name
        context = copy_context(settings.context, where=f"Flow({settings.name!r}) job")
        self.state = JobState(job_id=job_id, flow_id=settings.name, context=context)
        if settings.on_state is not None:
            settings.on_state(self.state)
        #: The metadata of the request that started the job (``rt.request()`` in handlers).
        self.metadata = metadata if metadata is not None else RequestMetadata(run_id=job_id)
        self._registry = running
        self._detached = detached
        self._max_steps: float = math.inf if max_steps is None else max_steps
        self._timeout = settings.timeout
        self._end_on_error = settings.end_on_error
        self._callbacks: Sequence[Callable[[Event], object]] = settings.subscribers
        self._subscriptions = subscriptions
        self._recorders = settings.recorders
        #: The job's record path (``_record.py``): every change, in order, to its consumers.
        self.log = RunLog(job_id)
        # Every routine's instance is made before any of them runs: a
        # constructor that fails leaves no job behind.
        self._actors: dict[str, RoutineActor] = {}
        for routine_id, props in routines.items():
            routine = props.build(routine_id, settings.name)
            handler = routine._error_handler or default_handler
            executor = routine.__dict__.get("_executor") or settings.executor
            self._actors[routine_id] = RoutineActor(self, routine_id, routine, handler, executor)
        for (source, event), targets in connections.items():
            self._actors[source].routes[event] = [(self._actors[dst], slot) for dst, slot in targets]
        for (source, event, target, slot), mapping in mappings.items():
            actor = self._actors[source]
            if actor.mappings is None:
                actor.mappings = {}
            actor.mappings[event, target, slot] = mapping
        #: ``execution_strategy="sequential"``: one handler call at a time, in emission order.
        self._sequential = strategy == "sequential"
        self._max_workers = max_workers if strategy == "concurrent" else 0
        self._entry = entry
        self._pending: dict[int, _Msg] = {}
        self._deferred: list[tuple[RoutineActor, str, dict[str, object]]] = []
        self._waiting_on: dict[RoutineActor, RoutineActor] = {}
        self._done = trio.Event()
        #: Set once the job has ended, however it ended: what
        #: ``JobState.wait_for_completion`` waits on from another thread.
        self.finished_sync = threading.Event()

    def __repr__(self) -> str:
        return f"<Job {self.state.job_id!r} of flow {self.flow_name!r} ({self.state.status})>"

    # -- public face ------------------------------------------------------------

    @property
    def job_id(self) -> str:
        """The job's id (its state's ``job_id``)."""
        return self.state.job_id

    @property
    def status(self) -> Status:
        """The job's status now."""
        return self.state.status

    @property
    def error(self) -> BaseException | None:
        """The exception that ended the job (a handler's, or a timeout, cancel or step-limit error)."""
        return self._error

    @property
    def outputs(self) -> list[dict[str, object]]:
        """What the job's routines sent with ``send_output``, in order (copies)."""
        log = self.state.get_shared_data(OUTPUT_KEY, [])
        return list(log) if isinstance(log, list) else []

    def routine_stats(self) -> dict[str, dict[str, int]]:
        """Per routine, the messages it has taken so far (the one it is handling included) and those waiting.

        ``{routine_id: {"handled": n, "queued": m}}``; *queued* counts its
        mailbox and its overflow (see the module docstring). A snapshot for
        live views (the CLI's progress draws it); empty once the job has
        ended.
        """
        if self._ended:
            return {}
        stats: dict[str, dict[str, int]] = {}
        for routine_id, actor in self._actors.items():
            inbox = actor.inbox
            if inbox is None:
                stats[routine_id] = {"handled": 0, "queued": 0}
                continue
            snapshot = inbox.statistics()
            stats[routine_id] = {
                "handled": snapshot.handled,
                "queued": snapshot.mailbox_used + len(actor.overflow),
            }
        return stats

    async def wait(self) -> JobState:
        """Wait until the job has ended, however it ends, and return its state.

        A failed, timed-out or cancelled job does not raise here: its status
        and ``error`` say how it ended. Cancelling this wait leaves the job
        running (leaving the ``open_job`` block cancels it).
        """
        if self._ended:
            await trio.lowlevel.checkpoint()
            return self.state
        if self._finished is None:
            self._finished = trio.Event()
        await self._finished.wait()
        return self.state

    def pause(self, reason: str | None = None) -> None:
        """Stop the routines taking new messages; status ``paused``.

        A message being handled is finished, retries included (and what it
        emits is queued; ``emit_deferred_event`` waits for the resume). The
        job's ``timeout`` keeps running. Pausing a paused job does nothing.

        Raises:
            JobStateError: the job has ended.
        """
        if self._in_worker_thread():
            trio.from_thread.run_sync(self.pause, reason, trio_token=self._token)
            return
        if self._outcome is not None or self.state.status.is_final:
            msg = (
                f"Cannot pause job {self.state.job_id!r} of flow {self.flow_name!r}: it has ended "
                f"({self._outcome or self.state.status}). Pause a job while it runs."
            )
            raise JobStateError(msg)
        self.pause_reason = reason
        if self._paused:
            return
        self._paused = True
        self._resumed = trio.Event()
        self.state.status = Status.PAUSED
        self._check_quiescent()

    def resume(self) -> None:
        """Let the routines take messages again and emit the deferred events.

        Raises:
            JobStateError: the job is not paused.
        """
        if self._in_worker_thread():
            trio.from_thread.run_sync(self.resume, trio_token=self._token)
            return
        if not self._paused or self._outcome is not None:
            status = self._outcome or self.state.status
            msg = (
                f"Cannot resume job {self.state.job_id!r} of flow {self.flow_name!r}: it is {status}, "
                "not paused. Call resume() only after pause()."
            )
            raise JobStateError(msg)
        self._paused = False
        self.state.status = Status.RUNNING
        resumed = self._resumed
        self._resumed = None
        if resumed is not None:
            resumed.set()
        deferred, self._deferred = self._deferred, []
        for actor, event, data in deferred:
            actor.emit_on_resume(event, data)
        if self._inflight == 0:
            self._end(Status.COMPLETED)

    def cancel(self, reason: str | None = None) -> None:
        """Cancel the job at once; status ``cancelled``.

        Running handlers are cancelled at their next checkpoint; every message
        queued but not handled is listed in ``job_state.undelivered``.
        Cancelling a job that has ended does nothing.
        """
        if self._outcome is not None:
            return
        if self._in_worker_thread():
            with contextlib.suppress(trio.RunFinishedError):  # it ended meanwhile
                trio.from_thread.run_sync(self.cancel, reason, trio_token=self._token)
            return
        why = f": {reason}" if reason else "."
        self._error = RunCancelledError(
            f"Job {self.state.job_id!r} of flow {self.flow_name!r} was cancelled{why}"
        )
        self._end(Status.CANCELLED)

    # -- book-keeping -------------------------------------------------------------

    def _new_message(self, source: str, event: str, target: str, slot: str, data: dict[str, object]) -> _Msg:
        self._seq += 1
        message = _Msg(self._seq, source, event, target, slot, data)
        self._pending[self._seq] = message
        self._inflight += 1
        return message

    def _record(self, routine_id: str, event: str, data: Mapping[str, object]) -> None:
        entry = self.state.record_event(routine_id, event, data)
        self.log.add(
            EventKind.ROUTINE_EVENT, routine_id, {"event": event, "data": entry.data}, offset=entry.offset
        )

    def _in_worker_thread(self) -> bool:
        """Whether this is another thread than the job's loop (a ``"concurrent"`` job's worker, say).

        The job belongs to its loop: a control called from another thread is
        run there (``trio.from_thread``), while the job runs.
        """
        return self._token is not None and not self._ended and threading.get_ident() != self._loop_thread

    def state_changed(self, kind: EventKind, node: str | None, data: object) -> None:
        """Record a change made to the job's state through its public methods (``JobState``)."""
        if self._limiter is not None and threading.get_ident() != self._loop_thread:
            trio.from_thread.run_sync(self.log.add, kind, node, data)
            return
        self.log.add(kind, node, data)

    # -- "sequential": a job-wide FIFO of handler calls ------------------------------

    async def _take_turn(self, seq: int) -> None:
        """Wait until message *seq* is the oldest one not yet handled and no handler runs.

        Messages are numbered as they are emitted (siblings in connection
        order), so handlers run one at a time in emission order.
        """
        pending = self._pending
        while self._turn_taken or (pending and next(iter(pending)) != seq):
            if self._turn_waiters is None:
                self._turn_waiters = {}
            waiter = self._turn_waiters[seq] = trio.Event()
            try:
                await waiter.wait()
            finally:
                if self._turn_waiters.get(seq) is waiter:
                    del self._turn_waiters[seq]
        self._turn_taken = True

    def _pass_turn(self) -> None:
        """Free the turn and wake the handler of the oldest message, if it waits."""
        self._turn_taken = False
        if self._pending and self._turn_waiters:
            waiter = self._turn_waiters.pop(next(iter(self._pending)), None)
            if waiter is not None:
                waiter.set()

    async def _hold(self, seq: int) -> None:
        """Wait until the job's stores have committed its records up to *seq* (see ``RunLog.flush``)."""
        for store in self._stores:
            wait = getattr(store, "wait_committed", None)
            if wait is not None:
                # A store that failed holds nothing back: its own block reports the failure.
                with contextlib.suppress(StoreError):
                    await wait(self.state.job_id, seq)

    def _message_done(self) -> None:
        self._inflight -= 1
        if self._paused:
            self._check_quiescent()
        elif self._inflight == 0:
            self._end(Status.COMPLETED)

    def _check_quiescent(self) -> None:
        if self._paused and self._running == self._blocked:
            if self._stores:
                _graph_resume.snapshot(self)  # a durable pause: the job can go on from here in any process
            # A job run without a handle (execute, aexecute) that is paused with
            # no handler left to run cannot be resumed here: it ends as paused.
            if self._detached:
                self._end(Status.PAUSED)

    def _end(self, outcome: Status) -> None:
        if self._outcome is None:
            self._outcome = outcome
            self._quiet_end = self._running == self._blocked
            self._done.set()
            if outcome is Status.COMPLETED:
                # Nothing is left to handle: let every routine end now.
                for actor in self._actors.values():
                    if actor.inbox is not None:
                        actor.inbox.stop_nowait()

    def _fail(self, exc: BaseException, routine_id: str) -> None:
        if self._outcome is None:
            self._error = exc
            self._error_path = (routine_id,)
            self._end(Status.FAILED)

    def _step_limit(self, actor: RoutineActor, message: _Msg) -> None:
        msg = (
            f"Job {self.state.job_id!r} of flow {self.flow_name!r} handled {self._max_steps} messages, its "
            f"max_steps, and routine {actor.routine_id!r} was about to handle another on slot "
            f"{message.slot!r}: a cycle that never ends? Make the cycle stop, or raise "
            f"Flow(..., max_steps=...)."
        )
        self._fail(StepLimitError(msg), actor.routine_id)

    async def _wait_resumed(self) -> None:
        resumed = self._resumed
        if resumed is not None:
            await resumed.wait()

    def _would_deadlock(self, sender: RoutineActor, target: RoutineActor) -> bool:
        """Whether waiting for room in *target*'s mailbox would close a cycle of waits."""
        waiting_on = self._waiting_on
        current: RoutineActor | None = target
        while current is not None:
            if current is sender:
                return True
            current = waiting_on.get(current)
        return False

    async def _blocked_send(self, sender: RoutineActor, target: RoutineActor, message: _Msg) -> None:
        self._waiting_on[sender] = target
        self._blocked += 1
        if self._paused:
            self._check_quiescent()
        try:
            assert target.inbox is not None
            await target.inbox.tell(message)
        finally:
            del self._waiting_on[sender]
            self._blocked -= 1

    # -- the supervisor -----------------------------------------------------------

    async def _run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the job to its end, in the calling task; the state says how it ended.

        Raises only if the calling task is cancelled from outside (the job is
        then recorded as cancelled first).
        """
        state = self.state
        self._registry[state.job_id] = self
        state._start_clock()
        state.current_routine_id = self._entry[0]  # as Routilux records it: the routine the job starts from
        deadline = math.inf if self._timeout is None else trio.current_time() + self._timeout
        self._token = trio.lowlevel.current_trio_token()
        self._loop_thread = threading.get_ident()
        if self._max_workers:
            self._limiter = trio.CapacityLimiter(self._max_workers)
        try:
            async with actors.open_system() as system:
                try:
                    live = bool(self._callbacks or self._subscriptions)
                    if live or self._recorders:
                        self._publisher = system.spawn_nowait(
                            Publisher(self._callbacks, self._subscriptions, self._recorders),
                            name=f"publisher (job {state.job_id})",
                        )
                    self.log.start(
                        self._publisher,
                        live=live,
                        seq=self._first_seq,
                        hold=self._hold if self._stores and self._publisher is not None else None,
                    )
                    self.log.add(EventKind.RUN_STARTED, None, self.flow_name, value=self._started_value)
                    for routine_id, actor in self._actors.items():
                        if actor.executor is not None and any(
                            slot._func is not None and not slot._is_async for slot in actor.slots.values()
                        ):
                            state.update_routine_state(routine_id, {"executor": actor.executor.name})
                        actor.inbox = system.spawn_nowait(actor, name=_actor_name(routine_id))
                    task_status.started()
                    entry_id, slot, params = self._entry
                    if self._restored is not None:
                        _graph_resume.start(self)
                    else:
                        self._actors[entry_id].deliver_nowait(
                            self._new_message(ENTRY_SOURCE, ENTRY_EVENT, entry_id, slot, params)
                        )
                    if self._timeout is None:
                        await self._done.wait()
                    else:
                        with trio.move_on_at(deadline):
                            await self._done.wait()
                    if self._outcome is None:
                        self._error = timeout_error(state, self._timeout, "routine")
                        self._end(Status.TIMED_OUT)
                except BaseException as exc:
                    if self._outcome is None:
                        self._error = cancelled_error(state, "routine", exc)
                        self._end(Status.CANCELLED)
                    raise
                finally:
                    if self._outcome is Status.COMPLETED and self._publisher is None:
                        self._finalize()  # nothing to wait for: the routines are idle and stopping
                    else:
                        with trio.CancelScope(shield=True):
                            await self._wind_down()
        finally:
            if self._registry.get(state.job_id) is self:
                del self._registry[state.job_id]
            if self.settings.save_state:
                save_state(self.settings, state)
            self._ended = True
            self.finished_sync.set()
            if self._finished is not None:
                self._finished.set()
            # Every actor has ended: drop what they hold, so the job and its
            # state are freed as soon as the caller lets go of them, not at
            # the next garbage collection.
            for actor in self._actors.values():
                actor.release()

    async def _wind_down(self) -> None:
        if self._outcome is not Status.COMPLETED:
            # Cancel the routines and let them end before the state is final:
            # a handler's finally block may still emit.
            refs = [actor.inbox for actor in self._actors.values() if actor.inbox is not None]
            for ref in refs:
                ref.cancel()
            for ref in refs:
                await ref.wait_stopped()
        # A completed job's routines are idle and stopping (see _end); the
        # system's block waits for them.
        self._finalize()
        publisher = self._publisher
        if publisher is not None:
            self.log.add(EventKind.RUN_FINISHED, None, self._finished_payload)
            await self.log.flush()
            await publisher.stop()

    def _finalize(self) -> None:
        state = self.state
        outcome = self._outcome if self._outcome is not None else Status.CANCELLED
        outputs = state.shared_data.get(OUTPUT_KEY)
        self._finished_payload = end_state(
            state, outcome, self._error, summarize(outputs) if outputs else None, error_path=self._error_path
        )
        # A durable job that did not complete ends with a snapshot if no handler was stopped part-way
        # (an outside cancel may reach the handlers first); before the undelivered records, which a
        # resume delivers.
        if (
            self._stores
            and outcome is not Status.COMPLETED
            and self._quiet_end
            and not any(actor.interrupted for actor in self._actors.values())
        ):
            _graph_resume.snapshot(self)
        undelivered = [message.delivery() for message in self._pending.values()]
        undelivered.extend(
            Delivery(actor.routine_id, event, target.routine_id, slot, dict(data))
            for actor, event, data in self._deferred
            for target, slot in actor.routes.get(event, ())
        )
        for delivery in undelivered:
            state.undelivered.append(delivery)
            self.log.add(EventKind.UNDELIVERED, delivery.target, attrs.asdict(delivery))
        # The entry routine's own ending, as Routilux records it, unless a
        # failure or a handler already set its status.
        entry_id = self._entry[0]
        actor = self._actors[entry_id]
        if "status" not in state.routine_states.get(entry_id, ()) and (actor.handled or actor.interrupted):
            ending = "cancelled" if actor.interrupted else "completed"
            state.routine_states.setdefault(entry_id, {})["status"] = ending
            self.log.add(EventKind.ROUTINE_STATE, entry_id, {"status": ending})
        state.metrics["steps"] = float(min(self._steps, self._max_steps))
        state.finished_at = state._wall_time(state._now_offset())

    def _result(self) -> object:
        outputs = self.state.get_shared_data(OUTPUT_KEY)
        return outputs if outputs else None
