"""Railtracks 1.7's flow API beyond the seed page: ``Flow.connect()``, callbacks, ``update_context``,
``equality_hash``, ``rt.set_config``, and ``invoke()`` inside a running loop (issue 15).

Each test is written from Railtracks' documented behaviour (its docstrings and integration tests).
"""

import asyncio
import contextvars
import hashlib
import logging

import pytest
import trio
import trio.lowlevel
import trio.testing

import runtime as rt


@rt.function_node
async def writes_context(text: str) -> str:
    rt.context.put("stage", "running")
    await trio.lowlevel.checkpoint()
    rt.context.put("stage", "done")
    rt.context.put("seen", text)
    return f"processed:{text}"


@rt.function_node
async def fails_midway(text: str) -> str:
    rt.context.put("stage", "about to fail")
    await trio.lowlevel.checkpoint()
    raise ValueError("node blew up")


@rt.function_node
async def streams(items: list[str]) -> int:
    for item in items:
        await rt.broadcast(item)
    return len(items)


def _flow() -> rt.Flow[[str], str]:
    return rt.Flow("conn", entry_point=writes_context, context={"stage": "not started"})


@pytest.fixture(autouse=True)
def _fresh_defaults() -> object:
    """Each test starts from trioflow's own defaults, whatever another test set."""
    token = rt._core.run_defaults.set(rt._core.RunDefaults())  # type: ignore[attr-defined]
    yield
    rt._core.run_defaults.reset(token)  # type: ignore[attr-defined]


# -- Flow.connect() -> FlowConnection --------------------------------------------------


def test_connect_with_no_arguments_returns_a_new_connection_each_time() -> None:
    flow = _flow()
    first, second = flow.connect(), flow.connect()
    assert isinstance(first, rt.FlowConnection)
    assert first is not second
    assert first.flow is flow
    assert first.connected is False
    assert repr(first) == "FlowConnection(flow='conn', not yet invoked)"


async def test_a_connection_returns_what_ainvoke_returns_and_keeps_the_context() -> None:
    flow = _flow()
    conn = flow.connect()
    assert await conn.ainvoke("hello") == await flow.ainvoke("hello") == "processed:hello"
    assert conn.connected is True
    assert conn.context.get("stage") == "done"
    assert conn.context.get("seen") == "hello"
    assert sorted(conn.context.keys()) == ["seen", "stage"]
    assert conn.session_id == conn.state.job_id
    assert conn.result is not None
    assert conn.result.status is rt.Status.COMPLETED
    assert conn.session_id in repr(conn)
    assert flow.context == {"stage": "not started"}  # the Flow's own dict is untouched


def test_a_connection_invoked_from_sync_code() -> None:
    conn = _flow().connect()
    assert conn.invoke("x") == "processed:x"
    assert conn.context.get("seen") == "x"


async def test_the_context_is_live_while_the_run_is_in_flight() -> None:
    gate = trio.Event()

    @rt.function_node
    async def waits(text: str) -> str:
        rt.context.put("stage", "running")
        await gate.wait()
        rt.context.put("stage", "done")
        return text

    conn = rt.Flow("gated", entry_point=waits, context={"stage": "not started"}).connect()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.ainvoke, "hello")
        await trio.testing.wait_all_tasks_blocked()
        assert conn.connected
        assert conn.context.get("stage") == "running"
        assert conn.result is None
        gate.set()
    assert conn.context.get("stage") == "done"


async def test_the_context_is_readable_after_a_failure() -> None:
    conn = rt.Flow("fail", entry_point=fails_midway, context={"stage": "not started"}).connect()
    with pytest.raises(ValueError, match="node blew up"):
        await conn.ainvoke("boom")
    assert conn.context.get("stage") == "about to fail"
    assert conn.result is not None
    assert conn.result.status is rt.Status.FAILED


