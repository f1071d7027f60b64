"""The ``execution_strategy="sequential"`` invariant, over generated graphs.

Under ``"sequential"`` a job is a FIFO of handler calls: the calls run one at
a time, in the order their messages were emitted, the slots one emission
reaches in connection order (Routilux's default). The graphs are DAGs with
fan-out and fan-in, shuffled connection orders, handlers plain or async
(yielding to the loop a generated number of times) that emit a generated
number of times; the expected order comes from simulating the FIFO.
"""

from __future__ import annotations

import collections

import trio
import trio.testing
from hypothesis import given, note
from hypothesis import strategies as st

import runtime as rt


@st.composite
def sequential_graphs(draw: st.DrawFn) -> dict[str, object]:
    """A DAG: routines, their emission counts and yields, and connections in a shuffled order."""
    n = draw(st.integers(1, 5))
    names = [f"r{i}" for i in range(n)]
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    edges = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=len(pairs))) if pairs else []
    edges = draw(st.permutations(edges))
    emits = {name: draw(st.integers(0, 2)) for name in names}
    yields = {name: draw(st.integers(0, 3)) for name in names}
    is_async = {name: draw(st.booleans()) for name in names}
    return {"names": names, "edges": edges, "emits": emits, "yields": yields, "async": is_async}


def _expected_order(graph: dict[str, object]) -> tuple[list[tuple[str, str]], list[str]]:
    """The handler calls of a job-wide FIFO, (routine, token of the message it handles), and the emissions."""
    names: list[str] = graph["names"]  # type: ignore[assignment]
    edges: list[tuple[str, str]] = graph["edges"]  # type: ignore[assignment]
    emits: dict[str, int] = graph["emits"]  # type: ignore[assignment]
    targets = collections.defaultdict(list)
    for source, target in edges:
        targets[source].append(target)
    calls: list[tuple[str, str]] = []
    emissions: list[str] = []
    counters = collections.Counter[str]()
    queue = collections.deque([(names[0], "start")])
    while queue:
        name, token = queue.popleft()
        calls.append((name, token))
        for _ in range(emits[name]):
            counters[name] += 1
            emitted = f"{name}:{counters[name]}"
            emissions.append(emitted)
            queue.extend((target, emitted) for target in targets[name])
    return calls, emissions


def _build(graph: dict[str, object], calls: list[tuple[str, str]]) -> rt.Flow[..., object]:
    names: list[str] = graph["names"]  # type: ignore[assignment]
    edges: list[tuple[str, str]] = graph["edges"]  # type: ignore[assignment]
    emits: dict[str, int] = graph["emits"]  # type: ignore[assignment]
    yields: dict[str, int] = graph["yields"]  # type: ignore[assignment]
    is_async: dict[str, bool] = graph["async"]  # type: ignore[assignment]

    class Node(rt.Routine):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name
            self.sent = 0
            self.define_slot("input", handler=self.take_async if is_async[name] else self.take)
            self.define_event("out", ["token"])

        def _emit_all(self) -> None:
            for _ in range(emits[self.name]):
                self.sent += 1
                self.emit("out", token=f"{self.name}:{self.sent}")

        def take(self, token: str = "start") -> None:
            calls.append((self.name, token))
            self._emit_all()

        async def take_async(self, token: str = "start") -> None:
            calls.append((self.name, token))
            for _ in range(yields[self.name]):
                await trio.lowlevel.checkpoint()
            self._emit_all()

    flow: rt.Flow[..., object] = rt.Flow(flow_id="seq", execution_strategy="sequential")
    for name in names:
        flow.add_routine(Node(name), name)
    for source, target in edges:
        flow.connect(source, "out", target, "input")
    return flow


@given(sequential_graphs())
def test_sequential_handler_order_equals_emission_order(graph: dict[str, object]) -> None:
    """Under "sequential", handlers run in emission order, siblings in connection order: a job-wide FIFO."""
    note(repr(graph))
    calls: list[tuple[str, str]] = []
    flow = _build(graph, calls)
    states: list[rt.JobState] = []

    async def main() -> None:
        states.append(await flow.aexecute("r0"))

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert states[0].status is rt.Status.COMPLETED
    expected_calls, expected_emissions = _expected_order(graph)
    assert calls == expected_calls
    assert [h.data["token"] for h in states[0].history] == expected_emissions
