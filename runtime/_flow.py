"""``Flow``: a reusable workflow, run once per ``invoke``.

A Flow is either a tree of node calls (``Flow(name, entry_point=node)``) or a
graph of routines (``Flow(flow_id=...)`` then ``add_routine``/``connect``); the
settings (timeout, context, save_state, end_on_error) mean the same for both.

The Flow is a facade: it holds its entry node, or its routine graph as a
:class:`~runtime._graph.Graph` value, and hands each run, with its settings
as one :class:`~runtime._core.RunSettings`, to the engine that fits
(``_run.run_flow`` for node calls, the graph's jobs for routines). Neither
engine imports this module.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import reprlib
import types
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Generic, ParamSpec, TypeVar, cast, final

import trio

from ._context import RequestMetadata, copy_context
from ._core import RunResult, RunSettings
from ._exceptions import GraphDefinitionError, TrioflowError
from ._executor import check_executor
from ._graph import Graph
from ._node import Node, as_node
from ._publisher import Overflow, Subscription
from ._run import run_flow
from ._serialize import state_file_name
from ._util import check_in_trio, check_not_in_trio

if TYPE_CHECKING:
    import threading
    from collections.abc import AsyncIterator, Callable, Sequence

    from ._executor import Executor
    from ._job import Job
    from ._node import AnyNode
    from ._publisher import Event, Recorder
    from ._routine import ErrorHandler, ErrorStrategy, Routine
    from ._state import JobState
    from ._util import AnyFlow
    from .store import Store

P = ParamSpec("P")
T = TypeVar("T")


def _show(value: object) -> str:
    """A short one-line repr of a user's value, for an error message."""
    return reprlib.repr(value)


def _check_name(name: object) -> None:
    """Raise unless *name* is a non-empty string."""
    if not isinstance(name, str):
        msg = f"Flow(name={_show(name)}): name must be a non-empty string, not {type(name).__qualname__}."
        raise TypeError(msg)
    if not name:
        msg = "Flow(name=''): name must be a non-empty string."
        raise ValueError(msg)


def _check_settings(
    name: str,
    *,
    timeout: object,
    context: object,
    save_state: object,
    end_on_error: object,
    state_dir: object,
) -> None:
    """Raise an error naming the first of ``Flow``'s settings that it does not accept, and what it accepts."""
    where = f"Flow({name!r}"
    if timeout is not None:
        if not isinstance(timeout, int | float) or isinstance(timeout, bool):
            msg = (
                f"{where}, timeout={_show(timeout)}): timeout must be a positive number of seconds, or None."
            )
            raise TypeError(msg)
        if not timeout > 0:  # NaN too
            msg = f"{where}, timeout={timeout!r}): timeout must be a positive number of seconds, or None."
            raise ValueError(msg)
    if context is not None:
        if not isinstance(context, Mapping):
            msg = f"{where}, context={_show(context)}): context must be a mapping of str keys to values (a dict), or None."
            raise TypeError(msg)
        bad = next((key for key in context if not isinstance(key, str)), None)
        if bad is not None:
            msg = f"{where}, context=...): context keys must be str, not {_show(bad)} ({type(bad).__qualname__})."
            raise TypeError(msg)
    for label, value in (("save_state", save_state), ("end_on_error", end_on_error)):
        if not isinstance(value, bool):
            msg = f"{where}, {label}={_show(value)}): {label} must be True or False."
            raise TypeError(msg)
    if not isinstance(state_dir, str | os.PathLike):
        msg = f"{where}, state_dir={_show(state_dir)}): state_dir must be a directory path (a str or os.PathLike)."
        raise TypeError(msg)


def _as_subscribers(name: str, subscribers: object) -> tuple[Callable[[Event], object], ...]:
    """*subscribers* as a tuple, or an error naming the first that is not a callable."""
    if isinstance(subscribers, str | bytes | Mapping) or not isinstance(subscribers, Iterable):
        msg = f"Flow({name!r}, subscribers={_show(subscribers)}): subscribers must be a list of callables, each called with every rt.Event."
        raise TypeError(msg)
    found = tuple(subscribers)
    for index, subscriber in enumerate(found):
        if not callable(subscriber):
            msg = f"Flow({name!r}, subscribers=...): subscribers[{index}] is {_show(subscriber)}, not a callable; each subscriber is called with every rt.Event."
            raise TypeError(msg)
    return found


