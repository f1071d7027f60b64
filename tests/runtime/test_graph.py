"""Routine graphs on ``rt.Flow``: connect, execute/aexecute/open_job, delivery, errors, pause/resume/cancel."""

from __future__ import annotations

import itertools
import json
from typing import TYPE_CHECKING

import attrs
import pytest
import trio
import trio.lowlevel
import trio.testing

import runtime as rt
import runtime.testing as rtt

if TYPE_CHECKING:
    import pathlib


# -- routines used below --------------------------------------------------------


class Source(rt.Routine):
    """Emits ``count`` items (or the given ``items``) on ``output``."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger", handler=self.send)
        self.define_event("output", ["data"])

    def send(self, count: int = 3, items: list[object] | None = None, **kwargs: object) -> None:
        for item in items if items is not None else range(count):
            self.emit("output", data=item)


class Recorder(rt.Routine):
    """Appends what it receives to its routine state's ``got`` list, and re-emits it."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.take)
        self.define_event("output", ["data"])

    def take(self, data: object = None, **kwargs: object) -> None:
        ctx = self.get_execution_context()
        assert ctx is not None
        state = ctx.job_state.get_routine_state(ctx.routine_id) or {}
        got = state.get("got", [])
        assert isinstance(got, list)
        ctx.job_state.update_routine_state(ctx.routine_id, {"got": [*got, data]})
        self.emit("output", data=data)


class Failing(rt.Routine):
    """Fails on the values listed in ``fail_on``; re-emits the others."""

    def __init__(self, fail_on: tuple[object, ...] = ()) -> None:
        super().__init__()
        self.define_slot("input", handler=self.take)
        self.define_event("output", ["data"])
        self.fail_on = fail_on

    def take(self, data: object = None, **kwargs: object) -> None:
        if data in self.fail_on:
            raise ValueError(f"bad item {data!r}")
        self.emit("output", data=data)


def pipeline(
    *routines: tuple[str, rt.Routine], name: str = "pipe", **flow_kwargs: object
) -> rt.Flow[..., object]:
    """A flow of the routines in a line, each one's ``output`` to the next one's first slot."""
    flow: rt.Flow[..., object] = rt.Flow(flow_id=name, **flow_kwargs)  # type: ignore[arg-type]
    for routine_id, routine in routines:
        flow.add_routine(routine, routine_id)
    for (a, _), (b, routine) in itertools.pairwise(routines):
        flow.connect(a, "output", b, next(iter(routine.slots)))
    return flow


def got(state: rt.JobState, routine_id: str) -> list[object]:
    routine_state = state.get_routine_state(routine_id) or {}
    items = routine_state.get("got", [])
    assert isinstance(items, list)
    return items


# -- building the graph ------------------------------------------------------------


class Writer(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.write)
        self.define_slot("flush")

    def write(self, **kwargs: object) -> None:
        pass


class Parser(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("text")
        self.define_event("parsed", ["tokens"])
        self.define_event("failed")


@pytest.fixture
def etl() -> rt.Flow[..., object]:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="etl")
    flow.add_routine(Parser(), "parser")
    flow.add_routine(Writer(), "writer")
    return flow


def test_connect_names_the_known_slots(etl: rt.Flow[..., object]) -> None:
    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"^connect\('parser', 'parsed', 'writer', 'inptu'\): routine 'writer' has no slot 'inptu'; "
        r"its slots are 'input', 'flush'\.$",
    ):
        etl.connect("parser", "parsed", "writer", "inptu")


def test_connect_names_the_known_events(etl: rt.Flow[..., object]) -> None:
    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"^connect\('parser', 'parse', 'writer', 'input'\): routine 'parser' has no event 'parse'; "
        r"its events are 'parsed', 'failed'\.$",
    ):
        etl.connect("parser", "parse", "writer", "input")


def test_connect_names_the_known_routines(etl: rt.Flow[..., object]) -> None:
    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"^connect\('parsr', 'parsed', 'writer', 'input'\): flow 'etl' has no routine 'parsr'; "
        r"its routines are 'parser', 'writer'\.$",
    ):
        etl.connect("parsr", "parsed", "writer", "input")
    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"^connect\('parser', 'parsed', 'sink', 'input'\): flow 'etl' has no routine 'sink'",
    ):
        etl.connect("parser", "parsed", "sink", "input")


def test_connect_says_when_a_routine_has_no_events(etl: rt.Flow[..., object]) -> None:
    with pytest.raises(
        rt.GraphDefinitionError, match=r"routine 'writer' has no event 'out'; its events are none\.$"
    ):
        etl.connect("writer", "out", "parser", "text")


def test_connect_twice_is_refused(etl: rt.Flow[..., object]) -> None:
    etl.connect("parser", "parsed", "writer", "input")
    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"^connect\('parser', 'parsed', 'writer', 'input'\): these are already connected; each connection "
        r"delivers every emission once\.$",
    ):
        etl.connect("parser", "parsed", "writer", "input")
    assert etl.connections == [("parser", "parsed", "writer", "input")]


def test_connect_refuses_a_mapping_to_a_parameter_the_handler_cannot_take() -> None:
    class Strict(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.take)

        def take(self, data: object, other: object = None) -> None:
            pass

    class Two(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_event("output", ["data", "meta"])

    flow: rt.Flow[..., object] = rt.Flow(flow_id="f")
    flow.add_routine(Two(), "two")
    flow.add_routine(Strict(), "strict")
    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"^connect\('two', 'output', 'strict', 'input'\): param_mapping maps to 'metadata', which the "
        r"handler of slot 'input' \(.*Strict\.take\) cannot take; it takes 'data', 'other'\. Map to one of "
        r"those, or add the parameter \(or \*\*kwargs\) to the handler\.$",
    ):
        flow.connect("two", "output", "strict", "input", param_mapping={"meta": "metadata"})
    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"^connect\('two', 'output', 'strict', 'input'\): param_mapping renames 'size', which event "
        r"'output' never carries; it declares 'data', 'meta'\. Map the event's own parameter names\.$",
    ):
        flow.connect("two", "output", "strict", "input", param_mapping={"size": "other"})
    with pytest.raises(TypeError, match=r"param_mapping=\['meta'\] must be a dict"):
        flow.connect("two", "output", "strict", "input", param_mapping=["meta"])  # type: ignore[arg-type]
    assert flow.connections == []
    connection = flow.connect("two", "output", "strict", "input", param_mapping={"meta": "other"})
    assert connection == rt.Connection("two", "output", "strict", "input", {"meta": "other"})


def test_duplicate_routine_id_is_refused(etl: rt.Flow[..., object]) -> None:
    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"^add_routine\(\.\.\., 'writer'\): flow 'etl' already has a routine 'writer' \(Writer\); give each "
        r"routine its own id\.$",
    ):
        etl.add_routine(Parser(), "writer")


