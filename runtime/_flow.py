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
import copy
import functools
import hashlib
import inspect
import json
import logging
import os
import pathlib
import reprlib
import time
import types
import uuid
import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Generic, ParamSpec, TypeVar, cast, final, overload

import attrs
import trio

from ._context import RequestMetadata, Shared, copy_context
from ._core import RunDefaults, RunResult, RunSettings, run_defaults, run_state_path
from ._exceptions import (
    DefinitionDocumentError,
    FlowConnectionError,
    GraphDefinitionError,
    JobStateError,
    ResumeError,
    TrioflowError,
)
from ._executor import check_executor
from ._graph import Connection, Graph
from ._node import Node, as_node
from ._publisher import EventKind, Overflow, Subscription
from ._run import run_flow
from ._serialize import dump_state, state_file_name
from ._state import Status
from ._util import check_in_trio, check_not_in_trio
from .store import SQLiteStore

if TYPE_CHECKING:
    import threading
    from collections.abc import AsyncIterator, Callable, KeysView, Sequence

    from ._core import BroadcastCallback
    from ._definition import Allowed
    from ._executor import Executor
    from ._job import Job
    from ._node import AnyNode
    from ._publisher import Event, Recorder
    from ._routine import ErrorHandler, ErrorStrategy, Routine
    from ._state import JobState, Request
    from ._util import AnyFlow
    from .store import Store

P = ParamSpec("P")
T = TypeVar("T")

_logger = logging.getLogger("runtime.flow")
_MISSING = object()


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
    where: str | None = None,
) -> None:
    """Raise an error naming the first of ``Flow``'s settings that it does not accept, and what it accepts.

    *where* starts the message: ``Flow('etl', `` by default, ``rt.set_config(`` for the defaults.
    """
    where = f"Flow({name!r}, " if where is None else where
    if timeout is not None:
        if not isinstance(timeout, int | float) or isinstance(timeout, bool):
            msg = (
                f"{where}timeout={_show(timeout)}): timeout must be a positive number of seconds, or None."
            )
            raise TypeError(msg)
        if not timeout > 0:  # NaN too
            msg = f"{where}timeout={timeout!r}): timeout must be a positive number of seconds, or None."
            raise ValueError(msg)
    if context is not None:
        if not isinstance(context, Mapping):
            msg = f"{where}context={_show(context)}): context must be a mapping of str keys to values (a dict), or None."
            raise TypeError(msg)
        bad = next((key for key in context if not isinstance(key, str)), None)
        if bad is not None:
            msg = f"{where}context=...): context keys must be str, not {_show(bad)} ({type(bad).__qualname__})."
            raise TypeError(msg)
    for label, value in (("save_state", save_state), ("end_on_error", end_on_error)):
        if value is not None and not isinstance(value, bool):
            msg = f"{where}{label}={_show(value)}): {label} must be True or False."
            raise TypeError(msg)
    if state_dir is not None and not isinstance(state_dir, str | os.PathLike):
        msg = f"{where}state_dir={_show(state_dir)}): state_dir must be a directory path (a str or os.PathLike)."
        raise TypeError(msg)


@contextlib.asynccontextmanager
async def _run_store(store: Store | None) -> AsyncIterator[Store | None]:
    """The store one run writes to: *store* if it is open (the caller's ``async with store:``), else its own opening of the same file.

    Each run that opens the store has its own writer and connection for the
    run's length, so concurrent runs of a flow never share an opening.
    """
    if not isinstance(store, SQLiteStore) or store.is_open:
        yield store
        return
    async with SQLiteStore(store.path, on_commit=store._on_commit) as own:
        yield own


def _check_callback(where: str, label: str, callback: object) -> None:
    """Raise unless *callback* is None or callable."""
    if callback is not None and not callable(callback):
        msg = f"{where}{label}={_show(callback)}): {label} must be a function (plain or async), or None."
        raise TypeError(msg)


def _callback_name(callback: object) -> str:
    """How a user's callback is named in a log line: its qualified name, else its repr."""
    name = getattr(callback, "__qualname__", None)
    module = getattr(callback, "__module__", None)
    if isinstance(name, str):
        return f"{module}.{name}" if isinstance(module, str) else name
    return _show(callback)


def report_payload(callback: Callable[[dict[str, object]], object], state: JobState, owner: str) -> None:
    """Hand an ended run's state document to a ``payload_callback`` of *owner*; log what it raises.

    The callback is a listener: what it raises never changes the run's outcome.
    """
    try:
        callback(dump_state(state, strict=False))
    except Exception:
        _logger.exception(
            "The payload_callback %s of %s raised on run %s; the run's outcome is unchanged.",
            _callback_name(callback),
            owner,
            state.job_id,
        )


def set_config(
    *,
    timeout: float | None = None,
    end_on_error: bool | None = None,
    save_state: bool | None = None,
    broadcast_callback: BroadcastCallback | None = None,
) -> None:
    """Set the defaults of every Flow for the settings it was not given (Railtracks' ``rt.set_config``).

    A Flow's own settings win: ``rt.set_config(timeout=30)`` then
    ``rt.Flow("f", entry_point=n)`` runs with a 30 s timeout, and
    ``rt.Flow("f", entry_point=n, timeout=5)`` with 5 s. Only the settings
    passed are changed (``None`` leaves one as it is). The defaults are read
    when a run starts, so a change applies to the runs started afterwards,
    never to a run in flight.

    They are held in a :class:`~contextvars.ContextVar`: set at the top of a
    program, they reach every run it starts (``trio.run`` and Trio tasks
    inherit them); set inside a Trio task, they reach the runs that task (and
    the tasks it starts afterwards) starts, never a sibling's.

    Args:
        timeout: seconds a run may take.
        end_on_error: end the whole run at the first failing node.
        save_state: write each run's state document when it ends.
        broadcast_callback: called (plain or async) with every ``rt.broadcast`` item.

    Raises:
        TypeError, ValueError: a setting Flow would refuse; the message names it.

    .. versionadded:: 0.2
    """
    _check_settings(
        "",
        timeout=timeout,
        context=None,
        save_state=save_state,
        end_on_error=end_on_error,
        state_dir=None,
        where="rt.set_config(",
    )
    _check_callback("rt.set_config(", "broadcast_callback", broadcast_callback)
    current = run_defaults.get()
    run_defaults.set(
        RunDefaults(
            timeout=current.timeout if timeout is None else timeout,
            end_on_error=current.end_on_error if end_on_error is None else end_on_error,
            save_state=current.save_state if save_state is None else save_state,
            broadcast_callback=current.broadcast_callback if broadcast_callback is None else broadcast_callback,
        )
    )


