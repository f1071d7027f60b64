"""Durable runs: a run stopped at any record and resumed ends as if it had never stopped.

Flows come from the public fuzz kit (trees of ``rt.call`` and
``rt.call_batch``, caught and uncaught failures, whose end does not depend
on how the scheduler orders a batch). Each is run once to the
end, for reference; then again with a store, cancelled from outside right
after its *k*-th record (any *k*), as a crash would stop it; then resumed
from the store. The resumed run must end with the reference's status,
result and request tree, and must not run again a call the store holds the
result of.
"""

from __future__ import annotations

import collections
import pathlib
import tempfile
from typing import TYPE_CHECKING

import trio
import trio.testing
from hypothesis import given, note, settings
from hypothesis import strategies as st

import runtime as rt
import runtime.testing as rtt
from runtime import _graph_resume

if TYPE_CHECKING:
    from collections.abc import Callable

# Trees whose end does not hang on a race: a batch whose failing member cancels its siblings
# ends them completed or cancelled as the scheduler goes, in a resumed run as in any other.
# So either every call is sequential, or every node catches its children's errors.
_TREES = st.one_of(
    rtt.call_trees(max_nodes=8, delays=st.just(0.0), broadcasts=st.just(False), batched=st.just(False)),
    rtt.call_trees(max_nodes=8, delays=st.just(0.0), broadcasts=st.just(False), catches=st.just(True)),
)
_FLOWS = rtt.flows(trees=_TREES, timeouts=st.none(), end_on_error=st.just(False), contexts=st.just({}))


def _tree(state: rt.JobState) -> list[tuple[tuple[str, ...], str, str | None]]:
    """The request tree as each request's path, status and result, sorted: a batch's members
    make their own calls concurrently, so their ids and creation order can differ between runs."""
    return sorted((state.request_path(r.id), r.status.value, r.result) for r in state.requests.values())


# No MockClock: the trees never sleep, and an autojumping clock with no deadline makes Trio's loop
# spin (poll with timeout 0) all the while it waits for the store's worker threads, which took
# ~100x the CPU of the runs themselves (up to ~1.2 s an example). On the real clock the loop sleeps.
@given(spec=_FLOWS, stop_at=st.integers(min_value=0))
def test_a_run_stopped_at_any_record_and_resumed_ends_as_an_unstopped_run(
    spec: rtt.FlowSpec, stop_at: int
) -> None:
    """Invariant: for any flow and any stop point, stop + resume = the same status, result and request tree."""
    generated = spec.build()
    entry = generated.flow.entry_point
    assert entry is not None

    async def main() -> None:
        reference = await rt.Flow(spec.name, entry_point=entry).arun(0)
        with tempfile.TemporaryDirectory() as tmp:
            store = rt.SQLiteStore(pathlib.Path(tmp) / "runs.db")
            seen: list[rt.Event] = []
            stop = trio.CancelScope()

            def count(event: rt.Event) -> None:
                seen.append(event)
                if len(seen) == 1 + stop_at % 64:
                    stop.cancel()

            flow = rt.Flow(spec.name, entry_point=entry, store=store, subscribers=[count])
            async with store:  # closed once the run stopped: everything it recorded is committed
                with stop:
                    await flow.arun(0)
            run_id = seen[0].run_id
            stored = {e.key for e in seen if e.kind is rt.EventKind.REQUEST_SUCCEEDED}
            note(f"stopped after {len(seen)} records; completed: {sorted(k for k in stored if k)}")
            if (await store.runs())[0].status is rt.Status.COMPLETED:
                return  # it ended before the stop point: nothing to resume
            ran: list[rt.Event] = []
            resumed = rt.Flow(spec.name, entry_point=entry, store=store, subscribers=[ran.append])
            result = await resumed._aresume(run_id, ...)
            # A call whose result was stored is replayed: the store's value, not a new run of it.
            assert {e.key for e in ran if e.kind is rt.EventKind.REQUEST_SUCCEEDED} >= stored
            assert result.status is reference.status
            assert result.result == reference.result
            assert _tree(result.state) == _tree(reference.state)
            state = await store.state(run_id)
            assert _tree(state) == _tree(reference.state)

    trio.run(main)


# -- routine graphs ------------------------------------------------------------------------

# Jobs whose end does not hang on a race: "sequential" runs one handler at a time, in emission
# order, so an unstopped job ends the same way every time. No timeout: a resumed job's clock
# starts again.
_GRAPHS = rtt.routine_graphs(max_routines=4, timeouts=st.none())


def _job_state(state: rt.JobState) -> dict[str, object]:
    """What a job leaves: its routine states, outputs, history and log (without times), status and error."""
    error = None if state.error is None else (state.error.type, state.error.path)  # its message names the job
    return {
        "status": state.status,
        "error": error,
        "routine_states": state.routine_states,
        "shared_data": {
            k: [{f: v for f, v in o.items() if f != "timestamp"} for o in v] if isinstance(v, list) else v
            for k, v in state.shared_data.items()
        },
        "history": [(h.routine_id, h.event_name, h.data) for h in state.history],
        "log": [{k: v for k, v in e.items() if k != "timestamp"} for e in state.shared_log],
        "undelivered": state.undelivered,
    }


