"""One run of a node flow, as actors.

A run is a tree of actors in one :func:`actors.open_system` block::

    RunActor            owns the run's cancel scope (timeout, end_on_error)
    ├── Coordinator     creates and tracks requests: the request tree in JobState
    │   └── Publisher   broadcasts the run's events, when somebody subscribes
    └── NodeActor       the entry point's request
        └── NodeActor   each rt.call: a child actor in its caller's nursery
            └── ...     (rt.call_batch: children in a nursery of the batch)

Every event goes from the node actors to the coordinator (one ordered mailbox,
in batches when nobody subscribes), then to the publisher, so subscribers see
the run in causal order. The coordinator and publisher are shielded: when the
run is cancelled from outside they still record how it ended, then stop with
it. A run nobody subscribes to has no publisher.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Generic, TypeVar, final

import attrs
import trio

import actors

from ._context import Frame, Invocation, RequestMetadata, current_frame, invocation_hook
from ._exceptions import RunCancelledError, RunTimeoutError
from ._publisher import Event, EventKind, Publisher
from ._state import ErrorSummary, JobState, Request, Status, summarize

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from ._node import AnyNode
    from ._publisher import Subscription

T = TypeVar("T")

_PATH_NOTED = "__trioflow_request_path__"


def is_cancellation(exc: BaseException) -> bool:
    """Whether *exc* is Trio's ``Cancelled``, alone or in groups of nothing else."""
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(is_cancellation(e) for e in exc.exceptions)
    return False


@final
@attrs.frozen(repr=False)
class RunResult(Generic[T]):
    """How a finished run ended: its state, and its result or error.

    Returned by :meth:`Flow.arun <runtime.Flow.arun>` and
    :meth:`Flow.run <runtime.Flow.run>`, which do not raise a node's error.

    Attributes:
        state: the run's :class:`~runtime.JobState`.
        result: the entry point's return value, or ``None`` if it did not return.
        error: the error that ended the run, or ``None``.

    .. versionadded:: 0.1
    """

    state: JobState
    result: T | None
    error: BaseException | None

    @property
    def status(self) -> Status:
        """The run's final status."""
        return self.state.status

    def unwrap(self) -> T:
        """Return the result, or raise the run's error."""
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]

    def __repr__(self) -> str:
        # Short: a failing assertion on a result prints this, not the whole state.
        state = self.state
        ended = f"error={self.error!r}" if self.error is not None else f"result={_short(self.result)}"
        return (
            f"<RunResult of run {state.job_id} of flow {state.flow_name!r}: {state.status.value}, {ended}, "
            f"{len(state.requests)} requests>"
        )