def test_add_routine_needs_a_routine_or_a_factory(etl: rt.Flow[..., object]) -> None:
    with pytest.raises(
        TypeError,
        match=r"^Flow\('etl'\)\.add_routine\(\) got str 'writer', not a Routine\. Pass a routine instance, a Routine "
        r"subclass, or a function with no arguments that returns a routine\.$",
    ):
        etl.add_routine("writer")  # type: ignore[arg-type]
    assert etl.add_routine(Writer) == "writer_2"  # a Routine subclass is a factory
    assert type(etl.routines["writer_2"]) is Writer


def test_add_routine_makes_ids() -> None:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="ids")
    assert flow.add_routine(Writer()) == "writer"
    assert flow.add_routine(Writer()) == "writer_2"
    assert list(flow.routines) == ["writer", "writer_2"]


def test_max_steps_must_be_positive() -> None:
    with pytest.raises(
        ValueError,
        match=r"^Flow\('f', max_steps=0\): max_steps must be a whole number of handler calls, 1 or more, or None "
        r"for no limit\.$",
    ):
        rt.Flow(flow_id="f", max_steps=0)
    assert rt.Flow(flow_id="f").max_steps is None  # no limit unless asked


def test_execute_with_an_unknown_entry_names_the_routines(etl: rt.Flow[..., object]) -> None:
    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"^execute\('parsr'\): flow 'etl' has no routine 'parsr'; its routines are 'parser', 'writer'\.$",
    ):
        etl.execute("parsr")


def test_execute_needs_routines_and_an_entry_slot() -> None:
    empty: rt.Flow[..., object] = rt.Flow(flow_id="empty")
    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"^Flow\('empty'\)\.execute\(\): the flow has no routines\. Add them with add_routine\(routine, 'id'\) first\.$",
    ):
        empty.execute("x")
    empty.add_routine(rt.Routine(), "bare")
    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"^execute\('bare'\): routine 'bare' has no slot to start a job with\. Define one with "
        r"define_slot\(name, handler=\.\.\.\)\.$",
    ):
        empty.execute("bare")


def test_entry_params_must_be_a_dict(etl: rt.Flow[..., object]) -> None:
    with pytest.raises(TypeError, match=r"^execute\('parser', entry_params=3\): entry_params is a dict"):
        etl.execute("parser", 3)  # type: ignore[arg-type]


# -- running a job -----------------------------------------------------------------


def test_execute_returns_the_completed_state() -> None:
    flow = pipeline(("source", Source()), ("recorder", Recorder()), name="line")
    state = flow.execute("source", {"count": 4})
    assert isinstance(state, rt.JobState)
    assert f"Status: {state.status}" == "Status: completed"
    assert state.flow_id == "line"
    assert state.error is None
    assert state.undelivered == []
    assert got(state, "recorder") == [0, 1, 2, 3]
    history = state.get_execution_history()
    assert [(h.routine_id, h.event_name, h.data) for h in history if h.routine_id == "source"] == [
        ("source", "output", {"data": i}) for i in range(4)
    ]
    assert len(state.get_execution_history("recorder")) == 4
    assert [h.offset for h in history] == sorted(h.offset for h in history)
    assert rt.JobState.wait_for_completion(flow, state, timeout=2.0) is True
    assert state.started_at is not None
    assert state.finished_at is not None


def test_each_job_has_its_own_id_and_state() -> None:
    flow = pipeline(("source", Source()), ("recorder", Recorder()))
    first, second = flow.execute("source"), flow.execute("source", {"count": 1})
    assert first.job_id != second.job_id
    assert got(first, "recorder") == [0, 1, 2]
    assert got(second, "recorder") == [0]


async def test_execute_inside_trio_is_a_clear_error() -> None:
    flow = pipeline(("source", Source()), ("recorder", Recorder()), name="etl")
    with pytest.raises(
        rt.InvokeInsideTrioError,
        match=r"^Flow\('etl'\)\.execute\(\.\.\.\) was called inside a running Trio program, where it would block "
        r"the loop\. Use await Flow\('etl'\)\.aexecute\(\.\.\.\)\.$",
    ):
        flow.execute("source")


async def test_aexecute_inside_trio() -> None:
    flow = pipeline(("source", Source()), ("recorder", Recorder()))
    before = rtt.current_tasks()
    state = await flow.aexecute("source", {"items": ["a", "b"]})
    assert state.status is rt.Status.COMPLETED
    assert got(state, "recorder") == ["a", "b"]
    assert rtt.current_tasks() == before


async def test_the_entry_slot_is_the_first_defined_one() -> None:
    calls: list[tuple[str, dict[str, object]]] = []

    class TwoSlots(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("first", handler=lambda **kw: calls.append(("first", kw)))
            self.define_slot("second", handler=lambda **kw: calls.append(("second", kw)))

    flow: rt.Flow[..., object] = rt.Flow(flow_id="slots")
    flow.add_routine(TwoSlots(), "two")
    await flow.aexecute("two", {"x": 1})
    assert calls == [("first", {"x": 1})]


async def test_handlers_may_be_async_and_plain_functions() -> None:
    class AsyncDouble(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.double)
            self.define_event("output", ["data"])

        async def double(self, data: int, **_: object) -> None:
            await trio.lowlevel.checkpoint()
            self.emit("output", data=2 * data)

    seen: list[object] = []
    sink = rt.Routine()
    sink.define_slot("input", handler=lambda data: seen.append(data["data"]))  # its one parameter, 'data': the dict
    flow = pipeline(("source", Source()), ("double", AsyncDouble()), ("sink", sink))
    state = await flow.aexecute("source", {"count": 3})
    assert state.status is rt.Status.COMPLETED
    assert seen == [0, 2, 4]


async def test_execution_context_in_a_handler() -> None:
    seen: list[rt.ExecutionContext] = []

    class Look(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.look)

        def look(self, **kwargs: object) -> None:
            ctx = self.get_execution_context()
            assert ctx is not None
            seen.append(ctx)

    flow = pipeline(("source", Source()), ("look", Look()))
    state = await flow.aexecute("source", {"count": 1})
    [ctx] = seen
    flow_, job_state, routine_id = ctx
    assert (flow_, job_state, routine_id) == (flow, state, "look")


async def test_a_handler_sees_no_other_routines_context() -> None:
    class Peek(rt.Routine):
        def __init__(self, other: rt.Routine) -> None:
            super().__init__()
            self.other = other
            self.define_slot("input", handler=self.peek)

        def peek(self, **kwargs: object) -> None:
            ctx = self.get_execution_context()
            assert ctx is not None
            ctx.job_state.update_routine_state(
                ctx.routine_id, {"other": self.other.get_execution_context() is None}
            )

    flow = pipeline(("source", Source()), ("peek", Peek(Recorder())))
    state = await flow.aexecute("source", {"count": 1})
    assert state.get_routine_state("peek") == {"other": True}


async def test_emitting_an_undefined_event_fails_the_job() -> None:
    class Typo(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)
            self.define_event("output", ["data"])

        def go(self) -> None:
            self.emit("ouptut", data=1)

    flow: rt.Flow[..., object] = rt.Flow(flow_id="typo")
    flow.add_routine(Typo(), "typo")
    flow.set_entry("typo")
    result = await flow.arun()
    assert result.status is rt.Status.FAILED
    with pytest.raises(
        rt.EventDataError,
        match=r"^Routine 'typo' \(Typo\) emitted 'ouptut', which it never defined; its events are 'output'\. "
        r"Define it with define_event\('ouptut', \[\.\.\.\]\)\.\nraised in routine 'typo' \(slot 'trigger'\) of job "
        r"'job-[0-9a-f]+' of flow 'typo'; the job stopped \(error strategy 'stop'\)\.$",
    ):
        result.unwrap()
    assert result.state.error is not None
    assert result.state.error.type == "runtime.EventDataError"
    assert result.state.error.path == ("typo",)


async def test_emitting_an_undeclared_parameter_fails_the_job() -> None:
    class Extra(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)
            self.define_event("output", ["data"])

        def go(self) -> None:
            self.emit("output", data=1, extra=2, more=3)

    flow: rt.Flow[..., object] = rt.Flow(flow_id="extra")
    flow.add_routine(Extra(), "extra")
    state = await flow.aexecute("extra")
    assert state.status is rt.Status.FAILED
    assert state.error is not None
    assert state.error.message.splitlines()[0] == (
        "Routine 'extra' emitted 'output' with undeclared parameter(s) 'extra', 'more'; the event declares "
        "'data'. Add them to define_event('output', [...]) or stop sending them."
    )


# -- delivery ----------------------------------------------------------------------


async def test_fan_out_and_fan_in_deliver_every_emission_once_in_order() -> None:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="diamond")
    flow.add_routine(Source(), "source")
    for rid in ("left", "right", "join"):
        flow.add_routine(Recorder(), rid)
    flow.connect("source", "output", "left", "input")
    flow.connect("source", "output", "right", "input")
    flow.connect("left", "output", "join", "input")
    flow.connect("right", "output", "join", "input")
    state = await flow.aexecute("source", {"count": 200})
    assert state.status is rt.Status.COMPLETED
    assert got(state, "left") == list(range(200))
    assert got(state, "right") == list(range(200))
    joined = got(state, "join")
    assert sorted(joined) == sorted([*range(200), *range(200)])  # type: ignore[type-var]
    assert len(state.history) == 200 + 200 + 200 + 400