def _durable(
    graph: rtt.GraphSpec,
    store: rt.SQLiteStore,
    subscribers: list[Callable[[rt.Event], object]],
    strategy: str,
) -> rt.Flow[..., object]:
    """*graph*'s flow, with *store* and *subscribers*, running its jobs with *strategy*."""
    flow = graph.build()
    durable: rt.Flow[..., object] = rt.Flow(
        flow_id=flow.name,
        store=store,
        subscribers=subscribers,
        max_steps=graph.max_steps,
        execution_strategy=strategy,
    )
    for routine_id, routine in flow._graph.routines.items():
        durable.add_routine(routine, routine_id)
    for connection in graph.connections:
        durable.connect(*connection)
    durable.set_entry(graph.entry)
    return durable


async def _to_the_end(flow: rt.Flow[..., object], run_id: str, store: rt.SQLiteStore) -> rt.JobState:
    """Resume job *run_id* until it ends otherwise than paused (a handler paused it) or cancelled (stopped)."""
    state = await store.state(run_id)
    for _ in range(20):
        if state.status not in {rt.Status.PAUSED, rt.Status.CANCELLED}:
            return state
        await flow._aresume(run_id, ...)
        state = await store.state(run_id)
    raise AssertionError(f"job {run_id} still {state.status} after 20 resumes")


@given(graph=_GRAPHS, stop_at=st.integers(min_value=0), every=st.sampled_from((3, 1000)))
def test_a_job_stopped_at_any_record_and_resumed_ends_as_an_unstopped_job(
    graph: rtt.GraphSpec, stop_at: int, every: int
) -> None:
    """Invariant: for any generated routine graph, any stop point and any snapshot interval, stop + resume (from
    the store, as many times as its handlers pause it) = the same routine states, outputs, history, log and status."""
    note(graph.describe())

    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            reference_store = rt.SQLiteStore(pathlib.Path(tmp) / "reference.db")
            reference = _durable(graph, reference_store, [], "sequential")
            first = await reference.aexecute(graph.entry, graph.entry_params("job"))
            expected = _job_state(await _to_the_end(reference, first.run_id, reference_store))

            store = rt.SQLiteStore(pathlib.Path(tmp) / "runs.db")
            seen: list[rt.Event] = []
            stop = trio.CancelScope()

            def count(event: rt.Event) -> None:
                seen.append(event)
                if len(seen) == 1 + stop_at % 48:
                    stop.cancel()

            flow = _durable(graph, store, [count], "sequential")
            async with store:  # closed once the job stopped: everything it recorded is committed
                with stop:
                    await flow.aexecute(graph.entry, graph.entry_params("job"))
            note(f"stopped after {len(seen)} records")
            resumed = _durable(graph, store, [], "sequential")
            assert _job_state(await _to_the_end(resumed, seen[0].run_id, store)) == expected

    # A snapshot every few records too, not only when a job pauses or ends: generated jobs are short.
    default, _graph_resume.SNAPSHOT_EVERY = _graph_resume.SNAPSHOT_EVERY, every
    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        _graph_resume.SNAPSHOT_EVERY = default


# Concurrent handlers ("actors"): the order messages arrive in may differ between two runs, so
# only what does not depend on it is compared, and nothing may depend on it: no failures, pauses
# or step limit (which message fails, pauses or is one too many depends on the order).
_CONCURRENT = rtt.routine_graphs(
    max_routines=4,
    timeouts=st.none(),
    failures=st.just(False),
    pauses=st.just(False),
    max_steps=st.just(10_000),
)


def _counts(state: rt.JobState) -> dict[str, object]:
    """What a job of concurrent handlers leaves whatever the order: its status and how many calls each slot took."""
    calls = collections.Counter((str(e["at"]), str(e["slot"])) for e in state.shared_log if "recv" in e)
    handled = {rid: routine.get("handled") for rid, routine in state.routine_states.items()}
    return {"status": state.status, "calls": dict(calls), "handled": handled, "emissions": len(state.history)}


# Each example's jobs run concurrent handlers with delays through two stores: half the profile's examples.
@settings(max_examples=max(1, settings.default.max_examples // 2))
@given(graph=_CONCURRENT, stop_at=st.integers(min_value=0), every=st.sampled_from((3, 1000)))
def test_a_job_of_concurrent_handlers_stopped_at_any_record_and_resumed_handles_each_message_once(
    graph: rtt.GraphSpec, stop_at: int, every: int
) -> None:
    """Invariant: with concurrent handlers too, stop at any record + resume from the last snapshot = each message
    handled exactly once in all (no message lost, none handled twice), as in an unstopped job."""
    note(graph.describe())

    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            reference_store = rt.SQLiteStore(pathlib.Path(tmp) / "reference.db")
            reference = _durable(graph, reference_store, [], "actors")
            expected = _counts(await reference.aexecute(graph.entry, graph.entry_params("job")))
            assert expected["status"] is rt.Status.COMPLETED

            store = rt.SQLiteStore(pathlib.Path(tmp) / "runs.db")
            seen: list[rt.Event] = []
            stop = trio.CancelScope()

            def count(event: rt.Event) -> None:
                seen.append(event)
                if len(seen) == 1 + stop_at % 48:
                    stop.cancel()

            flow = _durable(graph, store, [count], "actors")
            async with store:
                with stop:
                    await flow.aexecute(graph.entry, graph.entry_params("job"))
            note(f"stopped after {len(seen)} records")
            resumed = _durable(graph, store, [], "actors")
            assert _counts(await _to_the_end(resumed, seen[0].run_id, store)) == expected

    default, _graph_resume.SNAPSHOT_EVERY = _graph_resume.SNAPSHOT_EVERY, every
    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        _graph_resume.SNAPSHOT_EVERY = default
