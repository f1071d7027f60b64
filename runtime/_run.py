"""One run of a node flow, as actors.

A run is a tree of actors in one :func:`actors.open_system` block::

    RunActor            owns the run's cancel scope (timeout, end_on_error)
    ├── Publisher       hands the run's records to its consumers, when it has any
    └── NodeActor       the entry point's request
        └── NodeActor   each rt.call: a child actor in its caller's nursery
            └── ...     (rt.call_batch: children in a nursery of the batch)

Each node actor writes the changes it makes (its request created, succeeded,
failed or cancelled, its logs and streamed items) into the run's state at
once and records them on the run's :class:`~runtime._record.RunLog`, which
passes them to the publisher in order (in batches when no subscriber watches
live). The publisher is shielded: when the run is cancelled from outside it
still tells its consumers how the run ended, then stops with it. A run with
no subscriber and no recorder has no publisher.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, final

import outcome
import trio

import actors

from ._context import Frame, Invocation, RequestMetadata, copy_context, current_frame, invocation_hook
from ._core import RunResult, cancelled_error, end_state, new_run_id, save_state, timeout_error
from ._executor import Submission
from ._node import DEFAULT_THREADS
from ._publisher import Event, EventKind, Publisher
from ._record import RunLog
from ._state import ErrorSummary, JobState, Request, Status, summarize

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from ._core import RunSettings
    from ._executor import Executor
    from ._node import AnyNode
    from ._publisher import Recorder, Subscription

_PATH_NOTED = "__trioflow_request_path__"


def is_cancellation(exc: BaseException) -> bool:
    """Whether *exc* is Trio's ``Cancelled``, alone or in groups of nothing else."""
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(is_cancellation(e) for e in exc.exceptions)
    return False


@final
class Run:
    """Everything one run shares between its actors. Private to the runtime.

    Its :meth:`record_nowait` is the node engine's side of the record path
    (``_record.py``): each change is applied to the run's state at once, in
    the task that makes it, and handed to the run's :class:`RunLog`.
    """

    __slots__ = (
        "_ids",
        "end_on_error",
        "entry",
        "executor",
        "first_error",
        "flow_name",
        "log",
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
        executor: Executor | None = None,
    ) -> None:
        self.state = state
        self.executor = executor if executor is not None else DEFAULT_THREADS
        self.flow_name = flow_name
        self.timeout = timeout
        self.end_on_error = end_on_error
        self.metadata = metadata
        self.first_error: BaseException | None = None
        self.nodes_scope: trio.CancelScope | None = None
        self.entry: actors.ActorRef[None, object] | None = None
        self.log = RunLog(state.job_id)
        self._ids = 0

    def start(self, publisher: actors.ActorRef[list[Event], None] | None, *, live: bool) -> None:
        """Start the run's clock; from now on records go to *publisher* (if any)."""
        self.state._start_clock()
        self.log.start(publisher, live=live)

    def offset(self) -> float:
        """Seconds since the run started, on Trio's clock."""
        return self.log.offset()

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
        """Apply one change to the run's state and record it, in order; return whether a :meth:`flush` is due.

        Never blocks. The hot paths call this rather than :meth:`record`, and
        await :meth:`flush` only when it says so.
        """
        offset = self.log.offset()
        requests = self.state.requests
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
                executor=data if isinstance(data, str) else None,
            )
        elif kind in _REQUEST_OUTCOMES:
            request = requests[request_id]  # type: ignore[index]
            # A cancelled request's data is how its executor ended it, if not plainly (killed, orphaned).
            cancelled_as = data if kind is EventKind.REQUEST_CANCELLED and isinstance(data, Status) else None
            request.status = cancelled_as or _REQUEST_OUTCOMES[kind]
            request.finished_at = offset
            if kind is EventKind.REQUEST_SUCCEEDED:
                request.result = data = summarize(data)
            elif kind is EventKind.REQUEST_FAILED:
                assert isinstance(data, BaseException)
                request.error = summary = ErrorSummary.from_exception(
                    data, self.state.request_path(request.id)
                )
                data = summary
        elif kind is EventKind.LOG:
            assert isinstance(data, dict)
            self.state._append_log({"request": request_id, "node": node, **data}, offset)
        return self.log.add(kind, node, data, request_id, parent_id, offset)

    async def record(
        self,
        kind: EventKind,
        request_id: str | None = None,
        parent_id: str | None = None,
        node: str | None = None,
        data: object = None,
    ) -> None:
        """Like :meth:`record_nowait`; wait only while the publisher's mailbox is full."""
        if self.record_nowait(kind, request_id, parent_id, node, data):
            await self.log.flush()

    @property
    def flush_due(self) -> bool:
        """Whether the queued records make a batch: :meth:`flush` them."""
        return self.log.flush_due

    async def flush(self) -> None:
        """Send the queued records to the publisher, waiting while its mailbox is full."""
        await self.log.flush()

    async def record_shielded(
        self, kind: EventKind, request_id: str, parent_id: str | None, node: str, data: object
    ) -> None:
        """Like :meth:`record`, from a task that is being cancelled."""
        if self.record_nowait(kind, request_id, parent_id, node, data):
            await self.log.flush_shielded()

    def end_unfinished(self) -> None:
        """End the requests whose node never started (cancelled first) with the run.

        So every request's records end with its outcome.
        """
        for request in list(self.state.requests.values()):
            if not request.status.is_final:
                self.record_nowait(EventKind.REQUEST_CANCELLED, request.id, request.parent_id, request.node)

    def executor_for(self, node: AnyNode) -> Executor | None:
        """Where *node* runs: its own executor, else the run's for a plain node; ``None``: on the loop."""
        if node.executor is not None:
            return node.executor
        return self.executor if node.thread else None

    def abort(self, exc: BaseException) -> None:
        """``end_on_error``: remember the first failure and cancel every node of the run.

        The nodes are cancelled here, as the failure happens, not once the run
        actor wakes: a caller waiting for the failed child is then cancelled
        before the child's error could reach it, so no ``except`` of a parent
        runs (see :meth:`NodeActor.child_failed`).
        """
        if self.first_error is None:
            self.first_error = exc
        if self.nodes_scope is not None:
            self.nodes_scope.cancel()
        if self.entry is not None:
            self.entry.cancel()