async def test_one_handler_at_a_time_routines_concurrently(autojump_clock: trio.testing.MockClock) -> None:
    running: dict[str, int] = {"a": 0, "b": 0}
    peak: dict[str, int] = {"a": 0, "b": 0}

    class Slow(rt.Routine):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key
            self.define_slot("input", handler=self.work)

        async def work(self, **kwargs: object) -> None:
            running[self.key] += 1
            peak[self.key] = max(peak[self.key], running[self.key])
            await trio.sleep(1)
            running[self.key] -= 1

    flow: rt.Flow[..., object] = rt.Flow(flow_id="slow")
    flow.add_routine(Source(), "source")
    flow.add_routine(Slow("a"), "a")
    flow.add_routine(Slow("b"), "b")
    flow.connect("source", "output", "a", "input")
    flow.connect("source", "output", "b", "input")
    start = trio.current_time()
    await flow.aexecute("source", {"count": 3})
    assert peak == {"a": 1, "b": 1}
    assert trio.current_time() - start == pytest.approx(3.0)


async def test_aemit_sends_before_the_handler_returns() -> None:
    order: list[str] = []

    class Eager(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)
            self.define_event("output", ["data"])

        async def go(self) -> None:
            await self.aemit("output", data=1)
            await trio.testing.wait_all_tasks_blocked()
            order.append("sender done")

    sink = rt.Routine()
    sink.define_slot("input", handler=lambda data: order.append("received"))
    flow = pipeline(("eager", Eager()), ("sink", sink))
    await flow.aexecute("eager")
    assert order == ["received", "sender done"]


async def test_slot_merge_strategies() -> None:
    seen: list[dict[str, object]] = []

    def record(**kwargs: object) -> None:
        seen.append(kwargs)

    appender = rt.Routine()
    appender.define_slot("input", handler=record, merge_strategy="append")
    summer = rt.Routine()
    summer.define_slot(
        "input",
        handler=record,
        merge_strategy=lambda old, new: {"total": int(old.get("total", 0)) + int(new["data"])},  # type: ignore[call-overload]
    )
    flow: rt.Flow[..., object] = rt.Flow(flow_id="merge")
    flow.add_routine(Source(), "source")
    flow.add_routine(appender, "appender")
    flow.add_routine(summer, "summer")
    flow.connect("source", "output", "appender", "input")
    flow.connect("source", "output", "summer", "input")
    await flow.aexecute("source", {"count": 3})
    assert [s for s in seen if "data" in s] == [{"data": [0]}, {"data": [0, 1]}, {"data": [0, 1, 2]}]
    assert [s for s in seen if "total" in s] == [{"total": 0}, {"total": 1}, {"total": 3}]


async def test_a_slot_without_handler_receives_quietly() -> None:
    flow = pipeline(("source", Source()), ("writer", Writer()))
    flow.connect("source", "output", "writer", "flush")
    state = await flow.aexecute("source", {"count": 2})
    assert state.status is rt.Status.COMPLETED


# -- isolation ---------------------------------------------------------------------