def _short(value: object, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


# Records the coordinator gets in one message when nobody subscribes: one
# wake-up of the coordinator per batch instead of two per request. With a
# subscriber every record goes at once, so events stay live.
_QUIET_BATCH = 256


@final
class Run:
    """Everything one run shares between its actors. Private to the runtime."""

    __slots__ = (
        "_batch",
        "_ids",
        "_pending",
        "_t0",
        "coordinator",
        "end_on_error",
        "first_error",
        "flow_name",
        "metadata",
        "nodes_scope",
        "state",
        "timeout",
    )

    def __init__(
        self,
        *,
        state: JobState,
        flow_name: str,
        timeout: float | None,
        end_on_error: bool,
        metadata: RequestMetadata,
    ) -> None:
        self.state = state
        self.flow_name = flow_name
        self.timeout = timeout
        self.end_on_error = end_on_error
        self.metadata = metadata
        self.first_error: BaseException | None = None
        self.nodes_scope: trio.CancelScope | None = None
        self.coordinator: actors.ActorRef[list[_Record], None] | None = None
        self._pending: list[_Record] = []
        self._batch = _QUIET_BATCH
        self._ids = 0
        self._t0 = 0.0

    def start(self, coordinator: actors.ActorRef[list[_Record], None], *, publishing: bool) -> None:
        """Start the run's clock; from now on records go to *coordinator*."""
        self.state._start_clock()
        self._t0 = trio.current_time()
        self.coordinator = coordinator
        self._batch = 1 if publishing else _QUIET_BATCH

    def offset(self) -> float:
        """Seconds since the run started, on Trio's clock."""
        return trio.current_time() - self._t0

    def next_request_id(self) -> str:
        self._ids += 1
        return f"r{self._ids}"

    def record_nowait(
        self,
        kind: EventKind,
        request_id: str | None = None,
        parent_id: str | None = None,
        node: str | None = None,
        data: object = None,
    ) -> bool:
        """Queue one event for the coordinator, in order; return whether a :meth:`flush` is due.

        Records go to the coordinator in batches (of one when somebody
        subscribes). The hot paths call this rather than :meth:`record`, and
        await :meth:`flush` only when it says so.
        """
        pending = self._pending
        pending.append((kind, request_id, parent_id, node, data, trio.current_time() - self._t0))
        return len(pending) >= self._batch

    async def record(
        self,
        kind: EventKind,
        request_id: str | None = None,
        parent_id: str | None = None,
        node: str | None = None,
        data: object = None,
    ) -> None:
        """Queue one event for the coordinator, in order; wait only while its mailbox is full."""
        if self.record_nowait(kind, request_id, parent_id, node, data):
            await self.flush()

    @property
    def flush_due(self) -> bool:
        """Whether the queued records make a batch: :meth:`flush` them."""
        return len(self._pending) >= self._batch

    def flush_nowait(self) -> bool:
        """Send the queued records if the coordinator's mailbox has room; return whether it had."""
        if self._pending:
            assert self.coordinator is not None
            try:
                self.coordinator.tell_nowait(self._pending)
            except actors.MailboxFullError:
                return False
            self._pending = []
        return True

    async def flush(self) -> None:
        """Send the queued records to the coordinator, waiting while its mailbox is full."""
        if not self.flush_nowait():
            assert self.coordinator is not None
            batch, self._pending = self._pending, []
            await self.coordinator.tell(batch)

    async def record_shielded(
        self, kind: EventKind, request_id: str, parent_id: str | None, node: str, data: object
    ) -> None:
        """Like :meth:`record`, from a task that is being cancelled."""
        with trio.CancelScope(shield=True):
            await self.record(kind, request_id, parent_id, node, data)

    def abort(self, exc: BaseException) -> None:
        """``end_on_error``: remember the first failure and cancel every node of the run."""
        if self.first_error is None:
            self.first_error = exc
        if self.nodes_scope is not None:
            self.nodes_scope.cancel()


_Record = tuple[EventKind, "str | None", "str | None", "str | None", object, float]
_REQUEST_OUTCOMES = {
    EventKind.REQUEST_SUCCEEDED: Status.COMPLETED,
    EventKind.REQUEST_FAILED: Status.FAILED,
    EventKind.REQUEST_CANCELLED: Status.CANCELLED,
}


class Coordinator(actors.Actor[list[_Record], None]):
    """Creates and tracks the run's requests; the only writer of the request tree."""

    shielded = True
    keeps_nursery = False
    mailbox_size = 1024

    def __init__(
        self, run: Run, callbacks: Sequence[Callable[[Event], object]], subscriptions: Sequence[Subscription]
    ) -> None:
        self._run = run
        self._callbacks = callbacks
        self._subscriptions = subscriptions
        self._publisher: actors.ActorRef[Event, None] | None = None
        self._seq = 0
        # The publisher exists only when somebody listens (a run nobody
        # subscribes to pays nothing for publishing). It is this actor's child,
        # so it is stopped only once every event has been handed to it.
        self.keeps_nursery = bool(callbacks or subscriptions)

    async def on_start(self) -> None:
        if self.keeps_nursery:
            self._publisher = await self.spawn(
                Publisher(self._callbacks, self._subscriptions), name="publisher"
            )

    async def handle(self, message: list[_Record]) -> None:
        # Applying a record never waits; only handing its event to the publisher may.
        for kind, request_id, parent_id, node, data, offset in message:
            ended = self._end_unfinished(offset) if kind is EventKind.RUN_FINISHED else ()
            data = self._apply(kind, request_id, parent_id, node, data, offset)
            if self._publisher is not None:
                for request in ended:
                    await self._publish(
                        EventKind.REQUEST_CANCELLED, request.id, request.parent_id, request.node, None, offset
                    )
                await self._publish(kind, request_id, parent_id, node, data, offset)

    def _apply(
        self,
        kind: EventKind,
        request_id: str | None,
        parent_id: str | None,
        node: str | None,
        data: object,
        offset: float,
    ) -> object:
        """Apply one record to the request tree; return the data its event carries."""
        requests = self._run.state.requests
        if kind is EventKind.REQUEST_CREATED:
            assert request_id is not None
            assert node is not None
            requests[request_id] = Request(
                id=request_id,
                parent_id=parent_id,
                node=node,
                status=Status.RUNNING,
                created_at=offset,
                started_at=offset,
            )
        elif kind in _REQUEST_OUTCOMES:
            request = requests[request_id]  # type: ignore[index]
            request.status = _REQUEST_OUTCOMES[kind]
            request.finished_at = offset
            if kind is EventKind.REQUEST_SUCCEEDED:
                request.result = data = summarize(data)
            elif kind is EventKind.REQUEST_FAILED:
                assert isinstance(data, BaseException)
                request.error = summary = ErrorSummary.from_exception(
                    data, self._run.state.request_path(request.id)
                )
                data = summary
        elif kind is EventKind.LOG:
            assert isinstance(data, dict)
            self._run.state._append_log({"request": request_id, "node": node, **data}, offset)
        return data

    def _end_unfinished(self, offset: float) -> list[Request]:
        """End the requests whose node never started (cancelled first) with the run; return them.

        So every request's events end with its outcome.
        """
        ended = []
        for request in self._run.state.requests.values():
            if not request.status.is_final:
                request.status = Status.CANCELLED
                request.finished_at = offset
                ended.append(request)
        return ended

    async def _publish(
        self,
        kind: EventKind,
        request_id: str | None,
        parent_id: str | None,
        node: str | None,
        data: object,
        offset: float,
    ) -> None:
        assert self._publisher is not None
        event = Event(self._run.state.job_id, self._seq, kind, offset, request_id, parent_id, node, data)
        self._seq += 1
        await self._publisher.tell(event)


class NodeActor(actors.Actor[None, object]):
    """One request: runs its node once, replies with the result, and stops."""

    mailbox_size = 1
    # A node called one at a time keeps a nursery for the children it calls
    # (one cancel scope per call in all); batch children, usually leaves, keep
    # none, and a call they make opens a nursery of its own.
    keeps_nursery = True
    #: Whether the node began running (a child cancelled before it ran did not).
    started = False
    #: Told of the node's failure as it happens: how a batch cancels its siblings.
    on_failure: Callable[[BaseException], None] | None = None

    def __init__(
        self,
        run: Run,
        node: AnyNode,
        request_id: str,
        parent_id: str | None,
        path: tuple[str, ...],
        args: tuple[object, ...],
        kwargs: Mapping[str, object],
    ) -> None:
        self.run = run
        self.node = node
        self.request_id = request_id
        self.parent_id = parent_id
        self.path = path
        self.args = args
        self.kwargs = kwargs

    async def handle(self, message: None) -> object:
        self.started = True
        run = self.run
        current_frame.set(Frame(run, self))
        hook = invocation_hook.get(None)
        try:
            after = None
            if hook is not None:
                after = await hook(Invocation("node", self.node.name, self.path, self.args, self.kwargs))
            result = await self.node.invoke(self.args, self.kwargs)
            if after is not None:
                await after(result)
        except BaseException as exc:
            if is_cancellation(exc):
                await run.record_shielded(
                    EventKind.REQUEST_CANCELLED, self.request_id, self.parent_id, self.node.name, None
                )
                raise
            if not hasattr(exc, _PATH_NOTED) and isinstance(exc, Exception):
                setattr(exc, _PATH_NOTED, self.path)
                exc.add_note(
                    f"raised in node {self.node.name!r}, request path: {' > '.join(self.path)} ({self.request_id})"
                )
            await run.record_shielded(
                EventKind.REQUEST_FAILED, self.request_id, self.parent_id, self.node.name, exc
            )
            if self.on_failure is not None:
                self.on_failure(exc)
            if run.end_on_error:
                run.abort(exc)
            raise
        finally:
            self.ref.stop_nowait()
        if run.record_nowait(
            EventKind.REQUEST_SUCCEEDED, self.request_id, self.parent_id, self.node.name, result
        ):
            await run.flush()
        return result

    async def call(self, node: AnyNode, args: tuple[object, ...], kwargs: Mapping[str, object]) -> object:
        """Run *node* as a child request of this one and return its result.

        The child never outlives the call: if the caller is cancelled, so is
        the child, and the call returns (or raises) only once it has ended.
        """
        if self.keeps_nursery:
            child = self._child(node, args, kwargs)
            if self.run.record_nowait(
                EventKind.REQUEST_CREATED, child.request_id, self.request_id, node.name
            ):
                await self.run.flush()
            ref = await self.spawn(child, name=f"{node.name} ({child.request_id})")
            reply = ref.ask_nowait(None)
            try:
                return await reply.wait()
            finally:
                if not reply.done:  # this wait was cancelled: the child goes with it
                    ref.cancel()
                    with trio.CancelScope(shield=True):
                        await ref.wait_stopped()
        async with actors.open_nursery() as nursery:
            reply = self._spawn_child(nursery, node, args, kwargs).ref.ask_nowait(None)
            if self.run.flush_due:
                await self.run.flush()
        return await reply.wait()

    async def call_batch(
        self, node: AnyNode, arg_sets: Sequence[tuple[object, ...]], *, return_exceptions: bool
    ) -> list[object]:
        """Run *node* once per argument tuple, as concurrent child requests; results in order.

        Without *return_exceptions*, the first child to fail (in time, not in
        argument order) cancels its siblings at once; when they have all
        ended, its exception is raised.
        """
        failures: list[BaseException] = []
        children: list[NodeActor] = []
        replies: list[actors.Reply[object]] = []
        async with actors.open_nursery() as nursery:

            def on_failure(exc: BaseException) -> None:
                if not failures:
                    failures.append(exc)
                    nursery.cancel_scope.cancel()

            for args in arg_sets:
                child = self._spawn_child(nursery, node, args, {})
                if not return_exceptions:
                    child.on_failure = on_failure
                children.append(child)
                replies.append(child.ref.ask_nowait(None))
                if self.run.flush_due:
                    await self.run.flush()
        if failures:
            for child in children:
                if not child.started:
                    await self.run.record(
                        EventKind.REQUEST_CANCELLED, child.request_id, self.request_id, child.node.name, None
                    )
            raise failures[0]
        results: list[object] = []
        for reply in replies:
            try:
                results.append(await reply.wait())
            except Exception as exc:
                if not return_exceptions:
                    raise
                results.append(exc)
        return results

    def _child(self, node: AnyNode, args: tuple[object, ...], kwargs: Mapping[str, object]) -> NodeActor:
        return NodeActor(
            self.run, node, self.run.next_request_id(), self.request_id, (*self.path, node.name), args, kwargs
        )

    def _spawn_child(
        self,
        nursery: actors.ActorNursery,
        node: AnyNode,
        args: tuple[object, ...],
        kwargs: Mapping[str, object],
    ) -> NodeActor:
        """Start a child request in *nursery*: a batch member, or a call from a node without a nursery.

        Its creation is queued for the coordinator; the caller flushes when due.
        """
        child = self._child(node, args, kwargs)
        child.keeps_nursery = False
        self.run.record_nowait(EventKind.REQUEST_CREATED, child.request_id, self.request_id, node.name)
        nursery.spawn_nowait(child, name=f"{node.name} ({child.request_id})")
        return child


class RunActor(actors.Actor[None, "RunResult[object]"]):
    """The run itself: owns its cancel scope and its book-keeping actors.

    Its children are the coordinator (with the publisher under it) and the
    entry node; it handles one message, the run, and ends once they have.
    """

    mailbox_size = 1

    def __init__(
        self,
        run: Run,
        entry: AnyNode,
        args: tuple[object, ...],
        kwargs: Mapping[str, object],
        callbacks: Sequence[Callable[[Event], object]],
        subscriptions: Sequence[Subscription],
    ) -> None:
        self.run = run
        self.entry = entry
        self.args = args
        self.kwargs = kwargs
        self.callbacks = callbacks
        self.subscriptions = subscriptions

    async def handle(self, message: None) -> RunResult[object]:
        self.ref.stop_nowait()  # one run per actor: end (with the children) once it is handled
        run = self.run
        state = run.state
        status = Status.FAILED
        result: object = None
        error: BaseException | None = None
        entry: actors.ActorRef[None, object] | None = None
        reply: actors.Reply[object] | None = None
        coordinator = self.spawn_nowait(
            Coordinator(run, self.callbacks, self.subscriptions), name="coordinator"
        )
        run.start(coordinator, publishing=bool(self.callbacks or self.subscriptions))
        current_frame.set(Frame(run, None))
        deadline = math.inf if run.timeout is None else trio.current_time() + run.timeout
        try:
            with trio.CancelScope(deadline=deadline) as scope:
                run.nodes_scope = scope
                run.record_nowait(EventKind.RUN_STARTED, data=run.flow_name)
                request_id = run.next_request_id()
                if run.record_nowait(EventKind.REQUEST_CREATED, request_id, None, self.entry.name):
                    await run.flush()
                entry = self.spawn_nowait(
                    NodeActor(run, self.entry, request_id, None, (self.entry.name,), self.args, self.kwargs),
                    name=f"{self.entry.name} ({request_id})",
                )
                reply = entry.ask_nowait(None)
                try:
                    result = await reply.wait()
                    status = Status.COMPLETED
                except Exception as exc:
                    error = exc
            if run.first_error is not None:
                status, error, result = Status.FAILED, run.first_error, None
            elif scope.cancelled_caught:
                status, result = Status.TIMED_OUT, None
                error = RunTimeoutError(
                    f"Flow {run.flow_name!r} (run {state.job_id}) timed out after {run.timeout} s; "
                    "every node of it was cancelled and its finally blocks ran."
                )
        except BaseException as exc:
            status = Status.CANCELLED
            error = RunCancelledError(
                f"Flow {run.flow_name!r} (run {state.job_id}) was cancelled from outside."
            )
            error.__cause__ = exc
            raise
        finally:
            # Scopes only where a wait is left, so the common end costs none.
            if reply is not None and not reply.done:
                assert entry is not None
                # The wait was cut short (timeout, end_on_error, outside cancel): the
                # entry node and everything under it end, finally blocks run,
                # before the run's last record.
                entry.cancel()
                with trio.CancelScope(shield=True):
                    await entry.wait_stopped()
            state.status = status
            state.error = None if error is None else ErrorSummary.from_exception(error)
            state.result = None if status is not Status.COMPLETED else summarize(result)
            run.record_nowait(
                EventKind.RUN_FINISHED,
                data={
                    "status": status.value,
                    "result": state.result,
                    "error": None if state.error is None else f"{state.error.type}: {state.error.message}",
                },
            )
            if not run.flush_nowait():
                with trio.CancelScope(shield=True):
                    await run.flush()
            state.finished_at = state._wall_time(run.offset())
            # The coordinator drains what is queued, then its publisher what
            # it holds; this actor ends only once both have.
            coordinator.stop_nowait()
        return RunResult(state, result, error)
