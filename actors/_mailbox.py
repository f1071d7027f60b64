"""Bounded mailboxes on Trio memory channels, and the reply slot of an ``ask``."""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Generic, TypeVar, final

import trio

if TYPE_CHECKING:
    import outcome
    from trio import MemoryReceiveChannel, MemorySendChannel

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_MAILBOX_SIZE = 64


def check_mailbox_size(size: object, *, actor: str) -> int:
    """Return *size* as an int, or raise an error naming *actor* and the fix."""
    if type(size) is int and size >= 0:
        return size
    try:
        value = operator.index(size)  # type: ignore[arg-type]
    except TypeError:
        msg = (
            f"mailbox_size={size!r} for actor {actor!r} is not an integer. "
            "Give a whole number of messages, 0 or more (0 means every tell waits for the handler)."
        )
        raise TypeError(msg) from None
    if value < 0:
        msg = (
            f"mailbox_size={value} for actor {actor!r} is below 0. "
            "Give a whole number of messages, 0 or more (0 means every tell waits for the handler)."
        )
        raise ValueError(msg)
    return value


def open_mailbox(
    size: int,
) -> tuple[
    MemorySendChannel[tuple[object, Reply[object] | None]],
    MemoryReceiveChannel[tuple[object, Reply[object] | None]],
]:
    """Open the channel pair behind one actor's mailbox."""
    return trio.open_memory_channel(size)  # unsubscripted: the return type says what it carries


@final
class Reply(Generic[R]):
    """The answer to one ``ask``, still to come: from :meth:`ActorRef.ask_nowait
    <actors.ActorRef.ask_nowait>`.

    .. versionadded:: 0.1
    """

    __slots__ = ("_event", "outcome")

    def __init__(self) -> None:
        # The event is made only if somebody has to wait for the reply.
        self._event: trio.Event | None = None
        self.outcome: outcome.Outcome[R] | None = None

    def send(self, result: outcome.Outcome[R]) -> None:
        """Deliver *result* once; later deliveries are ignored."""
        if self.outcome is None:
            self.outcome = result
            if self._event is not None:
                self._event.set()

    @property
    def done(self) -> bool:
        """Whether the reply has arrived."""
        return self.outcome is not None

    async def wait(self) -> R:
        """Wait for the reply and return it, or raise the handler's exception.

        Raises:
            ActorStoppedError: the actor stopped before replying.
        """
        if self.outcome is None:
            if self._event is None:
                self._event = trio.Event()
            await self._event.wait()
        assert self.outcome is not None
        return self.outcome.unwrap()
