"""The invariants of node runs (SPEC section 7), over generated call trees.

Every flow here comes from the public kit, :mod:`runtime.testing`: the same
strategies and checkers users fuzz their own workflows with. Each run goes
through ``trio.run`` under ``MockClock(autojump_threshold=0)``, so delays and
timeouts cost no real time and every example replays exactly.
"""

from __future__ import annotations

import pathlib
import tempfile
from typing import TYPE_CHECKING

import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import runtime as rt
import runtime.testing as rtt

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


def _mock_run(main: Callable[[], Awaitable[None]]) -> None:
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def _run_watched(flow: rtt.GeneratedFlow) -> tuple[rt.RunResult[int], rtt.TaskWatch]:
    with rtt.watch_tasks() as tasks:
        result = await flow.arun()
    await trio.testing.wait_all_tasks_blocked()
    return result, tasks


@given(rtt.flows())
def test_runs_end_as_their_spec_says(spec: rtt.FlowSpec) -> None:
    """Success, failure, timeout and end_on_error all end the way the call tree implies."""
    flow = spec.build()
    spec.check_outcome(flow.run())


@given(rtt.flows())
def test_nothing_of_a_run_is_alive_after_it_and_every_finally_ran(spec: rtt.FlowSpec) -> None:
    flow = spec.build()

    async def main() -> None:
        result, tasks = await _run_watched(flow)
        run_id = result.state.run_id
        rtt.check_structure(
            result,
            tasks=tasks,
            started=[call.label for call in flow.started(run_id)],
            finalized=[call.label for call in flow.finalized(run_id)],
        )

    _mock_run(main)


@given(rtt.flows(), st.sampled_from([0.5, 1.5, 2.5, 3.5]))
def test_a_run_cancelled_from_outside_leaves_nothing_alive(spec: rtt.FlowSpec, after: float) -> None:
    """The caller gives up after *after* seconds: the run ends cancelled (if it had not ended)."""
    flow = spec.build()
    with tempfile.TemporaryDirectory() as state_dir:
        flow.flow.save_state = True  # a cancelled ainvoke returns nothing: read the run back
        flow.flow.state_dir = pathlib.Path(state_dir)

        async def main() -> None:
            with rtt.watch_tasks() as tasks:
                with trio.move_on_after(after):
                    await flow.arun()
                await trio.testing.wait_all_tasks_blocked()
                state = rt.read_state_file(flow.flow.state_path)
                result: rt.RunResult[int] = rt.RunResult(state, None, None)
                run_id = state.run_id
                rtt.check_structure(
                    result,
                    tasks=tasks,
                    started=[call.label for call in flow.started(run_id)],
                    finalized=[call.label for call in flow.finalized(run_id)],
                )
            rtt.check_request_tree(result, calls=[call.node_path for call in flow.started(run_id)])
            rtt.check_events(flow.events(run_id), result)
            end = spec.expected.duration  # when the run ends by itself (timeout included)
            if after < end:
                assert state.status is rt.Status.CANCELLED
            elif after > end:
                assert state.status in spec.expected.statuses
            else:  # the caller and the run's own end at the same instant: either
                assert state.status in {rt.Status.CANCELLED, *spec.expected.statuses}

        _mock_run(main)


@given(rtt.flows())
def test_the_request_tree_records_every_call_once_with_a_final_status(spec: rtt.FlowSpec) -> None:
    flow = spec.build()
    result = flow.run()
    rtt.check_request_tree(result, calls=[call.node_path for call in flow.started(result.state.run_id)])


@given(rtt.flows())
def test_events_are_complete_and_causally_ordered(spec: rtt.FlowSpec) -> None:
    flow = spec.build()
    result = flow.run()
    rtt.check_events(flow.events(result.state.run_id), result)


@given(rtt.flows(), st.integers(min_value=2, max_value=4))
def test_concurrent_runs_never_see_each_others_context(spec: rtt.FlowSpec, n_runs: int) -> None:
    flow = spec.build()
    results: list[rt.RunResult[int]] = []

    async def main() -> None:
        async def one() -> None:
            results.append(await flow.arun())

        async with trio.open_nursery() as nursery:
            for _ in range(n_runs):
                nursery.start_soon(one)

    _mock_run(main)
    assert len(results) == n_runs
    rtt.check_isolation(
        results,
        flow_context=flow.flow.context,
        initial_context=spec.flow_context,
        expected_contexts={r.state.run_id: flow.expected_context(r) for r in results},
    )
    for result in results:
        spec.check_outcome(result)  # concurrent runs do not change each other's outcome


@given(rtt.flows(), st.integers(min_value=0, max_value=2**16))
def test_a_run_replays_identically_under_mock_clock_and_a_fixed_seed(spec: rtt.FlowSpec, seed: int) -> None:
    histories = []
    for _ in range(2):
        flow = spec.build()
        with rtt.deterministic_scheduling(seed):
            result = flow.run()
        histories.append(rtt.run_history(result, flow.events(result.state.run_id)))
    assert histories[0] == histories[1]