@final
class Flow(Generic[P, T]):
    """A reusable workflow: each ``invoke`` is an independent run with its own id.

    Args:
        name: the flow's name, used for its state file and in errors. Also
            accepted as ``flow_id`` (the routine-graph spelling).
        entry_point: the node a run starts with (node flows).
        timeout: seconds a run may take. When it passes, every node of the run
            is cancelled (their ``finally`` blocks run) before
            :class:`~runtime.RunTimeoutError` is raised.
        context: the run's global context (``rt.context``); each run starts
            from its own deep copy, except for values wrapped in
            :class:`~runtime.Shared`, which every run shares.
        save_state: write the run's state document when the run ends, however
            it ends, to :attr:`state_path`: ``<state_dir>/<name>.json`` for a
            plain name such as ``greet-all``; any other name is mapped to a
            safe file name in *state_dir* (see :func:`~runtime.state_file_name`).
        end_on_error: end the whole run at the first failing node, even if a
            parent would have caught the error, and raise it. The callers
            see the run's cancellation, never the error: their ``finally``
            blocks run, their ``except`` clauses do not, and they end
            ``cancelled``.
        state_dir: where ``save_state`` writes; default ``.trioflow``.
        subscribers: callbacks (plain or async) called with every
            :class:`~runtime.Event` of every run, in order.
        recorders: :class:`~runtime.Recorder` objects that get every record
            of every run (node runs and graph jobs alike), in order, in
            batches: a durable store, an exporter. See ``runtime._record``
            for the record kinds and their order.
        store: a :class:`~runtime.Store` (e.g. :class:`~runtime.SQLiteStore`)
            that keeps every record of every run as it happens; it is added
            to the recorders. Open it (``async with store:``) around the runs.
        max_steps: routine graphs only: the most handler calls one job may make
            before it fails with :class:`~runtime.StepLimitError`. ``None``
            (the default): no limit; a cycle that never stops then runs until
            *timeout*, or until the caller cancels it.
        executor: where the flow's plain nodes run unless a node was given
            its own executor (``rt.threads()``, ``rt.processes()``,
            ``rt.ray()``); ``None``: in a worker thread. Async nodes and
            ``thread=False`` nodes run on the loop. In a routine graph, where
            the plain handlers of routines without their own executor
            (:meth:`Routine.set_executor <runtime.Routine.set_executor>`)
            run; ``None``: on the loop.

    Raises:
        TypeError: a setting of the wrong type (a name that is not a string,
            a *timeout* that is not a number, a *context* that is not a
            mapping of str keys, a *state_dir* that is not a path, a
            subscriber that is not callable, a *save_state* or
            *end_on_error* that is not a bool); *entry_point* is not a node;
            or a *context* value can be neither deep-copied nor is wrapped in
            :class:`~runtime.Shared`; *executor* is not an executor; a
            *store* that is not a :class:`~runtime.Store`. The message names
            the setting.
        ValueError: an empty name, or a non-positive *timeout* or *max_steps*.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        name: str | None = None,
        entry_point: Node[P, T] | None = None,
        *,
        flow_id: str | None = None,
        timeout: float | None = None,
        context: Mapping[str, object] | None = None,
        save_state: bool = False,
        end_on_error: bool = False,
        state_dir: str | os.PathLike[str] = ".trioflow",
        subscribers: Sequence[Callable[[Event], object]] = (),
        recorders: Sequence[Recorder] = (),
        store: Store | None = None,
        max_steps: int | None = None,
        executor: Executor | None = None,
    ) -> None:
        if name is not None and flow_id is not None and name != flow_id:
            msg = f"Flow(name={name!r}, flow_id={flow_id!r}): give one name (flow_id is the routine-graph spelling of name)."
            raise TypeError(msg)
        name = name if name is not None else flow_id
        if name is None:
            name = f"flow-{uuid.uuid4().hex[:8]}"
        _check_name(name)
        _check_settings(
            name,
            timeout=timeout,
            context=context,
            save_state=save_state,
            end_on_error=end_on_error,
            state_dir=state_dir,
        )
        self.name = name
        self.entry_point: Node[P, T] | None = (
            None if entry_point is None else as_node(entry_point, where=f"Flow({name!r}, entry_point=...)")  # type: ignore[assignment]
        )
        self.timeout = timeout
        self.context: dict[str, object] = copy_context(context or {}, where=f"Flow({name!r}, context=...)")
        self.save_state = save_state
        self.end_on_error = end_on_error
        self.state_dir = pathlib.Path(state_dir)
        self.subscribers = _as_subscribers(name, subscribers)
        if store is not None and not callable(getattr(store, "records", None)):
            msg = f"Flow({name!r}, store={store!r}): a store is an rt.Store, e.g. rt.SQLiteStore('runs.db')."
            raise TypeError(msg)
        #: The store that keeps every run of this flow, if any (it is also one of :attr:`recorders`).
        self.store = store
        self.recorders = (*recorders, store) if store is not None else tuple(recorders)
        for recorder in self.recorders:
            if not callable(getattr(recorder, "record", None)):
                msg = f"Flow({name!r}, recorders=[..., {recorder!r}, ...]): a recorder has an async record(records) method (see rt.Recorder)."
                raise TypeError(msg)
        self.executor = None if executor is None else check_executor(executor, where=f"Flow({name!r})")
        self._graph = Graph(name, max_steps=max_steps)

    @property
    def flow_id(self) -> str:
        """The flow's name (the routine-graph spelling)."""
        return self.name

    def __repr__(self) -> str:
        kind = (
            f"entry_point={self.entry_point.name}"
            if self.entry_point is not None
            else f"routines={len(self._graph.routines)}"
        )
        return f"<Flow {self.name!r} {kind}>"

    @property
    def state_path(self) -> pathlib.Path:
        """Where ``save_state`` writes this flow's runs: a file directly in :attr:`state_dir`.

        Its name comes from :func:`~runtime.state_file_name`: ``greet-all``
        gives ``greet-all.json``, and a name holding anything else (``/``,
        ``..``, upper case, control characters, 10,000 characters) gives a
        sanitised prefix and a hash of the name, never a path outside
        :attr:`state_dir`.
        """
        return self.state_dir / state_file_name(self.name)

    # -- node runs -----------------------------------------------------------

    def _entry(self, api: str) -> AnyNode:
        if self.entry_point is None:
            msg = (
                f"Flow({self.name!r}).{api}() needs an entry point node, but this flow has none. "
                "Build it as rt.Flow(name, entry_point=node), or run a routine graph with execute()."
            )
            raise TrioflowError(msg)
        return cast("AnyNode", self.entry_point)

    def invoke(self, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run the flow from synchronous code and return the entry point's result.

        Raises:
            InvokeInsideTrioError: called inside a running Trio program.
            RunTimeoutError: the run passed its timeout.
            Exception: the node error that ended the run.
        """
        check_not_in_trio(
            f"Flow({self.name!r}).invoke(...)", instead=f"await Flow({self.name!r}).ainvoke(...)"
        )
        return trio.run(self._ainvoke_packed, args, kwargs)

    async def _ainvoke_packed(self, args: tuple[object, ...], kwargs: dict[str, object]) -> T:
        return (await self._arun(args, kwargs)).unwrap()

    async def ainvoke(self, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run the flow inside a running Trio program and return the entry point's result.

        Cancelling the caller cancels the run: every node is cancelled, the
        state records ``cancelled`` (and is saved if ``save_state``), and the
        cancellation propagates.

        Raises:
            RunTimeoutError: the run passed its timeout.
            Exception: the node error that ended the run.
            OutsideTrioError: awaited outside Trio (from asyncio, say).
        """
        check_in_trio(f"Flow({self.name!r}).ainvoke(...)")
        return (await self._arun(args, kwargs)).unwrap()

    def run(self, *args: P.args, **kwargs: P.kwargs) -> RunResult[T]:
        """Like :meth:`invoke`, but return the finished run's :class:`~runtime.RunResult`
        (state, result, error) instead of raising a node's error."""
        check_not_in_trio(f"Flow({self.name!r}).run(...)", instead=f"await Flow({self.name!r}).arun(...)")
        return trio.run(self._arun_packed, args, kwargs)

    async def _arun_packed(self, args: tuple[object, ...], kwargs: dict[str, object]) -> RunResult[T]:
        return await self._arun(args, kwargs)

    async def arun(self, *args: P.args, **kwargs: P.kwargs) -> RunResult[T]:
        """Like :meth:`ainvoke`, but return the finished run's :class:`~runtime.RunResult`."""
        check_in_trio(f"Flow({self.name!r}).arun(...)")
        return await self._arun(args, kwargs)

    @contextlib.asynccontextmanager
    async def stream(self, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[Subscription]:
        """Start a run and stream its events: ``async with flow.stream(x) as events:``.

        Iterate ``events`` for every :class:`~runtime.Event` of the run, the
        ``run_finished`` event last; ``events.finished.data`` then holds the
        status and result. Leaving the block early cancels the run; that is a
        normal end, not an error. A run that fails does not raise here: its
        error is in the ``run_finished`` event.

        Raises:
            OutsideTrioError: entered outside Trio (from asyncio, say).
        """
        check_in_trio(f"async with Flow({self.name!r}).stream(...)", how="entered")
        async with self._open_stream(args, kwargs) as events:
            yield events

    @contextlib.asynccontextmanager
    async def _open_stream(
        self,
        args: tuple[object, ...],
        kwargs: Mapping[str, object],
        *,
        metadata: RequestMetadata | None = None,
        buffer: int = 256,
        overflow: Overflow = "block",
    ) -> AsyncIterator[Subscription]:
        """:meth:`stream` with the run's arguments packed, and stream options (the runtime's own form).

        Args:
            args: positional arguments for the entry point (or the routine graph's entry).
            kwargs: keyword arguments for the entry point.
            metadata: the request metadata nodes see through ``rt.request()``.
            buffer: events buffered for this subscriber.
            overflow: ``"block"`` holds the run back while the buffer is full;
                ``"fail"`` ends the stream with ``SubscriberOverflowError``.

        The public entry points check that they run in Trio before they get here.
        """
        subscription = Subscription(buffer, overflow)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._stream_run, args, kwargs, metadata, subscription)
            try:
                yield subscription
            finally:
                subscription.close()
                if subscription.finished is None:
                    nursery.cancel_scope.cancel()

    async def _stream_run(
        self,
        args: tuple[object, ...],
        kwargs: Mapping[str, object],
        metadata: RequestMetadata | None,
        subscription: Subscription,
    ) -> None:
        await self._arun(args, kwargs, metadata=metadata, subscriptions=(subscription,))

    def _settings(self) -> RunSettings:
        """The Flow's settings as they are now, for one run."""
        return RunSettings(
            name=self.name,
            timeout=self.timeout,
            end_on_error=self.end_on_error,
            save_state=self.save_state,
            state_dir=self.state_dir,
            subscribers=self.subscribers,
            recorders=self.recorders,
            executor=self.executor,
            context=self.context,
        )

    async def _arun(
        self,
        args: tuple[object, ...],
        kwargs: Mapping[str, object],
        *,
        metadata: RequestMetadata | None = None,
        subscriptions: Sequence[Subscription] = (),
        on_result: Callable[[RunResult[T]], object] | None = None,
    ) -> RunResult[T]:
        """Run once: the one path every entry point takes, to the engine that fits.

        *on_result* gets the run's result as soon as the run has ended on its
        own, even if this call is then cancelled while the run's actors wind
        down: a session counts the run by how it really ended.
        """
        report = cast("Callable[[RunResult[object]], object] | None", on_result)
        if metadata is not None and metadata.run_id:
            # Who asked (a session's user, conversation, ...) is no record of the
            # run: consumers that want it (rt.TraceExporter) are told before it starts.
            for consumer in (*self.subscribers, *self.recorders):
                describe_run = getattr(consumer, "describe_run", None)
                if describe_run is not None:
                    describe_run(metadata)
        if self._graph.routines:
            self._check_one_kind("invoke")
            result = await self._graph.arun(
                self._settings(),
                self._any(),
                args,
                kwargs,
                metadata=metadata,
                subscriptions=subscriptions,
                on_result=report,
            )
        else:
            result = await run_flow(
                self._settings(),
                self._entry("invoke"),
                args,
                kwargs,
                metadata=metadata,
                subscriptions=subscriptions,
                on_result=report,
            )
        return cast("RunResult[T]", result)

    def _any(self) -> AnyFlow:
        return cast("AnyFlow", self)

    # -- routine graphs: the Graph's public face ---------------------------------

    def _check_one_kind(self, api: str) -> None:
        """Refuse a flow that would hold both an entry point node and routines."""
        if self.entry_point is not None:
            msg = (
                f"Flow({self.name!r}).{api}(): this flow has the entry point node {self.entry_point.name!r}, so it "
                "runs node calls; a flow is either a node flow or a routine graph. Drop entry_point=... to build "
                "a routine graph, or run the routines in a flow of their own."
            )
            raise GraphDefinitionError(msg)

    @property
    def max_steps(self) -> int | None:
        """The most handler calls one job may make before it fails with StepLimitError; ``None``: no limit."""
        return self._graph.max_steps

    @property
    def entry_id(self) -> str | None:
        """The routine a job starts with when the flow is run with a message (see :meth:`set_entry`)."""
        return self._graph.entry_id

    @property
    def routines(self) -> Mapping[str, Routine]:
        """The flow's routines (templates) by id, in the order they were added (read-only)."""
        return types.MappingProxyType(self._graph.routines)

    @property
    def connections(self) -> list[tuple[str, str, str, str]]:
        """Every connection as ``(source_id, event, target_id, slot)``, in the order made."""
        return self._graph.connections

    def add_routine(self, routine: Routine | Callable[[], Routine], routine_id: str | None = None) -> str:
        """Add *routine* to the graph under *routine_id* and return the id.

        The routine is a template: each job runs on its own instance, made by
        calling the routine's constructor again with the same arguments (or
        by calling *routine*, if it is a factory), then applying the settings
        made on the template since. Constructor arguments are shared, not
        copied, by every job (see :class:`~runtime.Routine`).

        Args:
            routine: a :class:`~runtime.Routine` instance; or a ``Routine``
                subclass or a function with no arguments that returns a
                routine, called once now (for the template) and once per job.
            routine_id: unique within the flow; by default the class name in
                lower case, numbered if taken (``datasource``, ``datasource_2``).

        Raises:
            TypeError: *routine* is none of those (or was not initialised with
                ``super().__init__()``), its constructor was given an iterator
                (only the first job could use it: pass a list or a factory), or
                *routine_id* is not a string.
            GraphDefinitionError: the flow already has a routine *routine_id*,
                or it has an entry point node (a flow is one or the other).

        .. versionadded:: 0.1
        """
        self._check_one_kind("add_routine")
        return self._graph.add_routine(routine, routine_id)

    def connect(self, source_id: str, event: str, target_id: str, slot: str) -> None:
        """Connect event *event* of routine *source_id* to slot *slot* of routine *target_id*.

        In a job, every emission of the event is delivered once to the slot,
        in emission order. Cycles are allowed: the Flow's ``timeout``, its
        ``max_steps`` (no limit by default) or the caller's cancel scope ends
        a cycle that never stops.

        Raises:
            GraphDefinitionError: a routine, the event or the slot does not
                exist (the message lists the ones that do); the connection
                already exists; or the event declares a parameter the slot's
                handler cannot take.

        .. versionadded:: 0.1
        """
        self._graph.connect(source_id, event, target_id, slot)

    def set_entry(self, routine_id: str) -> None:
        """Make *routine_id* the routine a job starts with when the flow is run with a message.

        ``flow.arun(message)``, ``flow.invoke(message)`` and sessions start a
        job there. Without an entry, the one routine with no incoming
        connection is used.

        Raises:
            GraphDefinitionError: the flow has no such routine.

        .. versionadded:: 0.1
        """
        self._graph.set_entry(routine_id)

    def set_error_handler(self, handler: ErrorHandler | ErrorStrategy | str) -> None:
        """Set the error handling of every routine that has none of its own.

        Args:
            handler: an :class:`~runtime.ErrorHandler`, or a strategy.

        .. versionadded:: 0.1
        """
        self._graph.set_error_handler(handler)

    def execute(self, entry_id: str, entry_params: Mapping[str, object] | None = None) -> JobState:
        """Run a job from synchronous code, from routine *entry_id*, and return its final state.

        The job starts by calling the entry routine's first slot with
        *entry_params* as keyword arguments, and runs until no routine holds
        a message. A job that fails, times out or is cancelled does not raise
        here: its ``status`` and ``error`` say how it ended (as in Routilux),
        and ``undelivered`` lists the messages it never handled. A handler
        that pauses the job here (``ctx.job_state.pause()``) leaves nobody to
        resume it: once no handler runs, the job ends with status ``paused``.
        To pause and resume a job, run it with :meth:`open_job`.

        The Flow's settings apply: ``timeout`` (status ``timed_out``),
        ``end_on_error`` (every handler failure stops the job, whatever its
        routine's strategy), ``max_steps`` (status ``failed`` with a
        :class:`~runtime.StepLimitError`), ``context`` (``rt.context`` in
        handlers, a copy per job), ``save_state`` and ``subscribers``.

        Args:
            entry_id: the routine to start with.
            entry_params: keyword arguments for its first slot (copied).

        Returns:
            The job's :class:`~runtime.JobState`.

        Raises:
            InvokeInsideTrioError: called inside a running Trio program; use
                ``await flow.aexecute(...)``.
            GraphDefinitionError: no routine *entry_id*, or it has no slot.
            TypeError: *entry_params* is not a dict.
            Exception: a routine's constructor (or factory) raised when called
                again for the job, with a note naming the routine; no routine
                of the job has run.

        .. versionadded:: 0.1
        """
        return self._graph.execute(self._settings(), self._any(), entry_id, entry_params)

    async def aexecute(self, entry_id: str, entry_params: Mapping[str, object] | None = None) -> JobState:
        """Run a job inside a running Trio program; like :meth:`execute`.

        Cancelling the caller cancels the job: it is recorded as cancelled
        (undelivered messages listed, state saved if ``save_state``) and the
        cancellation propagates.

        Raises:
            OutsideTrioError: awaited outside Trio (from asyncio, say).

        .. versionadded:: 0.1
        """
        check_in_trio(f"Flow({self.name!r}).aexecute(...)")
        return await self._graph.aexecute(self._settings(), self._any(), entry_id, entry_params)

    @contextlib.asynccontextmanager
    async def open_job(
        self, entry_id: str, entry_params: Mapping[str, object] | None = None
    ) -> AsyncIterator[Job]:
        """Start a job in the caller's Trio program: ``async with flow.open_job(...) as job:``.

        The job runs in the background of the block; the :class:`~runtime.Job`
        handle waits for it, pauses, resumes and cancels it. Leaving the block
        cancels the job if it has not ended, so ``await job.wait()`` inside
        the block to let it finish. Nothing of the job runs after the block.

        Raises:
            GraphDefinitionError: as for :meth:`execute`.
            OutsideTrioError: entered outside Trio (from asyncio, say).

        .. versionadded:: 0.1
        """
        check_in_trio(f"async with Flow({self.name!r}).open_job(...)", how="entered")
        async with self._graph.open_job(self._settings(), self._any(), entry_id, entry_params) as job:
            yield job

    def pause(self, job_state: JobState, reason: str | None = None) -> None:
        """Pause the running job of *job_state*: the Routilux spelling of :meth:`Job.pause <runtime.Job.pause>`.

        Raises:
            JobStateError: the job is not running.

        .. versionadded:: 0.1
        """
        self._graph.running_job("pause()", job_state).pause(reason)

    def resume(self, job_state: JobState) -> JobState:
        """Resume the paused job of *job_state* and return the state.

        Raises:
            JobStateError: the job is not running, or not paused.

        .. versionadded:: 0.1
        """
        self._graph.running_job("resume()", job_state).resume()
        return job_state

    def cancel(self, job_state: JobState, reason: str | None = None) -> None:
        """Cancel the running job of *job_state*; a job that has ended is left as it is.

        .. versionadded:: 0.1
        """
        job = self._graph.running_jobs.get(job_state.job_id)
        if job is not None:
            job.cancel(reason)

    def _job_finished(self, job_id: str) -> threading.Event | None:
        """The event set when this flow's running job *job_id* ends (``JobState.wait_for_completion``)."""
        return self._graph.job_finished(job_id)
