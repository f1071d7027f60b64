"""Routilux's object wiring: ``Slot``/``RoutineEvent`` made alone, ``connect``, ``receive``, ``Connection``.

Outside a flow, a link made by hand is called in place (Routilux's emit
without a flow); between routines of a flow it is one of the flow's
connections, as ``flow.connect`` makes.
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import TYPE_CHECKING

import hypothesis.strategies as st
import pytest
from hypothesis import given

import runtime as rt

if TYPE_CHECKING:
    from collections.abc import Callable


class Source(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.trigger = self.define_slot("trigger", handler=self.go)
        self.output = self.define_event("output", ["value", "extra"])

    def go(self, value: int = 0, **_: object) -> None:
        self.emit("output", value=value, extra="x")


class Sink(rt.Routine):
    def __init__(self, seen: list[object]) -> None:
        super().__init__()
        self.seen = seen
        self.input = self.define_slot("input", handler=self.take)

    def take(self, **data: object) -> None:
        self.seen.append(data)


# -- Slot and RoutineEvent made alone ------------------------------------------------


def test_define_slot_and_define_event_know_their_routine() -> None:
    seen: list[object] = []
    sink = Sink(seen)
    source = Source()
    assert sink.input.routine is sink
    assert source.output.routine is source
    assert source.output.output_params == ["value", "extra"]
    assert source.output.params == frozenset({"value", "extra"})


def test_get_slot_and_get_event_find_by_name_or_give_none() -> None:
    source = Source()
    assert source.get_slot("trigger") is source.trigger
    assert source.get_event("output") is source.output
    assert source.get_slot("output") is None
    assert source.get_event("nope") is None


def test_a_slot_made_alone_receives_and_calls_its_handler_in_place() -> None:
    got: list[object] = []
    slot = rt.Slot("in", handler=lambda value: got.append(value))
    assert (slot.name, slot.routine, slot.merge_strategy) == ("in", None, "override")
    slot.receive({"value": 1})
    slot.receive({"value": 2, "other": 3})
    assert got == [1, 2]


calls: list[object] = []


@pytest.mark.parametrize(
    ("handler", "data", "expected"),
    [
        (
            lambda data: calls.append(data),
            {"data": "x"},
            {"data": "x"},
        ),  # one parameter named data: the whole dict
        (lambda value: calls.append(value), {"value": 1, "b": 2}, 1),  # one other parameter: its value
        (lambda value: calls.append(value), {"b": 2}, {"b": 2}),  # ... or the whole dict when it is missing
        (
            lambda a, b=None: calls.append((a, b)),
            {"a": 1, "c": 3},
            (1, None),
        ),  # the keys it names; others dropped
        (lambda **kw: calls.append(kw), {"a": 1}, {"a": 1}),  # **kwargs: every key
    ],
)
def test_receive_calls_the_handler_by_its_signature(
    handler: Callable[..., object], data: dict[str, object], expected: object
) -> None:
    calls.clear()
    rt.Slot("in", handler=handler).receive(data)
    assert calls == [expected]


def test_receive_merges_by_the_slot_strategy() -> None:
    got: list[object] = []
    append = rt.Slot("in", handler=lambda **kw: got.append(kw), merge_strategy="append")
    append.receive({"v": 1})
    append.receive({"v": 2, "w": 0})
    assert got == [{"v": [1]}, {"v": [1, 2], "w": [0]}]

    custom = rt.Slot(
        "in",
        handler=lambda total: got.append(total),
        merge_strategy=lambda old, new: {"total": old.get("total", 0) + new["n"]},
    )
    custom.receive({"n": 2})
    custom.receive({"n": 3})
    assert got[-2:] == [2, 5]

    override = rt.Slot("in")  # no handler: it only receives
    override.receive({"a": 1})
    override.receive({"b": 2})
    assert override._data == {"b": 2}


def test_receive_raises_what_the_handler_raises() -> None:
    def fails(value: int) -> None:
        raise ValueError(f"bad {value}")

    with pytest.raises(ValueError, match=r"^bad 3$"):
        rt.Slot("in", handler=fails).receive({"value": 3})


def test_receive_refuses_an_async_handler_and_a_job_state() -> None:
    async def take(value: int) -> None: ...

    with pytest.raises(
        TypeError,
        match=r"^<Slot 'in' handler=.*take>\.receive\(\.\.\.\): the handler is async, and receive\(\) calls it in "
        r"place, synchronously\. Async handlers run inside a job: ",
    ):
        rt.Slot("in", handler=take).receive({"value": 1})
    with pytest.raises(
        rt.OutsideRunError,
        match=r"^<Slot 'in' handler=None>\.receive\(\.\.\., job_state=\.\.\.\): receive\(\) calls the handler in "
        r"place, outside any job, so it takes no job state or flow\. ",
    ):
        rt.Slot("in").receive({}, job_state=rt.JobState("flow"))
    with pytest.raises(
        TypeError, match=r"^<Slot 'in' handler=None>\.receive\(\[1\]\): give the message's data as a dict"
    ):
        rt.Slot("in").receive([1])  # type: ignore[arg-type]


def test_bad_slots_and_events_are_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"^Slot\(3\): a slot name is a string\.$"):
        rt.Slot(3)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError,
        match=r"^Slot\('in'\): routine=5 is not a Routine; give the routine the Slot belongs to, or None\.$",
    ):
        rt.Slot("in", 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^Slot\('in', handler=42\): the handler must be callable\.$"):
        rt.Slot("in", handler=42)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError,
        match=r"^Slot\('in', merge_strategy='invalid'\): choose 'override', 'append', or a function merge\(old, new\) -> merged\.$",
    ):
        rt.Slot("in", merge_strategy="invalid")
    with pytest.raises(
        TypeError,
        match=r"^RoutineEvent\('out', output_params='value'\): give the parameters as a list of names, e\.g\. \['value'\]\.$",
    ):
        rt.RoutineEvent("out", output_params="value")
    with pytest.raises(TypeError, match=r"^RoutineEvent\('out'\): routine=5 is not a Routine; "):
        rt.RoutineEvent("out", 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^RoutineEvent\('out'\): parameter names are strings, not 1\.$"):
        rt.RoutineEvent("out", output_params=[1])  # type: ignore[list-item]


def test_routine_event_keeps_its_older_name_params_form() -> None:
    event = rt.RoutineEvent("out", frozenset({"a"}))
    assert (event.routine, event.params) == (None, frozenset({"a"}))
    assert rt.RoutineEvent("out", None).params is None
    assert rt.RoutineEvent("out").output_params == []
    assert rt.RoutineEvent("out", output_params=["b", "a", "b"]).output_params == ["b", "a"]


# -- connect, disconnect, emit outside any flow --------------------------------------


def test_event_and_slot_links_are_mirrored_and_idempotent() -> None:
    event = rt.RoutineEvent("out")
    first, second = rt.Slot("a"), rt.Slot("b")
    link = event.connect(first)
    assert event.connect(first) is link  # linking again changes nothing
    second.connect(event)
    assert event.connected_slots == [first, second]
    assert first.connected_events == [event]
    assert second.connected_events == [event]
    event.disconnect(first)
    event.disconnect(first)  # again: nothing to do
    second.disconnect(event)
    assert event.connected_slots == []
    assert first.connected_events == second.connected_events == []


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 2), st.integers(0, 2)), max_size=20))
def test_links_stay_mirrored_between_events_and_slots(ops: list[tuple[bool, int, int]]) -> None:
    """Invariant: after any connects and disconnects, a slot lists an event exactly when the event lists the slot."""
    events = [rt.RoutineEvent(f"e{i}") for i in range(3)]
    slots = [rt.Slot(f"s{i}") for i in range(3)]
    for connect, e, s in ops:
        if connect:
            events[e].connect(slots[s])
        else:
            slots[s].disconnect(events[e])
    for event in events:
        for slot in slots:
            assert (slot in event.connected_slots) == (event in slot.connected_events)
        assert len(event.connected_slots) == len(set(map(id, event.connected_slots)))


def test_emit_outside_a_flow_calls_the_linked_slots_in_order() -> None:
    seen: list[object] = []
    source, first, second = Source(), Sink(seen), Sink(seen)
    source.output.connect(first.input)
    source.output.connect(second.input, param_mapping={"value": "renamed"})
    source.go(value=4)  # a handler called directly, as in a unit test
    assert seen == [{"value": 4, "extra": "x"}, {"renamed": 4, "extra": "x"}]
    source.output.emit(value=5)  # the event's own emit is the routine's
    assert seen[-2:] == [{"value": 5}, {"renamed": 5}]


def test_emit_outside_a_flow_with_nothing_linked_does_nothing() -> None:
    source = Source()
    source.emit("output", value=1)
    rt.RoutineEvent("alone").emit(anything=1)


def test_emit_outside_a_flow_still_checks_the_event() -> None:
    with pytest.raises(
        rt.EventDataError, match=r"^Routine 'Source' emitted 'output' with undeclared parameter\(s\) 'other'"
    ):
        Source().emit("output", other=1)
    with pytest.raises(
        rt.EventDataError,
        match=r"^<RoutineEvent 'out' params=\['a'\]>\.emit\(\.\.\.\) with undeclared parameter\(s\) 'b'; the event declares 'a'\. ",
    ):
        rt.RoutineEvent("out", output_params=["a"]).emit(b=1)
    with pytest.raises(
        rt.OutsideRunError,
        match=r"^<RoutineEvent 'out' params=any>\.emit\(flow=\.\.\.\): this event belongs to no routine",
    ):
        rt.RoutineEvent("out").emit(flow=rt.Flow("f"))


def test_a_routine_of_a_flow_emits_only_in_a_job_even_when_linked_by_hand() -> None:
    seen: list[object] = []
    source, sink = Source(), Sink(seen)
    source.output.connect(sink.input)
    rt.Flow("wired").add_routine(source, "source")
    with pytest.raises(rt.OutsideRunError, match=r"^Source\.emit\('output'\) was called outside a job\. "):
        source.go(value=1)
    assert seen == []


def test_a_mapping_the_slot_cannot_take_is_refused_at_connect() -> None:
    source = Source()
    took: list[object] = []
    narrow = rt.Slot("in", handler=lambda value: took.append(value))
    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"^Connection\(<RoutineEvent 'output' params=\['extra', 'value'\]>, <Slot 'in' handler=.*>\): "
        r"param_mapping maps to 'other', which the handler of slot 'in' \(.*\) cannot take; it takes 'value'\. ",
    ):
        source.output.connect(narrow, param_mapping={"value": "other"})
    with pytest.raises(
        rt.GraphDefinitionError, match=r"param_mapping renames 'missing', which event 'output' never carries"
    ):
        source.output.connect(narrow, param_mapping={"missing": "value"})
    source.output.connect(narrow, param_mapping={"extra": "value"})
    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"they are already linked, with param_mapping=\{'extra': 'value'\}, not \{\}\. Disconnect them first",
    ):
        source.output.connect(narrow, param_mapping={})


# -- Connection ------------------------------------------------------------------


def test_connection_by_hand_links_activates_and_disconnects() -> None:
    got: list[object] = []
    event = rt.RoutineEvent("out", output_params=["a", "b"])
    slot = rt.Slot("in", handler=lambda **kw: got.append(kw))
    connection = rt.Connection(event, slot, param_mapping={"a": "x"})
    assert (connection.source_event, connection.target_slot) == (event, slot)
    assert (connection.source_id, connection.event, connection.target_id, connection.slot) == (
        None,
        "out",
        None,
        "in",
    )
    assert connection.param_mapping == {"a": "x"}
    assert event.connected_slots == [slot]
    connection.activate({"a": 1, "b": 2})
    assert got == [{"x": 1, "b": 2}]  # renamed only, not passed twice
    event.emit(a=3)
    assert got[-1] == {"x": 3}
    connection.disconnect()
    connection.disconnect()
    assert event.connected_slots == []
    assert rt.Connection().target_slot is None
    with pytest.raises(
        rt.GraphDefinitionError, match=r"\.activate\(\.\.\.\): the connection has no target slot"
    ):
        rt.Connection().activate({})


def test_a_flow_connection_equals_its_tuple_and_belongs_to_the_flow() -> None:
    flow = rt.Flow("f")
    flow.add_routine(Source(), "source")
    flow.add_routine(Sink([]), "sink")
    connection = flow.connect("source", "output", "sink", "input")
    assert connection in flow.connections
    assert connection == rt.Connection("source", "output", "sink", "input")
    assert connection != rt.Connection("source", "output", "sink", "input", {"value": "v"})
    assert connection.source_event is flow.routines["source"].events["output"]
    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"^Connection\(source_id='source', event='output', target_id='sink', slot='input', param_mapping=\{\}\)"
        r"\.disconnect\(\): this connection was made by flow\.connect\(\.\.\.\) and belongs to the flow",
    ):
        connection.disconnect()
    with pytest.raises(TypeError, match=r"^Connection\(3, 4\): give a RoutineEvent and a Slot"):
        rt.Connection(3, 4)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"^Connection\('a', 'b', 'c', 4\): a flow's connection names"):
        rt.Connection("a", "b", "c", 4)  # type: ignore[arg-type]


# -- links made by hand inside a flow ---------------------------------------------------


def _flow(seen: list[object]) -> tuple[rt.Flow, Source, Sink]:
    flow = rt.Flow("wired")
    source, sink = Source(), Sink(seen)
    flow.add_routine(source, "source")
    flow.add_routine(sink, "sink")
    return flow, source, sink


def test_a_link_by_hand_between_routines_of_a_flow_is_a_flow_connection() -> None:
    seen: list[object] = []
    flow, source, sink = _flow(seen)
    source.output.connect(sink.input, param_mapping={"extra": "note"})
    assert flow.connections == [("source", "output", "sink", "input")]
    state = flow.execute("source", {"value": 2})
    assert state.status == "completed"
    assert seen == [{"value": 2, "note": "x"}]


def test_the_same_pair_linked_by_hand_and_by_flow_connect_is_one_connection() -> None:
    seen: list[object] = []
    flow, source, sink = _flow(seen)
    source.output.connect(sink.input)
    flow.connect("source", "output", "sink", "input")
    assert flow.connections == [("source", "output", "sink", "input")]
    flow.execute("source", {"value": 1})
    assert seen == [{"value": 1, "extra": "x"}]


def test_links_by_hand_that_a_flow_cannot_honour_are_refused_when_a_job_starts() -> None:
    flow, source, _ = _flow([])
    outsider = Sink([])
    source.output.connect(outsider.input)
    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"^Flow\('wired'\)\.execute\('source'\): event 'output' of routine 'source' is linked by hand "
        r"\(event\.connect\(slot\)\) to slot 'input' of a Sink routine, which is not a routine of flow 'wired'\. "
        r"In a flow, a link made by hand is one of the flow's connections: add that routine with "
        r"flow\.add_routine\(\.\.\.\), or remove the link with event\.disconnect\(slot\)\.$",
    ):
        flow.execute("source")
    assert flow.connections == []  # listing leaves it out instead

    flow, source, sink = _flow([])
    flow.connect("source", "output", "sink", "input", param_mapping={"extra": "note"})
    source.output.connect(sink.input)
    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"but flow\.connect\(\.\.\.\) connected them with param_mapping=\{'extra': 'note'\}",
    ):
        flow.execute("source")

    flow, source, sink = _flow([])
    flow.add_routine(sink, "sink_again")
    source.output.connect(sink.input)
    with pytest.raises(
        rt.GraphDefinitionError, match=r"routine 'sink' was added to flow 'wired' under several ids"
    ):
        flow.execute("source")


def test_a_flow_document_holds_the_links_made_by_hand() -> None:
    flow = rt.Flow("doc")
    source, narrow = Source(), Narrow()
    flow.add_routine(source, "source")
    flow.add_routine(narrow, "narrow")
    source.output.connect(narrow.input, param_mapping={"extra": "note"})
    document = json.loads(json.dumps(flow.serialize()))
    assert document["connections"] == [
        {
            "source": "source",
            "event": "output",
            "target": "narrow",
            "slot": "input",
            "param_mapping": {"extra": "note"},
        }
    ]
    loaded = rt.Flow().deserialize(document, allow=[Source, Narrow])
    assert loaded.execute("source", {"value": 3}).get_shared_data("output_log")[0]["data"] == {
        "note": "x",
        "value": 3,
    }


class Narrow(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.input = self.define_slot("input", handler=self.take)

    def take(self, value: int = 0, note: str = "") -> None:
        self.send_output("took", value=value, note=note)


# -- the docs page -------------------------------------------------------------------


def test_the_docs_wiring_example_runs_as_shown(capsys: pytest.CaptureFixture[str]) -> None:
    page = pathlib.Path(__file__).resolve().parents[2] / "docs" / "coming-from-routilux.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    wiring = [block for block in blocks if ".receive(" in block]
    assert len(wiring) == 1
    exec(
        compile(wiring[0], "coming-from-routilux.md", "exec"), {"__name__": "__main__"}
    )  # the page's own code
    assert capsys.readouterr().out.splitlines() == [
        "[42]",
        "[('double', 'output', 'keep', 'input')] {'result': 10}",
    ]


def test_a_connection_document_round_trips() -> None:
    flow_connection = rt.Connection("a", "out", "b", "in", {"x": "y"})
    document = json.loads(json.dumps(flow_connection.serialize()))
    assert document == {
        "format": "trioflow.connection",
        "version": 1,
        "_type": "Connection",
        "source": "a",
        "event": "out",
        "target": "b",
        "slot": "in",
        "param_mapping": {"x": "y"},
    }
    assert rt.Connection().deserialize(document) == flow_connection

    event, slot = rt.RoutineEvent("out"), rt.Slot("in")
    link = rt.Connection(event, slot, {"x": "y"})
    loaded = rt.Connection().deserialize(link.serialize())
    assert (loaded.source_id, loaded.event, loaded.slot, dict(loaded.param_mapping)) == (
        None,
        "out",
        "in",
        {"x": "y"},
    )
    with pytest.raises(
        rt.GraphDefinitionError, match=r"this connection is a link made by hand, and loading would change it"
    ):
        link.deserialize(document)
    with pytest.raises(
        rt.DefinitionDocumentError, match=r"^Cannot load a connection document: it is a Routilux \(serilux\) document \(\"_type\": 'Connection', no 'format'\)"
    ):
        rt.Connection().deserialize({"_type": "Connection", "param_mapping": {}})
    with pytest.raises(
        rt.DefinitionDocumentError, match=r"^Cannot load a connection document: its format is None"
    ):
        rt.Connection().deserialize({"param_mapping": {}})
    with pytest.raises(rt.DefinitionDocumentError, match=r"^Cannot load a connection document: .*\$\.slot"):
        rt.Connection().deserialize({**document, "slot": 3})