class Counter(rt.Routine):
    """Counts on ``self`` (discouraged, but it must stay within the job)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.items: list[object] = []
        self.define_slot("input", handler=self.take)

    async def take(self, data: object = None, **kwargs: object) -> None:
        self.count += 1
        self.items.append(data)
        await trio.sleep(0.1)
        ctx = self.get_execution_context()
        assert ctx is not None
        ctx.job_state.update_routine_state(ctx.routine_id, {"count": self.count, "items": self.items})


async def test_concurrent_jobs_never_see_each_others_instance_state(
    autojump_clock: trio.testing.MockClock,
) -> None:
    counter = Counter()
    flow = pipeline(("source", Source()), ("counter", counter))
    states: dict[str, rt.JobState] = {}

    async def one(tag: str, n: int) -> None:
        states[tag] = await flow.aexecute("source", {"items": [f"{tag}{i}" for i in range(n)]})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "x", 3)
        nursery.start_soon(one, "y", 5)
    assert states["x"].get_routine_state("counter") == {"count": 3, "items": ["x0", "x1", "x2"]}
    assert states["y"].get_routine_state("counter") == {"count": 5, "items": [f"y{i}" for i in range(5)]}
    assert counter.count == 0
    assert counter.items == []


async def test_rt_context_in_a_handler_is_the_jobs_own_copy() -> None:
    class Ctx(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)

        def go(self, tag: str) -> None:
            seen = rt.context.get("seen")
            assert isinstance(seen, list)
            seen.append(tag)
            rt.context.put("tag", tag)

    flow: rt.Flow[..., object] = rt.Flow(flow_id="ctx", context={"seen": []})
    flow.add_routine(Ctx(), "ctx")
    first = await flow.aexecute("ctx", {"tag": "a"})
    second = await flow.aexecute("ctx", {"tag": "b"})
    assert first.context == {"seen": ["a"], "tag": "a"}
    assert second.context == {"seen": ["b"], "tag": "b"}
    assert flow.context == {"seen": []}


# -- cycles, step limit, timeout -----------------------------------------------------


class Bouncer(rt.Routine):
    """Sends ``ttl - 1`` on, ``fanout`` times, while ``ttl`` is positive."""

    def __init__(self, fanout: int = 1) -> None:
        super().__init__()
        self.fanout = fanout
        self.define_slot("input", handler=self.bounce)
        self.define_event("output", ["ttl", "path"])

    def bounce(self, ttl: int, path: str = "") -> None:
        ctx = self.get_execution_context()
        assert ctx is not None
        ctx.job_state.append_to_shared_log({"at": ctx.routine_id, "path": path})
        if ttl > 0:
            for k in range(self.fanout):
                self.emit("output", ttl=ttl - 1, path=f"{path}{k}")


def ping_pong(fanout: int = 1, **flow_kwargs: object) -> rt.Flow[..., object]:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="ping-pong", **flow_kwargs)  # type: ignore[arg-type]
    flow.add_routine(Bouncer(fanout), "ping")
    flow.add_routine(Bouncer(fanout), "pong")
    flow.connect("ping", "output", "pong", "input")
    flow.connect("pong", "output", "ping", "input")
    return flow


async def test_a_cycle_that_stops_completes() -> None:
    state = await ping_pong().aexecute("ping", {"ttl": 9})
    assert state.status is rt.Status.COMPLETED
    assert [entry["at"] for entry in state.get_shared_log()] == ["ping", "pong"] * 5


async def test_a_runaway_cycle_hits_the_step_limit() -> None:
    state = await ping_pong(max_steps=50).aexecute("ping", {"ttl": 10**9})
    assert state.status is rt.Status.FAILED
    assert state.error is not None
    assert state.error.type == "runtime.StepLimitError"
    assert state.error.message == (
        f"Job {state.job_id!r} of flow 'ping-pong' handled 50 messages, its max_steps, and routine 'ping' was "
        "about to handle another on slot 'input': a cycle that never ends? Make the cycle stop, or raise "
        "Flow(..., max_steps=...)."
    )
    assert len(state.get_shared_log()) == 50
    assert [(d.source, d.event, d.target, d.slot) for d in state.undelivered] == [
        ("pong", "output", "ping", "input")
    ]


async def test_a_runaway_cycle_hits_the_timeout(autojump_clock: trio.testing.MockClock) -> None:
    class Sleepy(Bouncer):
        async def bounce(self, ttl: int, path: str = "") -> None:  # type: ignore[override]
            await trio.sleep(1)
            super().bounce(ttl, path)

    flow: rt.Flow[..., object] = rt.Flow(flow_id="sleepy", timeout=10.5)
    flow.add_routine(Sleepy(), "ping")
    flow.add_routine(Sleepy(), "pong")
    flow.connect("ping", "output", "pong", "input")
    flow.connect("pong", "output", "ping", "input")
    with pytest.raises(
        rt.GraphDefinitionError, match=r"every routine has an incoming connection\. Choose one with"
    ):
        await flow.arun({"ttl": 1})
    flow.set_entry("ping")
    before = rtt.current_tasks()
    result = await flow.arun({"ttl": 10**9})
    assert result.status is rt.Status.TIMED_OUT
    assert trio.current_time() == pytest.approx(10.5)
    with pytest.raises(
        rt.RunTimeoutError,
        match=r"^Job 'job-[0-9a-f]+' of flow 'sleepy' timed out after 10\.5 s; every routine of it was cancelled\.$",
    ):
        result.unwrap()
    assert len(result.state.get_shared_log()) == 10
    assert len(result.state.undelivered) == 0  # the message being handled was delivered
    assert rtt.current_tasks() == before


async def test_a_fast_growing_cycle_does_not_deadlock_on_full_mailboxes() -> None:
    # Each message makes two: the mailboxes (64) fill long before the step
    # limit, and each routine waits for room in the other's mailbox.
    state = await ping_pong(fanout=2, max_steps=5_000).aexecute("ping", {"ttl": 30})
    assert state.status is rt.Status.FAILED
    assert state.error is not None
    assert state.error.type == "runtime.StepLimitError"


async def test_a_cycle_through_full_mailboxes_completes_in_order() -> None:
    # 'a' sends 500 items to 'b' at once; 'b' answers each with one item to
    # 'a', which counts the answers: both mailboxes fill, both wait.
    class A(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("start", handler=self.start)
            self.define_slot("answer", handler=self.answer)
            self.define_event("request", ["n"])

        def start(self, n: int) -> None:
            for i in range(n):
                self.emit("request", n=i)

        def answer(self, n: int) -> None:
            ctx = self.get_execution_context()
            assert ctx is not None
            ctx.job_state.append_to_shared_log({"n": n})

    class B(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("request", handler=self.reply)
            self.define_event("reply", ["n"])

        def reply(self, n: int) -> None:
            self.emit("reply", n=n)

    flow: rt.Flow[..., object] = rt.Flow(flow_id="full")
    flow.add_routine(A(), "a")
    flow.add_routine(B(), "b")
    flow.connect("a", "request", "b", "request")
    flow.connect("b", "reply", "a", "answer")
    state = await flow.aexecute("a", {"n": 500})
    assert state.status is rt.Status.COMPLETED
    assert [entry["n"] for entry in state.get_shared_log()] == list(range(500))


# -- error strategies ----------------------------------------------------------------


async def test_stop_fails_the_job_and_cancels_the_others(autojump_clock: trio.testing.MockClock) -> None:
    cleaned: list[str] = []

    class Slow(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.work)

        async def work(self, **kwargs: object) -> None:
            try:
                await trio.sleep(100)
            finally:
                cleaned.append("slow")

    class SlowFailing(Failing):
        async def take(self, data: object = None, **kwargs: object) -> None:  # type: ignore[override]
            await trio.sleep(1)
            super().take(data)

    flow: rt.Flow[..., object] = rt.Flow(flow_id="stop")
    flow.add_routine(Source(), "source")
    flow.add_routine(SlowFailing(fail_on=(1,)), "failing")
    flow.add_routine(Slow(), "slow")
    flow.add_routine(Recorder(), "after")
    flow.connect("source", "output", "failing", "input")
    flow.connect("source", "output", "slow", "input")
    flow.connect("failing", "output", "after", "input")
    result = await flow.arun({"count": 3})
    state = result.state
    assert state.status is rt.Status.FAILED
    assert trio.current_time() == pytest.approx(2.0)
    assert cleaned == ["slow"]
    assert isinstance(result.error, ValueError)
    assert str(result.error) == "bad item 1"
    assert result.error.__notes__ == [
        f"raised in routine 'failing' (slot 'input') of job {state.job_id!r} of flow 'stop'; the job stopped "
        "(error strategy 'stop')."
    ]
    assert state.error == rt.ErrorSummary("ValueError", "bad item 1", ("failing",))
    assert state.get_routine_state("failing") == {
        "status": "failed",
        "error": "ValueError: bad item 1",
        "failures": 1,
    }
    [error] = [h for h in state.history if h.event_name == "error"]
    assert (error.routine_id, error.data) == (
        "failing",
        {
            "slot": "input",
            "error_type": "ValueError",
            "error": "bad item 1",
            "action": "stop",
            "attempt": 2 - 1,
        },
    )
    undelivered = [(d.source, d.target, d.data) for d in state.undelivered]
    assert ("source", "failing", {"data": 2}) in undelivered
    assert ("source", "slow", {"data": 1}) in undelivered
    assert ("source", "slow", {"data": 2}) in undelivered


@pytest.mark.parametrize(("strategy", "status"), [("continue", "error_continued"), ("skip", "skipped")])
async def test_continue_and_skip_go_on(strategy: str, status: str) -> None:
    failing = Failing(fail_on=(1, 3))
    failing.set_error_handler(strategy)
    flow = pipeline(("source", Source()), ("failing", failing), ("after", Recorder()))
    state = await flow.aexecute("source", {"count": 5})
    assert state.status is rt.Status.COMPLETED
    assert got(state, "after") == [0, 2, 4]
    assert state.get_routine_state("failing") == {
        "status": status,
        "error": "ValueError: bad item 3",
        "failures": 2,
    }
    errors = [h.data for h in state.history if h.event_name == "error"]
    assert [e["action"] for e in errors] == [strategy, strategy]
    assert state.error is None


async def test_emissions_before_a_failure_are_delivered() -> None:
    class Partial(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.take)
            self.define_event("output", ["data"])
            self.set_error_handler("continue")

        def take(self, data: object, **_: object) -> None:
            self.emit("output", data=data)
            raise RuntimeError("after emitting")

    flow = pipeline(("source", Source()), ("partial", Partial()), ("after", Recorder()))
    state = await flow.aexecute("source", {"count": 2})
    assert state.status is rt.Status.COMPLETED
    assert got(state, "after") == [0, 1]


async def test_retry_backs_off_then_succeeds(autojump_clock: trio.testing.MockClock) -> None:
    attempts: list[float] = []

    class Flaky(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.take)
            self.define_event("output", ["data"])
            self.set_error_handler(
                rt.ErrorHandler(
                    strategy=rt.ErrorStrategy.RETRY, max_retries=3, retry_delay=0.1, retry_backoff=2.0
                )
            )

        def take(self, data: object, **_: object) -> None:
            attempts.append(trio.current_time())
            if len(attempts) < 4:
                raise ConnectionError("flaky")
            self.emit("output", data=data)

    flow = pipeline(("source", Source()), ("flaky", Flaky()), ("after", Recorder()))
    start = trio.current_time()
    state = await flow.aexecute("source", {"count": 1})
    assert state.status is rt.Status.COMPLETED
    assert [t - start for t in attempts] == pytest.approx([0.0, 0.1, 0.3, 0.7])
    assert got(state, "after") == [0]
    assert state.get_routine_state("flaky") == {
        "status": "recovered",
        "error": "ConnectionError: flaky",
        "failures": 3,
        "retry_count": 3,
    }
    assert [h.data["action"] for h in state.history if h.event_name == "error"] == ["retry"] * 3


async def test_retry_gives_up_and_stops(autojump_clock: trio.testing.MockClock) -> None:
    failing = Failing(fail_on=(0,))
    failing.set_error_handler(
        rt.ErrorHandler(strategy="retry", max_retries=2, retry_delay=1.0, retry_backoff=1.0)
    )
    flow = pipeline(("source", Source()), ("failing", failing), name="giveup")
    result = await flow.arun({"count": 1})
    assert result.status is rt.Status.FAILED
    assert trio.current_time() == pytest.approx(2.0)
    assert [h.data["action"] for h in result.state.history if h.event_name == "error"] == [
        "retry",
        "retry",
        "stop",
    ]
    assert result.error is not None
    assert result.error.__notes__[-1].endswith("the job stopped (error strategy 'retry', after 2 retries).")


async def test_retry_only_retryable_exceptions(autojump_clock: trio.testing.MockClock) -> None:
    failing = Failing(fail_on=(0,))
    failing.set_error_handler(rt.ErrorHandler(strategy="retry", retryable_exceptions=(ConnectionError,)))
    flow = pipeline(("source", Source()), ("failing", failing))
    state = await flow.aexecute("source", {"count": 1})
    assert state.status is rt.Status.FAILED
    assert [h.data["action"] for h in state.history if h.event_name == "error"] == ["stop"]


async def test_flow_default_error_handler_and_end_on_error() -> None:
    flow = pipeline(("source", Source()), ("failing", Failing(fail_on=(0,))), ("after", Recorder()))
    flow.set_error_handler("skip")
    assert (await flow.aexecute("source", {"count": 2})).status is rt.Status.COMPLETED
    strict = pipeline(("source", Source()), ("failing", Failing(fail_on=(0,))), end_on_error=True)
    strict.set_error_handler("continue")
    state = await strict.aexecute("source", {"count": 2})
    assert state.status is rt.Status.FAILED
    assert [h.data["action"] for h in state.history if h.event_name == "error"] == ["stop"]


async def test_fault_injection_reaches_routine_handlers() -> None:
    flow = pipeline(("source", Source()), ("recorder", Recorder()))
    plan = {"recorder": rtt.Fault.raising(ValueError("injected"))}
    with rtt.inject(plan, flow=flow) as injection:
        state = await flow.aexecute("source", {"count": 2})
    assert state.status is rt.Status.FAILED
    assert state.error is not None
    assert state.error.message.startswith("injected")
    assert [h.path for h in injection.trace] == [("source", "trigger"), ("recorder", "input")]


# -- pause, resume, cancel -----------------------------------------------------------


class Gate(rt.Routine):
    """Records each item with the job's status at the moment its handler starts."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.take)
        self.define_event("output", ["data"])

    async def take(self, data: object = None, **kwargs: object) -> None:
        ctx = self.get_execution_context()
        assert ctx is not None
        ctx.job_state.append_to_shared_log({"data": data, "status": str(ctx.job_state.status)})
        await trio.sleep(1)
        self.emit("output", data=data)