async def test_a_connection_reflects_its_most_recent_invocation() -> None:
    conn = _flow().connect()
    await conn.ainvoke("first")
    first_id = conn.session_id
    await conn.ainvoke("second")
    assert conn.context.get("seen") == "second"
    assert conn.session_id != first_id


async def test_connections_of_one_flow_are_isolated() -> None:
    flow = _flow()
    conns = [flow.connect() for _ in range(3)]
    async with trio.open_nursery() as nursery:
        for i, conn in enumerate(conns):
            nursery.start_soon(conn.ainvoke, f"job-{i}")
    assert [c.context.get("seen") for c in conns] == ["job-0", "job-1", "job-2"]
    assert len({c.session_id for c in conns}) == 3


async def test_a_connections_session_is_its_latest_run_seen_as_an_rt_session() -> None:
    conn = _flow().connect()
    assert conn.name == "conn"
    await conn.ainvoke("x")
    session = conn.session
    assert isinstance(session, rt.Session)
    assert (session.name, session.session_id, session.identifier) == ("conn", conn.session_id, conn.session_id)
    assert session.state is conn.state
    assert session.context.as_dict() == conn.context.as_dict()
    assert session.info.answer == "processed:x"
    assert [r.node for r in session.info.request_forest.insertion_request] == ["writes_context"]
    assert session.payload() == rt.dump_state(conn.state)
    assert session.executor_config == rt.SessionConfig(
        timeout=None, end_on_error=False, save_state=False, broadcast_callback=None
    )
    failed = rt.Flow("fail", entry_point=fails_midway).connect()
    with pytest.raises(ValueError, match="node blew up"):
        await failed.ainvoke("boom")
    assert failed.session.info.answer is None  # a failed request has no answer
    assert failed.session.state.status is rt.Status.FAILED


@pytest.mark.parametrize("accessor", ["context", "session_id", "state", "session"])
def test_reading_a_connection_before_it_ran_names_the_fix(accessor: str) -> None:
    with pytest.raises(
        rt.FlowConnectionError,
        match=rf"^Nothing has run on this connection yet, so FlowConnection\.{accessor} has no run to read\. "
        r"Invoke the connection, not the Flow: conn = flow\.connect\(\); ",
    ):
        getattr(_flow().connect(), accessor)
    assert issubclass(rt.FlowConnectionError, RuntimeError)  # as Railtracks raises


async def test_a_connection_invoked_twice_at_once_refuses_the_second() -> None:
    gate = trio.Event()

    @rt.function_node
    async def waits(text: str) -> str:
        await gate.wait()
        return text

    conn = rt.Flow("busy", entry_point=waits).connect()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.ainvoke, "a")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(
            rt.FlowConnectionError,
            match=r"^FlowConnection of Flow\('busy'\) is already running an invocation; a connection runs one "
            r"at a time\. Use a separate flow\.connect\(\) for each concurrent run\.$",
        ):
            await conn.ainvoke("b")
        gate.set()
    assert conn.result is not None
    assert conn.result.result == "a"


async def test_a_connection_is_released_after_a_failure() -> None:
    conn = rt.Flow("fail", entry_point=fails_midway).connect()
    for _ in range(2):
        with pytest.raises(ValueError, match="node blew up"):
            await conn.ainvoke("boom")


def test_connect_with_routine_graph_arguments_still_connects_routines() -> None:
    class Source(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.send)
            self.define_event("output", ["data"])

        def send(self, **kwargs: object) -> None:
            self.emit("output", data=1)

    class Sink(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.take)

        def take(self, data: object = None, **kwargs: object) -> None:
            pass

    flow = rt.Flow(flow_id="graph")
    flow.add_routine(Source(), "source")
    flow.add_routine(Sink(), "sink")
    connection = flow.connect("source", "output", "sink", "input")
    assert isinstance(connection, rt.Connection)
    assert (connection.source_id, connection.target_id) == ("source", "sink")
    assert flow.connections == [("source", "output", "sink", "input")]
    assert flow.execute("source").status is rt.Status.COMPLETED


