"""One run of a node flow: a block in the caller's task, and an actor per node.

A run is :func:`open_run`: an async context manager that owns the run in
the task that enters it (no actor of its own)::

    caller's task         the run's cancel scope (timeout, end_on_error), its RunLog, its ending
    └── actor system      a nursery opened in the caller's task
        ├── Publisher     hands the run's records to its consumers, when it has any
        └── NodeActor     each top-level request: the entry point's (a Flow run),
            │             or each rt.call of an rt.Session block (RunRoot makes them)
            └── NodeActor each rt.call: a child actor in its caller's nursery
                └── ...   (rt.call_batch: children in a nursery of the batch)

:func:`run_flow` is :func:`open_run` and one top-level call.

Each node actor writes the changes it makes (its request created, succeeded,
failed or cancelled, its logs and streamed items) into the run's state at
once and records them on the run's :class:`~runtime._record.RunLog`, which
passes them to the publisher in order (in batches when no subscriber watches
live). The publisher is shielded: when the run is cancelled from outside it
still tells its consumers how the run ended, then stops with it. A run with
no subscriber and no recorder has no publisher.

The run's cancel scope is entered after the system's nursery, so it covers
the block's code and not the nodes: a top-level call whose wait is cut short
(timeout, end_on_error, a cancel from outside) cancels its request and waits
for it, shielded, so every request has ended, its ``finally`` blocks run,
before the run's ending is written; :meth:`Run.abort` cancels the top-level
requests directly.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, final

import trio

import actors

from ._context import Frame, Invocation, RequestMetadata, copy_context, current_frame, invocation_hook
from ._core import RunResult, cancelled_error, end_state, new_run_id, save_state, timeout_error
from ._exceptions import (
    DivergenceError,
    OutsideRunError,
    OutsideTrioError,
    ResumeError,
    RunPausedError,
    StoreError,
)
from ._executor import Submission
from ._node import DEFAULT_THREADS
from ._publisher import Event, EventKind, Publisher
from ._record import RunLog
from ._state import ErrorSummary, JobState, Request, Status, summarize

if TYPE_CHECKING:
    import contextvars
    from collections.abc import Callable, Mapping, Sequence
    from contextlib import AbstractAsyncContextManager
    from types import TracebackType

    from ._core import RunSettings
    from ._executor import Executor
    from ._node import AnyNode
    from ._publisher import Subscription
    from .store._base import ResumePoint

_PATH_NOTED = "__trioflow_request_path__"


def paused_error(run: Run) -> RunPausedError:
    """The error of a run that paused at ``rt.interrupt``: it carries the run id and the payload."""
    assert run.interrupted is not None
    key, payload = run.interrupted
    run_id = run.state.job_id
    msg = (
        f"Run {run_id!r} of flow {run.flow_name!r} paused at rt.interrupt() in {key!r}, waiting for a value "
        f"(payload: {_short(payload)}). Resume it with flow.resume({run_id!r}, value), from this process or another."
    )
    return RunPausedError(msg, run_id=run_id, payload=payload, key=key)


def _short(value: object, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


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
        "broadcast_callback",
        "durable_recorders",
        "end_on_error",
        "ended",
        "entry",
        "error",
        "executor",
        "first_error",
        "flow_name",
        "interrupted",
        "log",
        "metadata",
        "nodes_scope",
        "outcome",
        "point",
        "refused",
        "result",
        "root",
        "started_value",
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
        #: Makes the run's top-level requests, once the run has begun (see :func:`open_run`).
        self.root: RunRoot | None = None
        #: The entry point's result, or the error it raised (``end_on_error`` aside): set by the run's caller.
        self.result: object = None
        self.error: BaseException | None = None
        #: How the run ended, once it has; whether it has.
        self.outcome: RunResult[object] | None = None
        self.ended = False
        self.log = RunLog(state.job_id)
        self._ids = 0
        #: A resumed run's stored history: what its calls replay (see ``runtime.store.ResumePoint``).
        self.point: ResumePoint | None = None
        #: The ``run_started`` record's value: the entry's arguments and the definition's fingerprint.
        self.started_value: object = None
        #: The interrupt that paused the run, as (its key, its payload), once a node awaits one.
        self.interrupted: tuple[str, object] | None = None
        #: Called with each ``rt.broadcast`` item, in the broadcasting task (see ``RunSettings``).
        self.broadcast_callback: Callable[[object], object] | None = None
        #: Whether a resumed run refused a call (DivergenceError, ResumeError): nodes ending since keep no result.
        self.refused = False
        #: The run's recorders that can say when its records are committed (a store's ``wait_committed``).
        self.durable_recorders: list[object] = []

    def start(self, publisher: actors.ActorRef[list[Event], None] | None, *, live: bool) -> None:
        """Start the run's clock; from now on records go to *publisher* (if any).

        A run kept by a store (:attr:`durable_recorders`) sends its records
        at least every ``_STORE_LINGER`` seconds, even when not *live*.
        """
        self.state._start_clock()
        self.log.start(
            publisher,
            live=live,
            seq=0 if self.point is None else self.point.next_seq,
            linger=_STORE_LINGER if self.durable_recorders else math.inf,
            hold=self._hold if self.durable_recorders else None,
        )

    async def _hold(self, seq: int) -> None:
        """Wait until the run's stores have committed its records up to *seq* (see ``RunLog.flush``)."""
        for recorder in self.durable_recorders:
            # A store that failed holds nothing back: its own block reports the failure.
            with contextlib.suppress(StoreError):
                await recorder.wait_committed(self.state.job_id, seq)  # type: ignore[attr-defined]

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
        key: str | None = None,
    ) -> bool:
        """Apply one change to the run's state and record it, in order; return whether a :meth:`flush` is due.

        Never blocks. The hot paths call this rather than :meth:`record`, and
        await :meth:`flush` only when it says so.
        """
        offset = self.log.offset()
        requests = self.state.requests
        value: object = None
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
                value = data
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
        return self.log.add(kind, node, data, request_id, parent_id, offset, key, value)

    async def record(
        self,
        kind: EventKind,
        request_id: str | None = None,
        parent_id: str | None = None,
        node: str | None = None,
        data: object = None,
        key: str | None = None,
    ) -> None:
        """Like :meth:`record_nowait`; wait only while the publisher's mailbox is full."""
        if self.record_nowait(kind, request_id, parent_id, node, data, key):
            await self.log.flush()

    @property
    def flush_due(self) -> bool:
        """Whether the queued records make a batch: :meth:`flush` them."""
        return self.log.flush_due

    async def make_durable(self) -> None:
        """Wait until the run's stores have committed every record made so far.

        Before a node made with ``idempotent=False`` runs: its store then
        knows it started, so a resume after a crash does not run it again
        unasked.
        """
        seq = self.log.last_seq
        await self.log.flush()
        for recorder in self.durable_recorders:
            await recorder.wait_committed(self.state.job_id, seq)  # type: ignore[attr-defined]

    async def flush(self) -> None:
        """Send the queued records to the publisher, waiting while its mailbox is full."""
        await self.log.flush()

    async def record_shielded(
        self,
        kind: EventKind,
        request_id: str,
        parent_id: str | None,
        node: str,
        data: object,
        key: str | None = None,
    ) -> None:
        """Like :meth:`record`, from a task that is being cancelled."""
        if self.record_nowait(kind, request_id, parent_id, node, data, key):
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

        The nodes are cancelled here, as the failure happens, not once the
        run's caller wakes: a caller waiting for the failed child is then cancelled
        before the child's error could reach it, so no ``except`` of a parent
        runs (see :meth:`NodeActor.child_failed`).
        """
        if self.first_error is None:
            self.first_error = exc
        if self.nodes_scope is not None:
            self.nodes_scope.cancel()
        if self.entry is not None:
            self.entry.cancel()
        if self.root is not None:
            for ref in self.root.live:
                ref.cancel()

    def interrupt(self, key: str, payload: object) -> None:
        """``rt.interrupt``: pause the run at *key* with *payload*; every node of it is cancelled.

        The first interrupt of a run pauses it; the run ends ``paused``.
        """
        if self.interrupted is None and self.first_error is None:
            self.interrupted = (key, payload)
            if self.nodes_scope is not None:
                self.nodes_scope.cancel()
            if self.entry is not None:
                self.entry.cancel()

    def replay_calls(self, key: str, request_id: str) -> None:
        """Record again the calls that the replayed call *key* (now *request_id*) made, as stored.

        They are not run: their records, with their stored outcomes, make the
        resumed run's request tree the whole tree.
        """
        assert self.point is not None
        point = self.point
        for child_key, node, executor, kind, data in point.children.get(key, ()):
            assert isinstance(child_key, str)
            assert isinstance(node, str)
            assert isinstance(kind, EventKind)
            child_id = self.next_request_id()
            self.record_nowait(EventKind.REQUEST_CREATED, child_id, request_id, node, executor, child_key)
            request = self.state.requests[child_id]
            offset = request.created_at  # the stored call ends as it is made: one instant
            self.replay_calls(child_key, child_id)
            request.status = data if isinstance(data, Status) else _REQUEST_OUTCOMES[kind]
            request.finished_at = offset
            if kind is EventKind.REQUEST_SUCCEEDED:
                request.result = data if isinstance(data, str) else None
            elif kind is EventKind.REQUEST_FAILED:
                request.error = data if isinstance(data, ErrorSummary) else None
            value = point.results.get(child_key) if kind is EventKind.REQUEST_SUCCEEDED else None
            self.log.add(kind, node, data, child_id, request_id, offset, child_key, value)

    def check_call(self, parent_key: str, position: int | None, key: str, node: AnyNode) -> object:
        """A resumed run's call of *node* at *key*: its stored result, or :data:`NOT_STORED`.

        *position* is the call's place among *parent_key*'s calls, checked
        against the stored run's; ``None`` for a call keyed by its node's
        ``idempotency_key``, which has no place.

        Raises:
            DivergenceError: the stored history made another call at this
                place (the run is ended with it).
            ResumeError: *node* is not idempotent, and the stored run started
                this call without the store holding its result, and the resume
                did not say to run it again (the run is ended with it).
        """
        point = self.point
        if point is None:
            return NOT_STORED
        stored = key if position is None else point.slots.get((parent_key, position), key)
        if stored != key:
            msg = (
                f"Run {point.run_id!r} diverged from its stored history at call {position} of {parent_key!r}: "
                f"it called {key!r} where the stored run called {stored!r}. A resumed run must make the same calls in "
                "the same order; resume it with the code that started it, or start a new run."
            )
            error = DivergenceError(msg, run_id=point.run_id, expected=stored, found=key)
            self.refused = True
            self.abort(error)
            raise error
        result = point.results.get(key, NOT_STORED)
        if (
            result is NOT_STORED
            and not node.idempotent
            and key in point.in_flight
            and not (point.rerun is True or (point.rerun is not False and key in point.rerun))
        ):
            msg = (
                f"Run {point.run_id!r} stopped before running {key!r} again: the stored run started this call of "
                f"{node.name!r}, made with idempotent=False, and the store holds no result of it (it was cut short, "
                "or returned a value that is not JSON), so its work may be done already. Check whether it was "
                f"(the node's rt.idempotency_key() is {point.run_id + ':' + key!r}), then resume with "
                f"flow.resume({point.run_id!r}, rerun=[{key!r}]) to run it again."
            )
            refused = ResumeError(msg)
            self.refused = True
            self.abort(refused)
            raise refused
        return result


#: A store's run sends its records on at the first record made this long after its last batch.
_STORE_LINGER = 0.01

NOT_STORED = object()
"""No stored result: the call runs."""


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
    #: A resumed run's stored result of this call: it is returned, the node does not run.
    replayed: object = NOT_STORED

    def __init__(
        self,
        run: Run,
        node: AnyNode,
        request_id: str,
        parent_id: str | None,
        path: tuple[str, ...],
        args: tuple[object, ...],
        kwargs: Mapping[str, object],
        key: str | None = None,
    ) -> None:
        self.run = run
        self.node = node
        self.request_id = request_id
        self.parent_id = parent_id
        self.path = path
        self.args = args
        self.kwargs = kwargs
        self.executor = run.executor_for(node)
        #: The call key (see ``Event.key``): the entry's node name, or the parent's key and this call's place.
        self.key = key if key is not None else node.name
        self._calls = 0
        self._interrupts = 0

    @property
    def node_name(self) -> str:
        """The name of the node this request runs."""
        return self.node.name

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
            if hook is not None and self.replayed is NOT_STORED:
                after = await hook(Invocation("node", self.node.name, self.path, self.args, self.kwargs))
            if self.replayed is not NOT_STORED:  # a stored result: the node does not run
                result = self.replayed
                run.replay_calls(self.key, self.request_id)
            else:
                if not self.node.idempotent and run.durable_recorders:
                    await run.make_durable()  # the store knows this call started before it does anything
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
                    self.key,
                )
                raise
            if not hasattr(exc, _PATH_NOTED) and isinstance(exc, Exception):
                setattr(exc, _PATH_NOTED, self.path)
                exc.add_note(
                    f"raised in node {self.node.name!r}, request path: {' > '.join(self.path)} ({self.request_id})"
                )
            await run.record_shielded(
                EventKind.REQUEST_FAILED, self.request_id, self.parent_id, self.node.name, exc, self.key
            )
            if self.on_failure is not None:
                self.on_failure(exc)
            if run.end_on_error:
                run.abort(exc)
            raise
        finally:
            self.ref.stop_nowait()
        if run.refused:
            # The run stopped at a call it refused, and this node may have caught the error and returned
            # what it would not have: no result is kept for a resume to replay.
            await run.record_shielded(
                EventKind.REQUEST_CANCELLED, self.request_id, self.parent_id, self.node.name, None, self.key
            )
            return result
        if run.record_nowait(
            EventKind.REQUEST_SUCCEEDED, self.request_id, self.parent_id, self.node.name, result, self.key
        ):
            await run.flush()
        return result

    async def interrupt(self, payload: object) -> object:
        """``rt.interrupt(payload)`` in this node: the value given to resume the run at it.

        Without one (the run's first attempt at it), the run pauses: every
        node is cancelled, this one too, and the run ends ``paused``.
        """
        key = f"{self.key} ! interrupt[{self._interrupts}]"
        self._interrupts += 1
        point = self.run.point
        if point is not None and key in point.answers:
            await trio.lowlevel.checkpoint()
            return point.answers[key]
        self.run.interrupt(key, payload)
        await trio.sleep_forever()
        raise AssertionError  # pragma: no cover  # the run's cancel ends the wait

    async def call(self, node: AnyNode, args: tuple[object, ...], kwargs: Mapping[str, object]) -> object:
        """Run *node* as a child request of this one and return its result.

        The child never outlives the call: if the caller is cancelled, so is
        the child, and the call returns (or raises) only once it has ended.
        """
        if self.keeps_nursery:
            child = self._child(node, args, kwargs)
            if self.run.record_nowait(
                EventKind.REQUEST_CREATED,
                child.request_id,
                self.request_id,
                node.name,
                child.executor_name,
                child.key,
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
                        EventKind.REQUEST_CANCELLED,
                        child.request_id,
                        self.request_id,
                        child.node.name,
                        None,
                        child.key,
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
        if node.idempotency_key is None:
            position: int | None = self._calls
            self._calls += 1
            key = f"{self.key} > {node.name}[{position}]"
        else:  # keyed by its arguments: the same whatever order the caller's calls start in
            position = None
            key = f"{self.key} > {node.name}<{node.call_key(args, kwargs)}>"
        replayed = self.run.check_call(self.key, position, key, node)
        child = NodeActor(
            self.run,
            node,
            self.run.next_request_id(),
            self.request_id,
            (*self.path, node.name),
            args,
            kwargs,
            key,
        )
        child.replayed = replayed
        return child

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
            EventKind.REQUEST_CREATED,
            child.request_id,
            self.request_id,
            node.name,
            child.executor_name,
            child.key,
        )
        nursery.spawn_nowait(child, name=f"{node.name} ({child.request_id})")
        return child


class RunRoot:
    """The top of a run: makes its top-level requests, as a node actor makes its children.

    The entry point's request of a Flow run is one; in an ``rt.Session``
    block every ``rt.call`` made by the block's own code is one. Each is a
    :class:`NodeActor` spawned into the run's actor system (or, in a
    synchronous session block, which has none, into a system of the call's
    own, opened in the calling task). It lives in the caller's task: this
    object is no actor, and costs no task.
    """

    __slots__ = ("_calls", "answers", "detached", "live", "run", "system")

    #: What a node actor has and the root has not: a request, a node of its own.
    request_id = None
    parent_id = None
    node_name = None

    def __init__(self, run: Run, system: actors.ActorSystem | None, *, detached: bool = False) -> None:
        self.run = run
        self.system = system
        #: Begun outside Trio (a synchronous session block there): calls are refused.
        self.detached = detached
        #: The top-level requests running now: :meth:`Run.abort` cancels them.
        self.live: set[actors.ActorRef[None, object]] = set()
        #: What each top-level request that completed returned, by request id.
        self.answers: dict[str, object] = {}
        self._calls = 0

    def _child(self, node: AnyNode, args: tuple[object, ...], kwargs: Mapping[str, object]) -> NodeActor:
        run = self.run
        if self.detached:
            msg = (
                f"rt.call({node.name}) was called in a `with rt.Session(...)` block entered outside Trio (run "
                f"{run.state.job_id}); such a block can read and write rt.context, but a call needs the Trio run "
                "the block lives in. Enter the block inside Trio code (async def main(): with rt.Session(): "
                "await rt.call(...); then trio.run(main)), or run rt.Flow(name, entry_point=node).invoke(...)."
            )
            raise OutsideTrioError(msg)
        if run.ended:
            msg = (
                f"rt.call({node.name}) was called after its run {run.state.job_id} (of {run.flow_name!r}) ended. "
                "Make the call inside the `with rt.Session(...)` block, or start a new run."
            )
            raise OutsideRunError(msg)
        # Call keys (see ``Event.key``): the first top-level request (a Flow
        # run's entry point) is keyed by its node's name, later ones by place.
        position = self._calls
        self._calls += 1
        key = node.name if position == 0 else f"{node.name}[{position}]"
        replayed = run.check_call("", position, key, node)
        child = NodeActor(run, node, run.next_request_id(), None, (node.name,), args, kwargs, key)
        child.replayed = replayed
        return child

    def _spawn(self, system: actors.ActorSystem, child: NodeActor) -> actors.ActorRef[None, object]:
        self.run.record_nowait(
            EventKind.REQUEST_CREATED, child.request_id, None, child.node.name, child.executor_name, child.key
        )
        ref = system.spawn_nowait(child, name=f"{child.node.name} ({child.request_id})")
        self.live.add(ref)
        if self.run.entry is None:  # the run's first request: a Flow run's entry point
            self.run.entry = ref
        return ref

    async def call(self, node: AnyNode, args: tuple[object, ...], kwargs: Mapping[str, object]) -> object:
        """Run *node* as a top-level request of the run and return its result.

        As :meth:`NodeActor.call`: the request never outlives the call; if the
        caller is cancelled, so is the request, and this returns only once it
        has ended.
        """
        child = self._child(node, args, kwargs)
        run = self.run
        if self.system is None:
            # A synchronous session block: the request gets a system of its own,
            # in this task, inside the run's cancel scope.
            async with actors.open_system() as system:
                ref = self._spawn(system, child)
                reply = ref.ask_nowait(None)
            self.live.discard(ref)
        else:
            ref = self._spawn(self.system, child)
            reply = ref.ask_nowait(None)
            try:
                if run.flush_due:
                    await run.flush()
                self.answers[child.request_id] = answer = await reply.wait()
                return answer
            except Exception:
                await self.child_failed()
                raise
            finally:
                self.live.discard(ref)
                if not reply.done:  # this wait was cancelled: the request goes with it
                    ref.cancel()
                    with trio.CancelScope(shield=True):
                        await ref.wait_stopped()
        try:
            self.answers[child.request_id] = answer = await reply.wait()
            return answer
        except Exception:
            await self.child_failed()
            raise

    async def child_failed(self) -> None:
        """As :meth:`NodeActor.child_failed`: with ``end_on_error``, the caller sees the run's cancellation."""
        if self.run.first_error is not None:
            await trio.lowlevel.checkpoint()

    async def interrupt(self, payload: object) -> object:
        """``rt.interrupt`` in a session block's own code: refused, a run pauses in a node."""
        await trio.lowlevel.checkpoint()
        msg = (
            f"rt.interrupt({_short(payload)}) was called in the block of run {self.run.state.job_id!r} itself, "
            "not in a node. A run pauses inside a node: call rt.interrupt() in a @rt.function_node, and run it "
            "with rt.Flow(..., entry_point=node, store=...) so that flow.resume(run_id, value) can continue it."
        )
        raise OutsideRunError(msg)

    async def call_batch(
        self, node: AnyNode, arg_sets: Sequence[tuple[object, ...]], *, return_exceptions: bool
    ) -> list[object]:
        """As :meth:`NodeActor.call_batch`, with the requests at the top of the run."""
        if self.system is None:
            if self.detached:
                self._child(node, (), {})  # refused, saying why
            async with actors.open_system() as system:
                return await self._batch(system, node, arg_sets, return_exceptions=return_exceptions)
        return await self._batch(self.system, node, arg_sets, return_exceptions=return_exceptions)

    async def _batch(
        self,
        system: actors.ActorSystem,
        node: AnyNode,
        arg_sets: Sequence[tuple[object, ...]],
        *,
        return_exceptions: bool,
    ) -> list[object]:
        failures: list[BaseException] = []
        children: list[NodeActor] = []
        refs: list[actors.ActorRef[None, object]] = []
        replies: list[actors.Reply[object]] = []
        got: list[object] = []  # each result, or the exception in its place

        def on_failure(exc: BaseException) -> None:
            if not failures:
                failures.append(exc)
                for ref in refs:
                    ref.cancel()

        try:
            for args in arg_sets:
                child = self._child(node, args, {})
                child.keeps_nursery = False
                if not return_exceptions:
                    child.on_failure = on_failure
                children.append(child)
                ref = self._spawn(system, child)
                refs.append(ref)
                replies.append(ref.ask_nowait(None))
                if self.run.flush_due:
                    await self.run.flush()
            for reply in replies:
                try:
                    got.append(await reply.wait())
                except Exception as exc:
                    got.append(_Failed(exc))
        finally:
            self.live.difference_update(refs)
            if len(got) < len(replies):  # cancelled: the requests go with it
                for ref in refs:
                    ref.cancel()
                with trio.CancelScope(shield=True):
                    for ref in refs:
                        await ref.wait_stopped()
        if failures:
            await self.child_failed()
            for child in children:
                if not child.started:
                    await self.run.record(
                        EventKind.REQUEST_CANCELLED, child.request_id, None, child.node.name, None
                    )
            raise failures[0]
        results: list[object] = []
        for value in got:
            if isinstance(value, _Failed):
                await self.child_failed()
                if not return_exceptions:
                    raise value.error
                results.append(value.error)
            else:
                results.append(value)
        return results


