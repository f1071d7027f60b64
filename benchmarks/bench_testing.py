"""runtime.testing: generated-run throughput (issue 7's budget).

- generated flow, checked: Hypothesis draws a small flow (``flows()`` over
  ``call_trees(max_nodes=20)``), builds it, runs it once with
  ``run_with_schedule`` (``MockClock(autojump_threshold=0)``, its task watch
  and its real-time watchdog on, as a user's test runs), and runs every
  checker on it (``GeneratedFlow.check``: structure, request tree, events,
  outcome). Floor: the same flows, built and run with plain ``trio.run``
  under the same clock, with no drawing, no watch and no checks.
- with faults and a schedule: as above, plus a drawn fault plan and schedule
  given to the runner through ``inject()``, and ``check_cancellation``. The
  outcome check is left out (a fault changes the outcome). Same floor.
- checked flows per minute: the first figure against the issue's budget of
  1,000 checked flows a minute (60 ms each): ours is the time per checked
  flow, "floor" the 60 ms allowed.

Every flow is its own ``trio.run``, as in a sync ``@given`` test.
"""

from __future__ import annotations

import time

import trio
import trio.testing
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from runtime import testing as rtt

from ._harness import Options, Row

_BUDGET_PER_FLOW = 60.0 / 1000  # 1,000 checked flows per minute
_SPECS = rtt.flows(trees=rtt.call_trees(max_nodes=20))


def _settings(n: int) -> settings:
    return settings(
        max_examples=n,
        database=None,
        derandomize=True,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def _clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def _checked(n: int) -> tuple[float, list[rtt.FlowSpec], int]:
    specs: list[rtt.FlowSpec] = []
    nodes = 0

    @_settings(n)
    @given(_SPECS)
    def run_and_check(spec: rtt.FlowSpec) -> None:
        nonlocal nodes
        specs.append(spec)
        nodes += spec.tree.size
        built = spec.build()
        result = rtt.run_with_schedule(built.flow, 0)
        built.check(result)

    start = time.perf_counter()
    run_and_check()
    return time.perf_counter() - start, specs, nodes


def _faulted(n: int) -> tuple[float, int]:
    count = 0

    @_settings(n)
    @given(_SPECS, st.data())
    def run_with_faults(spec: rtt.FlowSpec, data: st.DataObject) -> None:
        nonlocal count
        count += 1
        built = spec.build()
        plan = data.draw(rtt.faults(flow=built.flow, max_size=2))
        schedule = data.draw(rtt.schedules(max_size=8))
        injection = rtt.inject(plan, schedule=schedule, flow=built.flow)
        result = rtt.run_with_schedule(built.flow, 0, injection=injection)
        run_id = result.state.run_id
        rtt.check_structure(
            result,
            started=[s.label for s in built.started(run_id)],
            finalized=[s.label for s in built.finalized(run_id)],
        )
        rtt.check_request_tree(result)
        rtt.check_events(built.events(run_id), result)
        rtt.check_cancellation(result, injection)

    start = time.perf_counter()
    run_with_faults()
    return time.perf_counter() - start, count


def _unchecked(specs: list[rtt.FlowSpec]) -> float:
    start = time.perf_counter()
    for spec in specs:
        built = spec.build()
        trio.run(built.arun, clock=_clock())
    return time.perf_counter() - start


def bench_generated_flows(opts: Options) -> list[Row]:
    n = opts.scale(1000)
    best_checked = best_floor = best_faulted = float("inf")
    nodes = 0
    # A thousand flows is a large sample: one pass for a full run.
    for _ in range(opts.repeat if opts.quick else 1):
        checked, specs, nodes = _checked(n)
        floor = _unchecked(specs)
        faulted, count = _faulted(n)
        best_checked = min(best_checked, checked / len(specs))
        best_floor = min(best_floor, floor / len(specs))
        best_faulted = min(best_faulted, faulted / count)
    mean_nodes = nodes / n
    return [
        Row(
            f"generated flow (mean {mean_nodes:.1f} calls), drawn + run + checked",
            best_checked,
            best_floor,
            "s",
        ),
        Row("generated flow with faults + schedule, checked", best_faulted, best_floor, "s"),
        Row(
            "checked flows: time per flow vs 1,000/min budget",
            best_checked,
            _BUDGET_PER_FLOW,
            "s",
            budget=1.0,
        ),
    ]


BENCHMARKS = [bench_generated_flows]