async def test_pause_stops_new_handlers_and_resume_goes_on(autojump_clock: trio.testing.MockClock) -> None:
    flow = pipeline(("source", Source()), ("gate", Gate()), ("after", Recorder()))
    async with flow.open_job("source", {"count": 5}) as job:
        await trio.sleep(1.5)  # the gate handled item 0 and is handling item 1
        job.pause("checking")
        assert job.status is rt.Status.PAUSED
        assert job.pause_reason == "checking"
        job.pause()  # pausing a paused job does nothing
        await trio.sleep(10)
        assert [e["data"] for e in job.state.get_shared_log()] == [0, 1]
        # the handler running at pause finished; what it emitted waits for the resume
        assert [h.data for h in job.state.get_execution_history("gate")] == [{"data": 0}, {"data": 1}]
        assert got(job.state, "after") == [0]
        job.resume()
        state = await job.wait()
    assert state.status is rt.Status.COMPLETED
    assert [e["status"] for e in state.get_shared_log()] == ["running"] * 5
    assert got(state, "after") == [0, 1, 2, 3, 4]


async def test_resuming_a_job_that_is_not_paused_is_an_error() -> None:
    flow = pipeline(("source", Source()), ("gate", Gate()), name="resume")
    async with flow.open_job("source") as job:
        with pytest.raises(
            rt.JobStateError,
            match=r"^Cannot resume job 'job-[0-9a-f]+' of flow 'resume': it is running, not paused\. Call resume\(\) "
            r"only after pause\(\)\.$",
        ):
            job.resume()
        job.cancel()
    with pytest.raises(rt.JobStateError, match=r"it is cancelled, not paused"):
        job.resume()
    with pytest.raises(
        rt.JobStateError,
        match=r"^Cannot pause job 'job-[0-9a-f]+' of flow 'resume': it has ended \(cancelled\)\. Pause a job while it runs\.$",
    ):
        job.pause()


