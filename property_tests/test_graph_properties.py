"""The invariants of routine-graph jobs (SPEC section 7), over generated graphs.

Every graph here comes from the public kit, :mod:`runtime.testing`
(:func:`~runtime.testing.routine_graphs`, :func:`~runtime.testing.job_schedules`
and the ``check_*`` functions): the same strategies and checkers users fuzz
their own workflows with. Graphs are DAGs and cycles with fan-in and
fan-out, each routine with its own error strategy, injected failures,
delays, deferred events and pauses from inside handlers; schedules pause,
resume and cancel jobs at random times. Each example goes through
``trio.run`` under ``MockClock(autojump_threshold=0)``, so delays cost no real
time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
import trio.testing
from hypothesis import given, note
from hypothesis import strategies as st

import runtime as rt
import runtime.testing as rtt

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

NO_SCHEDULE = rtt.JobSchedule("job")


def _mock_run(main: Callable[[], Awaitable[None]]) -> None:
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def _run_jobs(graph: rtt.GraphSpec, schedules: Sequence[rtt.JobSchedule]) -> list[rt.JobState]:
    note(rtt.describe_jobs(graph, schedules))
    states: list[rt.JobState] = []

    async def main() -> None:
        states.extend(await rtt.run_graph_jobs(graph, schedules))

    _mock_run(main)
    return states


@given(rtt.routine_graphs(pauses=st.just(False)))
def test_fifo_per_connection_and_history_consistent_with_causality(graph: rtt.GraphSpec) -> None:
    """Per connection, messages are handled in emission order; every emission follows its cause in the history."""
    [state] = _run_jobs(graph, [NO_SCHEDULE])
    rtt.check_fifo(graph, state)


@given(
    rtt.routine_graphs(
        max_routines=3, cyclic=st.just(True), pauses=st.just(True), fanouts=st.sampled_from((2, 3))
    ),
    rtt.job_schedules(max_pauses=3, cancels=st.just(False)),
)
def test_fifo_per_connection_holds_through_pause_and_resume(
    graph: rtt.GraphSpec, schedule: rtt.JobSchedule
) -> None:
    """Per connection, messages are handled in the order their handler emitted them, also when the job
    is paused and resumed: events deferred while paused are emitted on resume in the order they were deferred."""
    [state] = _run_jobs(graph, [schedule])
    rtt.check_fifo(graph, state)


@given(rtt.routine_graphs(), st.data())
def test_exactly_once_delivery_unless_cancelled_then_undelivered_is_accurate(
    graph: rtt.GraphSpec, data: st.DataObject
) -> None:
    """Each emission reaches each connected slot once; a job that did not complete lists the rest as undelivered."""
    schedule = data.draw(rtt.job_schedules())
    [state] = _run_jobs(graph, [schedule])
    rtt.check_outcome(graph, state, schedule)
    rtt.check_delivery(graph, state)
    rtt.check_fifo(graph, state)


@given(
    rtt.routine_graphs(pauses=st.just(True)),
    rtt.job_schedules(max_pauses=3, cancels=st.just(False)),
)
def test_no_handler_starts_while_a_job_is_paused(graph: rtt.GraphSpec, schedule: rtt.JobSchedule) -> None:
    """Pause stops routines taking new messages; resume goes on and emits deferred events; nothing is lost."""
    [state] = _run_jobs(graph, [schedule])
    rtt.check_outcome(graph, state, schedule)  # includes: no handler started while paused
    rtt.check_delivery(graph, state)


@given(rtt.routine_graphs(), st.lists(rtt.job_schedules(), min_size=2, max_size=3), st.data())
def test_concurrent_jobs_of_one_flow_are_isolated(
    graph: rtt.GraphSpec, drawn: list[rtt.JobSchedule], data: st.DataObject
) -> None:
    """Concurrent jobs see only their own messages, state and routine copies, however each ends."""
    schedules = [rtt.JobSchedule(f"job{i}", s.pauses, s.cancel_at) for i, s in enumerate(drawn)]
    states = _run_jobs(graph, schedules)
    rtt.check_jobs_isolated(graph, {s.tag: state for s, state in zip(schedules, states, strict=True)})
    for schedule, state in zip(schedules, states, strict=True):
        rtt.check_job(graph, state, schedule)


@given(rtt.routine_graphs(), st.integers(2, 3))
def test_a_list_a_routine_makes_in_init_holds_its_own_jobs_calls_only(
    graph: rtt.GraphSpec, jobs: int
) -> None:
    """Concurrent jobs each make their own instance of every routine: the list a routine's __init__ made
    holds, in each job, exactly that job's calls of the routine."""
    schedules = [rtt.JobSchedule(f"job{i}") for i in range(jobs)]
    states = _run_jobs(graph, schedules)
    for schedule, state in zip(schedules, states, strict=True):
        for spec in graph.routines:
            calls = sum(1 for e in state.shared_log if e.get("at") == spec.routine_id and "recv" in e)
            kept = state.routine_states.get(spec.routine_id) or {"received": 0, "received_from": []}
            assert kept["received"] == calls, (schedule.tag, spec.routine_id)
            assert kept["received_from"] == ([schedule.tag] if calls else []), (schedule.tag, spec.routine_id)
    rtt.check_jobs_isolated(graph, {s.tag: state for s, state in zip(schedules, states, strict=True)})