@final
class _Failed:
    """A batch request's exception, held in its place among the results."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def new_run(
    settings: RunSettings,
    metadata: RequestMetadata | None = None,
    *,
    where: str | None = None,
    point: ResumePoint | None = None,
) -> Run:
    """A run of *settings*, not started yet: its id, its state (a copy of the context), its :class:`Run`.

    *point*, for a resumed run, is its stored history: the run keeps its id.
    """
    if point is not None:
        run_id = point.run_id
    else:
        run_id = metadata.run_id if metadata is not None and metadata.run_id else new_run_id()
    context = (
        copy_context(settings.context, where=where or f"Flow({settings.name!r}) run")
        if settings.context
        else {}
    )
    state = JobState(job_id=run_id, flow_id=settings.name, context=context)
    if settings.on_state is not None:
        settings.on_state(state)
    run = Run(
        state=state,
        flow_name=settings.name,
        timeout=settings.timeout,
        end_on_error=settings.end_on_error,
        metadata=metadata if metadata is not None else RequestMetadata(run_id=run_id),
        executor=settings.executor,
    )
    run.point = point
    run.broadcast_callback = settings.broadcast_callback
    return run


@final
class OpenRun:
    """A run in the caller's task: what :func:`open_run` returns.

    Entered with ``async with``, it opens the run's actor system (a nursery in
    the caller's task) for the publisher, when the run has consumers, and the
    top-level requests; then the run's cancel scope (its timeout, and
    ``end_on_error``'s abort) around the block. Leaving it ends the run: the
    top-level requests have ended with the block (each call waits for its
    request), so the run's ending is written (status, error, ``run_finished``),
    handed to the publisher (shielded: consumers learn how a run cancelled from
    outside ended), the system is left, and the state saved.

    Entered with a plain ``with`` (the synchronous ``rt.Session`` form), it
    opens only the cancel scope: a run without consumers, whose top-level
    requests each open an actor system of their own. Entered so outside Trio,
    it opens nothing of Trio's: the block reads and writes the run's context,
    and its calls are refused (``RunRoot.detached``).

    How the run ended is in ``run.outcome`` once the block is left. An error
    of the block's own code propagates; the run's timeout, and the first
    failure under ``end_on_error``, are caught here (the block sees only their
    cancellation) and left in ``run.outcome.error`` for the caller to raise.
    """

    __slots__ = ("_frame_token", "_publisher", "_scope", "_settings", "_subscriptions", "_system_cm", "run")

    def __init__(self, run: Run, settings: RunSettings, subscriptions: Sequence[Subscription]) -> None:
        self.run = run
        self._settings = settings
        self._system_cm: AbstractAsyncContextManager[actors.ActorSystem] | None = None
        self._publisher: actors.ActorRef[list[Event], None] | None = None
        self._scope: trio.CancelScope | None = None
        self._frame_token: contextvars.Token[Frame] | None = None
        self._subscriptions = subscriptions

    @property
    def consumers(self) -> bool:
        """Whether anybody consumes the run's records (then it needs a publisher, so ``async with``)."""
        settings = self._settings
        return bool(settings.subscribers or settings.recorders or self._subscriptions)

    def _begin(self, system: actors.ActorSystem | None, *, detached: bool = False) -> None:
        run = self.run
        settings = self._settings
        live = bool(settings.subscribers or self._subscriptions)
        run.root = RunRoot(run, system, detached=detached)
        self._frame_token = current_frame.set(Frame(run, None, None, run.root))
        if system is not None and (live or settings.recorders):
            self._publisher = system.spawn_nowait(
                Publisher(settings.subscribers, self._subscriptions, settings.recorders), name="publisher"
            )
        if self._publisher is not None:
            run.durable_recorders = [r for r in settings.recorders if hasattr(r, "wait_committed")]
        run.start(self._publisher, live=live)
        scope: trio.CancelScope | None
        if detached:
            # Begun outside Trio: the block can only read and write the
            # context (its calls are refused), so there is nothing to cancel.
            scope = None
        elif system is not None:
            # The system's own scope is the run's: it covers the block and the
            # nodes, and the publisher is shielded from it. No scope of its own.
            scope = system.cancel_scope
            if run.timeout is not None:
                scope.deadline = trio.current_time() + run.timeout
        else:
            deadline = math.inf if run.timeout is None else trio.current_time() + run.timeout
            scope = trio.CancelScope(deadline=deadline)
            scope.__enter__()
        self._scope = run.nodes_scope = scope
        run.log.add(EventKind.RUN_STARTED, None, run.flow_name, value=run.started_value)

    def _end(self, exc: BaseException | None, *, own_scope: bool) -> tuple[bool, BaseException | None]:
        """Write how the run ended; return whether the block's cancellation is the run's own, and what escapes.

        With *own_scope* (the synchronous form) the run's cancel scope is left
        here; otherwise it is the system's, left with the system.
        """
        run = self.run
        state = run.state
        scope = self._scope
        ours = False
        escaping: BaseException | None = exc
        if scope is None:  # begun outside Trio: no scope, and no cancellation
            pass
        elif own_scope:
            if exc is None:
                scope.__exit__(None, None, None)
            else:
                try:
                    ours = scope.__exit__(type(exc), exc, exc.__traceback__)
                except BaseException as raised:  # the scope took its Cancelled out of a group
                    escaping = raised
                else:
                    escaping = None if ours else exc
        elif (
            exc is not None
            and is_cancellation(exc)
            and (
                run.first_error is not None
                or run.interrupted is not None
                or trio.current_time() >= scope.deadline
            )
        ):
            # The abort, or the timeout (a nursery's scope is cancelled by any
            # child's Cancelled too, so cancel_called cannot tell): the system's
            # scope catches it as the system is left.
            ours, escaping = True, None
        run.ended = True
        result: object = None
        error: BaseException | None
        if escaping is not None:
            if isinstance(escaping, Exception) and not is_cancellation(escaping):
                status, error = Status.FAILED, escaping  # the block's own error
            else:  # cancelled from outside
                status, error = Status.CANCELLED, cancelled_error(state, "node", escaping)
        elif run.first_error is not None:  # end_on_error: the run's scope caught the abort's cancellation
            status, error = Status.FAILED, run.first_error
        elif run.interrupted is not None:  # rt.interrupt: the run's scope caught the pause's cancellation
            status, error = Status.PAUSED, paused_error(run)
        elif exc is not None:  # the run's scope caught its own cancellation: the timeout
            status, error = Status.TIMED_OUT, timeout_error(state, run.timeout, "node")
        elif run.error is not None:
            status, error = Status.FAILED, run.error
        else:
            status, error, result = Status.COMPLETED, None, run.result
        run.end_unfinished()
        summary = summarize(result) if status is Status.COMPLETED else None
        finished = end_state(state, status, error, summary)
        if run.interrupted is not None and status is Status.PAUSED:
            finished["interrupt"] = {"key": run.interrupted[0], "payload": run.interrupted[1]}
        state.finished_at = state._wall_time(run.offset())
        run.record_nowait(EventKind.RUN_FINISHED, data=finished)
        run.outcome = RunResult(state, result, error)
        return ours, escaping

    def _leave(self) -> None:
        if self._frame_token is not None:
            current_frame.reset(self._frame_token)
            self._frame_token = None
        if self._settings.save_state:
            save_state(self._settings, self.run.state)

    async def __aenter__(self) -> Run:
        self._system_cm = cm = actors.open_system()
        system = await cm.__aenter__()
        try:
            self._begin(system)
        except BaseException:
            await cm.__aexit__(None, None, None)
            raise
        return self.run

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        system_cm = self._system_cm
        assert system_cm is not None
        try:
            ours, escaping = self._end(exc, own_scope=False)
            publisher = self._publisher
            if publisher is not None:
                try:
                    await self.run.log.flush_shielded()
                finally:
                    # The publisher hands on what it holds; leaving the system waits for it.
                    publisher.stop_nowait()
            # Every top-level request has ended with the block: this waits only
            # for the publisher. A cancellation goes in, for the system's scope
            # to catch its own; the block's own error never does (a nursery
            # would put it in a group): it is raised as it is.
            if ours or (escaping is not None and is_cancellation(escaping)):
                await system_cm.__aexit__(exc_type, exc, tb)
            else:
                await system_cm.__aexit__(None, None, None)
        finally:
            self._leave()
        return escaping is None

    def __enter__(self) -> Run:
        if self.consumers:
            msg = (
                f"A synchronous `with` run of {self.run.flow_name!r} cannot feed subscribers or recorders: "
                "delivering them the run's end needs to await. Use `async with` instead."
            )
            raise TypeError(msg)
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            detached = True
        else:
            detached = False
        self._begin(None, detached=detached)
        return self.run

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        try:
            _, escaping = self._end(exc, own_scope=True)
        finally:
            self._leave()
        if escaping is None:
            return True
        if escaping is exc:
            return False
        raise escaping


