"""Bounded mailboxes, and the reply slot of an ``ask``."""

from __future__ import annotations

import collections
import operator
from typing import TYPE_CHECKING, Final, Generic, TypeVar, final

import outcome
import trio
from trio.lowlevel import Abort, enable_ki_protection

if TYPE_CHECKING:
    from trio.lowlevel import Task

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


Envelope = tuple[object, "Reply[object] | None"]

#: What :meth:`Mailbox.take_nowait` returns once the mailbox is closed and empty.
CLOSED: Final[Envelope] = (None, None)


@final
class Mailbox:
    """One actor's bounded FIFO of envelopes: many senders, one receiver (the actor's task).

    This is Trio's memory channel of *capacity*, specialized to one receiver:
    the same algorithm and guarantees (bounded; a full mailbox makes senders
    wait, in FIFO order; capacity 0 is a rendezvous; nothing is dropped, what
    is queued when the actor ends comes back from :meth:`drain`), in one small
    object rather than a channel state and two endpoints. An actor is made
    for every node invocation and its mailbox is on that path: opening a
    ``trio.open_memory_channel`` cost ~6 µs and ~1.6 KB per actor, which put
    ``flow.invoke`` and idle actors over their budgets. A task waiting to
    send or to receive is parked with :func:`trio.lowlevel.wait_task_rescheduled`,
    as in Trio's channel, so every wait can be cancelled and a cancelled wait
    leaves nothing behind.
    """

    __slots__ = ("_capacity", "_head", "_receiver", "_rest", "_senders", "closed")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        # The buffer: the oldest envelope, then the others. Most mailboxes
        # never hold more than one message, so the deque (a 600-byte block)
        # is made only for a second one.
        self._head: Envelope | None = None
        self._rest: collections.deque[Envelope] | None = None
        # The actor's task while it waits for a message.
        self._receiver: Task | None = None
        # Tasks waiting for room, with what each sends, oldest first; made at
        # the first wait.
        self._senders: dict[Task, Envelope] | None = None
        self.closed = False

    def __len__(self) -> int:
        """The messages waiting in the buffer."""
        if self._head is None:
            return 0
        return 1 + len(self._rest) if self._rest else 1

    def _append(self, envelope: Envelope) -> None:
        if self._head is None:
            self._head = envelope
        elif self._rest is None:
            self._rest = collections.deque((envelope,))
        else:
            self._rest.append(envelope)

    def _popleft(self) -> Envelope:
        envelope = self._head
        assert envelope is not None
        rest = self._rest
        self._head = rest.popleft() if rest else None
        return envelope

    @enable_ki_protection
    def put_nowait(self, envelope: Envelope) -> None:
        """Queue *envelope*, or hand it to the waiting receiver.

        Raises:
            trio.WouldBlock: the buffer is full.
            trio.ClosedResourceError: the mailbox is closed.
        """
        if self.closed:
            raise trio.ClosedResourceError
        receiver = self._receiver
        if receiver is not None:
            self._receiver = None
            trio.lowlevel.reschedule(receiver, outcome.Value(envelope))
        elif len(self) < self._capacity:
            self._append(envelope)
        else:
            raise trio.WouldBlock

    @enable_ki_protection
    async def put(self, envelope: Envelope) -> None:
        """Queue *envelope*, waiting for room; FIFO among waiting senders.

        Raises:
            trio.ClosedResourceError: the mailbox is or was closed while waiting.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self._senders:  # waiting senders go first
            try:
                self.put_nowait(envelope)
            except trio.WouldBlock:
                pass
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return
        elif self.closed:
            raise trio.ClosedResourceError
        senders = self._senders
        if senders is None:
            senders = self._senders = {}
        task = trio.lowlevel.current_task()
        senders[task] = envelope

        def abort(_: object) -> Abort:
            del senders[task]
            return Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    @enable_ki_protection
    def take_nowait(self) -> Envelope | None:
        """The next envelope; ``None`` if there is none yet, :data:`CLOSED` if there will be none."""
        senders = self._senders
        if self._head is not None:
            envelope = self._popleft()
            if senders:  # room for the oldest waiting sender
                task = next(iter(senders))
                self._append(senders.pop(task))
                trio.lowlevel.reschedule(task)
            return envelope
        if senders:  # a rendezvous (capacity 0)
            task = next(iter(senders))
            envelope = senders.pop(task)
            trio.lowlevel.reschedule(task)
            return envelope
        if self.closed:
            return CLOSED
        return None

    @enable_ki_protection
    async def take(self) -> Envelope:
        """Wait for the next envelope (:data:`CLOSED` once closed and empty).

        Only the actor's own task receives, after :meth:`take_nowait` found
        nothing; a cancelled wait takes nothing.
        """
        envelope = self.take_nowait()
        if envelope is not None:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return envelope
        assert self._receiver is None, "a mailbox has one receiver"
        self._receiver = trio.lowlevel.current_task()

        def abort(_: object) -> Abort:
            self._receiver = None
            return Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)  # type: ignore[no-any-return]

    @enable_ki_protection
    def close(self) -> None:
        """Take no more envelopes: waiting senders get ``ClosedResourceError``,
        the receiver gets :data:`CLOSED` once the buffer is empty."""
        if self.closed:
            return
        self.closed = True
        if self._receiver is not None:
            receiver, self._receiver = self._receiver, None
            trio.lowlevel.reschedule(receiver, outcome.Value(CLOSED))
        if self._senders:
            for task in self._senders:
                trio.lowlevel.reschedule(task, outcome.Error(trio.ClosedResourceError()))
            self._senders.clear()

    @enable_ki_protection
    def drain(self) -> tuple[Envelope, ...]:
        """Close the mailbox and return what was still queued in it."""
        self.close()
        if self._head is None:
            return ()
        left = (self._head, *(self._rest or ()))
        self._head = self._rest = None
        return left


@final
class Reply(Generic[R]):
    """The answer to one ``ask``, still to come: from :meth:`ActorRef.ask_nowait
    <actors.ActorRef.ask_nowait>`.

    A task waiting for it is parked with :func:`trio.lowlevel.wait_task_rescheduled`
    and rescheduled by :meth:`send`, as the mailbox parks its tasks: one
    ``ask`` on every node invocation's path, where a ``trio.Event`` (and its
    parking lot) cost more than the rest of the reply.

    .. versionadded:: 0.1
    """

    __slots__ = ("_waiters", "outcome")

    def __init__(self) -> None:
        # The tasks waiting for the reply; a list only once somebody waits.
        self._waiters: list[Task] | None = None
        self.outcome: outcome.Outcome[R] | None = None

    @enable_ki_protection
    def send(self, result: outcome.Outcome[R]) -> None:
        """Deliver *result* once; later deliveries are ignored."""
        if self.outcome is None:
            self.outcome = result
            waiters = self._waiters
            if waiters:
                self._waiters = None
                for task in waiters:
                    trio.lowlevel.reschedule(task)

    @property
    def done(self) -> bool:
        """Whether the reply has arrived."""
        return self.outcome is not None

    async def wait(self) -> R:
        """Wait for the reply and return it, or raise the handler's exception.

        A cancelled wait leaves nothing behind: the reply can be waited for again.

        Raises:
            ActorStoppedError: the actor stopped before replying.
        """
        if self.outcome is None:
            task = trio.lowlevel.current_task()
            waiters = self._waiters
            if waiters is None:
                waiters = self._waiters = []
            waiters.append(task)

            def abort(_: object) -> Abort:
                waiters.remove(task)
                return Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        assert self.outcome is not None
        return self.outcome.unwrap()