async def test_job_state_controls_outside_a_handler_name_the_handle() -> None:
    state = await pipeline(("source", Source())).aexecute("source")
    with pytest.raises(
        rt.JobStateError,
        match=r"^Cannot resume\(\) job 'job-[0-9a-f]+' of flow 'pipe' from here \(its status is completed\): a "
        r"JobState is data\. Call it on the job's handle \(async with flow\.open_job\(\.\.\.\) as job: "
        r"job\.resume\(\)\), with flow\.resume\(job_state\), or from a routine handler of the running job "
        r"\(ctx\.job_state\)\.$",
    ):
        state.resume()
    with pytest.raises(rt.JobStateError, match=r"^Cannot pause\(\) job"):
        state.pause()
    state.cancel()  # the job has ended: nothing to cancel
    assert state.status is rt.Status.COMPLETED


async def test_flow_controls_reach_a_running_job_by_its_state_and_refuse_an_ended_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flow = pipeline(("source", Source()), ("gate", Gate()), ("after", Recorder()), name="by-state")
    async with flow.open_job("source", {"count": 3}) as job:
        await trio.testing.wait_all_tasks_blocked()
        copy_of_state = attrs.evolve(job.state)  # a state is data: any copy names the job
        flow.pause(copy_of_state, reason="from the flow")
        assert job.status is rt.Status.PAUSED
        assert job.pause_reason == "from the flow"
        assert flow.resume(copy_of_state) is copy_of_state
        flow.cancel(job.state)
        state = await job.wait()
    assert state.status is rt.Status.CANCELLED
    with pytest.raises(
        rt.JobStateError,
        match=r"^Cannot pause\(\) job 'job-[0-9a-f]+' of flow 'by-state': it is not a running job of flow "
        r"'by-state' \(its status is cancelled\)\. Only a job started by execute\(\), aexecute\(\) or "
        r"open_job\(\) can be paused, resumed or cancelled, while it runs\.$",
    ):
        flow.pause(state)
    flow.cancel(state)  # ended: does nothing


