"""The publisher: one actor per run that hands the run's records to every consumer.

Records (:class:`Event`) reach the publisher from the run's
:class:`~runtime._record.RunLog`, one ordered stream, so every subscriber and
every recorder sees every event of a run in causal order, and the
``run_finished`` event last.
"""

from __future__ import annotations

import enum
import inspect
import logging
from typing import TYPE_CHECKING, Literal, Protocol, final

import attrs
import trio

import actors

from ._exceptions import SubscriberOverflowError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from trio import MemorySendChannel

logger = logging.getLogger("runtime.publisher")

Overflow = Literal["block", "fail"]


@final
class EventKind(enum.StrEnum):
    """What an :class:`Event` reports.

    .. versionadded:: 0.1
    """

    RUN_STARTED = "run_started"
    REQUEST_CREATED = "request_created"
    REQUEST_SUCCEEDED = "request_succeeded"
    REQUEST_FAILED = "request_failed"
    REQUEST_CANCELLED = "request_cancelled"
    STREAM = "stream"
    LOG = "log"
    ROUTINE_EVENT = "routine_event"
    ROUTINE_STATE = "routine_state"
    SHARED_DATA = "shared_data"
    UNDELIVERED = "undelivered"
    RUN_FINISHED = "run_finished"


@final
@attrs.frozen
class Event:
    """One lifecycle event of a run, as subscribers see it.

    Attributes:
        run_id: the run (or job) it belongs to.
        seq: its position in the run's event stream, from 0, without gaps.
        kind: what happened.
        offset: seconds since the run started, on Trio's clock.
        request_id: the request it concerns, if any.
        parent_id: that request's parent, if any.
        node: the node (or routine) name, if any.
        data: the payload: a streamed item, a result or error summary, a
            routine event's data, or for ``run_finished`` a dict with
            ``status``, ``result`` and ``error``. For ``request_created``,
            the name of the node's executor (``None`` on the loop); for
            ``request_cancelled``, the :class:`~runtime.Status` ``killed`` or
            ``orphaned`` when the executor's cancel ended the work so
            (``None`` for a plain cancel).
        key: for a node request's records, its call key: the parent's key,
            then ``" > "``, the node's name and its position among the
            parent's calls (``price_all > price_item[1]``), or, for a node
            made with ``idempotency_key=fn``, the key *fn* gives the call's
            arguments (``price_all > price_item<lamp>``); the entry
            request's key is its node's name. The same in every attempt of
            a run whose code calls the same nodes in the same order: a
            durable store finds a call's stored result by it.
        value: the full value behind *data*'s summary, for a durable store:
            for ``request_succeeded`` the result, for ``run_started`` the
            entry's arguments, the flow's definition fingerprint
            and the attempt (``{"args", "kwargs", "fingerprint", "attempt"}``;
            a graph job's also has ``"entry"``, its entry routine, slot and
            data, and a resumed job's ``"resumed_from"``, the last record of
            the snapshot it went on from). Not compared, not shown.

    .. versionadded:: 0.1
    """

    run_id: str
    seq: int
    kind: EventKind
    offset: float
    request_id: str | None = None
    parent_id: str | None = None
    node: str | None = None
    data: object = None
    key: str | None = attrs.field(default=None, eq=False)
    value: object = attrs.field(default=None, eq=False, repr=False)


class Recorder(Protocol):
    """A consumer of every record of every run of a Flow: ``Flow(recorders=[...])``.

    The run's publisher actor calls :meth:`record` with the run's records
    in order, in batches, never two calls at once for one run. A recorder
    that waits holds the run back (backpressure); one that raises is logged
    and the run goes on.

    .. versionadded:: 0.1
    """

    async def record(self, records: Sequence[Event]) -> None:
        """Consume *records*, the next records of one run, in order."""
        ...


@final
class Batch(list[Event]):
    """Records sent to the publisher as one message; private to the runtime.

    While :attr:`open` (sent, but not yet taken by the publisher), the run's
    log adds its next records to this batch rather than sending a message
    each: records made while the publisher is busy reach it as one list.
    """

    __slots__ = ("_taken", "open")

    def __init__(self, records: list[Event]) -> None:
        super().__init__(records)
        self.open = True
        self._taken: trio.Event | None = None

    def take(self) -> None:
        """The publisher has taken the batch: close it, and wake who waits for that."""
        self.open = False
        if self._taken is not None:
            self._taken.set()

    async def wait_taken(self) -> None:
        """Wait until the publisher has taken the batch."""
        if self.open:
            if self._taken is None:
                self._taken = trio.Event()
            await self._taken.wait()
        else:
            await trio.lowlevel.checkpoint()