@pytest.mark.parametrize(
    ("args", "kwargs", "shown"),
    [(("source",), {}, "'source'"), (("a", "b", "c"), {}, "'a', 'b', 'c'"), ((), {"slot": "x"}, "slot='x'")],
)
def test_a_wrong_connect_call_names_both_forms(
    args: tuple[str, ...], kwargs: dict[str, str], shown: str
) -> None:
    with pytest.raises(
        TypeError,
        match=rf"^Flow\('f'\)\.connect\({shown}\): connect takes either no arguments, flow\.connect\(\) -> a "
        r"FlowConnection that runs the flow and keeps its context \(Railtracks\), or four or five, "
        r"flow\.connect\(source_id, event, target_id, slot, param_mapping=None\) -> a Connection of a routine "
        r"graph \(Routilux\)\.$",
    ):
        rt.Flow("f").connect(*args, **kwargs)


# -- broadcast_callback and payload_callback ----------------------------------------------


async def test_broadcast_callback_gets_each_broadcast_item_in_order() -> None:
    got: list[object] = []
    also: list[object] = []

    async def async_listener(item: object) -> None:
        await trio.lowlevel.checkpoint()
        also.append(item)

    assert (
        await rt.Flow("s", entry_point=streams, broadcast_callback=got.append).ainvoke(["a", "b", "c"]) == 3
    )
    await rt.Flow("s", entry_point=streams, broadcast_callback=async_listener).ainvoke(["x", "y"])
    assert got == ["a", "b", "c"]  # items only: no lifecycle events
    assert also == ["x", "y"]


async def test_a_flows_broadcast_callback_has_the_item_before_rt_broadcast_returns() -> None:
    got: list[object] = []
    seen_after: list[list[object]] = []

    @rt.function_node
    async def stream_and_look(items: list[str]) -> None:
        for item in items:
            await rt.broadcast(item)
            seen_after.append(list(got))

    events: list[rt.Event] = []
    await rt.Flow(
        "s", entry_point=stream_and_look, broadcast_callback=got.append, subscribers=[events.append]
    ).ainvoke(["a", "b"])
    assert seen_after == [["a"], ["a", "b"]]
    assert [e.data for e in events if e.kind is rt.EventKind.STREAM] == ["a", "b"]  # subscribers too


async def test_a_routine_graphs_broadcast_callback_gets_each_broadcast_item() -> None:
    class Talker(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.talk)

        async def talk(self, data: object = None, **kwargs: object) -> None:
            await rt.broadcast({"item": data})

    got: list[object] = []
    flow: rt.Flow[..., object] = rt.Flow(flow_id="talk-callback", broadcast_callback=got.append)
    flow.add_routine(Talker(), "talker")
    state = await flow.aexecute("talker", {"data": 7})
    assert state.status is rt.Status.COMPLETED
    assert got == [{"item": 7}]


async def test_a_broadcast_callback_that_raises_is_logged_by_name_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    got: list[object] = []

    def flaky_listener(item: object) -> None:
        if item == "b":
            raise RuntimeError("listener broke")
        got.append(item)

    with caplog.at_level(logging.ERROR, logger="runtime.flow"):
        result = await rt.Flow("s", entry_point=streams, broadcast_callback=flaky_listener).arun(
            ["a", "b", "c"]
        )
    assert result.status is rt.Status.COMPLETED
    assert result.result == 3
    assert got == ["a", "c"]
    [record] = caplog.records
    assert "The broadcast_callback " in record.getMessage()
    assert "flaky_listener of Flow 's' raised on the rt.broadcast item" in record.getMessage()
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "listener broke"


