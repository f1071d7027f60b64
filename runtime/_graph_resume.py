"""Durable graph jobs: snapshots of a job, and a job resumed from its store.

A job's records say how its state changed (routine states, shared data,
history, outputs), but not which messages were still to be handled: that is
what a *snapshot* keeps. The job takes one only at a quiet moment, when no
handler is between its start and its end, so the records up to the snapshot
and the snapshot itself describe one consistent point of the job:

- periodically, at the first quiet moment after ``SNAPSHOT_EVERY`` records;
- when a paused job has no handler left running (its durable pause);
- when a job that did not complete ends quiet (paused, cancelled while idle).

The document (``format`` 1) holds the messages queued but not handled, in
emission order; the deferred events; the handler calls made so far
(``steps``, for ``max_steps``); whether the job was paused and why; and per
routine the public attributes of its instance that are JSON values, its
merged slot data, and its failure and message counts.

A resumed job rolls back to its last snapshot: its state is rebuilt from the
records up to it, its routine instances get their attributes back, the
messages are delivered again in their order and the deferred events emitted.
What the job did after that snapshot (handler calls that were in flight,
messages handled since) runs again: handlers run at least once, never
exactly once. Without a snapshot the job starts again from its entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias, cast

from ._exceptions import ResumeError, UnserializableValueError
from ._serialize import _Walker
from ._state import Status

if TYPE_CHECKING:
    from ._job import Job
    from ._routine import Routine
    from ._util import AnyFlow
    from .store._base import ResumePoint, Store

#: A message to deliver again, ``(source, event, target, slot, data)``; an event to emit, ``(routine id, event, data)``.
Message: TypeAlias = tuple[str, str, str, str, dict[str, object]]
Deferred: TypeAlias = tuple[str, str, dict[str, object]]

#: Records after which a durable job takes a snapshot at its next quiet moment.
SNAPSHOT_EVERY = 1000

#: The snapshot document's format.
FORMAT = 1


def prepare(job: Job, flow: AnyFlow, entry: tuple[str, str, dict[str, object]]) -> None:
    """Make *job* durable if it has recorders: its start recorded for a store, snapshots for those that keep them."""
    recorders = job.settings.recorders
    if not recorders:
        return
    routine_id, slot, params = entry
    job._started_value = {
        "args": [],
        "kwargs": {},
        "entry": [routine_id, slot, params],
        "fingerprint": flow.fingerprint,
        "attempt": 1,
    }
    job._stores = tuple(cast("Store", r) for r in recorders if callable(getattr(r, "snapshot", None)))
    job._snapshot_due = SNAPSHOT_EVERY


def _public_attrs(routine: Routine, run_id: str, routine_id: str) -> dict[str, object]:
    """The public attributes of *routine*'s instance that are JSON values, as copies."""
    kept: dict[str, object] = {}
    for name, value in vars(routine).items():
        if name.startswith("_"):
            continue
        try:
            kept[name] = _Walker(run_id=run_id, strict=True).walk(value, f"$.routines.{routine_id}.{name}")
        except UnserializableValueError:
            continue  # given to its constructor (a client, a spec), or not data: made again by it
    return kept


def document(job: Job) -> dict[str, object]:
    """*job*'s snapshot document, now (see the module docstring)."""
    run_id = job.state.job_id
    return {
        "format": FORMAT,
        "messages": [[m.source, m.event, m.target, m.slot, m.data] for m in job._pending.values()],
        "deferred": [[actor.routine_id, event, data] for actor, event, data in job._deferred],
        "steps": job._steps,
        "paused": job._paused,
        "pause_reason": job.pause_reason,
        "routines": {
            routine_id: {
                "attrs": _public_attrs(actor.routine, run_id, routine_id),
                "merged": actor._merged or {},
                "failures": actor.failures,
                "handled": actor.handled,
            }
            for routine_id, actor in job._actors.items()
        },
    }


def snapshot(job: Job) -> None:
    """Hand *job*'s stores a snapshot covering its records so far (once per record count)."""
    last = job.log.seq - 1
    if last == job._snapshot_seq:
        return
    job._snapshot_seq = last
    job._snapshot_due = last + 1 + SNAPSHOT_EVERY
    taken = document(job)
    for store in job._stores:
        store.snapshot(job.state.job_id, last, taken)


def snapshot_if_quiet(job: Job) -> None:
    """A periodic snapshot, once its records are due: if *job* runs and no handler is between its start and its end."""
    if job._outcome is None and job._running == job._blocked:
        snapshot(job)


def restore(job: Job, point: ResumePoint) -> None:
    """Set up *job*, made for the stored job of *point*, to go on from its last snapshot.

    Raises:
        ResumeError: the snapshot names a routine, event or slot the flow
            does not have (a store changed outside trioflow).
    """
    where = f"Job {point.run_id!r} of flow {job.flow_name!r}"
    assert job._started_value is not None
    assert point.entry is not None
    job._started_value.update(attempt=point.attempt, resumed_from=point.snapshot_seq)
    job._first_seq = point.next_seq
    job._snapshot_due = point.next_seq + SNAPSHOT_EVERY
    if point.state is not None:
        stored = point.state
        state = job.state
        state.routine_states = stored.routine_states
        state.shared_data = stored.shared_data
        state.shared_log = stored.shared_log
        state.history = stored.history
    snapshot = point.snapshot
    if snapshot is None:
        return  # no snapshot: the job starts again from its entry
    actors = job._actors
    # Checked by the store (the shapes of a snapshot document): lists of strings and a dict.
    messages = [cast("Message", tuple(m)) for m in cast("list[list[object]]", snapshot["messages"])]
    deferred = [cast("Deferred", tuple(d)) for d in cast("list[list[object]]", snapshot["deferred"])]
    for _, _, target, slot, _ in messages:
        if target not in actors or slot not in actors[target].slots:
            msg = f"{where} cannot be resumed: its snapshot has a message for {target}.{slot}, which the flow does not have. The store was changed outside trioflow; start a new run."
            raise ResumeError(msg)
    for routine_id, _, _ in deferred:
        if routine_id not in actors:
            msg = f"{where} cannot be resumed: its snapshot has an event deferred by routine {routine_id!r}, which the flow does not have. The store was changed outside trioflow; start a new run."
            raise ResumeError(msg)
    routines = cast("dict[str, dict[str, object]]", snapshot["routines"])
    for routine_id, kept in routines.items():
        actor = actors.get(routine_id)
        if actor is None:
            msg = f"{where} cannot be resumed: its snapshot keeps routine {routine_id!r}, which the flow does not have. The store was changed outside trioflow; start a new run."
            raise ResumeError(msg)
        for name, value in cast("dict[str, object]", kept["attrs"]).items():
            setattr(actor.routine, name, value)
        merged = cast("dict[str, dict[str, object]]", kept["merged"])
        if merged:
            actor._merged = merged
        actor.failures = cast("int", kept["failures"])
        actor.handled = cast("int", kept["handled"])
    steps = snapshot["steps"]
    assert isinstance(steps, int)
    job._steps = steps
    job.pause_reason = cast("str | None", snapshot.get("pause_reason"))
    job._restored = (messages, deferred)


def start(job: Job) -> None:
    """Deliver a resumed job's messages again, in their order, then emit its deferred events."""
    assert job._restored is not None
    messages, deferred = job._restored
    actors = job._actors
    for source, event, target, slot, data in messages:
        actors[target].deliver_nowait(job._new_message(source, event, target, slot, data))
    for routine_id, event, data in deferred:
        actors[routine_id].emit_on_resume(event, data)
    if job._inflight == 0:
        job._end(Status.COMPLETED)
