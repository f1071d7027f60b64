"""runtime.testing faults: Fault, FaultPlan, faults(), inject(), discover_nodes()."""

from __future__ import annotations

import math
import types

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import runtime as rt
from runtime import testing as rtt
from runtime.testing import Fault, FaultPlan, InjectedCancelError, InjectedError

# -- a small workflow -----------------------------------------------------------

log: list[str] = []


@rt.function_node
async def leaf(i: int) -> int:
    log.append(f"leaf {i} start")
    try:
        await trio.sleep(1)
        return i * 10
    finally:
        log.append(f"leaf {i} finally")


@rt.function_node
async def fan(n: int) -> list[object]:
    return await rt.call_batch(leaf, range(n), return_exceptions=False)


@rt.function_node
async def tolerant(n: int) -> list[object]:
    """Calls leaf one at a time and keeps going past a failing one."""
    out: list[object] = []
    for i in range(n):
        try:
            out.append(await rt.call(leaf, i))
        except Exception as exc:
            out.append(type(exc).__name__)
    return out


@pytest.fixture(autouse=True)
def _clear_log() -> None:
    log.clear()


@rt.function_node
async def double(i: int) -> int:
    return i * 10


@rt.function_node
async def each(n: int) -> list[object]:
    """Calls double one at a time, without sleeping, and keeps going past a failing one."""
    out: list[object] = []
    for i in range(n):
        try:
            out.append(await rt.call(double, i))
        except Exception as exc:
            out.append(type(exc).__name__)
    return out


fan_flow = rt.Flow("fan", entry_point=fan)
each_flow = rt.Flow("each", entry_point=each)
tolerant_flow = rt.Flow("tolerant", entry_point=tolerant)


# -- Fault ------------------------------------------------------------------------


