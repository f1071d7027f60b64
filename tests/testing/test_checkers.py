"""runtime.testing checkers: each one passes on good runs and fails, in user terms, on bad ones."""

from __future__ import annotations

import copy
import re
import types
from typing import TYPE_CHECKING, TypeVar

import attrs
import pytest
import trio
import trio.testing
from hypothesis import find, settings

import runtime as rt
import runtime._context
import runtime.testing as rtt
import runtime.testing._calltrees

if TYPE_CHECKING:
    import random
    from collections.abc import Sequence

S = rt.Status
T = TypeVar("T")
K = rt.EventKind


@rt.function_node
async def leaf(x: int) -> int:
    await rt.broadcast(x)
    return x


@rt.function_node
async def root() -> int:
    first = await rt.call(leaf, 1)
    rest = await rt.call_batch(leaf, [2, 3], return_exceptions=False)
    return first + sum(rest)  # type: ignore[arg-type]


def _run_with_events() -> tuple[rt.RunResult[int], list[rt.Event]]:
    events: list[rt.Event] = []
    result = rt.Flow("demo", entry_point=root, subscribers=[events.append]).run()
    return result, events


def _renumber(events: Sequence[rt.Event]) -> list[rt.Event]:
    return [attrs.evolve(e, seq=i) for i, e in enumerate(events)]


def _prefix(result: rt.RunResult[T]) -> str:
    return re.escape(f"run {result.state.run_id} of flow {result.state.flow_name!r}: ")


# -- check_structure -----------------------------------------------------------------


def test_structure_of_a_good_run() -> None:
    result, _ = _run_with_events()
    rtt.check_structure(result, started=["a", "b"], finalized=["b", "a"])


def test_structure_of_a_run_that_has_not_ended() -> None:
    result, _ = _run_with_events()
    state = copy.deepcopy(result.state)
    state.status = S.RUNNING
    broken: rt.RunResult[object] = rt.RunResult(state, None, None)
    with pytest.raises(AssertionError, match=_prefix(broken) + r"the run has ended, but its status is 'running', not a final status\.$"):
        rtt.check_structure(broken)


def test_structure_with_an_open_request() -> None:
    result, _ = _run_with_events()
    state = copy.deepcopy(result.state)
    state.requests["r3"].status = S.RUNNING
    broken: rt.RunResult[object] = rt.RunResult(state, None, None)
    with pytest.raises(
        AssertionError, match=_prefix(broken) + r"the run ended completed, yet requests are still open: root > leaf \(r3\) is running\.$"
    ):
        rtt.check_structure(broken)


def test_structure_with_a_finally_that_never_ran() -> None:
    result, _ = _run_with_events()
    with pytest.raises(
        AssertionError, match=_prefix(result) + r"these calls started but their finally block never ran: n0 > n2\.$"
    ):
        rtt.check_structure(result, started=["n0", "n0 > n2"], finalized=["n0"])


async def test_structure_finds_a_task_a_node_leaked(autojump_clock: trio.abc.Clock) -> None:
    with rtt.watch_tasks() as tasks:  # open until the last check: it must see tasks end
        async with trio.open_nursery() as outside:

            @rt.function_node
            async def leaky() -> str:
                async def background_poll() -> None:
                    await trio.sleep(100)

                outside.start_soon(background_poll)  # a task that outlives the run
                return "done"

            result = await rt.Flow("leaky", entry_point=leaky).arun()
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(
                AssertionError,
                match=_prefix(result) + r"the run ended completed, yet these of its tasks are alive: .*background_poll\.$",
            ):
                rtt.check_structure(result, tasks=tasks)
            outside.cancel_scope.cancel()
        rtt.check_structure(result, tasks=tasks)  # once it is gone, the run is clean


async def test_structure_needs_a_watch_opened_before_the_run() -> None:
    result = await rt.Flow("demo", entry_point=root).arun()
    with rtt.watch_tasks() as tasks:
        pass
    with pytest.raises(
        AssertionError,
        match=rf"^watch_tasks\(\) saw no task of run {result.state.run_id}: open it before the run starts "
        r"and keep it open until the run ends\.$",
    ):
        rtt.check_structure(result, tasks=tasks)


async def test_watch_sees_every_actor_of_a_run() -> None:
    with rtt.watch_tasks() as tasks:
        result = await rt.Flow("demo", entry_point=root, subscribers=[lambda e: None]).arun()
    names = [t.name for t in tasks.run_tasks(result.state.run_id)]
    # The run is a block in this task: its first tasks are those the block started.
    assert names[:2] == ["publisher", "root (r1)"]
    assert {"publisher", "root (r1)", "leaf (r2)", "leaf (r3)", "leaf (r4)"} <= set(names)
    assert tasks.alive(result.state.run_id) == []


