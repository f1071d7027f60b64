"""``Flow``: a reusable workflow, run once per ``invoke``.

A Flow is either a tree of node calls (``Flow(name, entry_point=node)``) or a
graph of routines (``Flow(flow_id=...)`` then ``add_routine``/``connect``); the
settings (timeout, context, save_state, end_on_error) mean the same for both.
"""

from __future__ import annotations

import contextlib
import logging
import math
import pathlib
import uuid
from typing import TYPE_CHECKING, Generic, ParamSpec, TypeVar, final

import outcome
import trio

import actors

from ._context import RequestMetadata, copy_context
from ._exceptions import InvokeInsideTrioError, TrioflowError
from ._executor import check_executor
from ._graph import GraphMixin
from ._node import Node, as_node
from ._publisher import Overflow, Subscription
from ._run import Run, RunActor, RunResult
from ._serialize import write_state_file
from ._state import JobState

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence

    from ._executor import Executor
    from ._publisher import Event

P = ParamSpec("P")
T = TypeVar("T")

_state_logger = logging.getLogger("runtime.state")


def new_run_id() -> str:
    """A fresh, unique run id."""
    return f"run-{uuid.uuid4().hex[:12]}"


def check_not_in_trio(call: str, *, instead: str) -> None:
    """Raise :class:`InvokeInsideTrioError` for *call* if a Trio loop runs in this thread.

    Args:
        call: the synchronous call, as the user wrote it (``Flow('etl').invoke(...)``).
        instead: what to do in Trio code (``await Flow('etl').ainvoke(...)``).
    """
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return
    msg = f"{call} was called inside a running Trio program, where it would block the loop. Use {instead}."
    raise InvokeInsideTrioError(msg)


