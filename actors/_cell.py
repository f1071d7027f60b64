"""One running actor: its mailbox, task, cancel scope and supervision.

A :class:`Cell` is the kernel's private record of a live actor. Users only see
it through :class:`~actors.ActorRef`.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

import outcome
import trio

from ._exceptions import ActorStoppedError
from ._mailbox import open_mailbox
from ._ref import ActorRef, State

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._actor import Actor
    from ._supervision import Supervision
    from ._system import ActorSystem

# Messages handled back to back from a non-empty mailbox before the actor
# yields to the scheduler anyway, so a busy actor cannot starve its peers.
_FAIRNESS_BATCH = 32


class Cell:
    """The kernel's record of one actor."""

    __slots__ = (
        "_stopped_event",
        "actor",
        "children",
        "factory",
        "failure",
        "handled",
        "id",
        "mailbox_size",
        "name",
        "nursery",
        "parent",
        "receive",
        "ref",
        "restarts",
        "scope",
        "send",
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
        self.send, self.receive = open_mailbox(mailbox_size)
        self.state = State.RUNNING
        self.scope = trio.CancelScope(shield=type(actor).shielded)
        self.nursery: trio.Nursery | None = None
        self.children: dict[int, Cell] = {}
        self.failure: BaseException | None = None
        self.handled = 0
        self.restarts: collections.deque[float] = collections.deque()
        self._stopped_event: trio.Event | None = None
        self.ref: ActorRef[object, object] = ActorRef[object, object]._create(self)
        actor._cell = self

    # -- requests from refs -------------------------------------------------

    def stopped_error(self, action: str) -> ActorStoppedError:
        """The error for *action* on this actor once it no longer takes messages."""
        if self.failure is not None:
            why = f"it failed with {type(self.failure).__name__}: {self.failure}"
        elif self.state is State.STOPPING:
            why = "it is stopping and takes no new messages"
        else:
            why = "it has stopped"
        msg = (
            f"Cannot {action} actor {self.name!r}: {why}. Messages to a stopped actor are never "
            "delivered; catch ActorStoppedError if it may stop first."
        )
        return ActorStoppedError(msg, actor=self.name)

    def request_stop(self) -> None:
        """Take no new messages; the actor ends once its mailbox is drained."""
        if self.state is State.RUNNING:
            self.state = State.STOPPING
            self.send.close()

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
        """The actor's task: start, handle the mailbox in order, stop."""
        try:
            with self.scope:
                async with trio.open_nursery() as nursery:
                    self.nursery = nursery
                    try:
                        await self._live()
                    finally:
                        # Children die with their parent: ask them to drain and end.
                        for child in list(self.children.values()):
                            child.request_stop()
        finally:
            self._finish()

    async def _live(self) -> None:
        if not await self._start():
            return
        receive = self.receive
        batch = 0
        while True:
            try:
                message, reply = receive.receive_nowait()
                batch += 1
                if batch >= _FAIRNESS_BATCH:
                    batch = 0
                    await trio.lowlevel.checkpoint()
            except trio.WouldBlock:
                batch = 0
                try:
                    message, reply = await receive.receive()
                except trio.EndOfChannel:
                    break
            except trio.EndOfChannel:
                break
            self.handled += 1
            if reply is None:
                try:
                    await self.actor.handle(message)
                except Exception as exc:
                    if not await self._supervise(exc):
                        return
            else:
                try:
                    value = await self.actor.handle(message)
                except Exception as exc:
                    reply.send(outcome.Error(exc))
                except BaseException:
                    reply.send(outcome.Error(self.stopped_error("get a reply from")))
                    raise
                else:
                    reply.send(outcome.Value(value))
        await self._stop_hook()

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
                raise
            self.failure = exc

    async def _supervise(self, exc: Exception) -> bool:
        """Apply the supervision policy to *exc*. Return whether to go on."""
        policy = self.supervision
        if policy.kind == "stop":
            self.failure = exc
            self.request_stop()
            await self._stop_hook()
            return False
        if policy.kind == "restart":
            now = trio.current_time()
            restarts = self.restarts
            while restarts and now - restarts[0] > policy.within:
                restarts.popleft()
            if len(restarts) < policy.max_restarts:
                restarts.append(now)
                await self._stop_hook()
                if self.factory is not None:
                    self.actor._cell = None
                    self.actor = self.factory()
                    self.actor._cell = self
                return await self._start()
        self.failure = exc
        raise exc

    def _finish(self) -> None:
        """Mark the actor stopped and fail every ask still in its mailbox."""
        self.state = State.STOPPED
        self.send.close()
        while True:
            try:
                _message, reply = self.receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if reply is not None:
                reply.send(outcome.Error(self.stopped_error("get a reply from")))
        self.receive.close()
        self.nursery = None
        self.system._unregister(self)
        if self._stopped_event is not None:
            self._stopped_event.set()