# -- check_request_tree ----------------------------------------------------------------


def _tree_problem(result: rt.RunResult[T], edit: object) -> rt.RunResult[T]:
    state = copy.deepcopy(result.state)
    edit(state)  # type: ignore[operator]
    return rt.RunResult(state, result.result, result.error)


def test_request_tree_of_a_good_run() -> None:
    result, _ = _run_with_events()
    rtt.check_request_tree(result, calls=[("root",), ("root", "leaf"), ("root", "leaf"), ("root", "leaf")])


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            lambda s: setattr(s.requests["r2"], "parent_id", None),
            r"the request tree should have one root \(the entry point\), but has: root \(r1\), leaf \(r2\)\.",
        ),
        (
            lambda s: setattr(s.requests["r2"], "parent_id", "r4"),
            r"root > leaf > leaf \(r2\) names parent 'r4', which was not created before it\.",
        ),
        (lambda s: setattr(s.requests["r3"], "status", S.PENDING), r"root > leaf \(r3\) never ended: its status is 'pending'\."),
        (
            lambda s: setattr(s.requests["r3"], "result", None),
            r"root > leaf \(r3\) completed but records result=None, error=None\.",
        ),
        (
            lambda s: setattr(s.requests["r4"], "finished_at", s.requests["r1"].finished_at + 1),
            r"root \(r1\) completed at [0-9.e-]+ s, before its child root > leaf \(r4\) ended \(completed at [0-9.e-]+\)\.",
        ),
        (
            lambda s: setattr(s.requests["r1"], "result", "7"),
            r"the run completed with result '6', but its entry point root \(r1\) is completed with result '7'\.",
        ),
    ],
)
def test_request_tree_problems(edit: object, problem: str) -> None:
    result, _ = _run_with_events()
    broken = _tree_problem(result, edit)
    with pytest.raises(AssertionError, match=_prefix(broken) + problem + "$"):
        rtt.check_request_tree(broken)


def test_request_tree_against_the_calls_that_ran() -> None:
    result, _ = _run_with_events()
    with pytest.raises(
        AssertionError,
        match=_prefix(result) + r"root > leaf was called 4 time\(s\), but the request tree records 3 request\(s\) for it\.$",
    ):
        rtt.check_request_tree(result, calls=[("root",)] + [("root", "leaf")] * 4)
    with pytest.raises(
        AssertionError,
        match=_prefix(result)
        + r"the request tree records 3 finished request\(s\) for root > leaf, but it ran 2 time\(s\): a call recorded twice\.$",
    ):
        rtt.check_request_tree(result, calls=[("root",)] + [("root", "leaf")] * 2)


# -- check_events ------------------------------------------------------------------------


def test_events_of_a_good_run() -> None:
    result, events = _run_with_events()
    _, other_events = _run_with_events()
    rtt.check_events(events + other_events, result)  # another run's events are left out


def test_events_with_a_gap() -> None:
    result, events = _run_with_events()
    del events[3]
    with pytest.raises(AssertionError, match=_prefix(result) + r"event #4 \(.*\) arrived in position 3: event #3 is missing\.$"):
        rtt.check_events(events, result)


def test_events_repeated() -> None:
    result, events = _run_with_events()
    events.insert(2, events[1])
    with pytest.raises(AssertionError, match=_prefix(result) + r"event #1 \(request_created of root \(r1\)\) arrived in position 2: repeated\.$"):
        rtt.check_events(events, result)


def test_events_without_an_outcome_for_a_request() -> None:
    result, events = _run_with_events()
    events = _renumber([e for e in events if not (e.kind is K.REQUEST_SUCCEEDED and e.request_id == "r3")])
    with pytest.raises(
        AssertionError,
        match=_prefix(result) + r"root > leaf \(r3\) was created \(event #\d+\) but no event says how it ended\.$",
    ):
        rtt.check_events(events, result)


def test_events_where_a_parent_ends_before_its_child() -> None:
    result, events = _run_with_events()
    child = next(e for e in events if e.kind is K.REQUEST_SUCCEEDED and e.request_id == "r4")
    events.remove(child)
    events.insert(-1, child)  # after root's own success
    with pytest.raises(
        AssertionError,
        match=_prefix(result) + r"root \(r1\) completed \(event #\d+\) before its child root > leaf \(r4\) ended \(event #\d+\)\.$",
    ):
        rtt.check_events(_renumber(events), result)


