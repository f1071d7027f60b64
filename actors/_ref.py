"""``ActorRef``: the only handle one holds on an actor."""

from __future__ import annotations

import enum
import math
from typing import TYPE_CHECKING, Generic, TypeVar, final

import attrs
import trio

from ._exceptions import AskTimeoutError, MailboxFullError
from ._mailbox import Reply
from ._util import NoPublicConstructor

if TYPE_CHECKING:
    from ._cell import Cell


class State(enum.Enum):
    """Where an actor is in its life."""

    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


def deliver_nowait(cell: Cell, envelope: tuple[object, Reply[object] | None], action: str) -> None:
    """Put *envelope* in *cell*'s mailbox or raise; ``trio.WouldBlock`` if full."""
    if cell.state is not State.RUNNING:
        raise cell.stopped_error(action)
    cell.mailbox.put_nowait(envelope)


async def deliver(cell: Cell, envelope: tuple[object, Reply[object] | None], action: str) -> None:
    """Put *envelope* in *cell*'s mailbox, waiting for room (backpressure)."""
    await trio.lowlevel.checkpoint_if_cancelled()
    if cell.state is not State.RUNNING:
        raise cell.stopped_error(action)
    try:
        cell.mailbox.put_nowait(envelope)
    except trio.WouldBlock:
        try:
            await cell.mailbox.put(envelope)
        except trio.ClosedResourceError:
            raise cell.stopped_error(action) from None


M = TypeVar("M")
R = TypeVar("R")

_STOP_FIX = "Call stop_nowait(): the actor stops once it has handled what is queued."


@final
@attrs.frozen
class ActorStatistics:
    """A snapshot of one actor, from :meth:`ActorRef.statistics`.

    Attributes:
        id: the actor's id, unique within its system.
        name: the actor's name.
        parent: the parent actor's name, or ``None`` for a top-level actor.
        state: ``"running"``, ``"stopping"`` or ``"stopped"``.
        mailbox_used: messages waiting in the mailbox.
        mailbox_size: the mailbox's capacity.
        handled: messages taken from the mailbox so far.
        restarts: how many times the actor has been restarted.

    .. versionadded:: 0.1
    """

    id: int
    name: str
    parent: str | None
    state: str
    mailbox_used: int
    mailbox_size: int
    handled: int
    restarts: int