def test_wait_for_completion_from_another_thread_wakes_on_the_jobs_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The waiting thread sleeps on an event the engine sets: no polling, woken at the end."""
    import datetime
    import queue
    import threading
    import time

    states: queue.Queue[rt.JobState] = queue.Queue()
    release = threading.Event()

    class Held(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.hold)

        async def hold(self) -> None:
            ctx = self.get_execution_context()
            assert ctx is not None
            states.put(ctx.job_state)
            await trio.to_thread.run_sync(release.wait)

    flow: rt.Flow[..., object] = rt.Flow(flow_id="held")
    flow.add_routine(Held(), "held")
    runner = threading.Thread(target=flow.execute, args=("held",))
    runner.start()
    try:
        state = states.get(timeout=10)
        assert rt.JobState.wait_for_completion(flow, state, timeout=0.01) is False  # still running

        def no_polling(seconds: float) -> None:
            raise AssertionError(f"wait_for_completion polled with time.sleep({seconds})")

        monkeypatch.setattr(time, "sleep", no_polling)
        release.set()
        assert rt.JobState.wait_for_completion(flow, state, timeout=10) is True
        woken = datetime.datetime.now(datetime.UTC)
        assert state.status is rt.Status.COMPLETED
        assert state.finished_at is not None
        # The end is stamped just before the event is set; a loaded CI machine gets slack.
        assert (woken - state.finished_at).total_seconds() < 0.25
    finally:
        release.set()
        runner.join(10)


async def test_a_handler_that_raises_during_pause_fails_the_job(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Late(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)

        async def go(self) -> None:
            await trio.sleep(1)
            raise RuntimeError("failed while paused")

    flow: rt.Flow[..., object] = rt.Flow(flow_id="late")
    flow.add_routine(Late(), "late")
    async with flow.open_job("late") as job:
        await trio.sleep(0.5)  # the handler is running
        job.pause()
        state = await job.wait()
    assert state.status is rt.Status.FAILED
    assert state.error is not None
    assert state.error.message.startswith("failed while paused")
    with pytest.raises(rt.JobStateError, match=r"it is failed, not paused"):
        job.resume()


async def test_deferred_events_are_emitted_on_resume(autojump_clock: trio.testing.MockClock) -> None:
    class Asker(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.ask)
            self.define_event("question", ["text"])

        def ask(self) -> None:
            ctx = self.get_execution_context()
            assert ctx is not None
            self.emit_deferred_event("question", text="now?")  # not paused yet: emitted at once
            ctx.flow.pause(ctx.job_state, reason="waiting for the user")
            self.emit_deferred_event("question", text="later")

    flow: rt.Flow[..., object] = rt.Flow(flow_id="defer")
    flow.add_routine(Asker(), "asker")
    flow.add_routine(Recorder(), "user")
    flow.connect("asker", "question", "user", "input")
    async with flow.open_job("asker") as job:
        await trio.testing.wait_all_tasks_blocked()
        assert job.status is rt.Status.PAUSED
        assert [h.data for h in job.state.history] == [{"text": "now?"}]
        assert got(job.state, "user") == []
        flow.resume(job.state)
        state = await job.wait()
    assert state.status is rt.Status.COMPLETED
    assert [h.data for h in state.get_execution_history("asker")] == [{"text": "now?"}, {"text": "later"}]
    assert got(state, "user") == [None, None]


async def test_a_job_paused_under_aexecute_ends_paused() -> None:
    class Pauser(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)
            self.define_event("output", ["data"])
            self.define_event("later", ["data"])

        def go(self) -> None:
            ctx = self.get_execution_context()
            assert ctx is not None
            self.emit("output", data=1)
            ctx.job_state.pause()
            self.emit_deferred_event("later", data=2)

    flow: rt.Flow[..., object] = rt.Flow(flow_id="paused")
    flow.add_routine(Pauser(), "pauser")
    flow.add_routine(Recorder(), "sink")
    flow.connect("pauser", "output", "sink", "input")
    flow.connect("pauser", "later", "sink", "input")
    state = await flow.aexecute("pauser")
    assert state.status is rt.Status.PAUSED
    assert got(state, "sink") == []
    assert [(d.source, d.event, d.target, d.data) for d in state.undelivered] == [
        ("pauser", "output", "sink", {"data": 1}),
        ("pauser", "later", "sink", {"data": 2}),
    ]
    assert rt.JobState.wait_for_completion(flow, state, timeout=0.01) is False


async def test_cancel_records_what_was_not_delivered(autojump_clock: trio.testing.MockClock) -> None:
    flow = pipeline(("source", Source()), ("gate", Gate()), ("after", Recorder()))
    async with flow.open_job("source", {"count": 4}) as job:
        await trio.sleep(1.5)
        job.cancel("enough")
        state = await job.wait()
    assert state.status is rt.Status.CANCELLED
    assert state.error is not None
    assert state.error.message == f"Job {state.job_id!r} of flow 'pipe' was cancelled: enough"
    assert got(state, "after") == [0]
    # item 1 was being handled (delivered); items 2 and 3 were waiting
    assert [(d.source, d.event, d.target, d.slot, d.data) for d in state.undelivered] == [
        ("source", "output", "gate", "input", {"data": 2}),
        ("source", "output", "gate", "input", {"data": 3}),
    ]
    job.cancel()  # cancelling an ended job does nothing


async def test_leaving_open_job_cancels_an_unfinished_job(autojump_clock: trio.testing.MockClock) -> None:
    flow = pipeline(("source", Source()), ("gate", Gate()))
    before = rtt.current_tasks()
    async with flow.open_job("source") as job:
        pass
    assert job.status is rt.Status.CANCELLED
    assert job.state.error is not None
    assert job.state.error.message.endswith(
        "was cancelled: the open_job() block was left before the job ended"
    )
    assert rtt.current_tasks() == before


async def test_an_error_in_the_open_job_block_propagates_unwrapped() -> None:
    flow = pipeline(("source", Source()), ("gate", Gate()))
    with pytest.raises(KeyError, match="mine"):
        async with flow.open_job("source") as job:
            raise KeyError("mine")
    assert job.status is rt.Status.CANCELLED


async def test_cancelling_aexecute_from_outside(autojump_clock: trio.testing.MockClock) -> None:
    flow = pipeline(("source", Source()), ("gate", Gate()))
    seen: list[rt.JobState] = []

    class Keep(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.keep)

        def keep(self, **kwargs: object) -> None:
            ctx = self.get_execution_context()
            assert ctx is not None
            seen.append(ctx.job_state)

    flow.add_routine(Keep(), "keep")
    flow.connect("source", "output", "keep", "input")
    with trio.move_on_after(1.5) as scope:
        await flow.aexecute("source", {"count": 3})
    assert scope.cancelled_caught
    state = seen[0]
    assert state.status is rt.Status.CANCELLED
    assert state.error is not None
    assert state.error.message == f"Job {state.job_id!r} of flow 'pipe' was cancelled from outside."
    assert [d.data for d in state.undelivered] == [{"data": 2}]


async def test_a_handler_can_cancel_its_job() -> None:
    class Quitter(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.take)

        def take(self, data: int, **_: object) -> None:
            ctx = self.get_execution_context()
            assert ctx is not None
            if data == 1:
                ctx.flow.cancel(ctx.job_state, reason="found it")

    flow = pipeline(("source", Source()), ("quitter", Quitter()))
    state = await flow.aexecute("source", {"count": 3})
    assert state.status is rt.Status.CANCELLED
    assert [d.data for d in state.undelivered] == [{"data": 2}]


async def test_wait_for_completion_inside_trio_while_running_is_a_clear_error() -> None:
    flow = pipeline(("source", Source()), ("gate", Gate()))
    async with flow.open_job("source") as job:
        with pytest.raises(
            rt.InvokeInsideTrioError,
            match=r"^JobState\.wait_for_completion\(\) was called inside a running Trio program, where it would "
            r"block the loop \(job 'job-[0-9a-f]+' is running\)\. Use await job\.wait\(\) on the handle from "
            r"async with flow\.open_job\(\.\.\.\)\.$",
        ):
            rt.JobState.wait_for_completion(flow, job.state)
        job.cancel()


def test_job_has_no_public_constructor() -> None:
    with pytest.raises(
        TypeError, match=r"^runtime\.Job has no public constructor; use flow\.open_job\(\.\.\.\)\.$"
    ):
        rt.Job()


# -- outputs, runs with a message, events, saved state ------------------------------------


class Answer(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("ask", handler=self.answer)

    def answer(self, data: object = None, **kwargs: object) -> None:
        self.send_output("answer", text=f"echo: {data}", extra=sorted(kwargs))


async def test_send_output_and_arun_with_a_message() -> None:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="qa")
    flow.add_routine(Answer(), "answer")
    result = await flow.arun("hi")
    assert result.status is rt.Status.COMPLETED
    assert isinstance(result.result, list)
    [output] = result.result
    assert {k: v for k, v in output.items() if k != "timestamp"} == {
        "routine_id": "answer",
        "output_type": "answer",
        "data": {"text": "echo: hi", "extra": []},
    }
    assert result.state.get_shared_data("output_log") == result.result
    assert result.state.result is not None
    dict_result = await flow.arun({"data": "x", "lang": "en"}, user="u")
    assert isinstance(dict_result.result, list)
    assert dict_result.result[0]["data"] == {"text": "echo: x", "extra": ["lang", "user"]}
    nothing = rt.Flow(flow_id="quiet")
    nothing.add_routine(Writer(), "w")
    assert (await nothing.arun("x")).result is None


def test_invoke_a_graph_flow_returns_its_outputs() -> None:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="qa")
    flow.add_routine(Answer(), "answer")
    outputs = flow.invoke("hello")
    assert isinstance(outputs, list)
    assert outputs[0]["data"]["text"] == "echo: hello"


async def test_the_entry_of_a_run_must_be_clear() -> None:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="two-roots")
    flow.add_routine(Answer(), "a")
    flow.add_routine(Answer(), "b")
    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"^Flow\('two-roots'\) cannot tell which routine starts a run: routines 'a', 'b' have no incoming "
        r"connection\. Choose one with flow\.set_entry\(routine_id\)\.$",
    ):
        await flow.arun("x")
    flow.set_entry("b")
    assert flow.entry_id == "b"
    assert (await flow.arun("x")).status is rt.Status.COMPLETED
    with pytest.raises(
        rt.GraphDefinitionError, match=r"^set_entry\('c'\): flow 'two-roots' has no routine 'c'"
    ):
        flow.set_entry("c")


async def test_subscribers_see_every_emission_in_order() -> None:
    events: list[rt.Event] = []
    flow = pipeline(("source", Source()), ("recorder", Recorder()), subscribers=[events.append])
    flow.add_routine(Answer(), "answer")
    flow.connect("recorder", "output", "answer", "ask")
    state = await flow.aexecute("source", {"count": 2})
    kinds = [e.kind for e in events]
    assert kinds[0] is rt.EventKind.RUN_STARTED
    assert kinds[-1] is rt.EventKind.RUN_FINISHED
    assert [e.seq for e in events] == list(range(len(events)))
    routine_events = [(e.node, e.data) for e in events if e.kind is rt.EventKind.ROUTINE_EVENT]
    assert routine_events == [(h.routine_id, {"event": h.event_name, "data": h.data}) for h in state.history]
    assert [e.data for e in events if e.kind is rt.EventKind.STREAM] == [
        {"output_type": "answer", "data": {"text": "echo: 0", "extra": []}},
        {"output_type": "answer", "data": {"text": "echo: 1", "extra": []}},
    ]
    assert events[-1].data == {"status": "completed", "result": state.result, "error": None}
    assert {e.run_id for e in events} == {state.job_id}


async def test_stream_a_graph_flow() -> None:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="qa")
    flow.add_routine(Answer(), "answer")
    async with flow.stream("hi") as events:
        kinds = [event.kind async for event in events]
    assert kinds == [
        rt.EventKind.RUN_STARTED,
        rt.EventKind.STREAM,
        rt.EventKind.ROUTINE_STATE,  # the entry routine's {"status": "completed"}
        rt.EventKind.RUN_FINISHED,
    ]


def test_save_state_writes_the_jobs_document(tmp_path: pathlib.Path) -> None:
    flow = pipeline(
        ("source", Source()), ("recorder", Recorder()), name="saved", save_state=True, state_dir=tmp_path
    )
    state = flow.execute("source", {"count": 2})
    path = tmp_path / "saved.json"
    doc = json.loads(path.read_text())
    assert doc["state"]["status"] == "completed"
    loaded = rt.read_state_file(path)
    assert loaded == state
    assert rt.JobState.wait_for_completion(flow, loaded) is True


async def test_a_session_runs_a_graph_flow_with_its_request_metadata() -> None:
    class Greeter(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("ask", handler=self.greet)

        def greet(self, data: object = None, **kwargs: object) -> None:
            self.send_output("greeting", text=f"{data}, {rt.request().user_id}")

    flow: rt.Flow[..., object] = rt.Flow(flow_id="greeter")
    flow.add_routine(Greeter(), "greeter")
    async with rt.SessionManager(workflow=flow) as manager, manager.session(user_id="ada") as session:
        outputs = await session.run("hello")
    assert isinstance(outputs, list)
    assert [o["data"] for o in outputs] == [{"text": "hello, ada"}]


# -- routine handlers are inside a run ----------------------------------------------------


class Talker(rt.Routine):
    """Uses the node-run API from a handler: rt.log, rt.request(), rt.context, rt.broadcast."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.talk)

    async def talk(self, data: object = None, **kwargs: object) -> None:
        rt.context.put("seen", [*(rt.context.get("seen", None) or []), data])  # type: ignore[misc]
        await rt.log("handled", item=data, user=rt.request().user_id)
        await rt.broadcast({"item": data})