def open_run(
    settings: RunSettings,
    *,
    metadata: RequestMetadata | None = None,
    subscriptions: Sequence[Subscription] = (),
    where: str | None = None,
    point: ResumePoint | None = None,
) -> OpenRun:
    """One run of the flow *settings* describe, in the caller's task: ``async with open_run(s) as run:``.

    The primitive every node run is built on (see :class:`OpenRun`): the
    block is the run. Its top-level requests are made through ``run.root``
    (``rt.call`` in the block does so). *where* names the API for a context
    that cannot be copied; *point* is a resumed run's stored history.
    """
    return OpenRun(new_run(settings, metadata, where=where, point=point), settings, subscriptions)


async def run_flow(
    settings: RunSettings,
    entry: AnyNode,
    args: tuple[object, ...],
    kwargs: Mapping[str, object],
    *,
    metadata: RequestMetadata | None = None,
    subscriptions: Sequence[Subscription] = (),
    on_result: Callable[[RunResult[object]], object] | None = None,
    point: ResumePoint | None = None,
    fingerprint: str | None = None,
) -> RunResult[object]:
    """Run *entry* once as a run of the flow *settings* describe: :func:`open_run` and one top-level call.

    *on_result* gets the run's result as soon as the run has ended on its
    own, even if this call is then cancelled while the run's publisher
    winds down: a session counts the run by how it really ended. *point*, for
    a resumed run, is its stored history (the run keeps its id);
    *fingerprint* is the flow definition's, recorded for a store.
    """
    entry.check_arguments(args, kwargs)
    block = open_run(settings, metadata=metadata, subscriptions=subscriptions, point=point)
    run = block.run
    if settings.recorders:
        run.started_value = {
            "args": args,
            "kwargs": kwargs,
            "fingerprint": fingerprint,
            "attempt": 1 if point is None else point.attempt,
        }
    try:
        async with block:
            try:
                run.result = await run.root.call(entry, args, kwargs)  # type: ignore[union-attr]
            except Exception as exc:
                run.error = exc
    finally:
        outcome = run.outcome
        if on_result is not None and outcome is not None and outcome.status is not Status.CANCELLED:
            on_result(outcome)
    assert run.outcome is not None
    return run.outcome
