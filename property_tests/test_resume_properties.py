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

import pathlib
import tempfile

import trio
from hypothesis import given, note
from hypothesis import strategies as st

import runtime as rt
import runtime.testing as rtt

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