async def test_payload_callback_gets_the_state_document_once_however_the_run_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    payloads: list[dict[str, object]] = []
    ok = await rt.Flow("p", entry_point=writes_context, payload_callback=payloads.append).arun("x")
    failed = await rt.Flow("p", entry_point=fails_midway, payload_callback=payloads.append).arun("x")
    assert payloads == [rt.dump_state(ok.state), rt.dump_state(failed.state)]
    assert [p["state"]["status"] for p in payloads] == ["completed", "failed"]  # type: ignore[index]

    def broken(payload: dict[str, object]) -> None:
        raise OSError("disk full")

    with caplog.at_level(logging.ERROR, logger="runtime.flow"):
        result = await rt.Flow("p", entry_point=writes_context, payload_callback=broken).arun("x")
    assert result.result == "processed:x"
    [record] = caplog.records
    assert "The payload_callback " in record.getMessage()
    assert "broken of Flow 'p' raised on run run-" in record.getMessage()


@pytest.mark.parametrize("label", ["broadcast_callback", "payload_callback"])
def test_a_callback_that_is_not_callable_is_refused(label: str) -> None:
    with pytest.raises(
        TypeError,
        match=rf"^Flow\('f', {label}='nope'\): {label} must be a function \(plain or async\), or None\.$",
    ):
        rt.Flow("f", entry_point=writes_context, **{label: "nope"})  # type: ignore[arg-type]


# -- update_context and equality_hash --------------------------------------------------------


def test_update_context_returns_a_new_flow_with_the_context_merged() -> None:
    @rt.function_node
    def snapshot() -> dict[str, object]:
        return {k: rt.context.get(k) for k in list(rt.context.keys())}

    base = rt.Flow("snap", entry_point=snapshot, context={"a": 1, "b": 2}, timeout=5)
    updated = base.update_context({"b": 3, "c": 4})
    assert updated is not base
    assert updated.invoke() == {"a": 1, "b": 3, "c": 4}
    assert base.invoke() == {"a": 1, "b": 2}
    assert (updated.name, updated.timeout, updated.entry_point) == ("snap", 5, base.entry_point)


def test_update_context_refuses_bad_input_and_routine_graphs() -> None:
    with pytest.raises(
        TypeError, match=r"^Flow\('f'\)\.update_context\(context=\[1\]\): context must be a mapping"
    ):
        rt.Flow("f", entry_point=writes_context).update_context([1])  # type: ignore[arg-type]
    graph = rt.Flow(flow_id="g")

    class One(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.take)

        def take(self, **kwargs: object) -> None:
            pass

    graph.add_routine(One(), "one")
    with pytest.raises(
        rt.GraphDefinitionError, match=r"^Flow\('g'\)\.update_context\(\.\.\.\): this Flow is a routine graph"
    ):
        graph.update_context({"a": 1})


def test_equality_hash_is_the_sha256_of_the_name_whatever_the_other_settings() -> None:
    one = rt.Flow("same", entry_point=writes_context, timeout=1, context={"a": 1})
    two = rt.Flow("same", entry_point=fails_midway, end_on_error=True)
    assert one.equality_hash() == two.equality_hash()
    assert one.equality_hash() == hashlib.sha256(b'{"name": "same"}').hexdigest()
    assert rt.Flow("other", entry_point=writes_context).equality_hash() != one.equality_hash()


# -- rt.set_config ---------------------------------------------------------------------------------


async def test_set_config_gives_defaults_that_a_flows_own_settings_override(
    autojump_clock: trio.abc.Clock,
) -> None:
    @rt.function_node
    async def slow() -> str:
        await trio.sleep(10)
        return "done"

    got: list[object] = []
    rt.set_config(timeout=2, broadcast_callback=got.append)
    inherits = rt.Flow("inherits", entry_point=slow)
    own = rt.Flow("own", entry_point=slow, timeout=20)
    assert (inherits.timeout, own.timeout) == (2, 20)
    with pytest.raises(rt.RunTimeoutError, match=r"timed out after 2 s"):
        await inherits.ainvoke()
    assert await own.ainvoke() == "done"
    await rt.Flow("s", entry_point=streams).ainvoke(["hi"])
    assert got == ["hi"]


