"""The store protocol, and what a store says of a run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, final

import attrs

if TYPE_CHECKING:
    import datetime
    from collections.abc import Mapping, Sequence

    from .._publisher import Event
    from .._state import JobState, Status


@final
@attrs.frozen
class RunSummary:
    """One stored run, as :meth:`Store.runs` lists it.

    Attributes:
        run_id: the run's id.
        flow: the flow's name.
        status: the run's status; ``running`` for a run that has not
            finished (or whose process died before it did).
        started: when the store saw the run start (aware, UTC).
        duration: seconds from start to finish on the run's clock, or
            ``None`` until it finished.
        owner_pid: the id of the process that ran it (its last attempt).
        attempts: how many times it was started: 1, plus one per resume.

    .. versionadded:: 0.1
    """

    run_id: str
    flow: str
    status: Status
    started: datetime.datetime
    duration: float | None
    owner_pid: int
    attempts: int = 1


@final
@attrs.frozen
class ResumePoint:
    """What a resumed run takes from its stored history (private to the runtime).

    Attributes:
        run_id: the run.
        attempt: the number of the attempt about to start (the first run is 1).
        next_seq: the number of the attempt's first record.
        args: the entry's positional arguments, as stored.
        kwargs: the entry's keyword arguments, as stored.
        results: the stored result of every call that completed, by call key.
        slots: the call key stored at each place, by ``(parent key, position)``.
        answers: the value given for each interrupt, by its key.
        children: for each call that ended (its result stored, or failed or cancelled inside a
            call that completed), the calls it made, in
            order, as ``(key, node, executor, outcome kind, outcome data)``:
            a replayed call records them again, so the resumed run's request
            tree is the whole tree.
        entry: a graph job's start, ``(routine id, slot, data)``; ``None`` for a node run.
        snapshot: a graph job's last snapshot document (its messages not yet
            handled, deferred events, routine instances' counters), or
            ``None`` if it has none: the job starts again from *entry*.
        snapshot_seq: the number of the last record the snapshot covers (-1: none).
        state: a graph job's state as of its snapshot, rebuilt from its records.
        in_flight: the keys of the calls the stored run started and never saw
            end (no outcome stored, or cancelled), except those waiting for
            the interrupt the run paused at: a call of a node made with
            ``idempotent=False`` at one of them is not run again unasked.
        rerun: the in-flight calls the resume may run again all the same:
            ``True`` for all, else their keys (``flow.resume(..., rerun=...)``).
    """

    run_id: str
    attempt: int
    next_seq: int
    args: tuple[object, ...]
    kwargs: Mapping[str, object]
    results: Mapping[str, object]
    slots: Mapping[tuple[str, int], str]
    answers: Mapping[str, object]
    children: Mapping[str, tuple[tuple[object, ...], ...]] = attrs.field(factory=dict)
    entry: tuple[str, str, Mapping[str, object]] | None = None
    snapshot: Mapping[str, object] | None = None
    snapshot_seq: int = -1
    state: JobState | None = None
    in_flight: frozenset[str] = frozenset()
    rerun: bool | frozenset[str] = False


class Store(Protocol):
    """Where runs are kept: a :class:`~runtime.Recorder` that can also be read.

    .. versionadded:: 0.1
    """

    async def record(self, records: Sequence[Event]) -> None:
        """Keep *records*, the next records of one run, in order."""
        ...

    async def runs(
        self,
        flow: str | None = None,
        status: Status | str | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[RunSummary]:
        """The stored runs, newest first; only *flow*'s, or only those in *status*, if given; *limit* runs after *offset*."""
        ...

    async def records(self, run_id: str) -> list[Event]:
        """The stored records of *run_id*, in order."""
        ...

    async def state(self, run_id: str) -> JobState:
        """The state of *run_id*, rebuilt by applying its stored records in order."""
        ...

    async def begin_resume(
        self, run_id: str, *, flow: str, fingerprint: str, answer: object = ...
    ) -> ResumePoint:
        """Take *run_id* for a new attempt (refused while another holds it) and say what it replays.

        *answer*, if given, is the value of the interrupt the run paused at.
        """
        ...

    def end_resume(self, run_id: str) -> None:
        """Release *run_id*, taken by :meth:`begin_resume`: its attempt has ended."""
        ...

    def snapshot(self, run_id: str, seq: int, document: Mapping[str, object]) -> bool:
        """Keep *document*, a graph job's snapshot covering its records up to *seq*; return whether it can.

        Kept with the record *seq* or after it, never before: a snapshot
        never refers to a record the store has not kept. ``False`` (nothing
        kept) if the document is not JSON.
        """
        ...