@final
class Subscription:
    """An ``async for`` stream of a run's events; from :meth:`Flow.stream <runtime.Flow.stream>`.

    Iteration ends after the ``run_finished`` event. A subscription opened with
    ``overflow="fail"`` that fell behind raises
    :class:`~runtime.SubscriberOverflowError` after the events it received.

    .. versionadded:: 0.1
    """

    __slots__ = ("_receive", "_sink", "finished")

    def __init__(self, buffer: int = 256, overflow: Overflow = "block") -> None:
        if overflow not in ("block", "fail"):
            msg = f"overflow={overflow!r}: choose 'block' (backpressure on the run) or 'fail' (raise in the subscriber)."
            raise ValueError(msg)
        if buffer < 0:
            msg = f"buffer={buffer!r}: give a number of events, 0 or more."
            raise ValueError(msg)
        send, self._receive = trio.open_memory_channel[Event](buffer)
        self._sink = _Sink(send, overflow)
        #: The ``run_finished`` event, once it has been received.
        self.finished: Event | None = None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        try:
            event = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self._sink.overflowed is not None:
                msg = (
                    f"This subscriber fell behind and lost the events after seq {self._sink.overflowed}. "
                    "Read faster, give a larger buffer, or use overflow='block'."
                )
                raise SubscriberOverflowError(msg) from None
            raise StopAsyncIteration from None
        if event.kind is EventKind.RUN_FINISHED:
            self.finished = event
        return event

    def close(self) -> None:
        """Stop receiving; the publisher drops this subscriber at its next event."""
        self._receive.close()


@final
class _Sink:
    """The publisher's end of one subscription."""

    __slots__ = ("overflow", "overflowed", "send")

    def __init__(self, send: MemorySendChannel[Event], overflow: Overflow) -> None:
        self.send = send
        self.overflow = overflow
        self.overflowed: int | None = None


class Publisher(actors.Actor[list[Event], None]):
    """Delivers each record to every callback, subscription and recorder, in order.

    Shielded: a run that is cancelled still tells its consumers how it ended.
    A subscriber that left (closed its stream) is dropped; a full ``block``
    subscriber or a slow recorder holds the publisher back (and through its
    mailbox, the run). A callback or recorder that raises is logged and stays.
    """

    shielded = True
    keeps_nursery = False
    mailbox_size = 256

    def __init__(
        self,
        callbacks: Sequence[Callable[[Event], object]],
        subscriptions: Sequence[Subscription],
        recorders: Sequence[Recorder] = (),
    ) -> None:
        self._callbacks = list(callbacks)
        self._sinks = [s._sink for s in subscriptions]
        self._recorders = list(recorders)

    async def handle(self, message: list[Event]) -> None:
        if type(message) is Batch:
            message.take()  # later records go in a message of their own
        for event in message:
            for callback in self._callbacks:
                try:
                    result = callback(event)
                    if result is not None and inspect.isawaitable(result):
                        await result
                except Exception:
                    logger.exception(
                        "Subscriber %r raised on event %s #%d; it stays subscribed.",
                        callback,
                        event.kind,
                        event.seq,
                    )
            if self._sinks:
                for sink in list(self._sinks):
                    await self._deliver(sink, event)
        for recorder in self._recorders:
            try:
                await recorder.record(message)
            except Exception:
                logger.exception(
                    "Recorder %r raised on records #%d-#%d of run %s; it stays attached.",
                    recorder,
                    message[0].seq,
                    message[-1].seq,
                    message[0].run_id,
                )

    async def _deliver(self, sink: _Sink, event: Event) -> None:
        try:
            if sink.overflow == "fail":
                try:
                    sink.send.send_nowait(event)
                except trio.WouldBlock:
                    sink.overflowed = event.seq - 1
                    sink.send.close()
                    self._sinks.remove(sink)
            else:
                await sink.send.send(event)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._sinks.remove(sink)

    async def on_stop(self) -> None:
        for sink in self._sinks:
            sink.send.close()