@final
class ActorRef(Generic[M, R], metaclass=NoPublicConstructor):
    """A handle on a spawned actor: send it messages, ask it, stop or cancel it.

    Refs only come from ``spawn``; they have no public constructor. A ref stays
    valid after its actor stops, and then every send raises
    :class:`~actors.ActorStoppedError`.

    .. versionadded:: 0.1
    """

    __slots__ = ("_cell",)

    def __init__(self, cell: Cell) -> None:
        self._cell = cell

    def __repr__(self) -> str:
        return f"<ActorRef {self._cell.name!r} ({self._cell.state.value})>"

    @property
    def name(self) -> str:
        """The actor's name."""
        return self._cell.name

    @property
    def is_alive(self) -> bool:
        """Whether the actor's task is still running (it may be stopping)."""
        return self._cell.state is not State.STOPPED

    @property
    def failure(self) -> BaseException | None:
        """The exception that stopped the actor, or ``None``."""
        return self._cell.failure

    async def tell(self, message: M) -> None:
        """Send *message* without waiting for it to be handled.

        Blocks only while the mailbox is full (backpressure). If cancelled while
        waiting, the message was not sent.

        Raises:
            ActorStoppedError: the actor is stopping or stopped.
        """
        await deliver(self._cell, (message, None), "tell()")

    def tell_nowait(self, message: M) -> None:
        """Send *message* if the mailbox has room, without blocking.

        Raises:
            MailboxFullError: the mailbox is full; nothing was sent.
            ActorStoppedError: the actor is stopping or stopped.
        """
        try:
            deliver_nowait(self._cell, (message, None), "tell_nowait()")
        except trio.WouldBlock:
            msg = (
                f"Cannot tell_nowait() actor {self._cell.name!r}: its mailbox is full "
                f"({self._cell.mailbox_size} messages). Use await tell() to wait for room."
            )
            raise MailboxFullError(msg) from None

    # ASYNC109: issue 2 asks for ask(timeout=...); it is a convenience over fail_after.
    async def ask(self, message: M, *, timeout: float | None = None) -> R:  # noqa: ASYNC109
        """Send *message* and wait for the handler's reply.

        Waits for mailbox room, then for the reply. The handler's exception, if
        it raises, is raised here. If the caller is cancelled or times out the
        reply is dropped; the message may still be handled.

        Args:
            message: what to send.
            timeout: seconds to wait in all, or ``None`` to wait as long as it takes.

        Raises:
            ValueError: *timeout* is not a positive number.
            AskTimeoutError: no reply within *timeout*.
            ActorStoppedError: the actor stopped (or died) before replying.
            RuntimeError: an actor asked itself, which would wait forever.
        """
        if timeout is None:
            return await self._ask(message)
        if not (isinstance(timeout, int | float) and timeout > 0 and not math.isnan(timeout)):
            msg = f"ask(timeout={timeout!r}) to actor {self._cell.name!r}: timeout must be a positive number of seconds, or None."
            raise ValueError(msg)
        with trio.move_on_after(timeout) as scope:
            return await self._ask(message)
        assert scope.cancelled_caught
        msg = (
            f"Actor {self._cell.name!r} did not reply to ask() within {timeout} s. The message may "
            "still be handled; give a longer timeout, or None to wait as long as it takes."
        )
        raise AskTimeoutError(msg)

    def ask_nowait(self, message: M) -> Reply[R]:
        """Queue *message* as an ask without waiting, and return its :class:`~actors.Reply`.

        The message goes into the mailbox now; ``await reply.wait()`` later for
        the handler's result (or exception). Use it to have several asks in
        flight at once.

        Raises:
            MailboxFullError: the mailbox is full; nothing was sent.
            ActorStoppedError: the actor is stopping or stopped.
        """
        reply: Reply[R] = Reply()
        try:
            deliver_nowait(self._cell, (message, reply), "ask_nowait()")  # type: ignore[arg-type]
        except trio.WouldBlock:
            msg = (
                f"Cannot ask_nowait() actor {self._cell.name!r}: its mailbox is full "
                f"({self._cell.mailbox_size} messages). Use await ask() to wait for room."
            )
            raise MailboxFullError(msg) from None
        return reply

    async def _ask(self, message: M) -> R:
        self._cell.refuse_own_task("await ask() of", "Call the code you need directly instead.")
        reply: Reply[R] = Reply()
        await deliver(self._cell, (message, reply), "ask()")  # type: ignore[arg-type]
        return await reply.wait()

    async def stop(self) -> None:
        """Stop the actor gracefully and wait until it has stopped.

        The actor takes no new messages, handles every message already queued,
        runs ``on_stop``, stops its children, and ends. Cancelling this wait does
        not undo the stop.

        Raises:
            RuntimeError: awaited from the actor's own task, where it would
                wait forever; use :meth:`stop_nowait` there.
        """
        self._cell.refuse_own_task("await stop() of", _STOP_FIX)
        self._cell.request_stop()
        await self._cell.wait_stopped()

    def stop_nowait(self) -> None:
        """Ask the actor to stop gracefully, without waiting for it."""
        self._cell.request_stop()

    def cancel(self) -> None:
        """Cancel the actor at once: its handler is cancelled at its next
        checkpoint, its children with it; queued asks get
        :class:`~actors.ActorStoppedError`."""
        self._cell.request_cancel()

    async def wait_stopped(self) -> None:
        """Wait until the actor's task has ended, however it ends.

        Raises:
            RuntimeError: awaited from the actor's own task, where it would
                wait forever.
        """
        self._cell.refuse_own_task("await wait_stopped() of", _STOP_FIX)
        await self._cell.wait_stopped()

    def statistics(self) -> ActorStatistics:
        """A snapshot of the actor's state and mailbox."""
        cell = self._cell
        return ActorStatistics(
            id=cell.id,
            name=cell.name,
            parent=None if cell.parent is None else cell.parent.name,
            state=cell.state.value,
            mailbox_used=len(cell.mailbox),
            mailbox_size=cell.mailbox_size,
            handled=cell.handled,
            restarts=cell.restarts,
        )
