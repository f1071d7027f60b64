"""Links made by hand between routines of a flow are the flow's connections, over generated graphs.

Routilux wires ``event.connect(slot)`` on the objects; trioflow reads such a
link between routines of one flow as ``flow.connect(...)`` of the same pair.
Each example builds one DAG twice: once with ``flow.connect`` only, once with
a generated mix of the two ways (some pairs both ways), and runs a job of each.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import runtime as rt


class Relay(rt.Routine):
    """Notes the path a message took to reach it, then passes it on."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.label = name
        self.input = self.define_slot("input", handler=self.relay)
        self.output = self.define_event("output", ["path"])

    def relay(self, path: list[str] | None = None) -> None:
        here = [*(path or []), self.label]
        self.send_output("reached", path=here)
        self.emit("output", path=here)


#: How one edge of the graph is made.
WAYS = ("flow.connect", "event.connect", "slot.connect", "Connection", "both")


@st.composite
def wired_dags(draw: st.DrawFn) -> tuple[int, list[tuple[int, int, str]]]:
    size = draw(st.integers(2, 5))
    pairs = [(i, j) for i in range(size) for j in range(i + 1, size)]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=len(pairs)))
    return size, [(i, j, draw(st.sampled_from(WAYS))) for i, j in chosen]


def _paths(size: int, edges: list[tuple[int, int, str]], *, by_hand: bool) -> list[list[str]]:
    flow = rt.Flow(flow_id="wired")
    relays = [Relay(f"r{i}") for i in range(size)]
    for i, relay in enumerate(relays):
        flow.add_routine(relay, f"r{i}")
    for i, j, way in edges:
        source, target = relays[i], relays[j]
        if not by_hand or way in ("flow.connect", "both"):
            flow.connect(f"r{i}", "output", f"r{j}", "input")
        if by_hand and way in ("event.connect", "both"):
            source.output.connect(target.input)
        elif by_hand and way == "slot.connect":
            target.input.connect(source.output)
        elif by_hand and way == "Connection":
            rt.Connection(source.output, target.input)
    state = flow.execute("r0", {"path": []})
    assert state.status == "completed", state.error
    return sorted(entry["data"]["path"] for entry in state.get_shared_data("output_log"))


@given(wired_dags())
def test_links_made_by_hand_deliver_exactly_what_flow_connect_delivers(
    dag: tuple[int, list[tuple[int, int, str]]],
) -> None:
    """Invariant: a job of a flow wired partly by hand (event.connect, slot.connect, Connection, or
    both ways at once) reaches every routine along exactly the paths of the same flow wired with
    flow.connect only: each link is one connection, delivered once per emission."""
    size, edges = dag
    assert _paths(size, edges, by_hand=True) == _paths(size, edges, by_hand=False)
