"""Proof that the kit finds bugs (issue 7, item 5).

Each test points runtime.testing at a deliberately wrong workflow, runs a
property the way a user would (an inner ``@given`` test, at the CI example
budget), and checks that Hypothesis reports the bug: the checker's message
in the workflow's own terms, and a shrunk falsifying example.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import runtime as rt
from runtime import testing as rtt
from runtime._routine import RoutineProps

if TYPE_CHECKING:
    from collections.abc import Callable

CI_BUDGET = settings(max_examples=40, database=None, derandomize=True, deadline=None)


def falsify(test: Callable[[], None]) -> tuple[str, str]:
    """Run an inner @given test that must fail; return its error message and falsifying example."""
    with pytest.raises(AssertionError) as caught:
        test()
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    example = re.search(r"(Falsifying example|Failing test case): .*?\n\)", notes, re.DOTALL)
    assert example is not None, f"Hypothesis reported no falsifying example:\n{notes}"
    # Drop the explain phase's comments ("# or any other generated value").
    lines = [re.sub(r"  # .*$", "", line) for line in example.group(0).split(": ", 1)[1].splitlines()]
    return str(caught.value).split("\n")[0], "\n".join(line for line in lines if line.strip() and not line.strip().startswith("#"))


# -- 1. a node that is not safe to retry ----------------------------------------------------------

LEDGER: list[int] = []  # the outside world: a payment provider's record of charges


@rt.function_node
async def send_receipt(amount: int) -> str:
    return f"receipt for {amount}"


@rt.function_node
async def charge(amount: int) -> str:
    LEDGER.append(amount)  # BUG: the charge happens before the step that can fail...
    return await rt.call(send_receipt, amount)


@rt.function_node
async def checkout(amount: int) -> str:
    for _attempt in range(3):  # ...and a failure retries the whole charge
        try:
            return await rt.call(charge, amount)
        except Exception:
            continue
    return "gave up"


checkout_flow = rt.Flow("checkout", entry_point=checkout)


def test_a_retry_that_charges_twice_is_found() -> None:
    @CI_BUDGET
    @given(plan=rtt.faults(flow=checkout_flow, kinds=st.sampled_from(["raise", "delay"])))
    def charged_at_most_once(plan: rtt.FaultPlan) -> None:
        LEDGER.clear()
        result = rtt.run_with_schedule(checkout_flow, 30, faults=plan)
        assert len(LEDGER) <= 1, f"checkout charged {LEDGER} for one purchase (outcome: {result.result!r})"

    message, example = falsify(charged_at_most_once)
    assert message == "checkout charged [30, 30, 30] for one purchase (outcome: 'gave up')"
    # Shrunk to the one fault that matters: the receipt step failing.
    assert example == (
        "charged_at_most_once(\n"
        "    plan=FaultPlan({'send_receipt': Fault.raising(InjectedError('injected fault'))}),\n"
        ")"
    )


# -- 2. a node that swallows trio.Cancelled --------------------------------------------------------


@rt.function_node
async def fetch(source: str) -> str:
    try:
        await trio.sleep(1)
        return f"{source}: fresh"
    except BaseException:  # BUG: meant for network errors, it also swallows trio.Cancelled
        return f"{source}: stale"


@rt.function_node
async def dashboard(sources: list[str]) -> list[object]:
    return await rt.call_batch(fetch, sources, return_exceptions=False)


dashboard_flow = rt.Flow("dashboard", entry_point=dashboard)


def test_a_handler_that_swallows_cancellation_is_found() -> None:
    @CI_BUDGET
    @given(plan=rtt.faults(flow=dashboard_flow, kinds=st.just("cancel")))
    def cancellation_propagates(plan: rtt.FaultPlan) -> None:
        with rtt.inject(plan, flow=dashboard_flow) as injection, rtt.deterministic_scheduling():
            result = trio.run(dashboard_flow.arun, ["db", "cache"], clock=trio.testing.MockClock(autojump_threshold=0))
        rtt.check_structure(result)
        rtt.check_cancellation(result, injection)

    message, example = falsify(cancellation_propagates)
    assert re.fullmatch(
        r"run run-\w+ of flow 'dashboard': dashboard > fetch \(r\d\) was running when a cancel fault cancelled "
        r"the run at 0 s \(at dashboard > fetch\), but it ended completed with result '(db|cache): stale': "
        r"it caught trio\.Cancelled and went on instead of letting the cancellation propagate\.",
        message,
    ), message
    # Shrunk to one cancel, at a fetch while the other one is running.
    assert re.fullmatch(
        r"cancellation_propagates\(\n    plan=FaultPlan\(\{\('fetch', [01]\): Fault\.cancelling\(\)\}\),\n\)", example
    ), example


def test_the_same_checks_pass_on_a_correct_fetch() -> None:
    @rt.function_node(name="fetch")
    async def careful_fetch(source: str) -> str:
        try:
            await trio.sleep(1)
            return f"{source}: fresh"
        except Exception:  # correct: trio.Cancelled is not an Exception
            return f"{source}: stale"

    @rt.function_node(name="dashboard")
    async def careful_dashboard(sources: list[str]) -> list[object]:
        return await rt.call_batch(careful_fetch, sources, return_exceptions=False)

    flow = rt.Flow("dashboard", entry_point=careful_dashboard)

    @CI_BUDGET
    @given(plan=rtt.faults(flow=flow, kinds=st.just("cancel")))
    def cancellation_propagates(plan: rtt.FaultPlan) -> None:
        with rtt.inject(plan, flow=flow) as injection, rtt.deterministic_scheduling():
            result = trio.run(flow.arun, ["db", "cache"], clock=trio.testing.MockClock(autojump_threshold=0))
        rtt.check_structure(result)
        rtt.check_cancellation(result, injection)

    cancellation_propagates()


# -- 3. a node that keeps state on a module global --------------------------------------------------

_PROFILE_CACHE: dict[str, object] = {}  # BUG: shared by every run in the process


@rt.function_node
async def load_profile(user: str) -> dict[str, object]:
    await trio.sleep(0.1)
    return {"user": user, "plan": "pro" if user.startswith("a") else "free"}


@rt.function_node
async def greet(user: str) -> str:
    if "profile" not in _PROFILE_CACHE:  # meant as a per-run memo
        _PROFILE_CACHE["profile"] = await rt.call(load_profile, user)
    profile = _PROFILE_CACHE["profile"]
    rt.context.put("profile", profile)
    return f"hello {profile['user']}"  # type: ignore[index]


greet_flow = rt.Flow("greet", entry_point=greet)


def test_a_module_global_leaking_between_concurrent_runs_is_found() -> None:
    @CI_BUDGET
    @given(users=st.lists(st.sampled_from(["ann", "bob", "cy"]), min_size=1, max_size=3), schedule=rtt.schedules())
    def runs_are_isolated(users: list[str], schedule: rtt.Schedule) -> None:
        _PROFILE_CACHE.clear()  # a fresh process for each example
        results = rtt.run_many_with_schedule(greet_flow, [(u,) for u in users], schedule=schedule)
        rtt.check_isolation(
            results,
            flow_context=greet_flow.context,
            expected_contexts={
                r.state.run_id: {"profile": {"user": u, "plan": "pro" if u.startswith("a") else "free"}}
                for r, u in zip(results, users, strict=True)
            },
        )

    message, example = falsify(runs_are_isolated)
    # Either way a run saw another's data: the same dict (two runs of one user),
    # or another user's profile.
    assert re.fullmatch(
        r"run run-\w+ and run run-\w+ share one object: \$\.context\.profile in the run is \$\.context\.profile "
        r"there, so a change in one is seen by the other\."
        r"|run run-\w+ ended with a context it did not write itself: \$\.context\.profile\.\w+ is .*",
        message,
    ), message
    # Shrunk to two runs, one of them held back by one short delay: without
    # the delay the runs do not overlap and the bug hides.
    assert re.fullmatch(
        r"runs_are_isolated\(\n    users=\['\w+', '\w+'\],\n    schedule=Schedule\(\(0\.[1-9],\)\),\n\)", example
    ), example


# -- 4. a routine that keeps state on a module global ---------------------------------------------

_BATCH: list[str] = []  # BUG: one batch for every job in the process


class Split(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.split)
        self.define_event("item", ["item"])

    def split(self, items: list[str]) -> None:
        for item in items:
            self.emit("item", item=item)


class Batcher(rt.Routine):
    """Sends items on in pairs."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.add)

    def add(self, item: str) -> None:
        _BATCH.append(item)
        if len(_BATCH) == 2:
            self.send_output("batch", items=list(_BATCH))
            _BATCH.clear()