def test_fault_constructors_and_repr() -> None:
    boom = ValueError("boom")
    assert repr(Fault.raising(boom)) == "Fault.raising(ValueError('boom'))"
    assert repr(Fault.delaying(0.5)) == "Fault.delaying(0.5)"
    assert repr(Fault.cancelling()) == "Fault.cancelling()"
    assert Fault.raising(boom).describe() == "raise ValueError('boom')"
    assert Fault.delaying(0.5).describe() == "delay 0.5 s"
    assert Fault.cancelling().describe() == "cancel the run"
    assert Fault.delaying(1) == Fault.delaying(1.0)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Fault.raising(ValueError), r"^Fault\.raising\(<class 'ValueError'>\): give an exception instance"),
        (lambda: Fault.raising(KeyboardInterrupt()), r"use Fault\.cancelling\(\)"),  # type: ignore[arg-type]
        (lambda: Fault.delaying(-1), r"a delay must be a finite number of seconds, 0 or more, not -1\.$"),
        (lambda: Fault.delaying(math.nan), r"not nan\.$"),
        (lambda: Fault.delaying(math.inf), r"not inf\.$"),
        (lambda: Fault("explode"), r"^Fault\(kind='explode'\): the kinds are 'raise', 'delay', 'cancel' and 'raise_after'\.$"),  # type: ignore[arg-type]
        (lambda: Fault("cancel", seconds=1.0), r"^Fault\(kind='cancel'\) takes no seconds"),
        (lambda: Fault("delay", exception=ValueError()), r"^Fault\(kind='delay'\) takes no exception"),
    ],
)
def test_fault_bad_input(make: object, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        make()  # type: ignore[operator]


# -- FaultPlan ----------------------------------------------------------------------


def test_plan_is_a_frozen_mapping() -> None:
    slow = Fault.delaying(0.1)
    boom = Fault.raising(ValueError("boom"))
    plan = FaultPlan({"leaf": slow, ("fan", 0): boom})
    assert dict(plan) == {"leaf": slow, ("fan", 0): boom}
    assert plan["leaf"] is slow
    assert plan[("fan", 0)] is boom
    assert len(plan) == 2
    assert plan.targets == {"leaf", "fan"}
    assert plan == FaultPlan([("leaf", slow), (("fan", 0), boom)])
    assert hash(plan) == hash(FaultPlan({("fan", 0): boom, "leaf": slow}))
    assert repr(plan) == "FaultPlan({'leaf': Fault.delaying(0.1), ('fan', 0): Fault.raising(ValueError('boom'))})"
    assert not hasattr(plan, "__setitem__")
    with pytest.raises(KeyError):
        plan["other"]


def test_plan_most_specific_key_wins() -> None:
    every = Fault.delaying(0.1)
    second = Fault.delaying(0.2)
    slot = Fault.delaying(0.3)
    slot_first = Fault.delaying(0.4)
    plan = FaultPlan({"r": every, ("r", 1): second, "r.input": slot, ("r.input", 0): slot_first})
    assert plan.fault_for("r", 0) is every
    assert plan.fault_for("r", 1) is second
    assert plan.fault_for("r", 0, "input") is slot_first
    assert plan.fault_for("r", 1, "input") is slot
    assert plan.fault_for("r", 1, "flush") is second
    assert plan.fault_for("other", 0) is None


@pytest.mark.parametrize(
    ("faults", "match"),
    [
        ({"": Fault.cancelling()}, r"^FaultPlan key '': a key is a node name or routine id"),
        ({("leaf", -1): Fault.cancelling()}, r"the call index counts invocations of 'leaf' in a run from 0"),
        ({("leaf", "x"): Fault.cancelling()}, r"or a \(name, call index\) pair"),
        ({3: Fault.cancelling()}, r"^FaultPlan key 3"),
        ({"leaf": "raise"}, r"^FaultPlan\['leaf'\] = 'raise': a value must be a Fault"),
    ],
)
def test_plan_bad_input(faults: dict[object, object], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        FaultPlan(faults)  # type: ignore[arg-type]


# -- inject: the three kinds -------------------------------------------------------------


async def test_raise_fault_raises_a_fresh_copy_in_place_of_the_node(autojump_clock: object) -> None:
    template = ValueError("leaf down")
    with rtt.inject({("leaf", 1): Fault.raising(template)}, flow=tolerant_flow) as injection:
        first = await tolerant_flow.arun(3)
        second = await tolerant_flow.arun(3)
    # The caller caught it like any node error; call 1 of each run never started.
    assert first.result == second.result == [0, "ValueError", 20]
    assert "leaf 1 start" not in log
    failed = [r for r in first.state.requests.values() if r.status is rt.Status.FAILED]
    assert [(r.node, r.error.message if r.error else None) for r in failed] == [("leaf", "leaf down")]
    # The template is never raised itself, so nothing piles up on it.
    assert template.__traceback__ is None
    assert getattr(template, "__notes__", None) is None
    assert [(h.name, h.call) for h in injection.fired] == [("leaf", 1), ("leaf", 1)]
    assert len(injection.run_ids) == 2
    assert set(injection.run_ids) == {first.state.job_id, second.state.job_id}


async def test_raise_fault_default_exception_ends_an_intolerant_run(autojump_clock: object) -> None:
    with rtt.inject({"leaf": Fault.raising(InjectedError("injected fault"))}):
        result = await fan_flow.arun(2)
    assert result.status is rt.Status.FAILED
    assert isinstance(result.error, InjectedError)
    assert str(result.error) == "injected fault"
    assert log == []


async def test_delay_fault_delays_only_its_target(autojump_clock: object) -> None:
    with rtt.inject({("leaf", 0): Fault.delaying(2.5)}):
        result = await fan_flow.arun(2)
    assert result.result == [0, 10]
    leafs = [r for r in result.state.requests.values() if r.node == "leaf"]
    assert sorted(r.finished_at for r in leafs if r.finished_at is not None) == [1.0, 3.5]
    root = result.state.roots()[0]
    assert root.finished_at == 3.5


async def test_cancel_fault_cancels_every_node_of_the_run(autojump_clock: object) -> None:
    with rtt.inject({("leaf", 2): Fault.cancelling()}, flow=fan_flow) as injection:
        result = await fan_flow.arun(3)
    assert result.status is rt.Status.FAILED
    assert isinstance(result.error, InjectedCancelError)
    assert str(result.error) == (
        "A cancel fault cancelled the run when node 'leaf' was about to run (at fan > leaf)."
    )
    # Siblings that had started were cancelled and their finally blocks ran;
    # the targeted call (the third to be invoked) never started.
    started = sorted(e.split()[1] for e in log if e.endswith("start"))
    finished = sorted(e.split()[1] for e in log if e.endswith("finally"))
    assert len(started) == 2
    assert started == finished
    statuses = {r.status for r in result.state.requests.values()}
    assert statuses == {rt.Status.CANCELLED}
    assert trio.current_time() == 0.0  # nobody waited for the sleeps
    assert injection.describe() == "#3 node 'leaf' at fan > leaf[2]: cancel the run"


async def test_cancel_fault_outside_a_node_run_raises_the_error() -> None:
    fault = Fault.cancelling()
    invocation = rt_invocation("routine", "r", ("r", "input"))
    with pytest.raises(
        InjectedCancelError,
        match=r"^A cancel fault found no run to cancel when routine 'r' was about to run \(at r > input\)\.$",
    ):
        await fault.apply(invocation)


def rt_invocation(kind: str, name: str, path: tuple[str, ...]) -> object:
    from runtime._context import Invocation

    return Invocation(kind, name, path, (), {})


# -- inject: scope --------------------------------------------------------------------------


async def test_only_runs_started_inside_the_block_are_affected(autojump_clock: object) -> None:
    results: dict[str, object] = {}

    async def faulty() -> None:
        with rtt.inject({"leaf": Fault.raising(ValueError("x"))}):
            results["inside"] = (await fan_flow.arun(2)).status

    async def clean() -> None:
        results["outside"] = (await fan_flow.arun(2)).status

    async with trio.open_nursery() as nursery:
        nursery.start_soon(faulty)
        nursery.start_soon(clean)
    assert results == {"inside": rt.Status.FAILED, "outside": rt.Status.COMPLETED}
    # And after the block, nothing is injected any more.
    assert (await fan_flow.arun(2)).status is rt.Status.COMPLETED


async def test_blocks_nest_and_the_outer_hook_still_runs(autojump_clock: object) -> None:
    with rtt.inject({("leaf", 0): Fault.delaying(1)}) as outer:
        with rtt.inject({("leaf", 1): Fault.delaying(2)}) as inner:
            result = await fan_flow.arun(2)
        after = await fan_flow.arun(1)
    assert result.state.roots()[0].finished_at == 3.0
    assert after.state.roots()[0].finished_at == 2.0
    assert [h.name for h in outer.trace] == ["fan", "leaf", "leaf", "fan", "leaf"]
    assert [h.name for h in inner.trace] == ["fan", "leaf", "leaf"]


def test_an_injection_is_entered_once() -> None:
    injection = rtt.inject()
    with injection, pytest.raises(RuntimeError, match=r"^This inject\(\) block is already active"):
        injection.__enter__()


def test_sync_invoke_inside_the_block() -> None:
    with rtt.inject({("double", 0): Fault.raising(ValueError("sync"))}, flow=each_flow) as injection:
        assert each_flow.invoke(2) == ["ValueError", 10]
    assert injection.seen == {"each", "double"}
    assert [h.describe() for h in injection.fired] == [
        "#1 node 'double' at each > double[0]: raise ValueError('sync')"
    ]


# -- inject: unknown targets ---------------------------------------------------------------


def test_unknown_node_in_a_flow_names_the_known_ones() -> None:
    with (
        pytest.raises(
            rtt.FaultInjectionError,
            match=(
                r"^inject\(\): Flow 'fan' has no node 'leef': it is not reachable from the entry point's code, "
                r"and no run in the block invoked it\. The known nodes are 'fan', 'leaf'\. "
                r"Fix the name, or pass nodes=\[\.\.\.\] to inject\(\) to name the nodes yourself\.$"
            ),
        ),
        rtt.inject({"leef": Fault.cancelling()}, flow=fan_flow),
    ):
        pass


def test_unknown_node_in_an_explicit_list_fails_at_once() -> None:
    with pytest.raises(
        rtt.FaultInjectionError,
        match=r"^inject\(\): the node list given to inject\(\) has no node 'x', 'y'; its nodes are 'fan', 'leaf'\.$",
    ):
        rtt.inject({"x": Fault.cancelling(), ("y", 2): Fault.cancelling()}, nodes=["fan", "leaf"])


def test_unknown_node_error_does_not_hide_the_blocks_own_error() -> None:
    with pytest.raises(ZeroDivisionError), rtt.inject({"leef": Fault.cancelling()}, flow=fan_flow):
        1 / 0  # noqa: B018


@rt.function_node
async def apply_node(node: object, i: int) -> object:
    # The node to call comes in as an argument: no reading of the code finds it.
    return await rt.call(node, i)


def test_a_node_found_only_at_run_time_is_accepted_once_invoked() -> None:
    flow = rt.Flow("apply", entry_point=apply_node)
    late = rt.function_node(name="late")(lambda i: i)
    assert rtt.discover_nodes(apply_node) == ("apply_node",)
    with rtt.inject({"late": Fault.raising(ValueError("late"))}, flow=flow) as injection:
        result = flow.run(late, 1)
    assert isinstance(result.error, ValueError)
    assert injection.seen == {"apply_node", "late"}


def test_no_flow_means_no_check() -> None:
    with rtt.inject({"anything": Fault.cancelling()}) as injection:
        assert each_flow.invoke(1) == [0]
    assert injection.fired == []


# -- discover_nodes ------------------------------------------------------------------------


STEPS = types.ModuleType("steps")  # a module of nodes, reached as STEPS.step_a


def test_discover_nodes_follows_globals_modules_closures_and_containers() -> None:

    @rt.function_node
    async def step_a() -> int:
        return 1

    @rt.function_node
    async def step_b() -> int:
        return 2

    @rt.function_node
    async def step_c() -> int:
        return 3

    STEPS.step_a = step_a  # type: ignore[attr-defined]
    table = {"b": step_b}  # a closure variable holding a dict of nodes

    @rt.function_node
    async def main() -> list[object]:
        first = await rt.call(STEPS.step_a)
        inner = [await rt.call(table[k]) for k in table]
        return [first, *inner, await (lambda: rt.call(step_c))()]

    try:
        found = rtt.discover_nodes(main)
        assert found[0] == "main"
        assert sorted(found) == ["main", "step_a", "step_b", "step_c"]
        assert rtt.flow_targets(rt.Flow("m", entry_point=main)) == found
    finally:
        del STEPS.step_a


def test_discover_nodes_handles_cycles_and_plain_functions() -> None:
    assert rtt.discover_nodes(fan) == ("fan", "leaf")
    assert rtt.discover_nodes(tolerant) == ("tolerant", "leaf")
    assert rtt.discover_nodes(rt.function_node(len)) == ("len",)


# -- faults() ---------------------------------------------------------------------------


@given(rtt.faults(flow=fan_flow, min_size=1, max_size=3))
def test_faults_draws_plans_at_the_flows_targets(plan: FaultPlan) -> None:
    assert 1 <= len(plan) <= 3
    assert plan.targets <= {"fan", "leaf"}
    for key, fault in plan.items():
        target, call = (key, None) if isinstance(key, str) else key
        assert target in {"fan", "leaf"}
        assert call is None or 0 <= call <= 3
        assert fault.kind in ("raise", "delay", "cancel", "raise_after")
        if fault.kind in ("raise", "raise_after"):
            assert isinstance(fault.exception, InjectedError)  # fan_flow's code catches nothing by name
        if fault.kind == "delay":
            assert 0 <= fault.seconds <= 1


@given(
    rtt.faults(
        targets=st.sampled_from(["leaf"]),
        kinds=st.just("raise"),
        exceptions=st.sampled_from([KeyError("k"), OSError("o")]),
        calls=st.integers(0, 2),
        min_size=3,
        max_size=3,
    )
)
def test_faults_honours_every_argument(plan: FaultPlan) -> None:
    assert set(plan) == {("leaf", 0), ("leaf", 1), ("leaf", 2)}
    assert all(type(f.exception) in (KeyError, OSError) for f in plan.values())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"targets": st.just("a"), "min_size": 3, "max_size": 1}, r"^faults\(\): min_size=3 is greater than max_size=1"),
        ({"targets": st.just("a"), "min_size": -1}, r"^faults\(\): min_size=-1 must be an integer, 0 or more\.$"),
        ({"targets": st.just("a"), "max_size": 1.5}, r"^faults\(\): max_size=1\.5 must be an integer"),
        ({"targets": ["a", "b"]}, r"^targets=\['a', 'b'\] must be a strategy"),
        ({"targets": st.just("a"), "kinds": "raise"}, r"^kinds='raise' must be a strategy"),
        ({"targets": st.just("a"), "delays": 0.5}, r"^delays=0\.5 must be a strategy"),
        ({}, r"^faults\(\) needs targets=st\.sampled_from\(\[\.\.\.node names or routine ids\.\.\.\]\), or flow=your_flow\.$"),
        ({"flow": rt.Flow("empty")}, r"the flow has no node or routine to put a fault at\.$"),
    ],
)
def test_faults_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        rtt.faults(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kinds": st.just("explode")}, r"^faults\(\): kinds drew 'explode'; the kinds are"),
        ({"kinds": st.just("delay"), "delays": st.just(-0.5)}, r"^faults\(\): delays drew a bad value: a delay must be a finite number of seconds, 0 or more, not -0\.5\."),
        ({"kinds": st.just("raise"), "exceptions": st.just("boom")}, r"^Fault\.raising\('boom'\): give an exception instance"),
        ({"targets": st.just("")}, r"^faults\(\): targets drew ''; a target is a non-empty node name"),
    ],
)
def test_faults_bad_draws(kwargs: dict[str, object], match: str) -> None:
    kwargs.setdefault("targets", st.just("leaf"))
    strategy = rtt.faults(min_size=1, **kwargs)  # type: ignore[arg-type]

    @settings(max_examples=1, database=None)
    @given(strategy)
    def draw(plan: FaultPlan) -> None:
        pass

    with pytest.raises(InvalidArgument, match=match):
        draw()


