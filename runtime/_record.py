"""The record path: every change to a run's state, as one ordered stream.

Node runs and graph jobs alike write each change of a run's state where it
happens, in the task that makes it, and at the same moment hand a *record*
of it to the run's :class:`RunLog`. The log numbers the records, stamps
them, and passes them in batches to the run's publisher actor, which feeds
every consumer in order: the subscribers (callbacks and streams) and the
:class:`~runtime.Recorder` objects attached to the Flow (a durable store, an
exporter). A run nobody consumes has no publisher and its log keeps nothing.

A record is an :class:`~runtime.Event`. Its kinds, and what ``data`` holds:

=====================  ==================================================================
``run_started``        the flow's name. Always the first record of a run.
``request_created``    a node request was made (``request_id``, ``parent_id``, ``node``);
                       it starts at once. ``data`` names its executor (``None``: the loop).
``request_succeeded``  the request returned; ``data`` is the result's summary.
``request_failed``     the request raised; ``data`` is its :class:`~runtime.ErrorSummary`.
``request_cancelled``  the request was cancelled (or never started before its run ended);
                       ``data`` is ``Status.KILLED`` or ``Status.ORPHANED`` when its
                       executor ended the work so, else ``None``.
``stream``             ``rt.broadcast(item)`` (``data`` the item), or a routine's
                       ``send_output`` (``{"output_type", "data"}``).
``log``                an entry of the run's shared log: ``rt.log``, or
                       ``JobState.append_to_shared_log`` from a handler.
``routine_event``      a routine emitted an event, or a handler failure was recorded in
                       the history (``{"event", "data"}``; ``node`` is the routine).
``routine_state``      a routine's state was updated (``data`` the updates).
``shared_data``        a key of the run's shared data was set (``{"key", "value"}``).
``undelivered``        a message that the run ended before delivering (``source``,
                       ``event``, ``target``, ``slot``, ``data``).
``run_finished``       ``{"status", "result", "error"}``. Always the last record.
=====================  ==================================================================

A node request's records also carry its call key (``Event.key``: the
parent's key, the node's name and its place among the parent's calls), and
``request_succeeded`` and ``run_started`` carry, for a durable store, the
full value behind the summary (``Event.value``: the result; the entry's
arguments, the definition's fingerprint and the attempt). A resumed run
(``Flow.resume``) numbers its records on from the stored ones. A durable
graph job also hands its store snapshots, beside the records (``_graph_resume``).

Order guarantees, the contract every consumer builds on:

- a run's records are numbered from 0 (``seq``) without gaps, in the order
  the changes were made; consumers get them in that order, each exactly once;
- that order is consistent with causality: a request's ``request_created``
  comes before anything it records and before its outcome, a child's before
  its parent's outcome, and an emission before the handler call it causes;
- ``run_finished`` comes after every other record of the run, once the run's
  state is final.

Applying the records in order to an empty state gives the run's state;
``JobState`` is their first consumer, written as they are made, so code in
the run reads its own writes at once.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, final

import trio

import actors

from ._publisher import Batch, Event, EventKind

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

#: Records sent to the publisher in one message when no subscriber watches
#: live (only recorders consume the run): one wake-up per batch.
_QUIET_BATCH = 256

#: The most records a live batch gathers while the publisher is busy; then
#: the next goes in a new message, so a slow consumer still holds the run back.
_LIVE_BATCH = 256

#: The most records a run kept by a store makes beyond those the store has
#: committed: a flush past it waits for the store (see :meth:`RunLog.flush`).
MAX_AHEAD = 1024


@final
class RunLog:
    """The ordered record stream of one run: numbers, stamps and batches its records.

    Private to the runtime; both engines write through it.
    """

    __slots__ = (
        "_batch",
        "_clock",
        "_first",
        "_flushed",
        "_hold",
        "_linger",
        "_open",
        "_pending",
        "_seq",
        "_t0",
        "publisher",
        "run_id",
    )

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        #: The run's publisher, while somebody consumes its records.
        self.publisher: actors.ActorRef[list[Event], None] | None = None
        self._pending: list[Event] = []
        #: Live only: the last batch sent, which gathers records until the publisher takes it.
        self._open: Batch | None = None
        self._batch = 1
        self._seq = 0
        self._t0 = 0.0
        #: Trio's clock; the monotonic clock for a run begun outside Trio.
        self._clock: Callable[[], float] = trio.current_time
        #: Not live: the longest a record waits for a batch to fill, and when the last batch went.
        self._linger = math.inf
        self._flushed = 0.0
        #: Waits until the run's stores have committed its records up to a number (a store's run only).
        self._hold: Callable[[int], Awaitable[object]] | None = None
        self._first = 0

    def start(
        self,
        publisher: actors.ActorRef[list[Event], None] | None,
        *,
        live: bool,
        seq: int = 0,
        linger: float = math.inf,
        hold: Callable[[int], Awaitable[object]] | None = None,
    ) -> None:
        """Start the run's clock; records go to *publisher*, at once if *live*, numbered from *seq*.

        Live, a record is sent as soon as it is made if the publisher is
        idle; records made while it is busy join the batch it has not taken
        yet (up to ``_LIVE_BATCH``), so it gets them as one message. Not
        live (only recorders), records go in batches of ``_QUIET_BATCH``,
        or sooner: a flush is due at the first record made *linger* seconds
        or more after the last batch went (a store's records then reach it
        even while the run makes few: a crash loses little).
        A resumed run numbers its records on from its stored ones. *hold*
        waits until the run's stores have committed its records up to the
        number it is given (see :meth:`flush`).
        """
        self._linger = linger
        self._hold = hold
        self._first = seq
        self._flushed = 0.0
        try:
            self._t0 = trio.current_time()
        except RuntimeError:  # a synchronous rt.Session block outside Trio: no Trio clock
            self._clock = time.monotonic
            self._t0 = time.monotonic()
        self._seq = seq
        self.publisher = publisher
        self._batch = 1 if live else _QUIET_BATCH

    @property
    def seq(self) -> int:
        """The number the next record will get."""
        return self._seq

    def offset(self) -> float:
        """Seconds since the run started, on Trio's clock."""
        return self._clock() - self._t0

    def add(
        self,
        kind: EventKind,
        node: str | None = None,
        data: object = None,
        request_id: str | None = None,
        parent_id: str | None = None,
        offset: float | None = None,
        key: str | None = None,
        value: object = None,
    ) -> bool:
        """Record one change; return whether a :meth:`flush` is due.

        Never blocks: the hot paths call this, and await :meth:`flush` only
        when it says so (or at their next wait).
        """
        if self.publisher is None:
            return False
        pending = self._pending
        event = Event(
            self.run_id,
            self._seq,
            kind,
            self.offset() if offset is None else offset,
            request_id,
            parent_id,
            node,
            data,
            key,
            value,
        )
        self._seq += 1
        if kind is EventKind.RUN_FINISHED:
            self._hold = None  # a store forgets a finished run: nothing to wait for
        batch = self._open
        if batch is not None and batch.open and not pending and len(batch) < _LIVE_BATCH:
            batch.append(event)  # the publisher is busy: it takes this with the batch
            return False
        pending.append(event)
        return len(pending) >= self._batch or event.offset - self._flushed >= self._linger

    @property
    def last_seq(self) -> int:
        """The number of the last record made (``-1`` before the first)."""
        return self._seq - 1

    @property
    def flush_due(self) -> bool:
        """Whether the queued records make a batch: :meth:`flush` them."""
        pending = self._pending
        return len(pending) >= self._batch or (
            bool(pending) and pending[-1].offset - self._flushed >= self._linger
        )

    def flush_nowait(self) -> bool:
        """Send the queued records if the publisher can take them now; return whether it could."""
        pending = self._pending
        if not pending:
            return True
        assert self.publisher is not None
        if self._batch != 1:
            try:
                self.publisher.tell_nowait(pending)
            except actors.MailboxFullError:
                return False
            self._pending = []
            self._flushed = self.offset()
            return True
        # Live: join the batch the publisher has not taken yet, or send a new one.
        batch = self._open
        if batch is not None and batch.open:
            if len(batch) + len(pending) > _LIVE_BATCH:
                return False  # full: wait until the publisher takes it
            batch.extend(pending)
            pending.clear()
            return True
        message = Batch(pending)
        try:
            self.publisher.tell_nowait(message)
        except actors.MailboxFullError:
            return False
        self._open = message
        self._pending = []
        return True

    async def flush(self) -> None:
        """Send the queued records to the publisher, waiting while it cannot take them.

        A run kept by a store then waits, if it has made more than
        ``MAX_AHEAD`` records its store has not committed, until the store
        has caught up to that bound. The path to the store is then bounded,
        and the loop of a busy run waits while the store writes (a loop that
        never waits keeps the store's writer thread from the GIL: a first
        commit seconds late, records lost in a crash).
        """
        last = self._seq - 1
        await self._send()
        if self._hold is not None and last - self._first >= MAX_AHEAD:
            await self._hold(last - MAX_AHEAD)

    async def _send(self) -> None:
        while not self.flush_nowait():
            assert self.publisher is not None
            batch = self._open
            if self._batch == 1 and batch is not None and batch.open:
                await batch.wait_taken()
                continue
            if self._batch != 1:
                message, self._pending = self._pending, []
                self._flushed = self.offset()
                await self.publisher.tell(message)
                return
            live = Batch(self._pending)
            self._pending = []
            await self.publisher.tell(live)  # records made meanwhile wait in _pending
            self._open = live
            return

    async def flush_shielded(self) -> None:
        """Like :meth:`flush`, from a task that is being cancelled."""
        if not self.flush_nowait():
            with trio.CancelScope(shield=True):
                await self._send()  # not held back for the store: the task is ending
