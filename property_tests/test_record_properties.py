"""The record path (``runtime._record``): a recorder sees a run exactly as its state does.

A recorder attached to a Flow gets every record of every run, node runs and
graph jobs alike. Replaying them in order must rebuild what the run's
:class:`~runtime.JobState` holds, in the same order: the request tree,
the history, routine states, shared data, the shared log, undelivered
messages and how the run ended. Flows and graphs come from the public
fuzz kit, with its failures, delays, timeouts, pauses and cancels.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

import attrs
import trio
import trio.testing
from hypothesis import given, note
from hypothesis import strategies as st

import runtime as rt
import runtime.testing as rtt

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

_PLACE_KEYS = ("timestamp", "request", "node", "routine")


class Replay:
    """A recorder that rebuilds each run's state from its records alone."""

    def __init__(self) -> None:
        self.records: dict[str, list[rt.Event]] = collections.defaultdict(list)

    async def record(self, records: Sequence[rt.Event]) -> None:
        for record in records:
            self.records[record.run_id].append(record)

    def check(self, state: rt.JobState) -> None:
        """Assert the records of *state*'s run rebuild it, in order."""
        records = self.records[state.job_id]
        assert [r.seq for r in records] == list(range(len(records))), "records are numbered without gaps"
        assert records[0].kind is rt.EventKind.RUN_STARTED
        assert [r.kind for r in records].count(rt.EventKind.RUN_FINISHED) == 1
        assert records[-1].kind is rt.EventKind.RUN_FINISHED, "run_finished is the last record"
        requests: dict[str, rt.Request] = {}
        history: list[tuple[str, str, object]] = []
        routine_states: dict[str, dict[str, object]] = {}
        shared: dict[str, object] = {}
        outputs: list[tuple[str | None, object, object]] = []
        log: list[dict[str, object]] = []
        undelivered: list[dict[str, object]] = []
        outcomes = {
            rt.EventKind.REQUEST_SUCCEEDED: rt.Status.COMPLETED,
            rt.EventKind.REQUEST_FAILED: rt.Status.FAILED,
            rt.EventKind.REQUEST_CANCELLED: rt.Status.CANCELLED,
        }
        for r in records:
            if r.kind is rt.EventKind.REQUEST_CREATED:
                assert r.request_id is not None
                assert r.node is not None
                assert r.request_id not in requests
                assert r.parent_id is None or r.parent_id in requests, "a parent is created before its child"
                requests[r.request_id] = rt.Request(
                    r.request_id,
                    r.parent_id,
                    r.node,
                    rt.Status.RUNNING,
                    r.offset,
                    r.offset,
                    executor=r.data if isinstance(r.data, str) else None,
                )
            elif r.kind in outcomes:
                request = requests[r.request_id]  # type: ignore[index]
                assert not request.status.is_final, f"request {request.id} ended twice"
                request.status = r.data if isinstance(r.data, rt.Status) else outcomes[r.kind]
                request.finished_at = r.offset
                if r.kind is rt.EventKind.REQUEST_SUCCEEDED:
                    request.result = r.data  # type: ignore[assignment]
                elif r.kind is rt.EventKind.REQUEST_FAILED:
                    request.error = r.data  # type: ignore[assignment]
            elif r.kind is rt.EventKind.ROUTINE_EVENT:
                assert isinstance(r.data, dict)
                assert r.node is not None
                history.append((r.node, r.data["event"], r.data["data"]))
            elif r.kind is rt.EventKind.ROUTINE_STATE:
                assert isinstance(r.data, dict)
                assert r.node is not None
                routine_states.setdefault(r.node, {}).update(r.data)
            elif r.kind is rt.EventKind.SHARED_DATA:
                assert isinstance(r.data, dict)
                shared[r.data["key"]] = r.data["value"]  # type: ignore[index]
            elif r.kind is rt.EventKind.STREAM and isinstance(r.data, dict) and "output_type" in r.data:
                outputs.append((r.node, r.data["output_type"], r.data["data"]))
            elif r.kind is rt.EventKind.LOG:
                assert isinstance(r.data, dict)
                log.append({k: v for k, v in r.data.items() if k not in _PLACE_KEYS})
            elif r.kind is rt.EventKind.UNDELIVERED:
                assert isinstance(r.data, dict)
                undelivered.append(r.data)
        finished = records[-1].data
        assert isinstance(finished, dict)
        assert finished["status"] == state.status.value
        assert finished["result"] == state.result
        assert list(requests.values()) == list(state.requests.values())
        assert history == [(h.routine_id, h.event_name, h.data) for h in state.history]
        assert routine_states == state.routine_states
        output_log = state.shared_data.get("output_log", [])
        assert isinstance(output_log, list)
        assert outputs == [(o["routine_id"], o["output_type"], o["data"]) for o in output_log]
        assert shared == {k: v for k, v in state.shared_data.items() if k != "output_log"}
        assert log == [{k: v for k, v in e.items() if k not in _PLACE_KEYS} for e in state.shared_log]
        assert undelivered == [attrs.asdict(d) for d in state.undelivered]


def _mock_run(main: Callable[[], Awaitable[None]]) -> None:
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@given(rtt.flows())
def test_a_recorder_rebuilds_every_node_run_from_its_records_in_order(spec: rtt.FlowSpec) -> None:
    """Replaying a node run's records gives its state: requests, outcomes, logs, in the state's order."""
    generated = spec.build()
    replay = Replay()
    generated.flow.recorders = (replay,)
    results: list[rt.RunResult[int]] = []

    async def main() -> None:
        results.append(await generated.flow.arun(0))

    _mock_run(main)  # the flow's delays and timeout on Trio's MockClock: no real time passes
    replay.check(results[0].state)


@given(rtt.routine_graphs(), st.data())
def test_a_recorder_rebuilds_every_graph_job_from_its_records_in_order(
    graph: rtt.GraphSpec, data: st.DataObject
) -> None:
    """Replaying a job's records gives its state: history, routine states, shared data, log, undelivered."""
    schedules = [data.draw(rtt.job_schedules(), label="schedule")]
    note(rtt.describe_jobs(graph, schedules))
    flow = graph.build()
    replay = Replay()
    flow.recorders = (replay,)
    states: list[rt.JobState] = []

    async def main() -> None:
        states.extend(await rtt.run_graph_jobs(graph, schedules, flow=flow))

    _mock_run(main)
    for state in states:
        replay.check(state)
