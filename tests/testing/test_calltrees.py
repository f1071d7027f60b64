"""runtime.testing call trees: call_trees(), flows(), FlowSpec.expected, GeneratedFlow."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import TYPE_CHECKING, TypeVar

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import runtime as rt
import runtime.testing as rtt
from runtime.testing import CallSpec, CallTree, FlowSpec

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

T = TypeVar("T")
S = rt.Status


def _draw(strategy: SearchStrategy[T]) -> T:
    return find(strategy, lambda _: True, settings=settings(database=None, max_examples=10))


def call(path: str, **kwargs: object) -> CallSpec:
    """A CallSpec from its path text, e.g. ``call("n0 > n1[1]", delay=2)``."""
    parts = tuple(path.split(" > "))
    node, _, item = parts[-1].partition("[")
    return CallSpec(node=node, item=int(item.rstrip("]") or 0), path=parts, **kwargs)  # type: ignore[arg-type]


# -- strategies: bounds and bad arguments ------------------------------------------


@given(rtt.call_trees(min_nodes=3, max_nodes=7, max_depth=2, max_children=3))
def test_call_trees_respect_their_bounds(tree: CallTree) -> None:
    assert 3 <= tree.size <= 7
    assert tree.depth <= 2
    calls = tree.calls()
    assert all(len(c.children) <= 3 for c in calls)
    assert len({c.label for c in calls}) == len(calls)
    for c in calls:
        if c.batched:
            assert len({child.node for child in c.children}) == 1
            assert [child.item for child in c.children] == list(range(len(c.children)))
        else:
            assert all(child.item == 0 for child in c.children)
            assert len({child.node for child in c.children}) == len(c.children)


@given(rtt.call_trees(max_nodes=1))
def test_a_tree_of_one_call(tree: CallTree) -> None:
    assert tree.size == 1
    assert tree.root.path == ("n0",)
    assert tree.root.children == ()


def test_trees_shrink_to_a_lone_entry_point_that_returns() -> None:
    tree = _draw(rtt.call_trees())
    assert tree == CallTree(CallSpec("n0", 0, ("n0",), value=1))


def test_a_failing_tree_shrinks_small() -> None:
    # Derandomized: how far a search shrinks is what is checked, so it must not depend on CI's seed.
    tree = find(
        rtt.call_trees(),
        lambda t: any(c.raises is KeyError and c.batched for c in t.calls()),
        settings=settings(database=None, derandomize=True),
    )
    assert tree.size <= 3
    (culprit,) = [c for c in tree.calls() if c.raises is KeyError]
    assert culprit.batched
    assert len(culprit.children) == 1
    assert repr(tree).splitlines()[-3:] == [
        f"{'  ' * len(culprit.path)}{culprit.path[-1]}: calls 1 in a batch, raises KeyError",
        f"{'  ' * (len(culprit.path) + 1)}{culprit.children[0].path[-1]}: returns {culprit.children[0].value}+",
        ")",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_nodes": 0}, "call_trees(): min_nodes=0 must be an integer, 1 or more."),
        ({"max_nodes": 2.5}, "call_trees(): max_nodes=2.5 must be an integer, 1 or more."),
        ({"max_depth": -1}, "call_trees(): max_depth=-1 must be an integer, 0 or more."),
        ({"max_children": True}, "call_trees(): max_children=True must be an integer, 0 or more."),
        ({"min_nodes": 5, "max_nodes": 4}, "call_trees(): min_nodes=5 is greater than max_nodes=4; no tree can have both."),
        (
            {"min_nodes": 8, "max_depth": 2, "max_children": 1},
            "call_trees(): min_nodes=8, but a tree with max_depth=2 and max_children=1 holds at most 3 calls.",
        ),
        (
            {"delays": [0, 1]},
            "call_trees(): delays=[0, 1] must be a strategy, e.g. delays=st.just(...) or st.sampled_from([...]).",
        ),
    ],
)
def test_impossible_call_tree_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=f"^{re.escape(message)}$"):
        rtt.call_trees(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delays": st.just(-1.0)}, "call_trees(delays=...) drew -1.0; a delay is a finite number of seconds, 0 or more."),
        (
            {"exceptions": st.just(KeyboardInterrupt)},
            "call_trees(exceptions=...) drew <class 'KeyboardInterrupt'>; draw an Exception subclass to raise "
            "(e.g. ValueError), or None for a call that returns.",
        ),
    ],
)
def test_bad_drawn_values_are_reported(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=f"^{re.escape(message)}\n"):  # Hypothesis adds a note
        _draw(rtt.call_trees(**kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeouts": st.just(0)}, "flows(): timeouts=... drew 0; a timeout is a positive number of seconds, or None."),
        ({"contexts": st.just({1: 2})}, "flows(): contexts=... drew {1: 2}; a context is a dict with str keys."),
        (
            {"contexts": st.just({rtt.VISITED: 1})},
            "flows(): contexts=... drew the key 'trioflow.testing.visited', which generated flows keep for themselves.",
        ),
        ({"trees": st.just(3)}, "flows(): trees=... drew 3; draw CallTree values, e.g. trees=call_trees(max_nodes=5)."),
    ],
)
def test_bad_flow_settings_are_reported(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=f"^{re.escape(message)}\n"):  # Hypothesis adds a note
        _draw(rtt.flows(**kwargs))  # type: ignore[arg-type]


def test_flows_arguments_must_be_strategies() -> None:
    with pytest.raises(InvalidArgument, match=r"^flows\(\): end_on_error=True must be a strategy"):
        rtt.flows(end_on_error=True)  # type: ignore[arg-type]


def test_the_kit_imports_without_pytest() -> None:
    # trio.testing uses pytest when it is installed; block it to stand for an install without it
    code = "import sys; sys.modules['pytest'] = sys.modules['_pytest'] = None; import runtime.testing"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


# -- expected outcomes -----------------------------------------------------------


def _spec(root: CallSpec, **settings_: object) -> FlowSpec:
    return FlowSpec(CallTree(root), **settings_)  # type: ignore[arg-type]


def test_expected_sum_of_a_sequential_tree() -> None:
    root = call("n0", value=1, delay=1, children=(call("n0 > n1", value=2, delay=2), call("n0 > n2", value=3)))
    expected = _spec(root).expected
    assert expected == rtt.Expected(frozenset({S.COMPLETED}), 6, frozenset(), 3.0)


def test_expected_failure_of_a_batch_is_its_first_in_time() -> None:
    root = call(
        "n0",
        batched=True,
        children=(
            call("n0 > n1[0]", delay=3, raises=ValueError),
            call("n0 > n1[1]", delay=1, raises=KeyError),
            call("n0 > n1[2]", delay=5),
        ),
    )
    expected = _spec(root).expected
    assert expected == rtt.Expected(frozenset({S.FAILED}), None, frozenset({"n0 > n1[1]"}), 1.0)


def test_expected_failures_at_the_same_instant_allow_either() -> None:
    root = call(
        "n0",
        batched=True,
        children=(call("n0 > n1[0]", delay=1, raises=ValueError), call("n0 > n1[1]", delay=1, raises=KeyError)),
    )
    assert _spec(root).expected.error_origins == {"n0 > n1[0]", "n0 > n1[1]"}


def test_expected_catching_continues_and_counts_only_successes() -> None:
    root = call(
        "n0",
        catch=True,
        value=1,
        children=(call("n0 > n1", value=10, delay=1, raises=ValueError), call("n0 > n2", value=100, delay=1)),
    )
    assert _spec(root).expected == rtt.Expected(frozenset({S.COMPLETED}), 101, frozenset(), 2.0)
    batch = call(
        "n0",
        catch=True,
        batched=True,
        children=(call("n0 > n1[0]", value=10, delay=1, raises=ValueError), call("n0 > n1[1]", value=10, delay=4)),
    )
    assert _spec(batch).expected == rtt.Expected(frozenset({S.COMPLETED}), 11, frozenset(), 4.0)


def test_expected_end_on_error_ends_at_the_first_raise_even_if_caught() -> None:
    root = call(
        "n0",
        catch=True,
        children=(call("n0 > n1", delay=2, raises=ValueError), call("n0 > n2", delay=10)),
    )
    assert _spec(root).expected.statuses == {S.COMPLETED}
    strict = _spec(root, end_on_error=True).expected
    assert strict == rtt.Expected(frozenset({S.FAILED}), None, frozenset({"n0 > n1"}), 2.0)


def test_expected_timeouts_and_ties() -> None:
    root = call("n0", delay=3)
    assert _spec(root, timeout=2.5).expected == rtt.Expected(frozenset({S.TIMED_OUT}), None, frozenset(), 2.5)
    assert _spec(root, timeout=3.5).expected.statuses == {S.COMPLETED}
    assert _spec(root, timeout=3).expected.statuses == {S.COMPLETED, S.TIMED_OUT}


# -- built flows -------------------------------------------------------------------


def test_build_makes_a_flow_of_named_nodes_that_records_what_it_did() -> None:
    root = call(
        "n0",
        broadcast=True,
        batched=True,
        children=(call("n0 > n1[0]", value=5), call("n0 > n1[1]", value=7, children=(call("n0 > n1[1] > n2", value=3),))),
    )
    spec = _spec(root, context={"user_id": 1})
    built = spec.build()
    assert built.flow.name == "generated"
    assert built.flow.entry_point is not None
    assert built.flow.entry_point.name == "n0"
    assert built.flow.context == {"user_id": 1, rtt.VISITED: []}
    result = built.run()
    assert result.result == 1 + 5 + (7 + 3) == spec.expected.result
    run_id = result.state.run_id
    assert built.started(run_id)[0].label == "n0"
    assert sorted(c.label for c in built.started(run_id)) == sorted(c.label for c in spec.tree.calls())
    assert sorted(c.label for c in built.finalized(run_id)) == sorted(c.label for c in spec.tree.calls())
    assert [r.node for r in result.state.requests.values()] == ["n0", "n1", "n1", "n2"]
    streamed = [e.data for e in built.events(run_id) if e.kind is rt.EventKind.STREAM]
    assert streamed == ["n0"]
    assert result.state.context[rtt.VISITED] == [c.label for c in built.started(run_id)]
    assert built.expected_context(result) == result.state.context
    built.check(result)


def test_a_generated_error_names_where_it_was_raised() -> None:
    root = call("n0", children=(call("n0 > n1", raises=KeyError),))
    result = _spec(root).build().run()
    assert isinstance(result.error, KeyError)
    assert result.error.args == ("injected in n0 > n1",)


def test_check_outcome_reports_a_wrong_result() -> None:
    spec = _spec(call("n0", value=4))
    result = spec.build().run()
    wrong = rt.RunResult(result.state, 5, None)
    with pytest.raises(
        AssertionError,
        match=rf"^run {result.state.run_id} of flow 'generated' completed with result 5, but its calls add up to 4\.$",
    ):
        spec.check_outcome(wrong)


def test_check_outcome_reports_a_wrong_status() -> None:
    spec = _spec(call("n0", children=(call("n0 > n1", raises=ValueError),)))
    other = _spec(call("n0", value=3)).build().run()
    with pytest.raises(
        AssertionError,
        match=rf"^run {other.state.run_id} of flow 'generated' should have ended failed \(an error raised at n0 > n1\), "
        r"but it ended completed\.$",
    ):
        spec.check_outcome(other)


def test_check_outcome_reports_a_run_that_took_too_long() -> None:
    spec = _spec(call("n0", delay=1))
    slow = _spec(call("n0", delay=2)).build().run()
    with pytest.raises(
        AssertionError,
        match=r": the entry point n0 ended after 2 s of Trio time, but its calls take 1 s\.$",
    ):
        spec.check_outcome(slow)


def test_flow_spec_repr_reads_as_a_counterexample() -> None:
    root = call(
        "n0",
        delay=1,
        catch=True,
        children=(call("n0 > n1", broadcast=True, raises=ValueError), call("n0 > n2", delay=2.5)),
    )
    assert repr(_spec(root, timeout=1.5, end_on_error=True, context={"k": [1]})) == "\n".join(
        [
            "FlowSpec(timeout=1.5, end_on_error=True, context={'k': [1]},",
            "  n0: sleeps 1, calls 2 one by one catching errors, returns 1+",
            "    n1: broadcasts, raises ValueError",
            "    n2: sleeps 2.5, returns 1+",
            ")",
        ]
    )


# The autojump clock fixture is shared by the examples, which is fine: each run
# measures its own times from its own start.
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rtt.flows())
async def test_the_kit_works_in_async_tests_under_given(autojump_clock: trio.abc.Clock, spec: FlowSpec) -> None:
    """pytest-trio's trio_mode runs an async @given test in Trio; use arun() there."""
    built = spec.build()
    with rtt.watch_tasks() as tasks:
        result = await built.arun()
    await trio.testing.wait_all_tasks_blocked()
    spec.check_outcome(result)
    run_id = result.state.run_id
    rtt.check_structure(result, tasks=tasks, started=[c.label for c in built.started(run_id)], finalized=[c.label for c in built.finalized(run_id)])
    rtt.check_request_tree(result, calls=[c.node_path for c in built.started(run_id)])
    rtt.check_events(built.events(run_id), result)
