"""The per-user machinery of a session manager: the manager actor, its holders and their runs.

A holder is the only task that opens and closes its workflow; its runs live in
its own nursery, so a workflow is never closed under a run. Leases are counts on
the holder, changed synchronously by the session's task (Trio runs one task at a
time, and no lease change awaits), so the hot path takes no lock and sends no
message; only the first session of a user asks the manager actor for a holder.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
from typing import TYPE_CHECKING, TypeAlias, TypeVar, final

import trio

import actors

from ._exceptions import SessionClosedError, WorkflowBuildError
from ._flow import Flow
from ._metrics import _OUTCOMES, _Counters, _Outcome

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from ._context import RequestMetadata
    from ._publisher import Subscription
    from ._run import RunResult
    from ._session import SessionManager


_AnyFlow: TypeAlias = "Flow[..., object]"  # type: ignore[explicit-any]
C = TypeVar("C")

logger = logging.getLogger("runtime.session")

# Holder states, in the order a holder goes through them.
_BUILDING, _READY, _CLOSING, _CLOSED = 0, 1, 2, 3
# Manager states.
_NEW, _OPEN, _DRAINING, _SHUT = 0, 1, 2, 3


# -- per-user records ---------------------------------------------------------


@final
class _User:
    """What the manager keeps of one user, across evictions: counters, limit, back-off."""

    __slots__ = ("counters", "failures", "holder", "id", "last_error", "limiter", "retry_at")

    def __init__(self, user_id: str, limit: int | None) -> None:
        self.id = user_id
        self.counters = _Counters(user_id)
        self.limiter = None if limit is None else trio.CapacityLimiter(limit)
        self.holder: _Holder | None = None
        self.failures = 0
        self.last_error: WorkflowBuildError | None = None
        self.retry_at = -math.inf


# -- runs ---------------------------------------------------------------------


@final
class _Job:
    """One run asked for by a session: what the run task needs and what it leaves."""

    __slots__ = (
        "counters",
        "done",
        "error",
        "left_early",
        "limiters",
        "message",
        "metadata",
        "result",
        "scope",
        "submitted",
        "subscriptions",
    )

    def __init__(
        self,
        message: object,
        metadata: RequestMetadata,
        subscriptions: tuple[Subscription, ...],
        limiters: tuple[trio.CapacityLimiter, ...],
        counters: tuple[_Counters, ...],
    ) -> None:
        self.message = message
        self.metadata = metadata
        self.subscriptions = subscriptions
        self.limiters = limiters
        self.counters = counters
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        self.result: RunResult[object] | None = None
        self.error: Exception | None = None
        self.left_early = False
        self.submitted = trio.current_time()

    def finished(self, result: RunResult[object]) -> None:
        """The run ended on its own, with *result*."""
        self.result = result


# -- actors ---------------------------------------------------------------------


class _ManagerActor(actors.Actor["_User | None", "_Holder"]):
    """The manager's actor: the parent of every holder, and the only one to spawn them.

    Asked for a user's holder, it returns the live one or spawns a new one, so
    two first sessions of one user get one build. It never awaits a build, so
    it never holds up another user.
    """

    def __init__(self, manager: SessionManager[object]) -> None:
        self._manager = manager

    async def handle(self, message: _User | None) -> _Holder:
        manager = self._manager
        if manager._state != _OPEN:
            raise manager._closed_error()
        user = message
        previous: _Holder | None = None
        if user is not None:
            previous = user.holder
            if previous is not None and previous.state < _CLOSING:
                return previous
            manager._check_backoff(user)
        holder = _Holder(manager, user, previous)
        if user is not None:
            user.holder = holder
        name = "workflow (shared)" if user is None else f"workflow for user {user.id!r}"
        ref = await self.spawn(holder, name=name)
        manager._holders.add(holder)
        ref.tell_nowait(None)
        return holder


class _Holder(actors.Actor[None, None]):
    """Holds one workflow: builds it, serves its runs, evicts it when idle, closes it.

    Its one message runs its whole life, so that building and closing happen in
    the same task (an async context manager from a builder is entered and
    exited here). Idle eviction is a cancel scope whose deadline moves: to
    infinity while leased or while a run is in flight (a run may outlive its
    session), to ``now + idle_timeout`` when the last lease or the last run
    ends, whichever is later.
    """

    mailbox_size = 1

    def __init__(self, manager: SessionManager[object], user: _User | None, previous: _Holder | None) -> None:
        self.manager = manager
        self.user = user
        self.previous = previous
        self.state = _BUILDING
        self.flow: _AnyFlow | None = None
        self.runs: trio.Nursery | None = None
        self.ready = trio.Event()
        self.closed = trio.Event()
        self.error: WorkflowBuildError | None = None
        self.leases = 0
        self.waiting = 0
        # Runs submitted and not yet ended: a run outlives its session's block,
        # and a workflow with runs in flight is not idle.
        self.in_flight = 0
        self.idle_since = trio.current_time()
        self.idle_scope: trio.CancelScope | None = None
        counters = (manager._totals,) if user is None else (manager._totals, user.counters)
        self.counters = counters

    # -- leases (called synchronously from session tasks) ------------------------

    def lease(self) -> None:
        self.leases += 1
        for c in self.counters:
            c.active_leases += 1
        if self.leases == 1 and self.idle_scope is not None:
            self.idle_scope.deadline = math.inf

    def release(self) -> None:
        self.leases -= 1
        for c in self.counters:
            c.active_leases -= 1
        if self.leases == 0:
            self.idle_since = trio.current_time()
            self.reschedule()

    def deadline(self) -> float:
        """When the holder closes if nothing changes: never while leased, awaited or running."""
        if self.leases or self.waiting or self.in_flight:
            return math.inf
        if self.manager._state != _OPEN:
            return -math.inf
        timeout = self.manager._idle_timeout
        if timeout is None or self.user is None:
            return math.inf
        return self.idle_since + timeout

    def reschedule(self) -> None:
        if self.idle_scope is not None:
            self.idle_scope.deadline = self.deadline()

    # -- the holder's life -------------------------------------------------------

    async def handle(self, message: None) -> None:
        self.ref.stop_nowait()
        try:
            if self.previous is not None:
                # One workflow per user at a time: let the evicted one finish closing.
                await self.previous.closed.wait()
                self.previous = None
            stack = contextlib.AsyncExitStack()
            try:
                flow = await self._build(stack)
            except WorkflowBuildError as exc:
                self._build_failed(exc)
                await self._close(stack, exc)
                return
            except BaseException as exc:
                await self._close(stack, exc)
                raise
            try:
                await self._serve(flow)
            except BaseException as exc:
                await self._close(stack, exc)
                raise
            await self._close(stack, None)
        finally:
            self._finish()

    async def _build(self, stack: contextlib.AsyncExitStack) -> _AnyFlow:
        """The workflow: the shared one, or the builder's for this holder's user."""
        manager = self.manager
        user = self.user
        if user is None:
            assert manager._workflow is not None
            return manager._workflow
        builder = manager._builder
        assert builder is not None
        call = f"builder({user.id!r})"
        try:
            built: object = builder(user.id)
            if inspect.isawaitable(built):
                built = await built
            if inspect.isasyncgen(built):
                built = contextlib.asynccontextmanager(_returning(built))()
            if isinstance(built, contextlib.AbstractAsyncContextManager):
                built = await stack.enter_async_context(built)
            elif isinstance(built, contextlib.AbstractContextManager):
                built = stack.enter_context(built)
        except Exception as exc:
            msg = (
                f"Building the workflow for user {user.id!r} failed: {call} raised "
                f"{type(exc).__name__}: {exc}. Fix the builder; sessions of this user get this error "
                "until a build succeeds."
            )
            raise WorkflowBuildError(msg) from exc
        problem = _unrunnable(built)
        if problem is not None:
            msg = (
                f"Building the workflow for user {user.id!r} failed: {call} gave {_describe(built)}, "
                f"{problem}. Return an rt.Flow, an awaitable of one, or an async context manager "
                "(or async generator) that yields one."
            )
            raise WorkflowBuildError(msg)
        assert isinstance(built, Flow)
        return built

    def _build_failed(self, exc: WorkflowBuildError) -> None:
        user = self.user
        assert user is not None
        manager = self.manager
        self.error = exc
        user.failures += 1
        user.last_error = exc
        backoff = min(
            manager._build_retry_backoff * 2 ** (user.failures - 1), manager._max_build_retry_backoff
        )
        user.retry_at = trio.current_time() + backoff
        for c in self.counters:
            c.build_failures += 1
        logger.warning(
            "%s (attempt %d; next build in %g s)", exc, user.failures, backoff, exc_info=exc.__cause__
        )

    async def _serve(self, flow: _AnyFlow) -> None:
        """Serve runs until idle past the timeout, or until the manager shuts down."""
        user = self.user
        evicted = False
        async with trio.open_nursery() as runs:
            self.flow = flow
            self.runs = runs
            self.state = _READY
            if user is not None:
                user.failures = 0
                user.last_error = None
                user.retry_at = -math.inf
                for c in self.counters:
                    c.builds += 1
                    c.loaded += 1
            self.idle_since = trio.current_time()
            self.ready.set()
            try:
                while True:
                    with trio.CancelScope(deadline=self.deadline()) as scope:
                        self.idle_scope = scope
                        await trio.sleep_forever()
                    self.idle_scope = None
                    if not (self.leases or self.waiting or self.in_flight):
                        evicted = self.manager._state == _OPEN
                        break
            finally:
                self.idle_scope = None
                self.state = _CLOSING
                if user is not None:
                    for c in self.counters:
                        c.loaded -= 1
                        if evicted:
                            c.evictions += 1

    async def _close(self, stack: contextlib.AsyncExitStack, exc: BaseException | None) -> None:
        """Exit what the build entered, in this task; a failure to close is logged."""
        self.state = max(self.state, _CLOSING)
        try:
            if exc is None:
                await stack.aclose()
            else:
                await stack.__aexit__(type(exc), exc, exc.__traceback__)
        except Exception:
            who = "the shared workflow" if self.user is None else f"the workflow of user {self.user.id!r}"
            logger.exception("Closing %s raised; it is closed anyway.", who)

    def _finish(self) -> None:
        self.state = _CLOSED
        self.runs = None
        user = self.user
        if user is not None and user.holder is self:
            user.holder = None
        self.manager._holders.discard(self)
        self.ready.set()
        self.closed.set()

    # -- one run -------------------------------------------------------------------

    def submit(self, job: _Job) -> None:
        """Start *job* in this holder's nursery (synchronous)."""
        runs = self.runs
        if runs is None or self.state != _READY:
            msg = (
                f"This session can no longer run: SessionManager {self.manager._name!r} shut down and closed "
                "its workflow. Open sessions inside the manager's `async with` block."
            )
            raise SessionClosedError(msg)
        # Counted before the task starts, so that the holder is never idle in between.
        # The idle deadline is already infinite: the submitting session holds a lease.
        self.in_flight += 1
        runs.start_soon(self._run, job)

    def _run_ended(self) -> None:
        """One run is over: the idle timer starts if it was the last use."""
        self.in_flight -= 1
        if not (self.in_flight or self.leases or self.waiting):
            self.idle_since = trio.current_time()
            self.reschedule()

    async def _run(self, job: _Job) -> None:
        """The task that runs the workflow: it takes and frees the limiters.

        Limiters are taken in a fixed order (the user's, then the global one)
        and freed only after ``_arun`` has returned, which is after every task
        of the run has ended; so a cancelled caller's slot is never reused
        while its run is still winding down.
        """
        limiters = job.limiters
        counters = job.counters
        held = len(limiters) if self.manager._fail_fast else 0
        outcome: _Outcome = "cancelled"
        started = -1.0
        try:
            with job.scope:
                while held < len(limiters):
                    limiter = limiters[held]
                    try:
                        # A free slot costs no scheduling round: _arun checkpoints anyway.
                        limiter.acquire_on_behalf_of_nowait(job)
                    except trio.WouldBlock:
                        await limiter.acquire_on_behalf_of(job)
                    held += 1
                started = trio.current_time()
                for c in counters:
                    c.waited(started - job.submitted)
                    c.running += 1
                    c.started += 1
                flow = self.flow
                assert flow is not None
                await flow._arun(
                    (job.message,),
                    {},
                    metadata=job.metadata,
                    subscriptions=job.subscriptions,
                    on_result=job.finished,
                )
        except Exception as exc:
            job.error = exc
            outcome = "error"
        finally:
            if job.result is not None:
                # How the run ended, even if a cancel (a shutdown) came while it wound down.
                outcome = _OUTCOMES.get(job.result.status, "error")
            # First, so that an error below cannot keep the workflow loaded for good;
            # nothing here awaits, so the holder acts on it only once the run is over.
            self._run_ended()
            for limiter in reversed(limiters[:held]):
                limiter.release_on_behalf_of(job)
            now = trio.current_time()
            for c in counters:
                if started < 0:
                    c.waited(now - job.submitted)
                else:
                    c.running -= 1
                    elapsed = now - started
                    c.run_time += elapsed
                    if elapsed > c.max_run_time:
                        c.max_run_time = elapsed
                c.count(outcome)
            for subscription in job.subscriptions:
                # A run that never started has no publisher to end its stream.
                subscription._sink.send.close()
            job.done.set()


def _returning(value: AsyncIterator[C]) -> Callable[[], AsyncIterator[C]]:
    return lambda: value


def _describe(obj: object) -> str:
    text = repr(obj)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(obj).__qualname__} {text}"


def _unrunnable(obj: object) -> str | None:
    """Why *obj* cannot serve sessions, or ``None`` if it can."""
    if not isinstance(obj, Flow):
        return "which is not a runnable workflow"
    if obj.entry_point is None and not obj._routines:
        return "which has neither an entry point nor routines"
    if obj.entry_point is not None:
        try:
            obj.entry_point.check_arguments((None,), {})
        except TypeError:
            entry = obj.entry_point
            params = entry.signature.replace(return_annotation=inspect.Signature.empty)
            return f"whose entry point {entry.name}{params} cannot take the message as its one positional argument"
    return None