# -- property: the outcome follows the plan ---------------------------------------------------


@given(rtt.faults(flow=fan_flow, kinds=st.sampled_from(["raise", "delay"]), max_size=2), st.integers(0, 3))
def test_a_run_fails_exactly_when_a_raise_fault_fires(plan: FaultPlan, n: int) -> None:
    result = rtt.run_with_schedule(fan_flow, n, faults=plan)
    # The fault at a call is the plan's most specific one: (name, call index) before name.
    calls = [("fan", 0)] + [("leaf", i) for i in range(n)]
    effective = [plan.get(call, plan.get(call[0])) for call in calls]
    raised = [fault for fault in effective if fault is not None and fault.kind == "raise"]
    if raised:
        assert result.status is rt.Status.FAILED
        assert isinstance(result.error, InjectedError)
    else:
        assert result.status is rt.Status.COMPLETED
        assert result.result == [i * 10 for i in range(n)]


# -- the pytest-trio pattern: an async test under @given with the autojump clock --------------


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=10)
@given(plan=rtt.faults(flow=tolerant_flow, kinds=st.just("cancel"), min_size=1, max_size=1))
async def test_async_given_with_autojump_clock(autojump_clock: object, plan: FaultPlan) -> None:
    log.clear()
    with rtt.inject(plan, flow=tolerant_flow) as injection:
        result = await tolerant_flow.arun(2)
    if injection.fired:
        assert isinstance(result.error, InjectedCancelError)
        # every leaf that started also ran its finally block
        assert sorted(e for e in log if e.endswith("start")) == sorted(
            e.replace("finally", "start") for e in log if e.endswith("finally")
        )
    else:
        assert result.result == [0, 10]


