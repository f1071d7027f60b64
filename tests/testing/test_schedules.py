"""runtime.testing schedules: Schedule, schedules(), run_with_schedule(), run_many_with_schedule()."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import runtime as rt
from runtime import testing as rtt
from runtime.testing import Fault, Schedule


@rt.function_node
async def leaf(i: int) -> int:
    await trio.sleep(1)
    return i


@rt.function_node
async def fan(n: int) -> list[object]:
    return await rt.call_batch(leaf, range(n), return_exceptions=False)


fan_flow = rt.Flow("fan", entry_point=fan)


# -- Schedule and schedules() ------------------------------------------------------------


def test_schedule_value() -> None:
    schedule = Schedule((0, 0.5, 2))
    assert schedule.delays == (0.0, 0.5, 2.0)
    assert [schedule.delay_at(i) for i in range(5)] == [0.0, 0.5, 2.0, 0.0, 0.0]
    assert Schedule().delays == ()
    assert repr(schedule) == "Schedule(delays=(0.0, 0.5, 2.0))"
    assert schedule == Schedule([0.0, 0.5, 2.0])  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, "1", True])
def test_schedule_rejects_bad_delays(bad: object) -> None:
    with pytest.raises(InvalidArgument, match=r"^Schedule delay #1 is .*; a delay is a finite number of seconds, 0 or more\.$"):
        Schedule((0.0, bad))  # type: ignore[arg-type]


@given(rtt.schedules(min_size=2, max_size=4))
def test_schedules_draws_within_bounds(schedule: Schedule) -> None:
    assert 2 <= len(schedule.delays) <= 4
    assert all(d in {n / 10 for n in range(11)} for d in schedule.delays)


@given(rtt.schedules(delays=st.sampled_from([0.0, 3.0]), min_size=1, max_size=1))
def test_schedules_uses_the_given_delays(schedule: Schedule) -> None:
    assert schedule.delays in {(0.0,), (3.0,)}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_size": 5, "max_size": 2}, r"^schedules\(\): min_size=5 is greater than max_size=2; no value can satisfy both\.$"),
        ({"min_size": -1}, r"^schedules\(\): min_size=-1 must be an integer, 0 or more\.$"),
        ({"max_size": None}, r"^schedules\(\): max_size=None must be an integer, 0 or more\.$"),
        ({"delays": [0.1, 0.2]}, r"^delays=\[0\.1, 0\.2\] must be a strategy"),
    ],
)
def test_schedules_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        rtt.schedules(**kwargs)  # type: ignore[arg-type]


def test_schedules_bad_draw() -> None:
    @settings(max_examples=1, database=None)
    @given(rtt.schedules(delays=st.just(-1.0), min_size=1))
    def draw(schedule: Schedule) -> None:
        pass

    with pytest.raises(InvalidArgument, match=r"^Schedule delay #0 is -1\.0"):
        draw()


# -- applying a schedule ---------------------------------------------------------------------


def test_each_hand_off_waits_its_delay() -> None:
    # hand-off 0 is the entry point, then the three leaf calls in the order they start
    result = rtt.run_with_schedule(fan_flow, 3, schedule=Schedule((0.5, 0.0, 2.0, 1.0)))
    assert result.result == [0, 1, 2]
    leafs = sorted(r.finished_at for r in result.state.requests.values() if r.node == "leaf" and r.finished_at)
    assert leafs == [1.5, 2.5, 3.5]
    assert result.state.roots()[0].finished_at == 3.5


def test_an_empty_schedule_changes_nothing() -> None:
    plain = rtt.run_with_schedule(fan_flow, 2)
    scheduled = rtt.run_with_schedule(fan_flow, 2, schedule=Schedule())
    assert rtt.run_history(plain) == rtt.run_history(scheduled)
    assert plain.state.roots()[0].finished_at == 1.0


async def test_schedule_in_trio_code_through_inject(autojump_clock: object) -> None:
    with rtt.inject(schedule=Schedule((0.0, 4.0))) as injection:
        result = await fan_flow.arun(1)
    assert trio.current_time() == 5.0
    assert result.result == [0]
    assert [(h.name, h.delay) for h in injection.trace] == [("fan", 0.0), ("leaf", 4.0)]
    assert injection.describe() == "#1 node 'leaf' at fan > leaf[0]: held back 4 s before it ran"


def test_schedule_and_faults_together() -> None:
    result = rtt.run_with_schedule(
        fan_flow, 2, schedule=Schedule((0.0, 3.0)), faults={("leaf", 1): Fault.raising(KeyError("k"))}
    )
    assert result.status is rt.Status.FAILED
    assert isinstance(result.error, KeyError)
    # The failure came at once; the delayed sibling was cancelled, not waited for.
    assert result.state.roots()[0].finished_at == 0.0


def test_run_with_schedule_checks_fault_targets() -> None:
    with pytest.raises(rtt.FaultInjectionError, match=r"has no node 'laef'.*The known nodes are 'fan', 'leaf'\."):
        rtt.run_with_schedule(fan_flow, 1, faults={"laef": Fault.cancelling()})


async def test_run_with_schedule_inside_trio_is_an_error() -> None:
    with pytest.raises(rt.InvokeInsideTrioError, match=r"^run_with_schedule\(flow, \.\.\.\) was called inside a running Trio program"):
        rtt.run_with_schedule(fan_flow, 1)


def test_run_many_interleaves_runs_on_one_clock() -> None:
    results = rtt.run_many_with_schedule(fan_flow, [(1,), (2,)], schedule=Schedule((0.0, 0.0, 2.0)))
    assert [r.result for r in results] == [[0], [0, 1]]
    assert len({r.state.run_id for r in results}) == 2
    ends = sorted(r.state.roots()[0].finished_at or 0 for r in results)
    assert ends[0] == 1.0  # the runs shared one clock: hand-off #2 waited 2 s in one of them
    assert ends[1] == 3.0


def test_run_many_with_keyword_arguments() -> None:
    results = rtt.run_many_with_schedule(fan_flow, [(), ()], [{"n": 1}, {"n": 0}])
    assert [r.result for r in results] == [[0], []]
    with pytest.raises(ValueError, match=r"^run_many_with_schedule\(\): 2 argument sets but 1 keyword sets"):
        rtt.run_many_with_schedule(fan_flow, [(), ()], [{"n": 1}])


# -- determinism: a schedule replays -------------------------------------------------------------


@given(
    rtt.schedules(max_size=8),
    rtt.faults(flow=fan_flow, max_size=2),
    st.integers(min_value=0, max_value=4),
)
def test_a_scheduled_run_replays_exactly(schedule: Schedule, plan: rtt.FaultPlan, n: int) -> None:
    events: list[rt.Event] = []
    flow = rt.Flow("replay", entry_point=fan, subscribers=[events.append])
    first = rtt.run_with_schedule(flow, n, schedule=schedule, faults=plan)
    first_history = rtt.run_history(first, events)
    events.clear()
    second = rtt.run_with_schedule(flow, n, schedule=schedule, faults=plan)
    assert rtt.run_history(second, events) == first_history


# -- a failing interleaving shrinks and replays ----------------------------------------------------


@rt.function_node
async def publish() -> str:
    rt.context.put("config", "v2")
    return "published"


@rt.function_node
async def notify() -> str:
    await trio.sleep(0.5)  # "publish is quick; half a second is plenty"
    return f"users told about {rt.context.get('config')}"


@rt.function_node
async def release(step: str) -> str:
    return await rt.call(publish if step == "publish" else notify)


@rt.function_node
async def rollout() -> list[object]:
    # BUG: assumes publish ends before notify reads, with nothing to enforce it.
    return await rt.call_batch(release, ["publish", "notify"], return_exceptions=False)


rollout_flow = rt.Flow("rollout", entry_point=rollout, context={"config": "v1"})


def _told_old_config(schedule: Schedule) -> bool:
    result = rtt.run_with_schedule(rollout_flow, schedule=schedule)
    return result.result != ["published", "users told about v2"]


def test_a_race_is_found_shrunk_and_replayed() -> None:
    assert not _told_old_config(Schedule())  # the bug hides without delays
    schedule = find(rtt.schedules(), _told_old_config, settings=settings(max_examples=200, database=None, derandomize=True))
    # Shrunk: one delay, long enough to hold publish back past notify's half second.
    nonzero = [(i, d) for i, d in enumerate(schedule.delays) if d]
    assert len(nonzero) == 1
    index, delay = nonzero[0]
    assert delay in (0.5, 0.6)
    assert schedule.delays == (0.0,) * index + (delay,)
    # Replays: the same schedule fails the same way, every time.
    for _ in range(3):
        result = rtt.run_with_schedule(rollout_flow, schedule=schedule)
        assert result.result == ["published", "users told about v1"]
    # And the trace says where the delay went.
    with rtt.inject(schedule=schedule) as injection, rtt.deterministic_scheduling():
        trio.run(rollout_flow.arun, clock=trio.testing.MockClock(autojump_threshold=0))
    (delayed,) = [h for h in injection.trace if h.delay]
    assert delayed.path in {("rollout", "release"), ("rollout", "release", "publish")}


# -- check_no_leaks ---------------------------------------------------------------------------


@rt.function_node
async def tag(item: str) -> dict[str, object]:
    rt.context.put("seen", [item])
    return {"item": item}


tag_flow = rt.Flow("tag", entry_point=tag)


def test_check_no_leaks_passes_isolated_runs_and_names_a_leak() -> None:
    results = rtt.run_many_with_schedule(tag_flow, [("a:1",), ("b:1",)])
    rtt.check_no_leaks(results, ["a:", "b:"])
    with pytest.raises(
        AssertionError,
        match=(
            r"^run run-\w+ of flow 'tag' \(marker 'b:'\) holds data of run run-\w+ \(marker 'a:'\): "
            r"\$\.result\.item is 'a:1'\. Concurrent runs must never see each other's data; look for a module "
            r"global, a class attribute or an object shared between runs\.$"
        ),
    ):
        rtt.check_no_leaks(results, ["b:", "a:"])  # as if each run had the other's input


@pytest.mark.parametrize(
    ("markers", "match"),
    [
        (["a:"], r"^check_no_leaks\(\): 2 runs but 1 markers; give one marker per run\.$"),
        (["a:", "a:"], r"^check_no_leaks\(\): markers must be distinct non-empty strings"),
        (["", "b"], r"^check_no_leaks\(\): markers must be distinct non-empty strings"),
        (["job-1", "job-10"], r"^check_no_leaks\(\): marker 'job-1' is part of marker 'job-10'"),
    ],
)
def test_check_no_leaks_bad_markers(markers: list[str], match: str) -> None:
    results = rtt.run_many_with_schedule(tag_flow, [("x",), ("y",)])
    with pytest.raises(ValueError, match=match):
        rtt.check_no_leaks(results, markers)


# -- routine graphs: schedules reach slot handlers, and replay --------------------------------


class Emitter(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("start", handler=self.start)
        self.define_event("tick", ["n"])

    def start(self, data: object = None, **kwargs: object) -> None:
        for n in range(3):
            self.emit("tick", n=n)


class Recorder(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("tick", handler=self.record)

    async def record(self, n: int) -> None:
        await trio.sleep(0.1 * (3 - n))
        ctx = self.get_execution_context()
        assert ctx is not None
        ctx.job_state.append_to_shared_log({"n": n})


def ticking() -> rt.Flow:  # type: ignore[type-arg]
    flow: rt.Flow = rt.Flow(flow_id="ticks")  # type: ignore[type-arg]
    flow.add_routine(Emitter(), "emitter")
    flow.add_routine(Recorder(), "left")
    flow.add_routine(Recorder(), "right")
    flow.connect("emitter", "tick", "left", "tick")
    flow.connect("emitter", "tick", "right", "tick")
    return flow


def _job_history(result: rt.RunResult[object]) -> list[tuple[object, ...]]:
    state = result.state
    return [
        (state.status.value,),
        *((h.routine_id, h.event_name, tuple(sorted(h.data.items())), h.offset) for h in state.history),
        *((entry["n"],) for entry in state.shared_log),
    ]


@given(rtt.schedules(max_size=8))
def test_a_scheduled_job_replays_exactly(schedule: Schedule) -> None:
    first = rtt.run_with_schedule(ticking(), "go", schedule=schedule)
    second = rtt.run_with_schedule(ticking(), "go", schedule=schedule)
    assert first.status is rt.Status.COMPLETED
    assert _job_history(first) == _job_history(second)


def test_a_schedule_delays_slot_handlers() -> None:
    with rtt.inject(schedule=Schedule((1.0, 0.5))) as injection, rtt.deterministic_scheduling():
        trio.run(ticking().arun, "go", clock=trio.testing.MockClock(autojump_threshold=0))
    assert [(h.kind, h.path, h.delay) for h in injection.trace[:2]] == [
        ("routine", ("emitter", "start"), 1.0),
        ("routine", (injection.trace[1].name, "tick"), 0.5),
    ]
    assert len(injection.trace) == 7  # the entry, then three ticks to each recorder
