"""One running actor: its mailbox, task, nursery and supervision.

A :class:`Cell` is the kernel's private record of a live actor. Users only see
it through :class:`~actors.ActorRef`.
"""

from __future__ import annotations

import collections
import contextvars
from typing import TYPE_CHECKING, NoReturn

import outcome
import trio

from ._actor import Actor
from ._exceptions import ActorStoppedError
from ._mailbox import CLOSED, Mailbox, Reply
from ._ref import ActorRef, State

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from ._supervision import Supervision
    from ._system import ActorSystem

# Messages handled back to back from a non-empty mailbox before the actor
# yields to the scheduler anyway, so a busy actor cannot starve its peers.
_FAIRNESS_BATCH = 32

_DEFAULT_ON_START = Actor.on_start
_DEFAULT_ON_STOP = Actor.on_stop

#: The actor whose task is running, for :func:`actors.open_nursery`. Trio
#: copies it into tasks the actor starts, so it is reset in each actor's task.
current_cell: contextvars.ContextVar[Cell] = contextvars.ContextVar("actors_current_cell")


class _BareScope:
    """The cancel scope of an actor that keeps no nursery, used like a nursery manager."""

    __slots__ = ("cancel_scope",)

    def __init__(self) -> None:
        self.cancel_scope = trio.CancelScope()

    async def __aenter__(self) -> _BareScope:
        self.cancel_scope.__enter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return self.cancel_scope.__exit__(exc_type, exc, tb)