@final
class _BroadcastSubscriber:
    """A Flow subscriber that hands each ``rt.broadcast`` item to the user's ``broadcast_callback``.

    A callback that raises is logged, naming it, and the run goes on: it is
    a listener, not part of the workflow.
    """

    __slots__ = ("callback", "flow_name")

    def __init__(self, callback: BroadcastCallback, flow_name: str) -> None:
        self.callback = callback
        self.flow_name = flow_name

    def __repr__(self) -> str:
        return f"<broadcast_callback {_callback_name(self.callback)} of Flow {self.flow_name!r}>"

    async def __call__(self, event: Event) -> None:
        if event.kind is not EventKind.STREAM:
            return
        try:
            result = self.callback(event.data)
            if inspect.isawaitable(result):
                await result
        except Exception:
            _logger.exception(
                "The broadcast_callback %s of Flow %r raised on the rt.broadcast item #%d of run %s "
                "(from %s); the run goes on.",
                _callback_name(self.callback),
                self.flow_name,
                event.seq,
                event.run_id,
                event.node,
            )


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
            :class:`~runtime.RunTimeoutError` is raised. ``None``: the
            default of :func:`~runtime.set_config` (no limit unless set).
        context: the run's global context (``rt.context``); each run starts
            from its own deep copy, except for values wrapped in
            :class:`~runtime.Shared`, which every run shares.
        save_state: write the run's state document when the run ends, however
            it ends (``None``: the :func:`~runtime.set_config` default, off), to its
            own file (:meth:`run_state_path`), then make :attr:`state_path` the latest
            run's: ``<state_dir>/<name>.json`` for a plain name such as ``greet-all``;
            any other name is mapped to a safe file name in *state_dir* (see
            :func:`~runtime.state_file_name`).
        end_on_error: end the whole run at the first failing node, even if a
            parent would have caught the error, and raise it (``None``: the
            :func:`~runtime.set_config` default, off). The callers
            see the run's cancellation, never the error: their ``finally``
            blocks run, their ``except`` clauses do not, and they end
            ``cancelled``.
        state_dir: where ``save_state`` writes; default ``.trioflow``.
        subscribers: callbacks (plain or async) called with every
            :class:`~runtime.Event` of every run, in order.
        broadcast_callback: called (plain or async) with each item a node
            streams with ``rt.broadcast(item)``, in order (Railtracks' form of
            a subscriber; ``None``: the :func:`~runtime.set_config` default).
            One that raises is logged, naming it, and the run goes on.
        payload_callback: called once each run has ended, however it ended,
            with the run's state document (:func:`~runtime.dump_state`, values
            that are not JSON replaced by their repr). One that raises is
            logged, naming it; the run's outcome is unchanged.
        recorders: :class:`~runtime.Recorder` objects that get every record
            of every run (node runs and graph jobs alike), in order, in
            batches: a durable store, an exporter. See ``runtime._record``
            for the record kinds and their order.
        store: a :class:`~runtime.Store` (e.g. :class:`~runtime.SQLiteStore`)
            that keeps every record of every run as it happens; it is added
            to the recorders. ``True``: a :class:`~runtime.SQLiteStore` at
            ``<state_dir>/runs.db``. A node run opens the store for itself
            unless it is open (``async with store:`` around many runs saves
            opening it per run). Runs kept in a store can be resumed
            (:meth:`resume`).
        max_steps: routine graphs only: the most handler calls one job may make
            before it fails with :class:`~runtime.StepLimitError`. ``None``
            (the default): no limit; a cycle that never stops then runs until
            *timeout*, or until the caller cancels it.
        execution_strategy: routine graphs only: how a job runs its handlers.

            - ``"actors"`` (trioflow's default): each routine is an actor;
              routines run concurrently, each one message at a time, in
              order per connection. Handlers run on the Trio loop, so an
              ``async`` handler that awaits lets the others run, and a plain
              handler should be quick (it holds the loop while it runs).
            - ``"sequential"`` (Routilux's default): one handler call at a
              time in the whole job, in the order the messages were emitted
              (a job-wide FIFO; the slots one emission reaches, in
              connection order). A handler that waits for another handler
              of its own job would wait forever.
            - ``"concurrent"``: as ``"actors"``, and plain handlers run in
              worker threads, up to *max_workers* at once, so blocking
              handlers (``time.sleep``, blocking I/O) overlap. What they do
              to the job (``emit``, ``send_output``, ``ctx.job_state``
              updates) is recorded on the loop, in order.

            The default is ``"actors"`` because it is the one that keeps
            trioflow's guarantees at full speed: routines stay concurrent
            (unlike ``"sequential"``), and a plain handler costs no thread
            hop and stays under Trio's clock, so ``MockClock`` tests remain
            deterministic (unlike ``"concurrent"``).
        max_workers: ``"concurrent"`` only: worker threads per job (default
            5). :attr:`max_workers` reads 1 under the other strategies.
        execution_timeout: Routilux's spelling of *timeout* (give one of
            the two). Unlike Routilux, no 300 s limit applies by default.
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
        ValueError: an empty name, a non-positive *timeout* or *max_steps*,
            an unknown *execution_strategy*, or a *max_workers* below 1.

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
        save_state: bool | None = None,
        end_on_error: bool | None = None,
        state_dir: str | os.PathLike[str] = ".trioflow",
        subscribers: Sequence[Callable[[Event], object]] = (),
        broadcast_callback: BroadcastCallback | None = None,
        payload_callback: Callable[[dict[str, object]], object] | None = None,
        recorders: Sequence[Recorder] = (),
        store: Store | bool | None = None,
        max_steps: int | None = None,
        executor: Executor | None = None,
        execution_strategy: str = "actors",
        max_workers: int = 5,
        execution_timeout: float | None = None,
    ) -> None:
        if execution_timeout is not None:
            if timeout is not None and timeout != execution_timeout:
                msg = (
                    f"Flow(timeout={timeout!r}, execution_timeout={execution_timeout!r}): give one "
                    "(execution_timeout is Routilux's spelling of timeout)."
                )
                raise TypeError(msg)
            timeout = execution_timeout
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
        if state_dir is None:
            msg = f"Flow({name!r}, state_dir=None): state_dir must be a directory path (a str or os.PathLike)."
            raise TypeError(msg)
        _check_callback(f"Flow({name!r}, ", "broadcast_callback", broadcast_callback)
        _check_callback(f"Flow({name!r}, ", "payload_callback", payload_callback)
        self.name = name
        self.entry_point: Node[P, T] | None = (
            None if entry_point is None else as_node(entry_point, where=f"Flow({name!r}, entry_point=...)")  # type: ignore[assignment]
        )
        self._timeout = timeout
        self.context: dict[str, object] = copy_context(context or {}, where=f"Flow({name!r}, context=...)")
        self._save_state = save_state
        self._end_on_error = end_on_error
        self._broadcast_callback = broadcast_callback
        #: Called with each ended run's state document (see the class docstring).
        self.payload_callback = payload_callback
        self.state_dir = pathlib.Path(state_dir)
        self.subscribers = _as_subscribers(name, subscribers)
        if store is True:
            store = SQLiteStore(pathlib.Path(state_dir) / "runs.db")
        if store is not None and (store is False or not callable(getattr(store, "records", None))):
            msg = f"Flow({name!r}, store={store!r}): a store is an rt.Store, e.g. rt.SQLiteStore('runs.db'), or True for <state_dir>/runs.db."
            raise TypeError(msg)
        #: The store that keeps every run of this flow, if any (it is also one of :attr:`recorders`).
        self.store = store
        self.recorders = (*recorders, store) if store is not None else tuple(recorders)
        for recorder in self.recorders:
            if not callable(getattr(recorder, "record", None)):
                msg = f"Flow({name!r}, recorders=[..., {recorder!r}, ...]): a recorder has an async record(records) method (see rt.Recorder)."
                raise TypeError(msg)
        self.executor = None if executor is None else check_executor(executor, where=f"Flow({name!r})")
        self._graph = Graph(
            name, max_steps=max_steps, execution_strategy=execution_strategy, max_workers=max_workers
        )

    @property
    def flow_id(self) -> str:
        """The flow's name (the routine-graph spelling)."""
        return self.name

    # -- settings that fall back on rt.set_config ----------------------------------

    @property
    def timeout(self) -> float | None:
        """Seconds a run may take: the Flow's own, else the :func:`~runtime.set_config` default.

        Assign a number to change it from the next run on; ``None`` to fall
        back on the default again.
        """
        return run_defaults.get().timeout if self._timeout is None else self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        _check_settings(self.name, timeout=value, context=None, save_state=None, end_on_error=None, state_dir=None)
        self._timeout = value

    @property
    def execution_timeout(self) -> float | None:
        """Routilux's spelling of :attr:`timeout`: reading and assigning it is the same.

        ``None`` means no limit (unless :func:`~runtime.set_config` sets one):
        Routilux's 300 s default is not applied.

        .. versionadded:: 0.2
        """
        return self.timeout

    @execution_timeout.setter
    def execution_timeout(self, value: float | None) -> None:
        self.timeout = value

    @property
    def save_state(self) -> bool:
        """Whether runs write their state document: the Flow's own, else the :func:`~runtime.set_config` default."""
        return run_defaults.get().save_state if self._save_state is None else self._save_state

    @save_state.setter
    def save_state(self, value: bool | None) -> None:
        _check_settings(self.name, timeout=None, context=None, save_state=value, end_on_error=None, state_dir=None)
        self._save_state = value

    @property
    def end_on_error(self) -> bool:
        """Whether the first failing node ends the run: the Flow's own, else the :func:`~runtime.set_config` default."""
        return run_defaults.get().end_on_error if self._end_on_error is None else self._end_on_error

    @end_on_error.setter
    def end_on_error(self, value: bool | None) -> None:
        _check_settings(self.name, timeout=None, context=None, save_state=None, end_on_error=value, state_dir=None)
        self._end_on_error = value

    @property
    def broadcast_callback(self) -> BroadcastCallback | None:
        """What ``rt.broadcast`` items are handed to: the Flow's own, else the :func:`~runtime.set_config` default."""
        if self._broadcast_callback is None:
            return run_defaults.get().broadcast_callback
        return self._broadcast_callback

    def update_context(self, context: Mapping[str, object]) -> Flow[P, T]:
        """A new Flow like this one, its context merged with *context* (Railtracks' ``update_context``).

        Keys of *context* override the Flow's; the others are kept. This Flow
        is not changed. The new Flow shares this one's settings, subscribers,
        recorders and store.

        Raises:
            TypeError: *context* is not a mapping of str keys, or a value can
                be neither deep-copied nor is wrapped in :class:`~runtime.Shared`.
            GraphDefinitionError: this Flow is a routine graph (build another
                Flow with the context you want).

        .. versionadded:: 0.2
        """
        where = f"Flow({self.name!r}).update_context("
        _check_settings(
            self.name, timeout=None, context=context, save_state=None, end_on_error=None, state_dir=None, where=where
        )
        if self._graph.routines:
            msg = (
                f"{where}...): this Flow is a routine graph, whose routines belong to it alone; "
                "build another Flow with context=... instead."
            )
            raise GraphDefinitionError(msg)
        new = copy.copy(self)
        new.context = copy_context({**self.context, **context}, where=f"{where}...)")
        new._graph = Graph(self.name, max_steps=self._graph.max_steps)
        return new

    def equality_hash(self) -> str:
        """A stable hash identifying this flow, as Railtracks computes it: a SHA-256 hex digest of its name.

        As in Railtracks, two flows of the same name give the same hash
        whatever their other settings (timeout, context, ...), in any process.

        .. versionadded:: 0.2
        """
        config = json.dumps({"name": self.name}, sort_keys=True)
        return hashlib.sha256(config.encode()).hexdigest()

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

    def run_state_path(self, run_id: str) -> pathlib.Path:
        """Where ``save_state`` writes run *run_id*: its own file, never overwritten by another run.

        ``<state_dir>/<name>.runs/<run id>.json``; both names pass through
        :func:`~runtime.state_file_name`, so a run id a caller chose never
        leads outside :attr:`state_dir`. :attr:`state_path` holds the latest
        run to end (a link to its file).

        .. versionadded:: 0.1
        """
        return run_state_path(self.state_dir, self.name, run_id)

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

    def _settings(
        self, store: Store | None = None, on_state: Callable[[JobState], object] | None = None
    ) -> RunSettings:
        """The Flow's settings as they are now (its own, else ``rt.set_config``'s), for one run.

        The run writes to *store*: the flow's store, or its own opening of it.
        """
        recorders = self.recorders
        if store is not self.store:
            recorders = tuple(store if r is self.store and store is not None else r for r in recorders)
        defaults = run_defaults.get()
        subscribers = self.subscribers
        callback = defaults.broadcast_callback if self._broadcast_callback is None else self._broadcast_callback
        if callback is not None and self._graph.routines:
            # A routine graph's job streams through its publisher; a node run
            # hands each item over in the broadcasting node's task (RunSettings).
            subscribers = (*subscribers, _BroadcastSubscriber(callback, self.name))
            callback = None
        return RunSettings(
            name=self.name,
            timeout=defaults.timeout if self._timeout is None else self._timeout,
            end_on_error=defaults.end_on_error if self._end_on_error is None else self._end_on_error,
            save_state=defaults.save_state if self._save_state is None else self._save_state,
            state_dir=self.state_dir,
            subscribers=subscribers,
            recorders=recorders,
            executor=self.executor,
            context=self.context,
            on_state=on_state,
            broadcast_callback=callback,
        )

    def _report_payload(self, result: RunResult[object]) -> None:
        """Hand the ended run's state document to ``payload_callback``; log what it raises."""
        if self.payload_callback is not None:
            report_payload(self.payload_callback, result.state, f"Flow {self.name!r}")

    async def _arun(
        self,
        args: tuple[object, ...],
        kwargs: Mapping[str, object],
        *,
        metadata: RequestMetadata | None = None,
        subscriptions: Sequence[Subscription] = (),
        on_result: Callable[[RunResult[T]], object] | None = None,
        on_state: Callable[[JobState], object] | None = None,
    ) -> RunResult[T]:
        """Run once: the one path every entry point takes, to the engine that fits.

        *on_result* gets the run's result as soon as the run has ended on its
        own, even if this call is then cancelled while the run's actors wind
        down: a session counts the run by how it really ended.
        """
        report = cast("Callable[[RunResult[object]], object] | None", on_result)
        if self.payload_callback is not None:
            report = self._reporter(report)
        if metadata is not None and metadata.run_id:
            # Who asked (a session's user, conversation, ...) is no record of the
            # run: consumers that want it (rt.TraceExporter) are told before it starts.
            for consumer in (*self.subscribers, *self.recorders):
                describe_run = getattr(consumer, "describe_run", None)
                if describe_run is not None:
                    describe_run(metadata)
        if self._graph.routines:
            self._check_one_kind("invoke")
            async with _run_store(self.store) as store:
                result = await self._graph.arun(
                    self._settings(store, on_state),
                    self._any(),
                    args,
                    kwargs,
                    metadata=metadata,
                    subscriptions=subscriptions,
                    on_result=report,
                )
        else:
            entry = self._entry("invoke")
            async with _run_store(self.store) as store:
                result = await run_flow(
                    self._settings(store, on_state),
                    entry,
                    args,
                    kwargs,
                    metadata=metadata,
                    subscriptions=subscriptions,
                    on_result=report,
                    fingerprint=self.fingerprint if self.recorders else None,
                )
        return cast("RunResult[T]", result)

    def _reporter(
        self, then: Callable[[RunResult[object]], object] | None
    ) -> Callable[[RunResult[object]], object]:
        """*then*, after handing the run's state document to ``payload_callback``."""

        def report(result: RunResult[object]) -> None:
            self._report_payload(result)
            if then is not None:
                then(result)

        return report

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

    @overload
    def connect(self) -> FlowConnection[P, T]: ...
    @overload
    def connect(
        self,
        source_id: str,
        event: str,
        target_id: str,
        slot: str,
        param_mapping: Mapping[str, str] | None = None,
    ) -> Connection: ...
    def connect(self, *args: object, **kwargs: object) -> FlowConnection[P, T] | Connection:
        """``connect()``: a :class:`~runtime.FlowConnection`; ``connect(source_id, event, target_id, slot)``: a :class:`~runtime.Connection`.

        One name, two forms, told apart by their arguments:

        - ``flow.connect()`` (Railtracks): a new connection that runs the
          flow as ``invoke``/``ainvoke`` do and keeps the run's context
          readable, during the run and after it, even after a failure.
        - ``flow.connect(source_id, event, target_id, slot, param_mapping=None)``
          (Routilux): see :meth:`connect_routines`.

        Raises:
            TypeError: any other arguments; the message shows both forms.

        .. versionchanged:: 0.2
            ``connect()`` with no arguments returns a ``FlowConnection``.
        """
        if not args and not kwargs:
            return FlowConnection(self)
        names = ("source_id", "event", "target_id", "slot", "param_mapping=None")
        try:
            bound = inspect.signature(self.connect_routines).bind(*args, **kwargs)
        except TypeError:
            given = ", ".join([*map(_show, args), *(f"{k}={_show(v)}" for k, v in kwargs.items())])
            msg = (
                f"Flow({self.name!r}).connect({given}): connect takes either no arguments, "
                "flow.connect() -> a FlowConnection that runs the flow and keeps its context (Railtracks), "
                f"or four or five, flow.connect({', '.join(names)}) -> a Connection of a routine graph (Routilux)."
            )
            raise TypeError(msg) from None
        return self.connect_routines(*bound.args, **bound.kwargs)

    def connect_routines(
        self,
        source_id: str,
        event: str,
        target_id: str,
        slot: str,
        param_mapping: Mapping[str, str] | None = None,
    ) -> Connection:
        """Connect event *event* of routine *source_id* to slot *slot* of routine *target_id*.

        ``flow.connect(source_id, event, target_id, slot)`` does the same.

        In a job, every emission of the event is delivered once to the slot,
        in emission order. Cycles are allowed: the Flow's ``timeout``, its
        ``max_steps`` (no limit by default) or the caller's cancel scope ends
        a cycle that never stops. The slot's handler gets what its signature
        names (see :class:`~runtime.Routine`).

        Args:
            param_mapping: renames for this connection, event parameter name
                to slot parameter name: ``{"result": "text"}`` delivers
                ``emit("out", result=1, n=2)`` as ``text=1, n=2``.

        Returns:
            The :class:`~runtime.Connection`.

        Raises:
            GraphDefinitionError: a routine, the event or the slot does not
                exist (the message lists the ones that do); the connection
                already exists; or *param_mapping* renames a parameter the
                event does not declare, or to a name the slot's handler
                cannot take.
            TypeError: *param_mapping* is not a dict of str to str.

        .. versionadded:: 0.1
        .. versionchanged:: 0.2
           *param_mapping*, and the returned :class:`~runtime.Connection`.
        """
        return self._graph.connect(source_id, event, target_id, slot, param_mapping)

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

    # -- definition documents -----------------------------------------------------

    def serialize(self) -> dict[str, object]:
        """This routine graph's definition as a versioned document of JSON values.

        ``{"format": "trioflow.flow", "version": 1, "_type": "Flow", "flow_id", "entry_id",
        "timeout", "max_steps", "end_on_error", "execution_strategy",
        "max_workers", "error_handler", "routines", "connections"}``: each routine by its class's import path and its
        constructor arguments, plus what was done to it since (see
        :meth:`Routine.serialize <runtime.Routine.serialize>`), and each
        connection as ``{"source", "event", "target", "slot", "param_mapping"}``. No job state:
        a definition is what :meth:`deserialize` needs to rebuild the graph.
        The flow's wiring (subscribers, recorders, store, executor, context,
        ``save_state``, ``state_dir``) is not part of it.

        Raises:
            UnserializableValueError: a constructor argument, config value or
                attribute is not a JSON value; its ``path`` says which, e.g.
                ``$.routines.fetch.args[0]``.
            TypeError: a routine was added as a factory function, or has a
                slot, defined after construction, whose handler is not one of
                its methods.
            GraphDefinitionError: the flow runs nodes (it has an entry point).

        .. versionadded:: 0.1
        """
        self._check_one_kind("serialize")
        from ._definition import dump_flow

        return dump_flow(self._graph, timeout=self.timeout, end_on_error=self.end_on_error)

    def deserialize(self, document: object, *, allow: Allowed = ()) -> Flow[P, T]:
        """Replace this flow's routine graph by the one *document* defines, and return the flow.

        The flow takes the document's name, routines, connections, entry,
        error handler, ``timeout``, ``max_steps``, ``end_on_error`` and
        execution strategy; it
        keeps its own wiring (subscribers, recorders, store, executor,
        context, state settings). Each routine is made by calling its class
        with the constructor arguments the document holds, so loading runs
        those constructors, and only those of classes the caller allows:
        loading never imports or runs code the document names on its own.
        ``runtime.Routine`` and built-in exception classes are always allowed.
        Nothing is changed if loading fails.

        Args:
            document: a flow document made by :meth:`serialize` (possibly
                through JSON).
            allow: the classes the document may name: ``Routine`` subclasses
                (and exception classes for retries) themselves, or the names
                of their modules (``"myapp.routines"``), or the modules. Only
                an allowed module is imported.

        Raises:
            DefinitionDocumentError: the document is of another format or
                version, names a class that is not allowed (the message names
                it; nothing is imported), or a value does not fit; the message
                gives its ``$.path``.
            GraphDefinitionError: a connection names an unknown routine, event
                or slot (with a note giving its ``$.connections[i]``), or the
                flow runs nodes.
            Exception: what a routine's constructor raised.

        .. versionadded:: 0.1
        """
        self._check_one_kind("deserialize")
        if self._graph.running_jobs:
            msg = f"Flow({self.name!r}).deserialize(): the flow has running jobs; load the definition into a new Flow."
            raise JobStateError(msg)
        from ._definition import load_flow

        what = f"a flow document into Flow({self.name!r})"
        flow, routines, handler = load_flow(document, allow, what)
        try:
            _check_name(flow.flow_id)
            _check_settings(
                flow.flow_id,
                timeout=flow.timeout,
                context=None,
                save_state=False,
                end_on_error=flow.end_on_error,
                state_dir=self.state_dir,
            )
            graph = Graph(
                flow.flow_id,
                max_steps=flow.max_steps,
                execution_strategy=flow.execution_strategy,
                max_workers=flow.max_workers,
            )
        except (TypeError, ValueError) as exc:
            msg = f"Cannot load {what}: {exc}"
            raise DefinitionDocumentError(msg) from None
        for routine_id, routine in routines.items():
            graph.add_routine(routine, routine_id)
        for index, connection in enumerate(flow.connections):
            try:
                graph.connect(
                    connection.source,
                    connection.event,
                    connection.target,
                    connection.slot,
                    param_mapping=connection.param_mapping or None,
                )
            except GraphDefinitionError as exc:
                exc.add_note(f"In the flow document, at $.connections[{index}].")
                raise
        if flow.entry_id is not None:
            graph.set_entry(flow.entry_id)
        if handler is not None:
            graph.set_error_handler(handler)
        self.name = flow.flow_id
        self.timeout = flow.timeout
        self.end_on_error = flow.end_on_error
        self._graph = graph
        return self

    @property
    def error_handler(self) -> ErrorHandler | None:
        """The flow's default :class:`~runtime.ErrorHandler` (:meth:`set_error_handler`), or ``None``.

        Assigning to it is :meth:`set_error_handler`.

        .. versionadded:: 0.2
        """
        return self._graph._error_handler

    @error_handler.setter
    def error_handler(self, handler: ErrorHandler | None) -> None:
        if handler is None:
            self._graph._error_handler = None
        else:
            self._graph.set_error_handler(handler)

    @property
    def execution_strategy(self) -> str:
        """How the next jobs run their handlers: ``"actors"``, ``"sequential"`` or ``"concurrent"`` (see :class:`Flow`).

        .. versionadded:: 0.2
        """
        return self._graph.execution_strategy

    @property
    def max_workers(self) -> int:
        """Worker threads per job under ``"concurrent"``; 1 under the other strategies.

        .. versionadded:: 0.2
        """
        return self._graph.max_workers

    def set_execution_strategy(self, strategy: str, max_workers: int | None = None) -> None:
        """Choose how the jobs started from now on run their handlers (see :class:`Flow`).

        Args:
            strategy: ``"actors"``, ``"sequential"`` or ``"concurrent"``.
            max_workers: ``"concurrent"`` only: worker threads per job; by default 5.

        Raises:
            ValueError: an unknown strategy, or *max_workers* below 1.

        .. versionadded:: 0.2
        """
        self._graph.set_execution_strategy(strategy, max_workers)

    def wait_for_completion(self, timeout: float | None = None, job_state: JobState | None = None) -> bool:
        """Wait until this flow's running jobs (or the job of *job_state*) have ended; return whether they did.

        Routilux's deprecated form: ``execute()`` returns once its job has
        ended, so there is usually nothing to wait for. With *job_state*,
        this is :meth:`JobState.wait_for_completion
        <runtime.JobState.wait_for_completion>`; without it, it waits for
        every job of this flow running in other threads.

        Raises:
            InvokeInsideTrioError: called inside a running Trio program while
                a job runs; use ``await job.wait()`` there.

        .. versionadded:: 0.2
        .. deprecated:: 0.2
           Use ``JobState.wait_for_completion(flow, job_state, timeout)``.
        """
        warnings.warn(
            f"Flow({self.name!r}).wait_for_completion() is deprecated, as in Routilux: use "
            "JobState.wait_for_completion(flow, job_state, timeout=...) for one job's state.",
            DeprecationWarning,
            stacklevel=2,
        )
        if job_state is not None:
            return job_state.wait_for_completion(self, job_state, timeout)
        return self._wait_running(timeout, "wait_for_completion()")

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Routilux's clean-up: with *wait*, wait (up to *timeout* seconds) for this flow's running jobs.

        A trioflow flow holds no executor or thread between jobs (a job's
        worker threads end with it), so there is nothing else to release,
        and the flow can still be used afterwards.

        Raises:
            InvokeInsideTrioError: *wait* inside a running Trio program while a
                job runs; leave the job's ``open_job`` block instead.

        .. versionadded:: 0.2
        """
        if wait:
            self._wait_running(timeout, "shutdown()")

    def _wait_running(self, timeout: float | None, api: str) -> bool:
        jobs = list(self._graph.running_jobs.values())
        if not jobs:
            return True
        check_not_in_trio(f"Flow({self.name!r}).{api}", instead="await job.wait() on each open_job handle")
        deadline = None if timeout is None else time.monotonic() + timeout
        for job in jobs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not job.finished_sync.wait(left):
                return False
        return True

    def execute(
        self,
        entry_id: str | None = None,
        entry_params: Mapping[str, object] | None = None,
        *,
        execution_strategy: str | None = None,
        timeout: float | None = None,
        entry_routine_id: str | None = None,
    ) -> JobState:
        """Run a job from synchronous code, from routine *entry_id*, and return its final state.

        The job starts by calling the entry routine's first slot with
        *entry_params* as its data, and runs until no routine holds
        a message. A job that fails, times out or is cancelled does not raise
        here: its ``status`` and ``error`` say how it ended (as in Routilux),
        and ``undelivered`` lists the messages it never handled. A handler
        that pauses the job here (``ctx.job_state.pause()``) leaves nobody to
        resume it: once no handler runs, the job ends with status ``paused``.
        To pause and resume a job, run it with :meth:`open_job`, or give the
        flow a store: the paused job is kept there, and ``flow.resume(run_id)``
        goes on with it, from any process.

        The Flow's settings apply: ``timeout`` (status ``timed_out``),
        ``end_on_error`` (every handler failure stops the job, whatever its
        routine's strategy), ``max_steps`` (status ``failed`` with a
        :class:`~runtime.StepLimitError`), ``context`` (``rt.context`` in
        handlers, a copy per job), ``save_state``, ``subscribers`` and
        ``store`` (opened for the job unless it is open).

        Args:
            entry_id: the routine to start with.
            entry_params: the data for its first slot (copied), given to its
                handler by the handler's signature (see :class:`~runtime.Routine`).
            execution_strategy: this job's strategy, instead of the flow's
                :attr:`execution_strategy` (``"concurrent"`` then uses 5
                worker threads, unless it is the flow's own strategy).
            timeout: this job's timeout in seconds, instead of the flow's
                :attr:`timeout` (Routilux's ``execute(..., timeout=...)``).
            entry_routine_id: Routilux's name of *entry_id* (give one of the two).

        Returns:
            The job's :class:`~runtime.JobState`.

        Raises:
            InvokeInsideTrioError: called inside a running Trio program; use
                ``await flow.aexecute(...)``.
            GraphDefinitionError: no routine *entry_id*, or it has no slot.
            TypeError: *entry_params* is not a dict, *timeout* not a number, or
                neither or both of *entry_id* and *entry_routine_id* given.
            ValueError: an unknown *execution_strategy*, a non-positive *timeout*.
            Exception: a routine's constructor (or factory) raised when called
                again for the job, with a note naming the routine; no routine
                of the job has run.

        .. versionadded:: 0.1
        """
        if (entry_id is None) == (entry_routine_id is None):
            msg = (
                f"Flow({self.name!r}).execute(entry_id={entry_id!r}, entry_routine_id={entry_routine_id!r}): "
                "give the entry routine's id once (entry_routine_id is Routilux's name of entry_id)."
            )
            raise TypeError(msg)
        entry = entry_id if entry_id is not None else entry_routine_id
        assert entry is not None
        self._check_job_timeout("execute", timeout)
        if isinstance(self.store, SQLiteStore) and not self.store.is_open:
            # The job's own opening of the store, in the job's Trio run.
            check_not_in_trio(
                f"Flow({self.name!r}).execute(...)", instead=f"await Flow({self.name!r}).aexecute(...)"
            )
            return trio.run(self._aexecute, entry, entry_params, execution_strategy, timeout)
        settings = self._job_settings(self._settings(), timeout)
        return self._graph.execute(settings, self._any(), entry, entry_params, execution_strategy)

    def _check_job_timeout(self, api: str, timeout: float | None) -> None:
        """Raise unless *timeout* (one job's own, or ``None``) is a valid timeout."""
        if timeout is not None:
            _check_settings(
                self.name,
                timeout=timeout,
                context=None,
                save_state=None,
                end_on_error=None,
                state_dir=None,
                where=f"Flow({self.name!r}).{api}(..., ",
            )

    @staticmethod
    def _job_settings(settings: RunSettings, timeout: float | None) -> RunSettings:
        """*settings* with one job's own *timeout*, if given (checked by :meth:`_check_job_timeout`)."""
        return settings if timeout is None else attrs.evolve(settings, timeout=timeout)

    async def aexecute(
        self,
        entry_id: str,
        entry_params: Mapping[str, object] | None = None,
        *,
        execution_strategy: str | None = None,
    ) -> JobState:
        """Run a job inside a running Trio program; like :meth:`execute`.

        Cancelling the caller cancels the job: it is recorded as cancelled
        (undelivered messages listed, state saved if ``save_state``) and the
        cancellation propagates.

        Raises:
            OutsideTrioError: awaited outside Trio (from asyncio, say).

        .. versionadded:: 0.1
        """
        check_in_trio(f"Flow({self.name!r}).aexecute(...)")
        return await self._aexecute(entry_id, entry_params, execution_strategy)

    async def _aexecute(
        self,
        entry_id: str,
        entry_params: Mapping[str, object] | None,
        execution_strategy: str | None,
        job_timeout: float | None = None,
    ) -> JobState:
        async with _run_store(self.store) as store:
            settings = self._job_settings(self._settings(store), job_timeout)
            return await self._graph.aexecute(settings, self._any(), entry_id, entry_params, execution_strategy)

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
        async with (
            _run_store(self.store) as store,
            self._graph.open_job(self._settings(store), self._any(), entry_id, entry_params) as job,
        ):
            yield job

    def pause(self, job_state: JobState, reason: str | None = None) -> None:
        """Pause the running job of *job_state*: the Routilux spelling of :meth:`Job.pause <runtime.Job.pause>`.

        Raises:
            ValueError: *job_state* is a state of another flow (its ``flow_id``).
            JobStateError: the job is not running.

        .. versionadded:: 0.1
        """
        self._check_own_state("pause", job_state)
        self._graph.running_job("pause()", job_state).pause(reason)

    def _check_own_state(self, api: str, job_state: JobState) -> None:
        """Refuse a state of another flow: pausing, resuming or cancelling it here is a mistake."""
        if job_state.flow_id != self.name:
            msg = (
                f"Flow({self.name!r}).{api}(job_state): the state's flow_id {job_state.flow_id!r} does not "
                f"match this flow's; call flow.{api}(job_state) on the flow that runs job {job_state.job_id!r}."
            )
            raise ValueError(msg)

    @overload
    def resume(self, job_state: JobState, /) -> JobState: ...
    @overload
    def resume(
        self, run_id: str, value: object = ..., /, *, rerun: bool | Iterable[str] = False
    ) -> T: ...
    def resume(
        self, target: JobState | str, value: object = ..., /, *, rerun: bool | Iterable[str] = False
    ) -> JobState | T:
        """Resume a stored run by its id (from any process), or the paused running job of a ``JobState``.

        ``flow.resume(run_id)`` runs the stored run *run_id* again, as
        :meth:`aresume` does, and returns its result as :meth:`invoke` does.
        ``flow.resume(run_id, value)`` resumes a run paused at
        :func:`~runtime.interrupt`, which then returns *value*. *rerun* is
        as for :meth:`aresume`.

        ``flow.resume(job_state)`` (Routilux) resumes the paused job of
        *job_state*, running in this process, and returns the state.

        Raises:
            ValueError: *job_state* is a state of another flow (its ``flow_id``).
            JobStateError: the job is not running, or not paused.
            ResumeError, UnknownRunError, DivergenceError, RunPausedError:
                as for :meth:`aresume`.

        .. versionadded:: 0.1
        """
        if isinstance(target, str):
            check_not_in_trio(
                f"Flow({self.name!r}).resume({target!r})", instead=f"await Flow({self.name!r}).aresume(...)"
            )
            return trio.run(functools.partial(self._aresume_unwrapped, target, value, rerun=rerun))
        self._check_own_state("resume", target)
        self._graph.running_job("resume()", target).resume()
        return target

    async def _aresume_unwrapped(self, run_id: str, value: object, *, rerun: bool | Iterable[str]) -> T:
        return (await self._aresume(run_id, value, rerun=rerun)).unwrap()

    async def aresume(self, run_id: str, value: object = ..., *, rerun: bool | Iterable[str] = False) -> T:
        """Resume the stored run *run_id*: run it again, replaying what completed; return its result.

        The run keeps its id and its stored arguments; its records go on
        after the stored ones, as a new attempt. Each call whose result the
        store holds (matched by its call key, see :attr:`Event.key
        <runtime.Event.key>`) returns that result without running its node;
        every other call runs, so a call that was in flight when the run
        stopped runs again (at least once, never exactly once). A run paused
        at :func:`~runtime.interrupt` needs *value*, which that call returns.

        A node made with ``@rt.function_node(idempotent=False)`` is the
        exception: a call of it that the stored run started and never saw
        end (nor kept a result of) is not run again unless *rerun* says so;
        the run stops with :class:`~runtime.ResumeError` naming the call.

        Args:
            run_id: the stored run's id.
            value: the value for the interrupt the run paused at, if it did.
            rerun: the unfinished calls of ``idempotent=False`` nodes to run
                again, by call key, or ``True`` for all of them (after
                checking that their work was not done).

        Returns:
            The entry point's result, as :meth:`ainvoke` returns it.

        A routine graph's job goes on from its last snapshot (see
        ``docs/durable.md``): its state is rebuilt from its records up to
        the snapshot, its messages not yet handled are delivered again and
        its deferred events emitted; what ran after the snapshot runs again.
        It returns the job's outputs, as :meth:`ainvoke` does for a graph.
        A job has no ``idempotent=False`` calls, so it takes no *rerun*.

        Raises:
            TrioflowError: the flow has no store.
            TypeError: *rerun* is not ``True``, ``False`` or call keys, or
                it is given for a routine graph's job.
            UnknownRunError: the store has no run *run_id* (the nearest ids are named).
            ResumeError: the run completed, belongs to another flow, was
                started by another definition of this one, is being run by
                another process, or waits for a value (or got one it does
                not wait for); a job's snapshot cannot be read.
            DivergenceError: the code made another call than the stored
                run at the same place.
            ResumeError: also, the run stopped before running again an
                unfinished call of a node made with ``idempotent=False``
                that *rerun* does not name.
            RunPausedError: the run paused again at an interrupt.
            Exception: the node error that ended the run.

        .. versionadded:: 0.1
        """
        check_in_trio(f"Flow({self.name!r}).aresume(...)")
        return (await self._aresume(run_id, value, rerun=rerun)).unwrap()

    async def _aresume(
        self, run_id: str, value: object, *, rerun: bool | Iterable[str] = False
    ) -> RunResult[T]:
        store = self.store
        if store is None:
            msg = f"Flow({self.name!r}).resume({run_id!r}): this flow has no store, so it keeps no runs to resume. Make it with Flow(..., store=True) or store=rt.SQLiteStore(path)."
            raise TrioflowError(msg)
        if self._graph.routines:
            self._check_one_kind("resume")
            if rerun is not False:
                msg = f"Flow({self.name!r}).resume({run_id!r}, rerun={rerun!r}): rerun names unfinished calls of idempotent=False nodes, and a routine graph's job has none: it resumes from its last snapshot, and the handlers that ran after it run again. Leave rerun out."
                raise TypeError(msg)
            point = await store.begin_resume(run_id, flow=self.name, fingerprint=self.fingerprint, answer=value)
            try:
                if point.entry is None:
                    msg = f"Flow({self.name!r}).resume({run_id!r}): run {run_id!r} is a run of a node flow, not a job of this routine graph. Resume it with the flow that started it."
                    raise ResumeError(msg)
                async with _run_store(store) as own:
                    graph_result = await self._graph.aresume(self._settings(own), self._any(), point)
            finally:
                store.end_resume(run_id)
            return cast("RunResult[T]", graph_result)
        entry = self._entry("resume")
        if isinstance(rerun, str) or (type(rerun) is not bool and not isinstance(rerun, Iterable)):
            msg = f"Flow({self.name!r}).resume({run_id!r}, rerun={rerun!r}): rerun is True, False, or the call keys to run again, e.g. rerun=[{'checkout > pay[0]'!r}]."
            raise TypeError(msg)
        again = rerun if type(rerun) is bool else frozenset(str(key) for key in rerun)
        point = await store.begin_resume(run_id, flow=self.name, fingerprint=self.fingerprint, answer=value)
        point = attrs.evolve(point, rerun=again)
        try:
            if point.entry is not None:
                msg = f"Flow({self.name!r}).resume({run_id!r}): run {run_id!r} is a job of a routine graph, not a run of this node flow. Resume it with the flow that started it."
                raise ResumeError(msg)
            async with _run_store(store) as own:
                result = await run_flow(
                    self._settings(own),
                    entry,
                    point.args,
                    point.kwargs,
                    point=point,
                    fingerprint=self.fingerprint,
                )
        finally:
            store.end_resume(run_id)
        return cast("RunResult[T]", result)

    @property
    def fingerprint(self) -> str:
        """A short hash of the flow's definition: its name, entry node, routines and connections.

        A store keeps it with each run, and refuses to resume a run with a
        flow whose fingerprint differs (its code changed shape).

        .. versionadded:: 0.1
        """
        parts = [self.name, "" if self.entry_point is None else self.entry_point.name]
        parts += [f"{rid}:{type(r).__qualname__}" for rid, r in self._graph.routines.items()]
        parts += ["/".join(c) for c in self._graph.connections]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    def cancel(self, job_state: JobState, reason: str | None = None) -> None:
        """Cancel the running job of *job_state*; a job that has ended is left as it is.

        Raises:
            ValueError: *job_state* is a state of another flow (its ``flow_id``).

        .. versionadded:: 0.1
        .. versionchanged:: 0.2
           A state of another flow is refused instead of left as it is.
        """
        self._check_own_state("cancel", job_state)
        job = self._graph.running_jobs.get(job_state.job_id)
        if job is not None:
            job.cancel(reason)

    def _job_finished(self, job_id: str) -> threading.Event | None:
        """The event set when this flow's running job *job_id* ends (``JobState.wait_for_completion``)."""
        return self._graph.job_finished(job_id)


@final
class RunContextView:
    """The context of a :class:`FlowConnection`'s latest run, read (and written) from outside it.

    A live view of the run's context: while the run goes on, it shows what
    the nodes have put so far; once the run has ended, however it ended,
    what they left. It reads like ``rt.context``.

    .. versionadded:: 0.2
    """

    __slots__ = ("_context",)

    def __init__(self, context: dict[str, object]) -> None:
        self._context = context

    def __repr__(self) -> str:
        return f"<RunContextView keys={list(self._context)!r}>"

    def get(self, key: str, default: object = _MISSING) -> object:
        """The value under *key* (a :class:`~runtime.Shared` one unwrapped), or *default*.

        Raises:
            KeyError: *key* is not in the context and no *default* was given.
        """
        try:
            value = self._context[key]
        except KeyError:
            if default is not _MISSING:
                return default
            known = ", ".join(repr(k) for k in self._context) or "none"
            msg = f"connection.context.get({key!r}): the run's context has no key {key!r}; its keys are {known}."
            raise KeyError(msg) from None
        return value.value if isinstance(value, Shared) else value

    def __getitem__(self, key: str) -> object:
        return self.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._context

    def keys(self) -> KeysView[str]:
        """The keys of the run's context."""
        return self._context.keys()

    def put(self, key: str, value: object) -> None:
        """Set *key* in the run's context (seen by the run's nodes if it is still going)."""
        self._context[key] = value

    def update(self, values: Mapping[str, object]) -> None:
        """Set every key of *values*."""
        self._context.update(values)

    def delete(self, key: str) -> None:
        """Remove *key*.

        Raises:
            KeyError: *key* is not in the context.
        """
        if key not in self._context:
            msg = f"connection.context.delete({key!r}): the run's context has no key {key!r}."
            raise KeyError(msg)
        del self._context[key]

    def as_dict(self) -> dict[str, object]:
        """A shallow copy of the context, :class:`~runtime.Shared` values unwrapped."""
        return {k: v.value if isinstance(v, Shared) else v for k, v in self._context.items()}


@final
class FlowConnection(Generic[P, T]):
    """A connection to a Flow: runs it as ``invoke``/``ainvoke`` do, and keeps the run's context readable.

    Made by ``flow.connect()`` (Railtracks' two-stage invocation)::

        conn = flow.connect()
        result = await conn.ainvoke("text")
        conn.context.get("progress")   # the run's context, even if it failed

    One connection runs one invocation at a time; a second one started
    while the first runs is refused. Reading before anything ran is an error.

    .. versionadded:: 0.2
    """

    def __init__(self, flow: Flow[P, T]) -> None:
        self._flow = flow
        self._state: JobState | None = None
        self._result: RunResult[T] | None = None
        self._config: SessionConfig | None = None
        self._in_flight = False

    def __repr__(self) -> str:
        if self._state is None:
            return f"FlowConnection(flow={self._flow.name!r}, not yet invoked)"
        return f"FlowConnection(flow={self._flow.name!r}, session_id={self._state.job_id!r})"

    @property
    def flow(self) -> Flow[P, T]:
        """The Flow this connection runs."""
        return self._flow

    @property
    def connected(self) -> bool:
        """Whether an invocation has begun on this connection."""
        return self._state is not None

    def _require_state(self, what: str) -> JobState:
        if self._state is None:
            msg = (
                f"Nothing has run on this connection yet, so FlowConnection.{what} has no run to read. "
                "Invoke the connection, not the Flow: conn = flow.connect(); "
                "result = await conn.ainvoke(...); conn.context.get(key)."
            )
            raise FlowConnectionError(msg)
        return self._state

    @property
    def context(self) -> RunContextView:
        """The context of the latest run: live while it runs, what it left once it ended.

        Raises:
            FlowConnectionError: nothing has run on this connection yet.
        """
        return RunContextView(self._require_state("context").context)

    @property
    def session_id(self) -> str:
        """The id of the latest run (Railtracks' session id).

        Raises:
            FlowConnectionError: nothing has run on this connection yet.
        """
        return self._require_state("session_id").job_id

    @property
    def state(self) -> JobState:
        """The latest run's :class:`~runtime.JobState` (live while it runs).

        Raises:
            FlowConnectionError: nothing has run on this connection yet.
        """
        return self._require_state("state")

    @property
    def result(self) -> RunResult[T] | None:
        """How the latest run ended, or ``None`` while it runs (or before any run)."""
        return self._result

    @property
    def session(self) -> SessionView:
        """The latest run seen as Railtracks' ``Session`` (``.info``, ``.payload()``, ``.state``, ...).

        Raises:
            FlowConnectionError: nothing has run on this connection yet.
        """
        state = self._require_state("session")
        assert self._config is not None
        return SessionView(self._flow.name, state, cast("RunResult[object] | None", self._result), self._config)

    @property
    def name(self) -> str:
        """The name of the Flow this connection runs (Railtracks' session name)."""
        return self._flow.name

    def _started(self, state: JobState) -> None:
        self._state = state
        flow = self._flow  # its settings as the run starts with them
        self._config = SessionConfig(
            timeout=flow.timeout,
            end_on_error=flow.end_on_error,
            save_state=flow.save_state,
            broadcast_callback=flow.broadcast_callback,
        )

    async def _arun(self, args: tuple[object, ...], kwargs: Mapping[str, object]) -> RunResult[T]:
        if self._in_flight:
            msg = (
                f"FlowConnection of Flow({self._flow.name!r}) is already running an invocation; a connection "
                "runs one at a time. Use a separate flow.connect() for each concurrent run."
            )
            raise FlowConnectionError(msg)
        self._in_flight = True
        self._result = None
        try:
            result = await self._flow._arun(args, kwargs, on_state=self._started)
        finally:
            self._in_flight = False
        self._result = result
        return result

    async def ainvoke(self, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run the flow inside a running Trio program, as :meth:`Flow.ainvoke`, keeping its context here.

        Raises:
            FlowConnectionError: this connection is already running an invocation.
            OutsideTrioError: awaited outside Trio (from asyncio, say).
            Exception: what :meth:`Flow.ainvoke` raises.
        """
        check_in_trio(f"FlowConnection of Flow({self._flow.name!r}).ainvoke(...)")
        return (await self._arun(args, kwargs)).unwrap()

    def invoke(self, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run the flow from synchronous code, as :meth:`Flow.invoke`, keeping its context here.

        Raises:
            FlowConnectionError: this connection is already running an invocation.
            InvokeInsideTrioError: called inside a running Trio program or asyncio loop.
            Exception: what :meth:`Flow.invoke` raises.
        """
        check_not_in_trio(
            f"FlowConnection of Flow({self._flow.name!r}).invoke(...)", instead="await conn.ainvoke(...)"
        )
        return trio.run(self._ainvoke_packed, args, kwargs)

    async def _ainvoke_packed(self, args: tuple[object, ...], kwargs: dict[str, object]) -> T:
        return (await self._arun(args, kwargs)).unwrap()


# -- a run seen as Railtracks' Session: rt.Session blocks, FlowConnection.session, @rt.session ---------


@final
@attrs.frozen
class SessionConfig:
    """The settings a session's run has: its own, else :func:`~runtime.set_config`'s (Railtracks' ``ExecutorConfig``).

    Attributes:
        timeout: seconds the run may take, or ``None``.
        end_on_error: whether the first failing request ends the run.
        save_state: whether the run writes its state document when it ends.
        broadcast_callback: what each ``rt.broadcast`` item is handed to, or ``None``.

    .. versionadded:: 0.2
    """

    timeout: float | None
    end_on_error: bool
    save_state: bool
    broadcast_callback: BroadcastCallback | None


@final
@attrs.frozen
class Stamp:
    """One moment of a run in :attr:`ExecutionInfo.all_stamps`: a request was made, or it ended.

    Attributes:
        step: the moment's place among the run's stamps, from 0.
        time: seconds since the run started (the request's ``created_at`` or ``finished_at``).
        identifier: what happened, e.g. ``"r2 created add"`` or ``"r2 completed add"``.

    .. versionadded:: 0.2
    """

    step: int
    time: float
    identifier: str


@final
class RequestForest:
    """A run's requests as a forest (Railtracks' request and node forests): trioflow's own :class:`~runtime.Request` records.

    In trioflow a node invocation and its request are one record, so
    Railtracks' node forest and request forest are the same view here.

    .. versionadded:: 0.2
    """

    __slots__ = ("_state",)

    def __init__(self, state: JobState) -> None:
        self._state = state

    def heap(self) -> dict[str, Request]:
        """Every request of the run, by id (a copy)."""
        return dict(self._state.requests)

    @property
    def insertion_request(self) -> list[Request]:
        """The run's top-level requests (a Flow run's entry point; each ``rt.call`` of a session block), in call order."""
        return [r for r in self._state.requests.values() if r.parent_id is None]

    def children(self, request_id: str) -> list[Request]:
        """The requests made by request *request_id*, in call order."""
        return [r for r in self._state.requests.values() if r.parent_id == request_id]


@final
class ExecutionInfo:
    """A read-only view of one run's requests and answers (Railtracks' ``ExecutionInfo``), over its :class:`~runtime.JobState`.

    Read it from ``session.info`` (an ``rt.Session`` block, ``conn.session``,
    ``@rt.session``'s second value). It is live while the run goes on.

    .. versionadded:: 0.2
    """

    __slots__ = ("_answers", "_state")

    def __init__(self, state: JobState, answers: Sequence[object]) -> None:
        self._state = state
        self._answers = list(answers)

    @property
    def answer(self) -> object:
        """What the run's top-level requests returned: the one value if one returned, a list if several, else ``None``.

        A request that failed, or has not returned yet, has no answer.
        """
        if not self._answers:
            return None
        if len(self._answers) == 1:
            return self._answers[0]
        return list(self._answers)

    @property
    def all_stamps(self) -> list[Stamp]:
        """Each request's making and (once it has ended) its end, in time order, numbered from 0."""
        moments: list[tuple[float, int, str]] = []
        for request in self._state.requests.values():
            moments.append((request.created_at, 0, f"{request.id} created {request.node}"))
            if request.finished_at is not None:
                moments.append((request.finished_at, 1, f"{request.id} {request.status.value} {request.node}"))
        moments.sort(key=lambda m: (m[0], m[1]))
        return [Stamp(step, at, what) for step, (at, _, what) in enumerate(moments)]

    @property
    def request_forest(self) -> RequestForest:
        """The run's requests, as a forest."""
        return RequestForest(self._state)

    @property
    def node_forest(self) -> RequestForest:
        """The same forest as :attr:`request_forest`: a node invocation is its request here."""
        return RequestForest(self._state)


@final
class SessionView:
    """A run seen as Railtracks' ``Session`` shows it, after (or while) it runs; ``isinstance(view, rt.Session)`` holds.

    Given by :attr:`FlowConnection.session` and as the second value of an
    ``@rt.session`` call. Every read is over the run's own
    :class:`~runtime.JobState`: :attr:`state`, :attr:`context`, :attr:`result`,
    :attr:`info`, :meth:`payload` (its state document).

    .. versionadded:: 0.2
    """

    __slots__ = ("_answers", "_config", "_identifier", "_result", "_state", "name")

    def __init__(
        self, name: str, state: JobState, result: RunResult[object] | None, config: SessionConfig
    ) -> None:
        #: The session's name: its flow's.
        self.name = name
        self._identifier = state.job_id
        self._state = state
        self._result = result
        self._config = config
        done = result is not None and result.status is Status.COMPLETED
        self._answers: list[object] = [result.result] if done and result is not None else []

    def __repr__(self) -> str:
        return f"<rt.Session {self.name!r} run {self._identifier}: {self._state.status.value}>"

    @property
    def identifier(self) -> str:
        """The run's id (Railtracks' ``Session.identifier``)."""
        return self._identifier

    @property
    def session_id(self) -> str:
        """The run's id, as :attr:`FlowConnection.session_id` gives it."""
        return self._identifier

    @property
    def state(self) -> JobState:
        """The run's :class:`~runtime.JobState`."""
        return self._state

    @property
    def context(self) -> RunContextView:
        """The run's context: what its nodes left."""
        return RunContextView(self._state.context)

    @property
    def result(self) -> RunResult[object] | None:
        """How the run ended, or ``None`` while it runs."""
        return self._result

    @property
    def info(self) -> ExecutionInfo:
        """The run's requests and answer (Railtracks' ``Session.info``)."""
        return ExecutionInfo(self._state, self._answers)

    @property
    def executor_config(self) -> SessionConfig:
        """The settings the run had."""
        return self._config

    @property
    def rt_state(self) -> SessionView:
        """This view itself, for Railtracks code that reads ``session.rt_state.executor_config``."""
        return self

    def payload(self) -> dict[str, object]:
        """The run's state document (:func:`~runtime.dump_state`), as ``payload_callback`` gets it."""
        return dump_state(self._state, strict=False)
