"""The machinery of a session manager: its settings, its live registry, its actors and their runs.

A :class:`SessionManager <runtime.SessionManager>` (in ``_session``) checks its
arguments into one frozen :class:`ManagerSettings` and keeps its live state in
one :class:`ManagerRegistry`; both are passed to the :class:`ManagerActor` and
every :class:`Holder`, which read nothing else of the manager. This module
never imports ``_session``.

A holder is the only task that opens and closes its workflow; its runs live in
its own nursery, so a workflow is never closed under a run. Leases are counts on
the holder, changed synchronously by the session's task (Trio runs one task at a
time, and no lease change awaits), so the hot path takes no lock and sends no
message; only the first session of a user asks the manager actor for a holder.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
import math
import uuid
from typing import TYPE_CHECKING, TypeVar, final

import attrs
import trio

import actors

from ._exceptions import SessionClosedError, WorkflowBuildError
from ._flow import Flow
from ._metrics import OUTCOMES, Counters, Outcome

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from ._context import RequestMetadata
    from ._core import RunResult
    from ._publisher import Subscription
    from ._util import AnyFlow


C = TypeVar("C")

logger = logging.getLogger("runtime.session")

# Holder states, in the order a holder goes through them.
BUILDING, READY, CLOSING, CLOSED = 0, 1, 2, 3
# Manager states, in the order a manager goes through them.
NEW, OPEN, DRAINING, SHUT = 0, 1, 2, 3


# -- the manager's settings and registry -----------------------------------------


@final
@attrs.frozen
class ManagerSettings:
    """A session manager's settings, checked once by ``SessionManager.__init__``.

    Attributes:
        name: the manager's name, in errors and actor statistics.
        workflow: the shared workflow (shared mode), else ``None``.
        builder: ``builder(user_id)`` (per-user mode), else ``None``.
        max_concurrency: the most runs in flight over all users, or ``None``.
        per_user_max_concurrency: the most runs in flight per user, or ``None``.
        idle_timeout: seconds a per-user workflow is kept unused, or ``None``.
        fail_fast: refuse a run that finds no free slot instead of queueing it.
        shutdown_grace: seconds open sessions get to end at shutdown.
        build_retry_backoff: the back-off after one failed build.
        max_build_retry_backoff: the longest back-off (at least *build_retry_backoff*).
    """

    name: str
    workflow: AnyFlow | None
    builder: Callable[[str], object] | None
    max_concurrency: int | None
    per_user_max_concurrency: int | None
    idle_timeout: float | None
    fail_fast: bool
    shutdown_grace: float
    build_retry_backoff: float
    max_build_retry_backoff: float

    @property
    def per_user(self) -> bool:
        """Whether each user gets a workflow of their own."""
        return self.builder is not None

    def backoff(self, failures: int) -> float:
        """Seconds a user's sessions fail at once after *failures* failed builds in a row.

        It doubles with each failure, from ``build_retry_backoff`` up to
        ``max_build_retry_backoff``.
        """
        return min(self.build_retry_backoff * 2.0 ** (failures - 1), self.max_build_retry_backoff)


@final
@attrs.define(eq=False)
class ManagerRegistry:
    """What a session manager has live: its state, limiter, counters, users and holders.

    Changed synchronously (nothing here awaits), by the session tasks, the
    manager actor and the holders alike.

    Attributes:
        limiter: the global limiter (*max_concurrency*), or ``None``.
        state: ``NEW``, ``OPEN``, ``DRAINING`` or ``SHUT``.
        totals: the counters of every run of the manager.
        users: what the manager keeps of each user it has seen.
        holders: the holders alive now.
        shared: the shared workflow's holder (shared mode, once open).
    """

    limiter: trio.CapacityLimiter | None
    state: int = NEW
    totals: Counters = attrs.field(factory=lambda: Counters(None))
    users: dict[str, UserRecord] = attrs.field(factory=dict)
    holders: set[Holder] = attrs.field(factory=set)
    shared: Holder | None = None
    # Trace and run ids: unique per manager, and cheap (no uuid per run).
    _id_prefix: str = attrs.field(factory=lambda: uuid.uuid4().hex[:8], init=False)
    _ids: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1), init=False)

    def new_id(self, kind: str) -> str:
        """A fresh id for a ``"run"`` or a ``"trace"``, unique within the manager."""
        return f"{kind}-{self._id_prefix}-{next(self._ids)}"


def closed_error(settings: ManagerSettings, state: int) -> SessionClosedError:
    """The error for a session asked of a manager in *state* that is not open."""
    if state == NEW:
        msg = (
            f"SessionManager {settings.name!r} is not open. Open sessions inside "
            "`async with rt.SessionManager(...) as manager:`."
        )
    else:
        when = "is shutting down" if state == DRAINING else "is shut down"
        msg = (
            f"SessionManager {settings.name!r} {when} and takes no new sessions: its `async with` block has "
            "ended. Open sessions inside the block."
        )
    return SessionClosedError(msg)


# -- per-user records ---------------------------------------------------------


@final
class UserRecord:
    """What the manager keeps of one user, across evictions: counters, limit, back-off."""

    __slots__ = ("counters", "failures", "holder", "id", "last_error", "limiter", "retry_at")

    def __init__(self, user_id: str, limit: int | None) -> None:
        self.id = user_id
        self.counters = Counters(user_id)
        self.limiter = None if limit is None else trio.CapacityLimiter(limit)
        self.holder: Holder | None = None
        self.failures = 0
        self.last_error: WorkflowBuildError | None = None
        self.retry_at = -math.inf


# -- runs ---------------------------------------------------------------------


@final
class SessionRequest:
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
        counters: tuple[Counters, ...],
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


class ManagerActor(actors.Actor["UserRecord | None", "Holder"]):
    """The manager's actor: the parent of every holder, and the only one to spawn them.

    Asked for a user's holder, it returns the live one or spawns a new one, so
    two first sessions of one user get one build. It never awaits a build, so
    it never holds up another user.
    """

    def __init__(self, settings: ManagerSettings, registry: ManagerRegistry) -> None:
        self._settings = settings
        self._registry = registry

    async def handle(self, message: UserRecord | None) -> Holder:
        registry = self._registry
        if registry.state != OPEN:
            raise closed_error(self._settings, registry.state)
        user = message
        previous: Holder | None = None
        if user is not None:
            previous = user.holder
            if previous is not None and previous.state < CLOSING:
                return previous
            self._check_backoff(user)
        holder = Holder(self._settings, registry, user, previous)
        if user is not None:
            user.holder = holder
        name = "workflow (shared)" if user is None else f"workflow for user {user.id!r}"
        ref = await self.spawn(holder, name=name)
        registry.holders.add(holder)
        ref.tell_nowait(None)
        return holder

    def _check_backoff(self, user: UserRecord) -> None:
        """Refuse a build of *user*'s workflow while the back-off after a failed one runs."""
        now = trio.current_time()
        if user.last_error is not None and now < user.retry_at:
            cause = user.last_error.__cause__
            last = f"{type(cause).__name__}: {cause}" if cause is not None else str(user.last_error)
            msg = (
                f"The workflow for user {user.id!r} is not built: its builder failed {user.failures} "
                f"time{'s' if user.failures != 1 else ''} in a row, last with {last}. The next build is tried "
                f"after a back-off of {self._settings.backoff(user.failures):g} s, in {user.retry_at - now:.3g} s."
            )
            raise WorkflowBuildError(msg) from cause