@given(rtt.routine_graphs(pauses=st.just(False)), rtt.job_schedules(max_pauses=0))
def test_no_task_of_a_job_is_alive_after_it_however_it_ends(
    graph: rtt.GraphSpec, schedule: rtt.JobSchedule
) -> None:
    """After a job ends (completed, failed, timed out, or cancelled by leaving its block) none of its tasks still runs."""
    note(rtt.describe_jobs(graph, [schedule]))

    async def main() -> None:
        before = rtt.current_tasks()
        flow = graph.build()
        async with flow.open_job(graph.entry, graph.entry_params("job")) as job:
            if schedule.cancel_at is not None:
                with trio.move_on_after(schedule.cancel_at):
                    await job.wait()
            else:
                await job.wait()
        assert job.status.is_final  # leaving open_job cancels a job that had not ended
        rtt.check_no_tasks_left(before)
        await trio.testing.wait_all_tasks_blocked()
        rtt.check_no_tasks_left(before)

    _mock_run(main)


@given(rtt.routine_graphs(), rtt.job_schedules(), st.integers(0, 2**16))
def test_a_jobs_history_is_reproducible_under_mock_clock(
    graph: rtt.GraphSpec, schedule: rtt.JobSchedule, seed: int
) -> None:
    """With MockClock and a fixed scheduling seed, the same job gives the same history twice."""

    def history() -> list[tuple[object, ...]]:
        with rtt.deterministic_scheduling(seed):
            [state] = _run_jobs(graph, [schedule])
        return [(h.routine_id, h.event_name, h.data, h.offset) for h in state.history]

    assert history() == history()


@given(
    writes=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 3)), min_size=1, max_size=6),
    delays=st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=2, max_size=4),
)
def test_concurrent_jobs_never_see_each_others_context(
    writes: list[tuple[str, int]], delays: list[float]
) -> None:
    """Each job's handlers read and write their own deep copy of the Flow's context (``rt.context``).

    Jobs of one flow run at once, interleaved by delays; each appends its own tag to a nested list
    and sets keys. Every job must read back exactly what it wrote, and the Flow's dict never changes.
    """

    class Writer(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("go", handler=self.go)

        async def go(self, tag: int = 0, delay: float = 0.0) -> None:
            for key, value in writes:
                seen = rt.context.get("seen")
                assert isinstance(seen, list)
                seen.append(tag)  # in place: a shared or shallow copy would leak it
                rt.context.put(key, (tag, value))
                await trio.sleep(delay)
            rt.context.put("done", tag)

    flow: rt.Flow[..., object] = rt.Flow(flow_id="context-isolation", context={"seen": [], "nested": {"x": [1]}})
    flow.add_routine(Writer(), "writer")
    states: list[rt.JobState] = []

    async def main() -> None:
        async def one(tag: int, delay: float) -> None:
            states.append(await flow.aexecute("writer", {"tag": tag, "delay": delay}))

        async with trio.open_nursery() as nursery:
            for tag, delay in enumerate(delays):
                nursery.start_soon(one, tag, delay)

    _mock_run(main)
    assert len(states) == len(delays)
    for state in states:
        assert state.status is rt.Status.COMPLETED
        tag = state.context["done"]
        assert state.context["seen"] == [tag] * len(writes)
        last = dict(writes)
        for key, value in last.items():
            assert state.context[key] == (tag, value)
    assert flow.context == {"seen": [], "nested": {"x": [1]}}
