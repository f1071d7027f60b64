"""Executors change where a node runs, never what a run computes or records.

A generated plan of leaf calls, each leaf on an executor drawn from threads,
worker processes, Ray tasks and the loop itself, gives the same result and
the same request tree (nodes, parents, statuses, results and errors) as the
same plan run entirely on the loop. Real processes and Ray tasks cost real
time, so the example budget is small.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hypothesis import given, settings
from hypothesis import strategies as st

import runtime as rt

if TYPE_CHECKING:
    from types import ModuleType


def _leaf(x: int) -> int:
    if x % 5 == 3:
        raise ValueError(f"leaf got {x}")
    return 2 * x + 1


# The same function as one node name on each executor; the plan picks per call.
LEAVES = {
    "loop": rt.function_node(name="leaf", thread=False)(_leaf),
    "threads": rt.function_node(name="leaf", executor=rt.threads(limit=2))(_leaf),
    "processes": rt.function_node(name="leaf", executor=rt.processes(limit=2))(_leaf),
    "ray": rt.function_node(name="leaf", executor=rt.ray())(_leaf),
}

Plan = tuple[tuple[tuple[int, str], ...], ...]


@rt.function_node
async def group(calls: tuple[tuple[int, str], ...]) -> list[object]:
    results: list[object] = []
    for x, executor in calls:
        try:
            results.append(await rt.call(LEAVES[executor], x))
        except ValueError as exc:
            results.append(f"caught {exc}")
    return results


@rt.function_node
async def plan_root(plan: Plan) -> list[object]:
    return [await rt.call(group, calls) for calls in plan]


def _tree(state: rt.JobState) -> list[tuple[object, ...]]:
    return [
        (
            r.id,
            r.parent_id,
            r.node,
            r.status,
            r.result,
            r.error and (r.error.type, r.error.message, r.error.path),
        )
        for r in state.requests.values()
    ]


plans = st.lists(
    st.lists(st.tuples(st.integers(0, 9), st.sampled_from(sorted(LEAVES))), max_size=3).map(tuple),
    min_size=1,
    max_size=3,
).map(tuple)


@settings(max_examples=8, deadline=None)
@given(plan=plans)
def test_mixed_executors_give_the_same_results_and_request_tree_as_the_loop(
    ray_cluster: ModuleType, plan: Plan
) -> None:
    """Invariant: running leaves on threads, processes or Ray changes no result and no request record."""
    on_the_loop = tuple(tuple((x, "loop") for x, _ in calls) for calls in plan)
    mixed = rt.Flow("mixed", entry_point=plan_root).run(plan)
    local = rt.Flow("local", entry_point=plan_root).run(on_the_loop)
    assert mixed.status is local.status is rt.Status.COMPLETED
    assert mixed.result == local.result
    assert _tree(mixed.state) == _tree(local.state)
    executors = [r.executor for r in mixed.state.requests.values() if r.node == "leaf"]
    assert executors == [{"loop": None}.get(e, e) for calls in plan for _, e in calls]