class Cell:
    """The kernel's record of one actor."""

    __slots__ = (
        "_stopped_event",
        "actor",
        "cancelled",
        "children",
        "factory",
        "failure",
        "handled",
        "id",
        "mailbox",
        "mailbox_size",
        "name",
        "nursery",
        "parent",
        "ref",
        "restart_times",
        "restarts",
        "scope",
        "state",
        "supervision",
        "system",
    )

    def __init__(
        self,
        *,
        system: ActorSystem,
        parent: Cell | None,
        actor: Actor[object, object],
        factory: Callable[[], Actor[object, object]] | None,
        id: int,
        name: str,
        mailbox_size: int,
        supervision: Supervision,
    ) -> None:
        self.system = system
        self.parent = parent
        self.actor = actor
        self.factory = factory
        self.id = id
        self.name = name
        self.mailbox_size = mailbox_size
        self.supervision = supervision
        self.mailbox = Mailbox(mailbox_size)
        self.state = State.RUNNING
        self.nursery: trio.Nursery | None = None
        self.scope: trio.CancelScope | None = None
        self.cancelled = False
        self.children: dict[int, Cell] = {}
        self.failure: BaseException | None = None
        self.handled = 0
        self.restarts = 0
        # The times of the restarts within the supervision window; allocated
        # at the first restart.
        self.restart_times: collections.deque[float] | None = None
        self._stopped_event: trio.Event | None = None
        # Not ActorRef[object, object]._create: subscripting costs a typing lookup per actor.
        self.ref: ActorRef[object, object] = ActorRef._create(self)  # type: ignore[assignment]
        actor._cell = self

    # -- requests from refs -------------------------------------------------

    def stopped_error(self, action: str, why: str | None = None) -> ActorStoppedError:
        """The error for *action* on this actor once it no longer takes messages."""
        msg = (
            f"Cannot {action} actor {self.name!r}: {why or self._why_stopped()}. Messages to a "
            "stopped actor are never delivered; catch ActorStoppedError if it may stop first."
        )
        return ActorStoppedError(msg, actor=self.name)

    def _why_stopped(self) -> str:
        if self.failure is not None:
            return f"it failed with {type(self.failure).__name__}: {self.failure}"
        if self.cancelled:
            return "it was cancelled"
        if self.state is State.STOPPING:
            return "it is stopping and takes no new messages"
        return "it has stopped"

    def refuse_own_task(self, action: str, fix: str) -> None:
        """Raise if called from this actor's own task, which would wait forever for itself."""
        if current_cell.get(None) is self:
            msg = f"Cannot {action} actor {self.name!r} from its own task: it would wait forever for itself. {fix}"
            raise RuntimeError(msg)

    def request_stop(self) -> None:
        """Take no new messages; the actor ends once its mailbox is drained."""
        if self.state is State.RUNNING:
            self.state = State.STOPPING
            self.mailbox.close()

    def request_cancel(self) -> None:
        """Cancel the actor and its children at once; queued messages are dropped."""
        if self.state is State.STOPPED:
            return
        self.cancelled = True
        # Cancel before closing the mailbox: closing first would wake an idle
        # actor with end-of-mailbox, and it would run on_stop() as if stopped.
        if self.scope is not None:
            self.scope.cancel()
        self.request_stop()

    async def wait_stopped(self) -> None:
        """Wait until the actor's task has finished."""
        if self.state is State.STOPPED:
            await trio.lowlevel.checkpoint()
            return
        if self._stopped_event is None:
            self._stopped_event = trio.Event()
        await self._stopped_event.wait()

    # -- the actor's task ---------------------------------------------------

    async def run(self) -> None:
        """The actor's task: start, handle the mailbox in order, stop.

        The actor's nursery holds its children, and the nursery's cancel scope
        is the actor's own: :meth:`request_cancel` and shielding act on it. An
        escalated failure is raised from here unwrapped, once the children have
        ended; a single child's escalated failure is re-raised unwrapped too,
        so an escalation reaches the system's block inside one
        :class:`ExceptionGroup` however deep the actor was.

        The mailbox loop is written out here rather than in a helper
        coroutine: an idle actor then holds one frame less.
        """
        failure: Exception | None = None
        current_cell.set(self)
        actor = self.actor  # keeps_nursery and shielded may be set per instance
        mailbox = self.mailbox
        try:
            async with trio.open_nursery() if actor.keeps_nursery else _BareScope() as holder:
                scope = self.scope = holder.cancel_scope
                if isinstance(holder, trio.Nursery):
                    self.nursery = holder
                if actor.shielded:  # the setter recomputes cancel state: only when needed
                    scope.shield = True
                if self.cancelled:
                    scope.cancel()
                try:
                    # Most actors have no hooks: skip them, and their checkpoints
                    # (the loop's first checkpoint notices an early cancel).
                    serving = True
                    if type(actor).on_start is not _DEFAULT_ON_START:
                        await trio.lowlevel.checkpoint_if_cancelled()
                        serving = await self._start()
                    batch = 0
                    while serving:
                        # Yield, or notice a cancel, *before* taking a message:
                        # a message taken from the mailbox is always handled.
                        if batch >= _FAIRNESS_BATCH:
                            batch = 0
                            await trio.lowlevel.checkpoint()
                        else:
                            await trio.lowlevel.checkpoint_if_cancelled()
                        envelope = mailbox.take_nowait()
                        if envelope is None:
                            batch = 0
                            envelope = await mailbox.take()
                        else:
                            batch += 1
                        if envelope is CLOSED:
                            if type(self.actor).on_stop is not _DEFAULT_ON_STOP:
                                await trio.lowlevel.checkpoint_if_cancelled()
                                await self._stop_hook()
                            break
                        serving = await self._handle(*envelope)
                except Exception as exc:
                    failure = self.failure = exc
                    scope.cancel()
                finally:
                    # Children die with their parent: ask them to drain and end.
                    if self.children:
                        for child in list(self.children.values()):
                            child.request_stop()
        except BaseExceptionGroup as group:
            failure = self._escalated(failure, group)
        finally:
            self._finish()
        if failure is not None:
            raise failure

    def _escalated(self, failure: Exception | None, group: BaseExceptionGroup[BaseException]) -> Exception:
        """What to raise when children escalated *group*; *failure* is the actor's own."""
        escalated = group.exceptions
        if failure is not None:
            msg = f"Actor {self.name!r} and its children failed"
            raise BaseExceptionGroup(msg, [failure, *escalated]) from None
        if len(escalated) != 1 or not isinstance(escalated[0], Exception):
            raise group
        self.failure = escalated[0]
        return escalated[0]

    async def _handle(self, message: object, reply: Reply[object] | None) -> bool:
        """Handle one message; return whether the actor goes on serving."""
        self.handled += 1
        if reply is None:
            try:
                await self.actor.handle(message)
            except Exception as exc:
                return await self._supervise(exc)
            return True
        try:
            value = await self.actor.handle(message)
        except Exception as exc:
            reply.send(outcome.Error(exc))
        except BaseException:
            why = "it was cancelled while handling this message"
            reply.send(outcome.Error(self.stopped_error("get a reply from", why)))
            raise
        else:
            reply.send(outcome.Value(value))
        return True

    async def _start(self) -> bool:
        while True:
            try:
                await self.actor.on_start()
            except Exception as exc:
                if not await self._supervise(exc):
                    return False
            else:
                return True

    async def _stop_hook(self) -> None:
        try:
            await self.actor.on_stop()
        except Exception as exc:
            if self.supervision.kind == "escalate":
                self._escalate(exc, "(supervision: escalate)")
            self.failure = exc

    async def _supervise(self, exc: Exception) -> bool:
        """Apply the supervision policy to *exc*. Return whether to go on."""
        policy = self.supervision
        if policy.kind == "stop":
            self.failure = exc
            self.request_stop()
            await self._stop_hook()
            return False
        if policy.kind != "restart":
            self._escalate(exc, "(supervision: escalate)")
        now = trio.current_time()
        restarts = self.restart_times
        if restarts is None:
            restarts = self.restart_times = collections.deque()
        while restarts and now - restarts[0] > policy.within:
            restarts.popleft()
        if len(restarts) >= policy.max_restarts:
            how = f"after {len(restarts)} restarts within {policy.within} s (its supervision's limit)"
            self._escalate(exc, how)
        restarts.append(now)
        self.restarts += 1
        try:
            await self.actor.on_stop()
        except Exception as stop_exc:
            # There is no instance left to restart into: this escalates.
            self._escalate(stop_exc, "(its on_stop() failed during a restart)")
        if self.factory is not None:
            self.actor._cell = None
            self.actor = self.factory()
            self.actor._cell = self
        return await self._start()

    def _escalate(self, exc: Exception, how: str) -> NoReturn:
        """Raise *exc* to the parent, noting which actor escalated it and why."""
        exc.add_note(f"Escalated by actor {self.name!r} {how}.")
        raise exc

    def _finish(self) -> None:
        """Mark the actor stopped and fail every ask still in its mailbox."""
        self.state = State.STOPPED
        for _message, reply in self.mailbox.drain():
            if reply is not None:
                reply.send(outcome.Error(self.stopped_error("get a reply from")))
        self.nursery = self.scope = None
        self.system._unregister(self)
        if self._stopped_event is not None:
            self._stopped_event.set()