_REQUEST_OUTCOMES = {
    EventKind.REQUEST_SUCCEEDED: Status.COMPLETED,
    EventKind.REQUEST_FAILED: Status.FAILED,
    EventKind.REQUEST_CANCELLED: Status.CANCELLED,
}


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
    #: The call on the node's executor, once made: it says how a cancel ended the work.
    submission: Submission | None = None

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
        self.executor = run.executor_for(node)

    @property
    def executor_name(self) -> str | None:
        """The name of the executor the node runs on, recorded with its request; ``None`` on the loop."""
        return None if self.executor is None else self.executor.name

    async def handle(self, message: None) -> object:
        self.started = True
        run = self.run
        current_frame.set(Frame(run, self))
        hook = invocation_hook.get(None)
        try:
            after = None
            if hook is not None:
                after = await hook(Invocation("node", self.node.name, self.path, self.args, self.kwargs))
            if self.executor is None:
                result = await self.node.invoke(self.args, self.kwargs)
            else:
                self.submission = Submission(
                    self.node, self.args, self.kwargs, node=self.node.name, request=self.request_id
                )
                result = await self.executor.run(self.submission)
            if after is not None:
                await after(result)
        except BaseException as exc:
            if is_cancellation(exc):
                ending = None if self.submission is None else self.submission.ending
                await run.record_shielded(
                    EventKind.REQUEST_CANCELLED,
                    self.request_id,
                    self.parent_id,
                    self.node.name,
                    None if ending is Status.CANCELLED else ending,
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
                EventKind.REQUEST_CREATED, child.request_id, self.request_id, node.name, child.executor_name
            ):
                await self.run.flush()
            ref = await self.spawn(child, name=f"{node.name} ({child.request_id})")
            reply = ref.ask_nowait(None)
            try:
                return await reply.wait()
            except Exception:
                await self.child_failed()
                raise
            finally:
                if not reply.done:  # this wait was cancelled: the child goes with it
                    ref.cancel()
                    with trio.CancelScope(shield=True):
                        await ref.wait_stopped()
        async with actors.open_nursery() as nursery:
            reply = self._spawn_child(nursery, node, args, kwargs).ref.ask_nowait(None)
            if self.run.flush_due:
                await self.run.flush()
        try:
            return await reply.wait()
        except Exception:
            await self.child_failed()
            raise

    async def child_failed(self) -> None:
        """A child's error is about to reach this node: with ``end_on_error``, raise the run's cancellation instead.

        Once :meth:`Run.abort` has ended the run, the caller sees
        ``trio.Cancelled`` (its ``finally`` blocks run, its ``except`` for the
        child's error does not) and the run raises the original error. Outside
        a shielded scope :meth:`Run.abort` has already cancelled this task, so
        the checkpoint raises.
        """
        if self.run.first_error is not None:
            await trio.lowlevel.checkpoint()

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
            await self.child_failed()
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
                await self.child_failed()
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

        Its creation is recorded; the caller flushes when due.
        """
        child = self._child(node, args, kwargs)
        child.keeps_nursery = False
        self.run.record_nowait(
            EventKind.REQUEST_CREATED, child.request_id, self.request_id, node.name, child.executor_name
        )
        nursery.spawn_nowait(child, name=f"{node.name} ({child.request_id})")
        return child


class RunActor(actors.Actor[None, "RunResult[object]"]):
    """The run itself: owns its cancel scope and its book-keeping actors.

    Its children are the publisher (if the run has consumers) and the entry
    node; it handles one message, the run, and ends once they have.
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
        recorders: Sequence[Recorder],
    ) -> None:
        self.run = run
        self.entry = entry
        self.args = args
        self.kwargs = kwargs
        self.callbacks = callbacks
        self.subscriptions = subscriptions
        self.recorders = recorders

    async def handle(self, message: None) -> RunResult[object]:
        self.ref.stop_nowait()  # one run per actor: end (with the children) once it is handled
        run = self.run
        state = run.state
        status = Status.FAILED
        result: object = None
        error: BaseException | None = None
        entry: actors.ActorRef[None, object] | None = None
        reply: actors.Reply[object] | None = None
        live = bool(self.callbacks or self.subscriptions)
        publisher = (
            self.spawn_nowait(Publisher(self.callbacks, self.subscriptions, self.recorders), name="publisher")
            if live or self.recorders
            else None
        )
        run.start(publisher, live=live)
        current_frame.set(Frame(run, None))
        deadline = math.inf if run.timeout is None else trio.current_time() + run.timeout
        try:
            with trio.CancelScope(deadline=deadline) as scope:
                run.nodes_scope = scope
                run.record_nowait(EventKind.RUN_STARTED, data=run.flow_name)
                request_id = run.next_request_id()
                node_actor = NodeActor(
                    run, self.entry, request_id, None, (self.entry.name,), self.args, self.kwargs
                )
                if run.record_nowait(
                    EventKind.REQUEST_CREATED, request_id, None, self.entry.name, node_actor.executor_name
                ):
                    await run.flush()
                entry = self.spawn_nowait(node_actor, name=f"{self.entry.name} ({request_id})")
                run.entry = entry
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
                error = timeout_error(state, run.timeout, "node")
        except BaseException as exc:
            status = Status.CANCELLED
            error = cancelled_error(state, "node", exc)
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
            run.end_unfinished()
            summary = summarize(result) if status is Status.COMPLETED else None
            finished = end_state(state, status, error, summary)
            state.finished_at = state._wall_time(run.offset())
            run.record_nowait(EventKind.RUN_FINISHED, data=finished)
            if publisher is not None:
                await run.log.flush_shielded()
                # The publisher hands on what it holds; this actor ends only once it has.
                publisher.stop_nowait()
        return RunResult(state, result, error)