@final
class Flow(GraphMixin, Generic[P, T]):
    """A reusable workflow: each ``invoke`` is an independent run with its own id.

    Args:
        name: the flow's name, used for its state file and in errors. Also
            accepted as ``flow_id`` (the routine-graph spelling).
        entry_point: the node a run starts with (node flows).
        timeout: seconds a run may take. When it passes, every node of the run
            is cancelled (their ``finally`` blocks run) before
            :class:`~runtime.RunTimeoutError` is raised.
        context: the run's global context (``rt.context``); each run starts
            from its own deep copy.
        save_state: write the run's state document when the run ends, however
            it ends, to ``<state_dir>/<name>.json``.
        end_on_error: end the whole run at the first failing node, even if a
            parent would have caught the error, and raise it. The callers
            see the run's cancellation, never the error: their ``finally``
            blocks run, their ``except`` clauses do not, and they end
            ``cancelled``.
        state_dir: where ``save_state`` writes; default ``.trioflow``.
        subscribers: callbacks (plain or async) called with every
            :class:`~runtime.Event` of every run, in order.
        max_steps: routine graphs only: the most handler calls one job may make
            before it is stopped as a runaway cycle.
        executor: node runs only: where the flow's plain nodes run unless a
            node was given its own executor (``rt.threads()``,
            ``rt.processes()``, ``rt.ray()``); ``None``: in a worker thread.
            Async nodes and ``thread=False`` nodes run on the loop.

    Raises:
        TypeError: no name, *entry_point* is not a node, or *executor* is not
            an executor.
        ValueError: a non-positive *timeout* or *max_steps*.

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
        max_steps: int | None = None,
        executor: Executor | None = None,
    ) -> None:
        if name is not None and flow_id is not None and name != flow_id:
            msg = f"Flow(name={name!r}, flow_id={flow_id!r}): give one name (flow_id is the routine-graph spelling of name)."
            raise TypeError(msg)
        name = name if name is not None else flow_id
        if name is None:
            name = f"flow-{uuid.uuid4().hex[:8]}"
        if not isinstance(name, str) or not name:
            msg = f"Flow name must be a non-empty string, not {name!r}."
            raise TypeError(msg)
        if timeout is not None and not (
            isinstance(timeout, int | float) and timeout > 0 and not math.isnan(timeout)
        ):
            msg = (
                f"Flow({name!r}, timeout={timeout!r}): timeout must be a positive number of seconds, or None."
            )
            raise ValueError(msg)
        self.name = name
        self.entry_point: Node[P, T] | None = (
            None if entry_point is None else as_node(entry_point, where=f"Flow({name!r}, entry_point=...)")  # type: ignore[assignment]
        )
        self.timeout = timeout
        self.context: dict[str, object] = copy_context(context or {})
        self.save_state = save_state
        self.end_on_error = end_on_error
        self.state_dir = pathlib.Path(state_dir)
        self.subscribers = tuple(subscribers)
        self.executor = None if executor is None else check_executor(executor, where=f"Flow({name!r})")
        GraphMixin.__init__(self, max_steps=max_steps)

    @property
    def flow_id(self) -> str:
        """The flow's name (the routine-graph spelling)."""
        return self.name

    def __repr__(self) -> str:
        kind = (
            f"entry_point={self.entry_point.name}"
            if self.entry_point is not None
            else f"routines={len(self._routines)}"
        )
        return f"<Flow {self.name!r} {kind}>"

    @property
    def state_path(self) -> pathlib.Path:
        """Where ``save_state`` writes this flow's runs."""
        return self.state_dir / f"{self.name}.json"

    # -- node runs -----------------------------------------------------------

    def _entry(self, api: str) -> Node[P, T]:
        if self.entry_point is None:
            msg = (
                f"Flow({self.name!r}).{api}() needs an entry point node, but this flow has none. "
                "Build it as rt.Flow(name, entry_point=node), or run a routine graph with execute()."
            )
            raise TrioflowError(msg)
        return self.entry_point

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
        """
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
        return await self._arun(args, kwargs)

    @contextlib.asynccontextmanager
    async def stream(self, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[Subscription]:
        """Start a run and stream its events: ``async with flow.stream(x) as events:``.

        Iterate ``events`` for every :class:`~runtime.Event` of the run, the
        ``run_finished`` event last; ``events.finished.data`` then holds the
        status and result. Leaving the block early cancels the run; that is a
        normal end, not an error. A run that fails does not raise here: its
        error is in the ``run_finished`` event.
        """
        async with self.open_stream(args, kwargs) as events:
            yield events

    @contextlib.asynccontextmanager
    async def open_stream(
        self,
        args: tuple[object, ...],
        kwargs: Mapping[str, object],
        *,
        metadata: RequestMetadata | None = None,
        buffer: int = 256,
        overflow: Overflow = "block",
    ) -> AsyncIterator[Subscription]:
        """:meth:`stream` with the run's arguments packed, and stream options.

        Args:
            args: positional arguments for the entry point (or the routine graph's entry).
            kwargs: keyword arguments for the entry point.
            metadata: the request metadata nodes see through ``rt.request()``.
            buffer: events buffered for this subscriber.
            overflow: ``"block"`` holds the run back while the buffer is full;
                ``"fail"`` ends the stream with ``SubscriberOverflowError``.
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

    async def _arun(
        self,
        args: tuple[object, ...],
        kwargs: Mapping[str, object],
        *,
        metadata: RequestMetadata | None = None,
        subscriptions: Sequence[Subscription] = (),
        on_result: Callable[[RunResult[T]], object] | None = None,
    ) -> RunResult[T]:
        """Run once: the one path every node-run entry point takes.

        *on_result* gets the run's result as soon as the run has ended on its
        own, even if this call is then cancelled while the run's actors wind
        down: a session counts the run by how it really ended.
        """
        if self.entry_point is None and self._routines:
            return await self._arun_graph(  # type: ignore[return-value]
                args, kwargs, metadata=metadata, subscriptions=subscriptions, on_result=on_result  # type: ignore[arg-type]
            )
        entry = self._entry("invoke")
        entry.check_arguments(args, kwargs)
        run_id = metadata.run_id if metadata is not None and metadata.run_id else new_run_id()
        state = JobState(job_id=run_id, flow_id=self.name, context=copy_context(self.context))
        run = Run(
            state=state,
            flow_name=self.name,
            timeout=self.timeout,
            end_on_error=self.end_on_error,
            metadata=metadata if metadata is not None else RequestMetadata(run_id=state.job_id),
            executor=self.executor,
        )
        actor = RunActor(run, entry, args, kwargs, self.subscribers, subscriptions)  # type: ignore[arg-type]
        reply: actors.Reply[RunResult[object]] | None = None
        try:
            async with actors.open_system() as system:
                # The run actor stops after its one run; leaving the block waits for it.
                reply = (await system.spawn(actor, name=f"run {state.job_id}")).ask_nowait(None)
            return await reply.wait()  # type: ignore[return-value]
        finally:
            # A value: the run ended on its own (an outside cancel makes the run actor raise).
            if on_result is not None and reply is not None and isinstance(reply.outcome, outcome.Value):
                on_result(reply.outcome.value)
            if self.save_state:
                self._save(state)

    def _save(self, state: JobState) -> None:
        """Write *state* to :attr:`state_path`; a failed write is logged, never raised.

        The run's own outcome is what the caller gets: a full disk must not
        turn a finished run into an ``OSError``.
        """
        try:
            write_state_file(state, self.state_path, strict=False)
        except OSError:
            _state_logger.exception(
                "Could not save the state of run %s of flow %r to %s.",
                state.job_id,
                self.name,
                self.state_path,
            )