batch_flow: rt.Flow = rt.Flow(flow_id="batching")  # type: ignore[type-arg]
batch_flow.add_routine(Split(), "split")
batch_flow.add_routine(Batcher(), "batcher")
batch_flow.connect("split", "item", "batcher", "input")


def test_a_routine_with_a_module_global_leaks_between_concurrent_jobs() -> None:
    @CI_BUDGET
    @given(sizes=st.lists(st.integers(1, 3), min_size=1, max_size=3), schedule=rtt.schedules())
    def jobs_are_isolated(sizes: list[int], schedule: rtt.Schedule) -> None:
        _BATCH.clear()  # each example starts like a fresh process
        markers = [f"job-{i}:" for i in range(len(sizes))]
        messages = [({"items": [f"{m}{k}" for k in range(n)]},) for m, n in zip(markers, sizes, strict=True)]
        results = rtt.run_many_with_schedule(batch_flow, messages, schedule=schedule)
        rtt.check_no_leaks(results, markers)

    message, example = falsify(jobs_are_isolated)
    assert re.fullmatch(
        r"run job-\w+ of flow 'batching' \(marker 'job-(0|1):'\) holds data of run job-\w+ \(marker 'job-(0|1):'\): "
        r"\$\.result\[0\]\.data\.items\[\d\] is 'job-(0|1):0'\. Concurrent runs must never see each other's data; "
        r"look for a module global, a class attribute or an object shared between runs\.",
        message,
    ), message
    assert example == "jobs_are_isolated(\n    sizes=[1, 1],\n    schedule=Schedule(()),\n)", example