async def run_flow(
    settings: RunSettings,
    entry: AnyNode,
    args: tuple[object, ...],
    kwargs: Mapping[str, object],
    *,
    metadata: RequestMetadata | None = None,
    subscriptions: Sequence[Subscription] = (),
    on_result: Callable[[RunResult[object]], object] | None = None,
) -> RunResult[object]:
    """Run *entry* once as a run of the flow *settings* describe, in its own actor system.

    *on_result* gets the run's result as soon as the run has ended on its
    own, even if this call is then cancelled while the run's actors wind
    down: a session counts the run by how it really ended.
    """
    entry.check_arguments(args, kwargs)
    run_id = metadata.run_id if metadata is not None and metadata.run_id else new_run_id()
    context = copy_context(settings.context, where=f"Flow({settings.name!r}) run")
    state = JobState(job_id=run_id, flow_id=settings.name, context=context)
    if settings.on_state is not None:
        settings.on_state(state)
    run = Run(
        state=state,
        flow_name=settings.name,
        timeout=settings.timeout,
        end_on_error=settings.end_on_error,
        metadata=metadata if metadata is not None else RequestMetadata(run_id=state.job_id),
        executor=settings.executor,
    )
    actor = RunActor(run, entry, args, kwargs, settings.subscribers, subscriptions, settings.recorders)
    reply: actors.Reply[RunResult[object]] | None = None
    try:
        async with actors.open_system() as system:
            # The run actor stops after its one run; leaving the block waits for it.
            reply = (await system.spawn(actor, name=f"run {state.job_id}")).ask_nowait(None)
        return await reply.wait()
    finally:
        # A value: the run ended on its own (an outside cancel makes the run actor raise).
        if on_result is not None and reply is not None and isinstance(reply.outcome, outcome.Value):
            on_result(reply.outcome.value)
        if settings.save_state:
            save_state(settings, state)