async def test_routine_handlers_log_read_the_request_and_use_the_jobs_context() -> None:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="talk", context={"seen": ["start"]})
    flow.add_routine(Talker(), "talker")
    state = await flow.aexecute("talker", {"data": 7})
    assert state.status is rt.Status.COMPLETED
    assert [
        {k: v for k, v in entry.items() if k != "timestamp"} for entry in state.get_shared_log()
    ] == [{"routine": "talker", "level": "INFO", "message": "handled", "item": 7, "user": None}]
    assert state.context["seen"] == ["start", 7]
    assert flow.context["seen"] == ["start"]  # the job's context is its own copy


async def test_routine_handlers_log_and_broadcast_reach_subscribers_in_order() -> None:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="talk-stream")
    flow.add_routine(Talker(), "talker")
    async with flow.stream("hello") as events:
        seen = [(event.kind, event.node, event.data) async for event in events]
    assert seen[0][0] is rt.EventKind.RUN_STARTED
    assert seen[1:-1] == [
        (rt.EventKind.LOG, "talker", {"level": "INFO", "message": "handled", "item": "hello", "user": None}),
        (rt.EventKind.STREAM, "talker", {"item": "hello"}),
        (rt.EventKind.ROUTINE_STATE, "talker", {"status": "completed"}),
    ]
    assert seen[-1][0] is rt.EventKind.RUN_FINISHED


async def test_rt_call_in_a_routine_handler_says_it_is_not_supported_there() -> None:
    @rt.function_node
    async def helper(x: int) -> int:
        return x

    class Caller(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.go)

        async def go(self, data: object = None, **kwargs: object) -> None:
            await rt.call(helper, 1)

    flow: rt.Flow[..., object] = rt.Flow(flow_id="caller")
    flow.add_routine(Caller(), "caller")
    job = await flow.aexecute("caller")
    assert job.status is rt.Status.FAILED
    assert job.error is not None
    assert job.error.type == "runtime.RoutineCallError"
    assert job.error.message == (
        "rt.call(helper) was called in a handler of routine 'caller': a routine graph's job runs routines, not "
        "node requests. Emit an event to a routine that does the work, or run a node flow from the handler "
        "with await rt.Flow(...).ainvoke(...)."
    )


async def test_a_flow_is_a_node_flow_or_a_routine_graph_never_both() -> None:
    @rt.function_node
    async def entry(x: int) -> int:
        return x

    flow = rt.Flow("both", entry_point=entry)
    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"^Flow\('both'\)\.add_routine\(\): this flow has the entry point node 'entry', so it runs node calls; "
        r"a flow is either a node flow or a routine graph\. Drop entry_point=\.\.\. to build a routine graph, or "
        r"run the routines in a flow of their own\.$",
    ):
        flow.add_routine(Source(), "source")
    assert flow.routines == {}
    assert await flow.ainvoke(3) == 3

    graph: rt.Flow[..., object] = rt.Flow(flow_id="later")
    graph.add_routine(Source(), "source")
    graph.entry_point = entry  # type: ignore[assignment]  # set after the routines: refused when run
    with pytest.raises(rt.GraphDefinitionError, match=r"^Flow\('later'\)\.invoke\(\): this flow has the entry point node 'entry'"):
        await graph.ainvoke(1)