# -- routine graphs -------------------------------------------------------------------------


class Source(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger", handler=self.go)
        self.define_event("out", ["n"])

    def go(self, data: object = None, **kwargs: object) -> None:
        for i in range(3):
            self.emit("out", n=i)


class Sink(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.take)

    async def take(self, n: int) -> None:
        await trio.sleep(1)
        self.send_output("got", n=n)


def graph(*, retry: bool = False) -> rt.Flow:  # type: ignore[type-arg]
    flow: rt.Flow = rt.Flow(flow_id="pipeline")  # type: ignore[type-arg]
    flow.add_routine(Source(), "src")
    sink = Sink()
    if retry:
        sink.set_error_handler(rt.ErrorHandler(strategy="retry", max_retries=2, retry_delay=0.5))
    flow.add_routine(sink, "sink")
    flow.connect("src", "out", "sink", "input")
    return flow


def outputs(result: rt.RunResult[object]) -> list[object]:
    return [o["data"]["n"] for o in result.result or []]  # type: ignore[attr-defined,index]


def test_routine_targets_are_ids_and_slots() -> None:
    assert rtt.flow_targets(graph()) == ("src", "src.trigger", "sink", "sink.input")


def test_unknown_routine_id_names_the_known_ones() -> None:
    with pytest.raises(
        rtt.FaultInjectionError,
        match=(
            r"^inject\(\): Flow 'pipeline' has no routine 'snk'; its routine ids are 'sink', 'src' "
            r"\(a slot is targeted as 'routine\.slot': 'sink\.input', 'src\.trigger'\)\.$"
        ),
    ):
        rtt.inject({"snk": Fault.cancelling()}, flow=graph())
    with pytest.raises(rtt.FaultInjectionError, match=r"has no routine 'sink\.output'"):
        rtt.run_with_schedule(graph(), "go", faults={"sink.output": Fault.cancelling()})


def test_routine_raise_fault_follows_the_routines_error_strategy() -> None:
    stopped = rtt.run_with_schedule(graph(), "go", faults={("sink", 1): Fault.raising(ValueError("bad"))})
    assert stopped.status is rt.Status.FAILED
    assert isinstance(stopped.error, ValueError)
    assert outputs(stopped) == [0]
    # With retry, each attempt is an invocation: the fault at call 1 hits the
    # first attempt of message 1 only, and the retry succeeds.
    retried = rtt.run_with_schedule(graph(retry=True), "go", faults={("sink.input", 1): Fault.raising(ValueError("once"))})
    assert retried.status is rt.Status.COMPLETED
    assert outputs(retried) == [0, 1, 2]
    errors = [h for h in retried.state.history if h.event_name == "error"]
    assert [(h.routine_id, h.data["error"], h.data["action"]) for h in errors] == [("sink", "once", "retry")]


def test_routine_delay_fault_and_schedule() -> None:
    result = rtt.run_with_schedule(
        graph(), "go", faults={("sink", 0): Fault.delaying(2)}, schedule=rtt.Schedule((1.0,))
    )
    assert outputs(result) == [0, 1, 2]
    # src waited 1 s, the first sink call 2 s more, and each sink call takes 1 s.
    offsets = [h.offset for h in result.state.history if h.routine_id == "src"]
    assert offsets == [1.0, 1.0, 1.0]


def test_routine_cancel_fault_cancels_the_job() -> None:
    result = rtt.run_with_schedule(graph(), "go", faults={("sink", 1): Fault.cancelling()})
    assert result.status is rt.Status.CANCELLED
    assert isinstance(result.error, rt.RunCancelledError)
    assert str(result.error).endswith(
        "was cancelled: a cancel fault cancelled it when routine 'sink' was about to run (at sink > input)"
    )
    assert outputs(result) == [0]
    assert [(d.target, d.slot, d.data) for d in result.state.undelivered] == [("sink", "input", {"n": 2})]


# -- check_cancellation ------------------------------------------------------------------------


def test_check_cancellation_refuses_a_run_that_has_not_finished() -> None:
    state = rt.JobState(job_id="run-1", flow_id="fan", status=rt.Status.RUNNING)
    with pytest.raises(
        AssertionError,
        match=r"^run run-1 of flow 'fan' has not finished \(its status is 'running'\); check a run once it has ended\.$",
    ):
        rtt.check_cancellation(rt.RunResult(state, None, None), rtt.inject())


def test_check_cancellation_passes_a_run_that_was_not_cancelled() -> None:
    with rtt.inject() as injection:
        result = rtt.run_with_schedule(fan_flow, 2)
    rtt.check_cancellation(result, injection)
    assert injection.cancels == {}


async def test_check_cancellation_names_the_node_that_swallowed_it(autojump_clock: object) -> None:
    @rt.function_node
    async def cleanup() -> str:
        return "cleaned"

    @rt.function_node
    async def stubborn() -> str:
        try:  # noqa: SIM105  # written out: this is the bug under test
            await trio.sleep(5)
        except trio.Cancelled:
            pass  # BUG: swallowed, and the node goes on
        with trio.CancelScope(shield=True):
            return await rt.call(cleanup)

    @rt.function_node
    async def careful() -> str:
        try:
            await trio.sleep(5)
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                await rt.call(cleanup)  # a shielded clean-up call after the cancel is fine
            raise
        return "done"

    @rt.function_node
    async def either(which: str) -> object:
        if which == "leaf":
            return await rt.call(leaf, 1)
        return await rt.call(stubborn if which == "stubborn" else careful)

    @rt.function_node
    async def trio_of_calls(which: list[str]) -> list[object]:
        return await rt.call_batch(either, which, return_exceptions=False)

    flow = rt.Flow("stubborn", entry_point=trio_of_calls)
    with rtt.inject({"leaf": Fault.cancelling()}, flow=flow) as injection:
        bad = await flow.arun(["careful", "stubborn", "leaf"])
        good = await flow.arun(["careful", "leaf"])
    point = injection.cancels[bad.state.run_id]
    assert point.path == ("trio_of_calls", "either", "leaf")
    with pytest.raises(
        AssertionError,
        match=(
            r"^run run-\w+ of flow 'stubborn': trio_of_calls > either > stubborn \(r\d\) was running when a cancel "
            r"fault cancelled the run at 0 s \(at trio_of_calls > either > leaf\), but it ended completed with "
            r"result 'cleaned': it caught trio\.Cancelled and went on instead of letting the cancellation propagate\.$"
        ),
    ):
        rtt.check_cancellation(bad, injection)
    rtt.check_cancellation(good, injection)
    assert [r.node for r in good.state.requests.values()].count("cleanup") == 1
