"""Sessions: a manager that leases workflows to requests, under limits, with metrics.

The manager is a small tree of actors in the nursery its ``async with`` opens::

    SessionManager block    open_system(): nothing below outlives it
    └── session-manager     ManagerActor: spawns holders, one request at a time
        ├── workflow (shared)        Holder: the shared workflow and its runs
        └── workflow for user 'a'    Holder: builds, holds, evicts and closes a's workflow
            └── run tasks            each takes the limiters, runs the flow, counts the outcome

This module holds the public face, :class:`SessionManager` and
:class:`Session`. The manager checks its arguments into a frozen
``ManagerSettings`` and keeps its live state in a ``ManagerRegistry``; the
actors, holders and runs, which get those two and nothing else of the manager,
are in ``_holder``, and the counters behind :class:`WorkflowMetrics` in
``_metrics``.
"""

from __future__ import annotations

import collections.abc
import contextlib
import copy
import math
import operator
import sys
from typing import TYPE_CHECKING, Generic, TypeAlias, TypeVar, final

import trio

import actors

from ._context import RequestMetadata
from ._exceptions import BusyError, SessionClosedError, WorkflowBuildError
from ._flow import SessionView
from ._holder import (
    BUILDING,
    CLOSING,
    DRAINING,
    NEW,
    OPEN,
    READY,
    SHUT,
    Holder,
    ManagerActor,
    ManagerRegistry,
    ManagerSettings,
    SessionRequest,
    UserRecord,
    closed_error,
    describe,
    unrunnable,
)
from ._metrics import WorkflowMetrics
from ._publisher import Subscription
from ._session_block import SessionBlock
from ._util import NoPublicConstructor, check_in_trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
    from contextlib import AbstractAsyncContextManager
    from types import TracebackType
    from typing import Self

    from ._flow import Flow
    from ._publisher import Overflow
    from ._util import AnyFlow


T = TypeVar("T")

# A flow of any signature: a session passes the message as its one argument,
# and that is checked when the workflow is built.
_FlowOf: TypeAlias = "Flow[..., T]"  # type: ignore[explicit-any]
# What a per-user builder may give for a user.
_Built: TypeAlias = (
    "_FlowOf[T] | Awaitable[_FlowOf[T]] | AbstractAsyncContextManager[_FlowOf[T]] | AsyncIterator[_FlowOf[T]]"
)


def _check_limit(name: str, value: object) -> int | None:
    if value is None:
        return None
    try:
        if isinstance(value, bool):  # an int, but never meant as a number of runs
            raise TypeError
        limit = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        msg = (
            f"SessionManager({name}={value!r}): {name} must be a whole number of runs, or None for no limit."
        )
        raise TypeError(msg) from None
    if limit <= 0:
        msg = f"SessionManager({name}={limit}): {name} must be 1 or more, or None for no limit."
        raise ValueError(msg)
    return limit


def _check_seconds(name: str, value: object, *, allow_none: bool, allow_zero: bool) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        ok = False
    else:
        ok = value >= 0 if allow_zero else value > 0
    if not ok:
        what = "0 or more seconds" if allow_zero else "a positive number of seconds"
        msg = f"SessionManager({name}={value!r}): {name} must be {what}{', or None' if allow_none else ''}."
        raise ValueError(msg)
    assert isinstance(value, int | float)
    return float(value)


# -- the public face ----------------------------------------------------------------