async def test_set_config_changes_only_what_it_is_given_and_applies_at_the_next_run() -> None:
    @rt.function_node
    async def boom() -> None:
        raise ValueError("boom")

    @rt.function_node
    async def parent() -> str:
        try:
            await rt.call(boom)
        except ValueError:
            return "caught"
        return "no error"

    flow = rt.Flow("p", entry_point=parent)
    assert await flow.ainvoke() == "caught"
    rt.set_config(end_on_error=True)
    rt.set_config(timeout=30)  # leaves end_on_error as it is
    assert (flow.end_on_error, flow.timeout, flow.save_state) == (True, 30, False)
    with pytest.raises(ValueError, match="boom"):
        await flow.ainvoke()
    assert await rt.Flow("p", entry_point=parent, end_on_error=False).ainvoke() == "caught"


async def test_set_config_in_one_task_never_reaches_a_sibling_tasks_runs() -> None:
    seen: dict[str, object] = {}

    async def configured() -> None:
        rt.set_config(timeout=7)
        seen["configured"] = rt.Flow("f", entry_point=writes_context).timeout

    async def sibling() -> None:
        await trio.testing.wait_all_tasks_blocked()
        seen["sibling"] = rt.Flow("f", entry_point=writes_context).timeout

    async with trio.open_nursery() as nursery:
        nursery.start_soon(configured)
        nursery.start_soon(sibling)
    assert seen == {"configured": 7, "sibling": None}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"timeout": -1},
            r"^rt\.set_config\(timeout=-1\): timeout must be a positive number of seconds, or None\.$",
        ),
        (
            {"end_on_error": "yes"},
            r"^rt\.set_config\(end_on_error='yes'\): end_on_error must be True or False\.$",
        ),
        (
            {"broadcast_callback": 3},
            r"^rt\.set_config\(broadcast_callback=3\): broadcast_callback must be a function \(plain or async\), or None\.$",
        ),
    ],
)
def test_set_config_refuses_what_flow_refuses(kwargs: dict[str, object], message: str) -> None:
    before = rt._core.run_defaults.get()  # type: ignore[attr-defined]
    with pytest.raises((TypeError, ValueError), match=message):
        rt.set_config(**kwargs)  # type: ignore[arg-type]
    assert rt._core.run_defaults.get() is before  # type: ignore[attr-defined]


def test_set_config_at_the_top_of_a_program_reaches_its_sync_invokes() -> None:
    def program() -> float | None:
        rt.set_config(timeout=42)
        return rt.Flow("f", entry_point=writes_context).timeout

    assert contextvars.copy_context().run(program) == 42


# -- invoke() inside a running loop -------------------------------------------------------------


async def test_invoke_inside_trio_stays_an_error() -> None:
    with pytest.raises(
        rt.InvokeInsideTrioError,
        match=r"^Flow\('conn'\)\.invoke\(\.\.\.\) was called inside a running Trio program",
    ):
        _flow().invoke("x")
    with pytest.raises(rt.InvokeInsideTrioError, match=r"Use await conn\.ainvoke\(\.\.\.\)\.$"):
        _flow().connect().invoke("x")


def test_invoke_inside_asyncio_says_how_to_call_trioflow_from_asyncio() -> None:
    flow = _flow()

    async def main() -> str:
        with pytest.raises(rt.InvokeInsideTrioError) as info:
            flow.invoke("x")
        assert str(info.value) == (
            "Flow('conn').invoke(...) was called inside a running asyncio event loop, where it would block that "
            "loop until the run ends; trioflow runs on Trio, not asyncio. From asyncio code, run it in a worker "
            "thread (which starts its own Trio loop): await asyncio.to_thread(flow.invoke, ...); or host Trio in "
            "the asyncio loop with trio-asyncio: await trio_asyncio.trio_as_aio(flow.ainvoke)(...)."
        )
        return await asyncio.to_thread(flow.invoke, "from a thread")  # what the message says works

    assert asyncio.run(main()) == "processed:from a thread"