class Holder(actors.Actor[None, None]):
    """Holds one workflow: builds it, serves its runs, evicts it when idle, closes it.

    Its one message runs its whole life, so that building and closing happen in
    the same task (an async context manager from a builder is entered and
    exited here). Idle eviction is a cancel scope whose deadline moves: to
    infinity while leased or while a run is in flight (a run may outlive its
    session), to ``now + idle_timeout`` when the last lease or the last run
    ends, whichever is later.
    """

    mailbox_size = 1

    def __init__(
        self,
        settings: ManagerSettings,
        registry: ManagerRegistry,
        user: UserRecord | None,
        previous: Holder | None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.user = user
        self.previous = previous
        self.state = BUILDING
        self.flow: AnyFlow | None = None
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
        self.counters = (registry.totals,) if user is None else (registry.totals, user.counters)

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
        if self.registry.state != OPEN:
            return -math.inf
        timeout = self.settings.idle_timeout
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

    async def _build(self, stack: contextlib.AsyncExitStack) -> AnyFlow:
        """The workflow: the shared one, or the builder's for this holder's user."""
        settings = self.settings
        user = self.user
        if user is None:
            assert settings.workflow is not None
            return settings.workflow
        builder = settings.builder
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
        problem = unrunnable(built)
        if problem is not None:
            msg = (
                f"Building the workflow for user {user.id!r} failed: {call} gave {describe(built)}, "
                f"{problem}. Return an rt.Flow, an awaitable of one, or an async context manager "
                "(or async generator) that yields one."
            )
            raise WorkflowBuildError(msg)
        assert isinstance(built, Flow)
        return built

    def _build_failed(self, exc: WorkflowBuildError) -> None:
        user = self.user
        assert user is not None
        self.error = exc
        user.failures += 1
        user.last_error = exc
        backoff = self.settings.backoff(user.failures)
        user.retry_at = trio.current_time() + backoff
        for c in self.counters:
            c.build_failures += 1
        logger.warning(
            "%s (attempt %d; next build in %g s)", exc, user.failures, backoff, exc_info=exc.__cause__
        )

    async def _serve(self, flow: AnyFlow) -> None:
        """Serve runs until idle past the timeout, or until the manager shuts down."""
        user = self.user
        evicted = False
        async with trio.open_nursery() as runs:
            self.flow = flow
            self.runs = runs
            self.state = READY
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
                        evicted = self.registry.state == OPEN
                        break
            finally:
                self.idle_scope = None
                self.state = CLOSING
                if user is not None:
                    for c in self.counters:
                        c.loaded -= 1
                        if evicted:
                            c.evictions += 1

    async def _close(self, stack: contextlib.AsyncExitStack, exc: BaseException | None) -> None:
        """Exit what the build entered, in this task; a failure to close is logged."""
        self.state = max(self.state, CLOSING)
        try:
            if exc is None:
                await stack.aclose()
            else:
                await stack.__aexit__(type(exc), exc, exc.__traceback__)
        except Exception:
            who = "the shared workflow" if self.user is None else f"the workflow of user {self.user.id!r}"
            logger.exception("Closing %s raised; it is closed anyway.", who)

    def _finish(self) -> None:
        self.state = CLOSED
        self.runs = None
        user = self.user
        if user is not None and user.holder is self:
            user.holder = None
        self.registry.holders.discard(self)
        self.ready.set()
        self.closed.set()

    # -- one run -------------------------------------------------------------------

    def submit(self, request: SessionRequest) -> None:
        """Start the run of *request* in this holder's nursery (synchronous)."""
        runs = self.runs
        if runs is None or self.state != READY:
            msg = (
                f"This session can no longer run: SessionManager {self.settings.name!r} shut down and closed "
                "its workflow. Open sessions inside the manager's `async with` block."
            )
            raise SessionClosedError(msg)
        # Counted before the task starts, so that the holder is never idle in between.
        # The idle deadline is already infinite: the submitting session holds a lease.
        self.in_flight += 1
        runs.start_soon(self._run, request)

    def _run_ended(self) -> None:
        """One run is over: the idle timer starts if it was the last use."""
        self.in_flight -= 1
        if not (self.in_flight or self.leases or self.waiting):
            self.idle_since = trio.current_time()
            self.reschedule()

    async def _run(self, request: SessionRequest) -> None:
        """The task that runs the workflow: it takes and frees the limiters.

        Limiters are taken in a fixed order (the user's, then the global one)
        and freed only after ``_arun`` has returned, which is after every task
        of the run has ended; so a cancelled caller's slot is never reused
        while its run is still winding down.
        """
        limiters = request.limiters
        counters = request.counters
        held = len(limiters) if self.settings.fail_fast else 0
        outcome: Outcome = "cancelled"
        started = -1.0
        try:
            with request.scope:
                while held < len(limiters):
                    limiter = limiters[held]
                    try:
                        # A free slot costs no scheduling round: _arun checkpoints anyway.
                        limiter.acquire_on_behalf_of_nowait(request)
                    except trio.WouldBlock:
                        await limiter.acquire_on_behalf_of(request)
                    held += 1
                started = trio.current_time()
                for c in counters:
                    c.waited(started - request.submitted)
                    c.running += 1
                    c.started += 1
                flow = self.flow
                assert flow is not None
                await flow._arun(
                    (request.message,),
                    {},
                    metadata=request.metadata,
                    subscriptions=request.subscriptions,
                    on_result=request.finished,
                )
        except Exception as exc:
            request.error = exc
            outcome = "error"
        finally:
            if request.result is not None:
                # How the run ended, even if a cancel (a shutdown) came while it wound down.
                outcome = OUTCOMES.get(request.result.status, "error")
            # First, so that an error below cannot keep the workflow loaded for good;
            # nothing here awaits, so the holder acts on it only once the run is over.
            self._run_ended()
            for limiter in reversed(limiters[:held]):
                limiter.release_on_behalf_of(request)
            now = trio.current_time()
            for c in counters:
                if started < 0:
                    c.waited(now - request.submitted)
                else:
                    c.running -= 1
                    elapsed = now - started
                    c.run_time += elapsed
                    if elapsed > c.max_run_time:
                        c.max_run_time = elapsed
                c.count(outcome)
            for subscription in request.subscriptions:
                # A run that never started has no publisher to end its stream.
                subscription._sink.send.close()
            request.done.set()


def _returning(value: AsyncIterator[C]) -> Callable[[], AsyncIterator[C]]:
    return lambda: value


def describe(obj: object) -> str:
    """*obj* for an error message: its type and its repr, cut to 80 characters."""
    text = repr(obj)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(obj).__qualname__} {text}"


def unrunnable(obj: object) -> str | None:
    """Why *obj* cannot serve sessions, or ``None`` if it can."""
    if not isinstance(obj, Flow):
        return "which is not a runnable workflow"
    if obj.entry_point is None and not obj.routines:
        return "which has neither an entry point nor routines"
    if obj.entry_point is not None:
        try:
            obj.entry_point.check_arguments((None,), {})
        except TypeError:
            entry = obj.entry_point
            params = entry.signature.replace(return_annotation=inspect.Signature.empty)
            return f"whose entry point {entry.name}{params} cannot take the message as its one positional argument"
    return None