@final
class SessionManager(Generic[T]):
    """Serves a workflow to sessions: one shared workflow, or one per user.

    Open it with ``async with``; its actors (a manager actor, one holder per
    workflow, and every run) live in the nursery that block opens, and nothing
    of them outlives it::

        async with rt.SessionManager(workflow=flow, max_concurrency=8) as manager:
            async with manager.session(user_id="ada", conversation_id="c1") as session:
                answer = await session.run("hello")

    **Shared mode** (``workflow=``) serves one Flow to every session.
    **Per-user mode** (``builder=``) builds a Flow for each user on that user's
    first session, in a holder task of the manager's nursery: at most one build
    per user at a time, and a build never holds up another user. The builder is
    called as ``builder(user_id)`` and may return a Flow, an awaitable of one,
    or an async context manager (or async generator) that yields one; that
    context manager is entered and exited by the same holder task. A requester
    cancelled during a build leaves the build to finish (and be cached) or fail
    (and be closed). After a failed build, the user's sessions fail at once
    with :class:`~runtime.WorkflowBuildError` until a back-off has passed;
    it doubles with each failure in a row, from *build_retry_backoff* up to
    *max_build_retry_backoff*.

    A per-user workflow with no open session and no run in flight for
    *idle_timeout* seconds is closed (evicted); its next session builds it
    again. The idle timer is a cancel-scope deadline pushed back by each
    session, not a periodic sweep, and it never runs while a session holds
    the workflow or a run (which may outlive its session) is in flight. Metrics survive
    eviction: the manager keeps a small record (counters, limiter, back-off)
    for each user it has seen, until its block ends.

    Concurrency: each run is a task of its workflow's holder, and that task
    takes the user's limiter (*per_user_max_concurrency*) and then the global
    one (*max_concurrency*), in that fixed order, and frees them only after the
    run has ended. A caller cancelled mid-run cancels its run first, so the
    limits are never exceeded, even under disconnects. The user's limiter comes
    first so that a request waiting for its user's slot does not hold a global
    slot that another user could use. With *fail_fast*, a run finding no free
    slot raises :class:`~runtime.BusyError` at once instead of queueing.

    Shutdown is one way. Leaving the block refuses new sessions
    (:class:`~runtime.SessionClosedError`), closes idle workflows, and lets open
    sessions finish within *shutdown_grace* seconds; then whatever is left is
    cancelled (a run cancelled so raises ``SessionClosedError`` in its session)
    and every workflow is closed before the block ends. If the block ends with
    an exception, or is cancelled, everything is cancelled at once.

    Args:
        workflow: the shared workflow (shared mode).
        builder: ``builder(user_id)`` gives a user's workflow (per-user mode).
        max_concurrency: the most runs in flight at once over all users, or
            ``None`` for no limit.
        per_user_max_concurrency: the most runs in flight at once per user,
            or ``None`` for no limit. In shared mode it applies to sessions
            opened with a ``user_id``.
        idle_timeout: seconds a per-user workflow is kept with no open
            session, or ``None`` to keep it until shutdown.
        fail_fast: raise :class:`~runtime.BusyError` instead of waiting for a slot.
        shutdown_grace: seconds open sessions get to end at shutdown.
        build_retry_backoff: seconds a user's sessions fail at once after a
            failed build; doubled for each further failure in a row.
        max_build_retry_backoff: the longest back-off.
        name: the manager's name, in errors and actor statistics.

    Raises:
        TypeError: not exactly one of *workflow* and *builder*, a *workflow*
            that is not a runnable Flow, a *builder* that is not callable, or a
            limit that is not a whole number.
        ValueError: a limit below 1, or a negative or NaN time.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        *,
        workflow: _FlowOf[T] | None = None,
        builder: Callable[[str], _Built[T]] | None = None,
        max_concurrency: int | None = 8,
        per_user_max_concurrency: int | None = None,
        idle_timeout: float | None = 900.0,
        fail_fast: bool = False,
        shutdown_grace: float = 10.0,
        build_retry_backoff: float = 1.0,
        max_build_retry_backoff: float = 60.0,
        name: str = "session-manager",
    ) -> None:
        if (workflow is None) == (builder is None):
            msg = (
                "SessionManager needs exactly one of workflow= (one workflow shared by every session) "
                "or builder= (one workflow per user, built on the user's first session)."
            )
            raise TypeError(msg)
        if workflow is not None:
            problem = unrunnable(workflow)
            if problem is not None:
                msg = f"SessionManager(workflow=...) got {describe(workflow)}, {problem}. Pass an rt.Flow."
                raise TypeError(msg)
        if builder is not None and not callable(builder):
            msg = (
                f"SessionManager(builder=...) got {describe(builder)}, which is not callable. Pass a function "
                "called as builder(user_id) that gives the user's rt.Flow."
            )
            raise TypeError(msg)
        limit = _check_limit("max_concurrency", max_concurrency)
        per_user_limit = _check_limit("per_user_max_concurrency", per_user_max_concurrency)
        idle_timeout_s = _check_seconds("idle_timeout", idle_timeout, allow_none=True, allow_zero=False)
        grace = _check_seconds("shutdown_grace", shutdown_grace, allow_none=False, allow_zero=True)
        backoff = _check_seconds(
            "build_retry_backoff", build_retry_backoff, allow_none=False, allow_zero=True
        )
        max_backoff = _check_seconds(
            "max_build_retry_backoff", max_build_retry_backoff, allow_none=False, allow_zero=True
        )
        assert grace is not None
        assert backoff is not None
        assert max_backoff is not None
        shared: AnyFlow | None = workflow  # type: ignore[assignment]
        self._settings = ManagerSettings(
            name=name,
            workflow=shared,
            builder=builder,
            max_concurrency=limit,
            per_user_max_concurrency=per_user_limit,
            idle_timeout=idle_timeout_s,
            fail_fast=bool(fail_fast),
            shutdown_grace=grace,
            build_retry_backoff=backoff,
            max_build_retry_backoff=max(backoff, max_backoff),
        )
        self._registry = ManagerRegistry(None if limit is None else trio.CapacityLimiter(limit))
        self._ref: actors.ActorRef[UserRecord | None, Holder] | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    def __repr__(self) -> str:
        mode = "per-user" if self._settings.per_user else "shared"
        state = ("new", "open", "shutting down", "shut down")[self._registry.state]
        return f"<SessionManager {self._settings.name!r} {mode} {state}>"

    @property
    def name(self) -> str:
        """The manager's name."""
        return self._settings.name

    @property
    def per_user(self) -> bool:
        """Whether each user gets a workflow of their own (``builder=`` was given)."""
        return self._settings.per_user

    @property
    def is_open(self) -> bool:
        """Whether the manager takes new sessions now."""
        return self._registry.state == OPEN

    # -- lifetime ---------------------------------------------------------------

    async def __aenter__(self) -> Self:
        """Open the manager's nursery and actors; in shared mode, start serving the workflow.

        Raises:
            RuntimeError: the manager was opened before (it is one-way).
            OutsideTrioError: entered outside Trio (from asyncio, say).
        """
        check_in_trio(f"async with SessionManager({self._settings.name!r})", how="entered")
        registry = self._registry
        if registry.state != NEW:
            msg = (
                f"SessionManager {self._settings.name!r} was already opened once; a manager cannot be reopened "
                "after shutdown. Build a new rt.SessionManager(...)."
            )
            raise RuntimeError(msg)
        registry.state = OPEN
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            system = await stack.enter_async_context(actors.open_system())
            self._ref = await system.spawn(ManagerActor(self._settings, registry), name=self._settings.name)
            if not self._settings.per_user:
                registry.shared = await self._ref.ask(None)
                await registry.shared.ready.wait()
        except BaseException:
            registry.state = SHUT
            if not await stack.__aexit__(*sys.exc_info()):
                raise
        self._stack = stack
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        """Shut down: refuse new sessions, drain within the grace period, cancel the rest.

        Blocks until every holder, run and workflow of the manager has ended.
        If the block raised (or this task is cancelled while draining),
        everything is cancelled at once.
        """
        stack = self._stack
        assert stack is not None
        assert self._ref is not None
        registry = self._registry
        registry.state = DRAINING
        ref = self._ref
        try:
            for holder in list(registry.holders):
                holder.reschedule()
            if exc is None:
                with trio.move_on_after(self._settings.shutdown_grace):
                    await ref.stop()
            if ref.is_alive:
                ref.cancel()
            await ref.wait_stopped()
        except BaseException:
            ref.cancel()
            raise
        finally:
            registry.state = SHUT
            try:
                suppressed = await stack.__aexit__(exc_type, exc, tb)
            except BaseExceptionGroup as group:
                # The body's own error comes out of the actor system's nursery wrapped
                # in a group: raise it as the body raised it.
                if exc is not None and len(group.exceptions) == 1 and group.exceptions[0] is exc:
                    suppressed = False
                else:
                    raise
        return bool(suppressed)

    # -- sessions -----------------------------------------------------------------

    def session(
        self,
        *,
        user_id: str | None = None,
        conversation_id: str | None = None,
        user_message_id: str | None = None,
        parent_id: str | None = None,
        parent_name: str | None = None,
        trace_id: str | None = None,
        metadata: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> AbstractAsyncContextManager[Session[T]]:
        """A lease on the workflow for one request: ``async with manager.session(...) as session:``.

        Entering the block waits, in per-user mode, for the user's workflow to
        be built (by a holder task: if this wait is cancelled, the build goes
        on and is cached). The lease keeps the workflow from eviction until the
        block ends; after it, the session refuses use.

        Args:
            user_id: who asks; required in per-user mode.
            conversation_id: the conversation, passed to runs.
            user_message_id: the user's message, passed to runs.
            parent_id: the caller's step id, for cross-workflow tracing.
            parent_name: the caller's step name.
            trace_id: the trace this request belongs to; a fresh one by default.
            metadata: extra values for the runs' ``rt.request().extra``; each
                run gets its own deep copy.
            headers: request headers, passed to runs as pairs.

        Returns:
            An async context manager whose ``async with`` gives the
            :class:`Session` and ends its lease.

        Raises:
            TypeError: per-user mode and no *user_id*.
            SessionClosedError: (on entering) the manager is not open.
            WorkflowBuildError: (on entering) the user's workflow could not be
                built, now or within the back-off after a failed build.

        .. versionadded:: 0.1
        """
        if self._settings.per_user and user_id is None:
            msg = (
                f"SessionManager {self._settings.name!r} builds one workflow per user, so session() needs a user: "
                "call manager.session(user_id=...)."
            )
            raise TypeError(msg)
        if user_id is not None and not isinstance(user_id, str):
            msg = f"session(user_id={user_id!r}): user_id must be a string."
            raise TypeError(msg)
        if headers is None:
            pairs: tuple[tuple[str, str], ...] = ()
        elif isinstance(headers, collections.abc.Mapping):
            pairs = tuple((str(k), str(v)) for k, v in headers.items())
        else:
            pairs = tuple((str(k), str(v)) for k, v in headers)
        extra = () if not metadata else tuple(copy.deepcopy(dict(metadata)).items())
        return _Opener(
            self,
            user_id,
            RequestMetadata(
                user_id=user_id,
                conversation_id=conversation_id,
                user_message_id=user_message_id,
                trace_id=trace_id if trace_id is not None else self._registry.new_id("trace"),
                parent_id=parent_id,
                parent_name=parent_name,
                headers=pairs,
                extra=extra,
            ),
        )

    async def _lease(self, user_id: str | None) -> tuple[Holder, UserRecord | None]:
        """Take a lease on the workflow for *user_id*, building it first if need be."""
        await trio.lowlevel.checkpoint_if_cancelled()
        settings = self._settings
        registry = self._registry
        if registry.state != OPEN:
            raise closed_error(settings, registry.state)
        user: UserRecord | None = None
        if user_id is not None:
            user = registry.users.get(user_id)
            if user is None:
                user = registry.users[user_id] = UserRecord(user_id, settings.per_user_max_concurrency)
        if not settings.per_user:
            holder = registry.shared
            assert holder is not None
            if holder.state != READY:
                raise closed_error(settings, registry.state)
            holder.lease()
            if user is not None:
                user.counters.active_leases += 1
            return holder, user
        assert user is not None
        while True:
            holder_or_none = user.holder
            if holder_or_none is None or holder_or_none.state >= CLOSING:
                assert self._ref is not None
                try:
                    holder = await self._ref.ask(user)
                except actors.ActorStoppedError:
                    raise closed_error(settings, registry.state) from None
            else:
                holder = holder_or_none
            if holder.state == BUILDING:
                holder.waiting += 1
                try:
                    await holder.ready.wait()
                finally:
                    holder.waiting -= 1
                    if holder.state == READY and not holder.leases:
                        holder.reschedule()
            if holder.state == READY:
                holder.lease()
                return holder, user
            if holder.error is not None:
                raise WorkflowBuildError(str(holder.error)) from holder.error.__cause__
            if registry.state != OPEN:
                msg = (
                    f"SessionManager {settings.name!r} shut down before the workflow of user {user.id!r} was "
                    "built, so this session was not opened."
                )
                raise SessionClosedError(msg)
            # Evicted between the build and our wake-up (a tiny idle_timeout): go again.

    def _gone_error(self) -> SessionClosedError:
        msg = (
            f"The run was cancelled because SessionManager {self._settings.name!r} shut down: this session was "
            f"still open when its shutdown_grace of {self._settings.shutdown_grace:g} s ran out."
        )
        return SessionClosedError(msg)

    # -- metrics ------------------------------------------------------------------

    def metrics(self, user_id: str | None = None) -> WorkflowMetrics:
        """A frozen snapshot of the counters, for one user or for the whole manager.

        Never blocks and never waits for a run. A user never seen gives zeros.

        Args:
            user_id: the user, or ``None`` for every run of the manager.
        """
        if user_id is None:
            return self._registry.totals.snapshot()
        user = self._registry.users.get(user_id)
        return WorkflowMetrics(user_id) if user is None else user.counters.snapshot()

    def users(self) -> list[str]:
        """The users whose per-user workflow is built and held now."""
        return [
            u.id for u in self._registry.users.values() if u.holder is not None and u.holder.state == READY
        ]


@final
class _Opener(Generic[T]):
    """What :meth:`SessionManager.session` returns: enter it for a :class:`Session`."""

    __slots__ = ("_manager", "_metadata", "_session", "_user_id")

    def __init__(self, manager: SessionManager[T], user_id: str | None, metadata: RequestMetadata) -> None:
        self._manager = manager
        self._user_id = user_id
        self._metadata = metadata
        self._session: Session[T] | None = None

    async def __aenter__(self) -> Session[T]:
        if self._session is not None:
            msg = "This manager.session(...) was entered already; call manager.session(...) for each `async with`."
            raise RuntimeError(msg)
        manager = self._manager
        holder, user = await manager._lease(self._user_id)
        self._session = session = Session[T]._create(manager, holder, user, self._metadata)
        return session

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        session = self._session
        assert session is not None
        session._close()


class _SessionType(NoPublicConstructor):
    """``rt.Session``'s metaclass: a lease comes from ``manager.session()``; calling the class builds a block.

    ``rt.Session(...)`` is Railtracks' deprecated form of one run (see
    ``_session_block``); a lease never had a public constructor, so the call
    is free for it. ``isinstance(x, rt.Session)`` holds for both, and for an
    ``rt.SessionView`` (``FlowConnection.session``, ``@rt.session``'s second value).
    """

    def __call__(cls, *args: object, **kwargs: object) -> SessionBlock:  # type: ignore[override]
        return SessionBlock(*args, **kwargs)  # type: ignore[arg-type]

    def __instancecheck__(cls, instance: object) -> bool:
        return isinstance(instance, SessionBlock | SessionView) or super().__instancecheck__(instance)


@final
class Session(Generic[T], metaclass=_SessionType):
    """A lease on a workflow for one request; from :meth:`SessionManager.session`.

    Calling ``rt.Session(...)`` does not make a lease: it is Railtracks'
    deprecated ``Session`` block: one run of the ``rt.call`` requests made in it
    (``async with rt.Session(timeout=30): await rt.call(node)``); see
    ``docs/``. Use :class:`~runtime.Flow` in new code.

    Good only inside its ``async with`` block. Each :meth:`run` or
    :meth:`stream` is an independent run of the workflow, with this session's
    request metadata (a fresh run id each time) visible to its nodes through
    ``rt.request()``.

    Attributes:
        user_id: who asked (``None`` for an anonymous shared-mode session).
        conversation_id: the conversation.
        user_message_id: the user's message.
        parent_id: the caller's step id.
        parent_name: the caller's step name.
        trace_id: the trace every run of this session belongs to.
        headers: the request headers, as pairs.

    .. versionadded:: 0.1
    """

    __slots__ = ("_closed", "_counters", "_holder", "_limiters", "_manager", "_metadata", "_user")

    def __init__(
        self, manager: SessionManager[T], holder: Holder, user: UserRecord | None, metadata: RequestMetadata
    ) -> None:
        self._manager = manager
        self._holder = holder
        self._user = user
        self._metadata = metadata
        self._closed = False
        limiters: list[trio.CapacityLimiter] = []
        if user is not None and user.limiter is not None:
            limiters.append(user.limiter)
        if manager._registry.limiter is not None:
            limiters.append(manager._registry.limiter)
        self._limiters = tuple(limiters)
        self._counters = (
            (manager._registry.totals,) if user is None else (manager._registry.totals, user.counters)
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Session user={self._metadata.user_id!r} conversation={self._metadata.conversation_id!r} {state}>"

    @property
    def user_id(self) -> str | None:
        """Who asked."""
        return self._metadata.user_id

    @property
    def conversation_id(self) -> str | None:
        """The conversation."""
        return self._metadata.conversation_id

    @property
    def user_message_id(self) -> str | None:
        """The user's message."""
        return self._metadata.user_message_id

    @property
    def parent_id(self) -> str | None:
        """The caller's step id."""
        return self._metadata.parent_id

    @property
    def parent_name(self) -> str | None:
        """The caller's step name."""
        return self._metadata.parent_name

    @property
    def trace_id(self) -> str | None:
        """The trace every run of this session belongs to."""
        return self._metadata.trace_id

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """The request headers, as pairs."""
        return self._metadata.headers

    @property
    def closed(self) -> bool:
        """Whether the session's block has ended."""
        return self._closed

    @property
    def workflow(self) -> _FlowOf[T]:
        """The workflow this session runs (the shared one, or the user's).

        Raises:
            SessionClosedError: the session's block has ended.
        """
        self._check_open()
        flow = self._holder.flow
        assert flow is not None
        return flow  # type: ignore[return-value]

    def _check_open(self) -> None:
        if self._closed:
            who = "" if self._metadata.user_id is None else f" (user {self._metadata.user_id!r})"
            msg = (
                f"This session{who} was used after its `async with manager.session(...)` block ended. "
                "A session is good for its block only; open a new one for each request."
            )
            raise SessionClosedError(msg)

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._holder.release()
            if self._user is not None and not self._manager._settings.per_user:
                self._user.counters.active_leases -= 1

    def _submit(self, message: object, subscriptions: tuple[Subscription, ...]) -> SessionRequest:
        """Count the request, take the slots now if failing fast, and start the run task."""
        self._check_open()
        base = self._metadata
        metadata = RequestMetadata(
            user_id=base.user_id,
            conversation_id=base.conversation_id,
            user_message_id=base.user_message_id,
            message=message,
            trace_id=base.trace_id,
            run_id=self._manager._registry.new_id("run"),
            parent_id=base.parent_id,
            parent_name=base.parent_name,
            headers=base.headers,
            extra=copy.deepcopy(base.extra) if base.extra else (),
        )
        request = SessionRequest(message, metadata, subscriptions, self._limiters, self._counters)
        manager = self._manager
        if manager._settings.fail_fast:
            self._take_slots_nowait(request)
        try:
            self._holder.submit(request)
        except BaseException:
            for limiter in reversed(request.limiters if manager._settings.fail_fast else ()):
                limiter.release_on_behalf_of(request)
            raise
        for c in self._counters:
            c.requests += 1
            c.queued += 1
        return request

    def _take_slots_nowait(self, request: SessionRequest) -> None:
        taken: list[trio.CapacityLimiter] = []
        for limiter in request.limiters:
            try:
                limiter.acquire_on_behalf_of_nowait(request)
            except trio.WouldBlock:
                for held in reversed(taken):
                    held.release_on_behalf_of(request)
                for c in self._counters:
                    c.requests += 1
                    c.rejected += 1
                if self._user is not None and limiter is self._user.limiter:
                    what = f"user {self._user.id!r} already has per_user_max_concurrency={limiter.total_tokens} runs"
                else:
                    what = f"max_concurrency={limiter.total_tokens} runs are already"
                msg = (
                    f"No free run slot: {what} in flight, and SessionManager {self._manager.name!r} was "
                    "opened with fail_fast=True. Retry later, or open it with fail_fast=False to queue."
                )
                raise BusyError(msg) from None
            taken.append(limiter)

    async def run(self, message: object) -> T:
        """Run the workflow on *message* and return its result.

        The entry node gets *message* as its one positional argument. Waits
        for a concurrency slot (unless ``fail_fast``), then for the run. If the
        caller is cancelled, the run is cancelled and this waits for it to end
        (its slot is free again when this returns); nothing of the run is left.

        Raises:
            SessionClosedError: the session's block has ended, or the manager
                shut down and cancelled the run after its grace period.
            BusyError: ``fail_fast`` and no free slot.
            RunTimeoutError: the run passed its flow's timeout.
            Exception: the node error that ended the run.
        """
        request = self._submit(message, ())
        try:
            await request.done.wait()
        except BaseException:
            request.scope.cancel()
            with trio.CancelScope(shield=True):
                await request.done.wait()
            raise
        return self._outcome(request)  # type: ignore[return-value]

    def _outcome(self, request: SessionRequest) -> object:
        if request.result is not None:
            return request.result.unwrap()
        if request.error is not None:
            raise request.error
        raise self._manager._gone_error()

    @contextlib.asynccontextmanager
    async def stream(
        self, message: object, *, buffer: int = 256, overflow: Overflow = "block"
    ) -> AsyncIterator[Subscription]:
        """Run the workflow on *message* and stream its events: ``async with session.stream(m) as events:``.

        Iterate ``events`` for every :class:`~runtime.Event` of the run, the
        ``run_finished`` event last (its ``data`` holds the status, result and
        error). A run that fails does not raise here: its error is in that
        event. Leaving the block early cancels the run, waits for it to end,
        and is not an error.

        Args:
            message: the entry node's one positional argument.
            buffer: events buffered for this stream.
            overflow: ``"block"`` holds the run back while the buffer is full;
                ``"fail"`` ends the stream with
                :class:`~runtime.SubscriberOverflowError`.

        Raises:
            SessionClosedError: the session's block has ended; or, on leaving
                the block, the manager shut down and cancelled the run.
            BusyError: ``fail_fast`` and no free slot.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        subscription = Subscription(buffer, overflow)
        request = self._submit(message, (subscription,))
        try:
            yield subscription
        finally:
            subscription.close()
            if not request.done.is_set():
                if subscription.finished is None:
                    # Left before the final event: end the run. (After it, the
                    # run is only winding down, and ends as it ended.)
                    request.left_early = True
                    request.scope.cancel()
                with trio.CancelScope(shield=True):
                    await request.done.wait()
        if request.result is None and not request.left_early:
            if request.error is not None:
                raise request.error
            raise self._manager._gone_error()