# -- 5. a runtime that does not give each job its own routine instances ------------------------


def jobs_of_generated_graphs_are_isolated() -> Callable[[], None]:
    """An inner property: two concurrent jobs of a generated graph pass check_jobs_isolated."""

    # No explain phase: it runs the jobs a hundred times more, and the shrunk example says enough.
    @settings(CI_BUDGET, report_multiple_bugs=False, phases=(Phase.generate, Phase.shrink))
    @given(graph=rtt.routine_graphs(max_routines=3, failures=st.just(False), pauses=st.just(False)))
    def jobs_are_isolated(graph: rtt.GraphSpec) -> None:
        schedules = [rtt.JobSchedule("a"), rtt.JobSchedule("b")]

        async def main() -> list[rt.JobState]:
            return await rtt.run_graph_jobs(graph, schedules)

        states = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
        rtt.check_jobs_isolated(graph, {"a": states[0], "b": states[1]})

    return jobs_are_isolated


def test_a_runtime_that_gives_every_job_the_same_routine_instance_is_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(RoutineProps, "build", lambda self, routine_id, flow_name: self.template)
    message, example = falsify(jobs_of_generated_graphs_are_isolated())
    assert re.fullmatch(
        r"Job job-\w+ \(\w+\): job '(a|b)': 'r0' (counted \d+ messages on self, but handled \d+: its instance was "
        r"shared with another job|numbered its emissions \[.*\]: its instance was shared with another job|kept \d+ "
        r"calls of jobs \[.*\] in the list its __init__ made, but was called \d+ times in this job: the list was "
        r"shared with another job)\.",
        message,
    ), message
    assert example.startswith(
        "jobs_are_isolated(\n    graph=GraphSpec(routines=(RoutineSpec(routine_id='r0'"
    ), example


def test_a_runtime_that_copies_routines_shallowly_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each job gets its own object, but the lists and dicts its __init__ made are shared.
    monkeypatch.setattr(RoutineProps, "build", lambda self, routine_id, flow_name: copy.copy(self.template))
    message, _ = falsify(jobs_of_generated_graphs_are_isolated())
    assert re.fullmatch(
        r"Job job-\w+ \(\w+\): job '(a|b)': 'r0' kept 2 calls of jobs \['a', 'b'\] in the list its __init__ made, "
        r"but was called 1 times in this job: the list was shared with another job\.",
        message,
    ), message


def test_generated_graphs_pass_the_isolation_check() -> None:
    jobs_of_generated_graphs_are_isolated()()  # the real runtime: no falsifying example


# -- 6. a collaborator given to a routine on purpose is not a leak ---------------------------------


class Collect(rt.Routine):
    """Appends every item to the list it was given, and sends it on as an output."""

    def __init__(self, collected: list[str]) -> None:
        super().__init__()
        self.collected = collected
        self.define_slot("input", handler=self.add)

    def add(self, item: str) -> None:
        self.collected.append(item)
        self.send_output("item", item=item)


def test_a_collector_given_to_a_routine_is_shared_by_its_jobs_and_not_flagged() -> None:
    collected: list[str] = []
    flow: rt.Flow = rt.Flow(flow_id="collecting")  # type: ignore[type-arg]
    flow.add_routine(Split(), "split")
    flow.add_routine(Collect(collected), "collect")
    flow.connect("split", "item", "collect", "input")

    @CI_BUDGET
    @given(sizes=st.lists(st.integers(1, 3), min_size=1, max_size=3), schedule=rtt.schedules())
    def jobs_are_isolated(sizes: list[int], schedule: rtt.Schedule) -> None:
        collected.clear()
        markers = [f"job-{i}:" for i in range(len(sizes))]
        items = [[f"{m}{k}" for k in range(n)] for m, n in zip(markers, sizes, strict=True)]
        results = rtt.run_many_with_schedule(flow, [({"items": i},) for i in items], schedule=schedule)
        rtt.check_no_leaks(results, markers)
        assert sorted(collected) == sorted(item for run in items for item in run)  # every job's, in one list

    jobs_are_isolated()