def test_events_where_run_finished_is_not_last() -> None:
    result, events = _run_with_events()
    events.insert(-1, events.pop())
    with pytest.raises(AssertionError, match=_prefix(result) + r"run_finished must come once, last; got 1, and the last event is event #\d+ \("):
        rtt.check_events(_renumber(events), result)


def test_events_whose_outcome_disagrees_with_the_state() -> None:
    result, events = _run_with_events()
    events = [attrs.evolve(e, kind=K.REQUEST_FAILED) if e.kind is K.REQUEST_SUCCEEDED and e.request_id == "r2" else e for e in events]
    with pytest.raises(AssertionError, match=_prefix(result) + r"event #\d+ says root > leaf \(r2\) ended failed, but the state says completed\.$"):
        rtt.check_events(events, result)


def test_events_streamed_after_the_request_ended() -> None:
    result, events = _run_with_events()
    stream = next(e for e in events if e.kind is K.STREAM and e.request_id == "r2")
    events.remove(stream)
    events.insert(-2, stream)
    with pytest.raises(AssertionError, match=_prefix(result) + r"event #\d+ \(stream of root > leaf \(r2\)\) streamed outside its request's life"):
        rtt.check_events(_renumber(events), result)


def test_no_events_at_all() -> None:
    result, _ = _run_with_events()
    with pytest.raises(AssertionError, match=_prefix(result) + r"no event of this run was received; subscribe before it starts"):
        rtt.check_events([], result)


# -- check_isolation ----------------------------------------------------------------------


def _fake_run(run_id: str, context: dict[str, object]) -> rt.RunResult[object]:
    return rt.RunResult(rt.JobState(run_id, "f", status=S.COMPLETED, context=context), None, None)


def test_isolation_of_separate_contexts() -> None:
    rtt.check_isolation([_fake_run("a", {"x": [1]}), _fake_run("b", {"x": [1]})], flow_context={"x": [1]}, initial_context={"x": [1]})


def test_isolation_finds_a_shared_container() -> None:
    shared: list[object] = []
    with pytest.raises(
        AssertionError,
        match=r"^run b and run a share one object: \$\.context\.log\[0\] in the run is \$\.context\.items there, "
        r"so a change in one is seen by the other\.$",
    ):
        rtt.check_isolation([_fake_run("a", {"items": shared}), _fake_run("b", {"log": [shared]})])


def test_isolation_finds_a_run_sharing_the_flows_own_dict() -> None:
    flow_context: dict[str, object] = {"cfg": {"k": 1}}
    with pytest.raises(AssertionError, match=r"^run a and the Flow's context share one object: \$\.context\.cfg"):
        rtt.check_isolation([_fake_run("a", {"cfg": flow_context["cfg"]})], flow_context=flow_context)


def test_isolation_finds_a_changed_flow_context_and_foreign_writes() -> None:
    with pytest.raises(AssertionError, match=r"^the Flow's own context changed after its runs: \$\.context\.n is 2, expected 1\.$"):
        rtt.check_isolation([], flow_context={"n": 2}, initial_context={"n": 1})
    with pytest.raises(
        AssertionError,
        match=r"^run a ended with a context it did not write itself: \$\.context\.seen\[1\] is 'b', which it should not have\.$",
    ):
        rtt.check_isolation(
            [_fake_run("a", {"seen": {0: "a", 1: "b"}})], expected_contexts={"a": {"seen": {0: "a"}}}
        )
    with pytest.raises(AssertionError, match=r"^several runs share the run id a; every run must have its own\.$"):
        rtt.check_isolation([_fake_run("a", {}), _fake_run("a", {})])


# -- the kit finds real bugs ------------------------------------------------------------------


def _concurrent_runs(spec: rtt.FlowSpec, n: int = 2) -> tuple[rtt.GeneratedFlow, list[rt.RunResult[int]]]:
    flow = spec.build()
    results: list[rt.RunResult[int]] = []

    async def main() -> None:
        async def one() -> None:
            results.append(await flow.arun())

        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(one)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return flow, results


def _isolation_violation(spec: rtt.FlowSpec) -> str | None:
    flow, results = _concurrent_runs(spec)
    try:
        rtt.check_isolation(
            results,
            flow_context=flow.flow.context,
            initial_context=spec.flow_context,
            expected_contexts={r.state.run_id: flow.expected_context(r) for r in results},
        )
    except AssertionError as exc:
        return str(exc)
    return None


def test_the_kit_finds_a_runtime_that_copies_context_shallowly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime._context, "copy", types.SimpleNamespace(deepcopy=copy.copy, Error=copy.Error))
    spec = find(rtt.flows(), lambda s: _isolation_violation(s) is not None, settings=settings(database=None, derandomize=True))
    assert repr(spec) == "FlowSpec(timeout=None, end_on_error=False, context={},\n  n0: returns 1+\n)"
    message = _isolation_violation(spec)
    assert message is not None
    assert re.fullmatch(
        r"run run-\w+ and the Flow's context share one object: \$\.context\['trioflow\.testing\.visited'\] in the run "
        r"is \$\.context\['trioflow\.testing\.visited'\] there, so a change in one is seen by the other\.",
        message,
    )


def _outcome_violation(spec: rtt.FlowSpec) -> str | None:
    try:
        spec.check_outcome(spec.build().run())
    except AssertionError as exc:
        return str(exc)
    return None


def test_the_kit_finds_a_batch_that_is_not_concurrent(monkeypatch: pytest.MonkeyPatch) -> None:
    async def one_by_one(node: object, items: range, *, return_exceptions: bool = False) -> list[object]:
        results: list[object] = []
        for item in items:
            try:
                results.append(await rt.call(node, item))  # type: ignore[call-overload]
            except Exception as exc:
                if not return_exceptions:
                    raise
                results.append(exc)
        return results

    monkeypatch.setattr(runtime.testing._calltrees, "call_batch", one_by_one)
    # derandomize: the search and its shrink are the same on every run, so the size bound holds
    spec = find(
        rtt.flows(),
        lambda s: _outcome_violation(s) is not None,
        settings=settings(database=None, max_examples=500, derandomize=True),
    )
    # shrunk to a small tree with a batch in it
    assert spec.tree.size <= 8, spec
    assert any(c.batched and len(c.children) >= 2 for c in spec.tree.calls())
    message = _outcome_violation(spec) or ""
    assert re.search(r"the entry point n0 ended after \d+ s of Trio time, but its calls take \d+ s\.$", message), message


def test_the_kit_finds_a_node_that_keeps_a_module_global_in_context() -> None:
    cache: list[object] = []

    @rt.function_node
    async def remember(x: int) -> int:
        rt.context.put("cache", cache)  # every run now shares one list
        cache.append(x)
        return len(cache)

    flow = rt.Flow("cached", entry_point=remember)

    async def main() -> list[rt.RunResult[int]]:
        return [await flow.arun(1), await flow.arun(2)]

    results = trio.run(main)
    with pytest.raises(AssertionError, match=r"^run run-\w+ and run run-\w+ share one object: \$\.context\.cache in the run is \$\.context\.cache there"):
        rtt.check_isolation(results, flow_context=flow.context)


# -- run_history and deterministic_scheduling -----------------------------------------------


def test_run_history_leaves_out_what_differs_between_replays() -> None:
    spec = rtt.FlowSpec(
        rtt.CallTree(rtt.CallSpec("n0", 0, ("n0",), delay=1, children=(rtt.CallSpec("n1", 0, ("n0", "n1"), raises=ValueError),))),
        timeout=0.5,
    )
    histories = []
    for _ in range(2):
        flow = spec.build()
        result = flow.run()
        histories.append(rtt.run_history(result, flow.events(result.state.run_id)))
    assert histories[0] == histories[1]
    assert histories[0][0][:4] == ("run", "generated", "timed_out", None)
    assert "<run>" in str(histories[0][0][4])
    assert ("request", "r1", None, "n0", "cancelled", 0.0, 0.5, None, "None") in histories[0]


def test_deterministic_scheduling_seeds_and_restores_trios_random_source() -> None:
    source: random.Random = trio._core._run._r
    before = source.getstate()
    with rtt.deterministic_scheduling(7):
        first = source.random()
    with rtt.deterministic_scheduling(7):
        second = source.random()
    assert first == second
    assert source.getstate() == before


def test_different_seeds_can_schedule_differently() -> None:
    items = tuple(rtt.CallSpec("n1", i, ("n0", f"n1[{i}]"), broadcast=True) for i in range(3))
    spec = rtt.FlowSpec(rtt.CallTree(rtt.CallSpec("n0", 0, ("n0",), batched=True, children=items)))
    histories = set()
    for seed in range(8):
        flow = spec.build()
        with rtt.deterministic_scheduling(seed):
            result = flow.run()
        histories.add(repr(rtt.run_history(result, flow.events(result.state.run_id))))
    assert len(histories) > 1  # so a replay with the same seed being equal means something
