"""``rt.Session(...)`` as a block: Railtracks' deprecated form of one run, both ``with`` and ``async with``."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

import runtime as rt

if TYPE_CHECKING:
    import pathlib

pytestmark = pytest.mark.filterwarnings("ignore::runtime.TrioflowDeprecationWarning")


@rt.function_node
async def add(a: int, b: int) -> int:
    await rt.broadcast(a + b)
    return a + b


@rt.function_node
async def boom() -> None:
    msg = "boom"
    raise ValueError(msg)


finally_ran: list[str] = []


@rt.function_node
async def slow() -> None:
    try:
        await trio.sleep(100)
    finally:
        finally_ran.append("slow")


async def test_every_call_in_the_block_is_a_top_level_request_of_one_run() -> None:
    events: list[rt.Event] = []
    items: list[object] = []
    async with rt.Session(
        name="demo", context={"k": 1}, subscribers=[events.append], broadcast_callback=items.append
    ) as session:
        x = await rt.call(add, 1, 2)
        y = await rt.call(add, x, 2)
        batch = await rt.call_batch(add, [1, 2], [3, 4])
        assert rt.context.get("k") == 1
        rt.context.put("k", 2)
        await rt.log("from the block")
    assert (x, y, batch) == (3, 5, [4, 6])
    state = session.state
    assert state.status is rt.Status.COMPLETED
    assert state.run_id == session.identifier
    assert state.flow_name == "demo"
    assert state.context == {"k": 2}
    assert [r.node for r in state.roots()] == ["add", "add", "add", "add"]
    assert all(r.parent_id is None for r in state.requests.values())
    assert state.get_shared_log()[0]["message"] == "from the block"
    assert state.get_shared_log()[0]["request"] is None
    # Same records as a Flow run: run_started first, run_finished last, numbered without gaps.
    assert events[0].kind is rt.EventKind.RUN_STARTED
    assert events[-1].kind is rt.EventKind.RUN_FINISHED
    assert events[-1].data == {"status": "completed", "result": "None", "error": None}
    assert [e.seq for e in events] == list(range(len(events)))
    assert sorted(items) == [3, 4, 5, 6]  # type: ignore[type-var]


async def test_a_plain_with_is_honoured_inside_trio() -> None:
    with rt.Session(context={"k": "v"}) as session:
        assert await rt.call(add, 5, 5) == 10
        assert rt.context.get("k") == "v"
    assert session.state.status is rt.Status.COMPLETED
    assert [r.status for r in session.state.requests.values()] == [rt.Status.COMPLETED]


@pytest.mark.parametrize("form", ["with", "async with"])
async def test_the_timeout_cancels_every_request_and_raises(
    form: str, autojump_clock: trio.testing.MockClock, tmp_path: pathlib.Path
) -> None:
    finally_ran.clear()
    session = rt.Session(name="t", timeout=5, save_state=True, state_dir=tmp_path)
    start = trio.current_time()

    async def block() -> None:
        if form == "with":
            with session:
                await rt.call(add, 1, 1)
                await rt.call(slow)
        else:
            async with session:
                await rt.call(add, 1, 1)
                await rt.call(slow)

    with pytest.raises(
        rt.RunTimeoutError, match=r"^Flow 't' \(run run-[0-9a-f]{12}\) timed out after 5 s; every node of it"
    ):
        await block()
    assert trio.current_time() - start == 5
    assert finally_ran == ["slow"]
    assert session.state.status is rt.Status.TIMED_OUT
    assert [r.status for r in session.state.requests.values()] == [rt.Status.COMPLETED, rt.Status.CANCELLED]
    assert rt.read_state_file(tmp_path / "t.json").status is rt.Status.TIMED_OUT


@pytest.mark.parametrize("form", ["with", "async with"])
async def test_end_on_error_ends_the_block_at_the_first_failure(form: str) -> None:
    after: list[str] = []
    session = rt.Session(end_on_error=True)

    async def call_boom() -> None:
        try:
            await rt.call(boom)
        except ValueError:
            after.append("caught")  # never: the block sees the run's cancellation

    async def block() -> None:
        if form == "with":
            with session:
                await call_boom()
        else:
            async with session:
                await call_boom()

    with pytest.raises(ValueError, match=r"^boom"):
        await block()
    assert after == []
    assert session.state.status is rt.Status.FAILED
    assert session.state.error is not None
    assert session.state.error.message == "boom"


async def test_without_end_on_error_the_block_catches_a_failure() -> None:
    async with rt.Session() as session:
        with pytest.raises(ValueError, match=r"^boom"):
            await rt.call(boom)
        assert await rt.call(add, 1, 1) == 2
    assert session.state.status is rt.Status.COMPLETED


async def test_an_error_of_the_block_fails_the_run_and_propagates_as_it_is() -> None:
    session = rt.Session()

    async def block() -> None:
        async with session:
            await rt.call(add, 1, 1)
            raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        await block()
    assert session.state.status is rt.Status.FAILED
    assert session.state.error is not None
    assert session.state.error.type == "KeyError"


async def test_a_cancel_from_outside_ends_the_run_cancelled_and_consumers_hear_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    finally_ran.clear()
    events: list[rt.Event] = []
    with trio.move_on_after(3) as scope:
        async with rt.Session(subscribers=[events.append]) as session:
            await rt.call(slow)
    assert scope.cancelled_caught
    assert finally_ran == ["slow"]
    assert session.state.status is rt.Status.CANCELLED
    assert events[-1].kind is rt.EventKind.RUN_FINISHED
    assert isinstance(events[-1].data, dict)
    assert events[-1].data["status"] == "cancelled"


async def test_a_session_inside_a_run_is_refused() -> None:
    @rt.function_node
    async def outer() -> None:
        async with rt.Session():
            pass

    with pytest.raises(
        rt.NestedRunError, match=r"^`async with rt\.Session\(\.\.\.\)` was entered inside run run-"
    ):
        await rt.Flow("outer", entry_point=outer).ainvoke()


async def test_a_session_inside_a_session_is_refused() -> None:
    async with rt.Session(name="a"):
        with pytest.raises(rt.NestedRunError, match=r"it cannot nest in another"), rt.Session():
            pass


def test_a_plain_with_outside_trio_reads_and_writes_its_runs_context() -> None:
    with rt.Session(context={"user": "ann"}) as session:
        assert rt.context.get("user") == "ann"
        rt.context.put("seen", 1)
        rt.context.update({"more": 2})
        rt.context.delete("user")
        assert sorted(rt.context.keys()) == ["more", "seen"]
        with pytest.raises(KeyError, match=r"user"):
            rt.context.get("user")
    assert session.state.status is rt.Status.COMPLETED
    assert session.context.as_dict() == {"seen": 1, "more": 2}
    with rt.Session() as other:  # each block is a run of its own
        assert list(rt.context.keys()) == []
    assert other.identifier != session.identifier
    with pytest.raises(rt.OutsideRunError):  # the block's run is gone with it
        rt.context.get("seen")


def test_an_error_in_a_plain_with_outside_trio_fails_the_run_and_propagates() -> None:
    documents: list[dict[str, object]] = []
    session = rt.Session(payload_callback=documents.append)
    with pytest.raises(RuntimeError, match=r"^boom$"), session:
        raise RuntimeError("boom")
    assert session.state.status is rt.Status.FAILED
    assert len(documents) == 1


def test_a_call_in_a_plain_with_outside_trio_says_what_to_write() -> None:
    async def call_it() -> object:
        return await rt.call(add, 1, 1)

    with (
        rt.Session() as session,
        pytest.raises(
            rt.OutsideTrioError,
            match=r"^rt\.call\(add\) was called in a `with rt\.Session\(\.\.\.\)` block entered outside Trio .*"
            r"Enter the block inside Trio code",
        ),
    ):
        trio.run(call_it)
    assert session.state.requests == {}


async def test_a_plain_with_cannot_feed_consumers() -> None:
    with (
        pytest.raises(TypeError, match=r"Write `async with rt\.Session\(\.\.\.\)` instead\.$"),
        rt.Session(subscribers=[print]),
    ):
        pass


async def test_a_session_is_entered_once() -> None:
    session = rt.Session()
    async with session:
        pass
    with pytest.raises(RuntimeError, match=r"was entered already: make a new rt\.Session"):
        async with session:
            pass


async def test_a_call_after_the_block_says_the_run_ended() -> None:
    async with trio.open_nursery() as nursery:
        async with rt.Session():
            done = trio.Event()

            async def later() -> None:
                await done.wait()
                with pytest.raises(
                    rt.OutsideRunError, match=r"^rt\.call\(add\) was called after its run run-"
                ):
                    await rt.call(add, 1, 1)

            nursery.start_soon(later)
        done.set()


def test_rt_session_warns_as_deprecated_pointing_at_flow() -> None:
    with pytest.warns(
        rt.TrioflowDeprecationWarning,
        match=r"^rt\.Session\(\.\.\.\) is deprecated since trioflow 0\.2; use rt\.Flow\(name, entry_point=node, \.\.\.\)",
    ) as caught:
        rt.Session()
    assert caught[0].filename == __file__  # the warning points at the caller


async def test_railtracks_attributes_read_the_run() -> None:
    async with rt.Session(name="n", flow_name="f", flow_id="id-1", context={"k": 1}) as session:
        assert session.info.answer is None  # nothing returned yet
        await rt.call(add, 1, 1)
        assert session.info.answer == 2
        await rt.call(add, 2, 2)
        assert session.info.answer == [2, 4]
    assert (session.name, session.flow_name, session.flow_id) == ("n", "f", "id-1")
    assert session._identifier == session.identifier == session.session_id == session.state.run_id
    assert session.context.as_dict() == {"k": 1}
    assert session.result is not None
    assert session.result.status is rt.Status.COMPLETED
    assert session.payload() == rt.dump_state(session.state)
    assert session.rt_state is session
    info = session.info
    assert [r.node for r in info.request_forest.insertion_request] == ["add", "add"]
    assert len(info.node_forest.heap()) == 2
    assert [s.step for s in info.all_stamps] == [0, 1, 2, 3]
    with pytest.raises(RuntimeError, match=r"has no state yet: enter it first"):
        _ = rt.Session().state


async def test_info_shows_the_request_tree_and_a_stamp_for_each_making_and_end() -> None:
    @rt.function_node
    async def fan(n: int) -> list[object]:
        return await rt.call_batch(add, list(range(n)), list(range(n)))

    with rt.Session() as session:
        assert await rt.call(fan, 3) == [0, 2, 4]
    info = session.info
    [top] = info.request_forest.insertion_request
    assert [r.node for r in info.request_forest.children(top.id)] == ["add", "add", "add"]
    stamps = info.all_stamps
    assert [s.step for s in stamps] == list(range(8))  # four requests, made and ended
    assert stamps[0].identifier == f"{top.id} created fan"
    assert stamps[-1].identifier == f"{top.id} completed fan"
    assert [s.time for s in stamps] == sorted(s.time for s in stamps)


def test_settings_left_out_fall_back_on_set_config_when_the_session_is_made() -> None:
    got: list[object] = []

    async def main() -> None:
        rt.set_config(end_on_error=True, timeout=9, broadcast_callback=got.append)
        session = rt.Session()
        own = rt.Session(end_on_error=False, timeout=1)
        assert session.executor_config == rt.SessionConfig(
            timeout=9, end_on_error=True, save_state=False, broadcast_callback=got.append
        )
        assert session.rt_state.executor_config.end_on_error
        assert (own.executor_config.end_on_error, own.executor_config.timeout) == (False, 1)
        with session:
            await rt.call(add, 1, 2)

    trio.run(main)  # rt.set_config's defaults stay in this trio.run's context
    assert got == [3]
    assert rt.Session().executor_config.end_on_error is False


@pytest.mark.parametrize("form", ["with", "async with"])
async def test_broadcast_callback_gets_each_item_as_the_node_broadcasts_it(form: str) -> None:
    @rt.function_node
    async def stream(n: int) -> int:
        for i in range(n):
            await rt.broadcast(i)
            assert got[-1] == i  # handed over before rt.broadcast returned
        return n

    got: list[object] = []

    async def async_listener(item: object) -> None:
        await trio.lowlevel.checkpoint()
        got.append(item)

    if form == "with":
        with rt.Session(broadcast_callback=got.append):
            await rt.call(stream, 3)
        with rt.Session(broadcast_callback=async_listener):
            await rt.call(stream, 2)
    else:
        async with rt.Session(broadcast_callback=got.append):
            await rt.call(stream, 3)
        async with rt.Session(broadcast_callback=async_listener):
            await rt.call(stream, 2)
    assert got == [0, 1, 2, 0, 1]


async def test_a_broadcast_callback_that_raises_is_logged_by_name_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken_listener(item: object) -> None:
        msg = "listener bug"
        raise RuntimeError(msg)

    with rt.Session(name="s", broadcast_callback=broken_listener) as session:
        assert await rt.call(add, 1, 1) == 2
    assert session.state.status is rt.Status.COMPLETED
    assert "broken_listener of Flow 's' raised on the rt.broadcast item of run" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"timeout": 0}, ValueError, r"^rt\.Session\(timeout=0\): timeout must be a positive number"),
        ({"timeout": "5"}, TypeError, r"^rt\.Session\(timeout='5'\): timeout must be"),
        ({"context": [1]}, TypeError, r"^rt\.Session\(context=\[1\]\): context must be a dict"),
        (
            {"end_on_error": 1},
            TypeError,
            r"^rt\.Session\(end_on_error=1\): end_on_error must be True, False or None\.$",
        ),
        ({"name": ""}, TypeError, r"^rt\.Session\(name=''\): name must be a non-empty string"),
    ],
)
def test_bad_settings_name_the_setting(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        rt.Session(**kwargs)  # type: ignore[arg-type]


def test_the_deprecation_is_the_only_warning_of_a_good_session() -> None:
    async def main() -> None:
        async with rt.Session():
            await rt.call(add, 1, 1)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trio.run(main)
    assert [type(w.message) for w in caught] == [rt.TrioflowDeprecationWarning]


async def test_the_readme_snippet_runs() -> None:
    @rt.function_node
    async def fetch(key: str) -> str:
        return f"<{key}>"

    @rt.function_node
    async def parse(text: str) -> str:
        return f"{text.strip('<>')} in {rt.context.get('lang')}"

    # As in README.md, "Sessions":
    async with rt.Session(name="demo", timeout=30, context={"lang": "en"}) as session:
        a = await rt.call(fetch, "x")
        b = await rt.call(parse, a)  # rt.context works in the block too
    assert session.state.status is rt.Status.COMPLETED
    assert b == "x in en"


@pytest.mark.parametrize("form", ["with", "async with"])
async def test_payload_callback_gets_the_state_document_once_however_the_block_ends(
    form: str, caplog: pytest.LogCaptureFixture
) -> None:
    documents: list[dict[str, object]] = []

    def broken(document: dict[str, object]) -> None:
        msg = "listener bug"
        raise RuntimeError(msg)

    ok = rt.Session(name="ok", payload_callback=documents.append)
    failed = rt.Session(name="failed", end_on_error=True, payload_callback=documents.append)
    noisy = rt.Session(name="noisy", payload_callback=broken)
    if form == "with":
        with ok:
            await rt.call(add, 1, 1)
        with pytest.raises(ValueError, match=r"^boom"), failed:
            await rt.call(boom)
        with noisy:
            await rt.call(add, 2, 2)
    else:
        async with ok:
            await rt.call(add, 1, 1)
        with pytest.raises(ValueError, match=r"^boom"):
            async with failed:
                await rt.call(boom)
        async with noisy:
            await rt.call(add, 2, 2)
    states = [d["state"] for d in documents]
    assert [(s["job_id"], s["status"]) for s in states] == [  # type: ignore[index]
        (ok.identifier, "completed"),
        (failed.identifier, "failed"),
    ]
    assert noisy.state.status is rt.Status.COMPLETED  # a raising listener changes nothing
    assert "The payload_callback" in caplog.text
    assert "broken" in caplog.text
    assert "rt.Session 'noisy'" in caplog.text


async def test_info_answer_lists_concurrent_calls_in_call_order(autojump_clock: trio.abc.Clock) -> None:
    @rt.function_node
    async def after(seconds: int) -> int:
        await trio.sleep(seconds)
        return seconds

    async with rt.Session() as session, trio.open_nursery() as nursery:
        nursery.start_soon(rt.call, after, 5)
        await trio.sleep(1)  # the 5 s call is made first
        nursery.start_soon(rt.call, after, 1)
    assert session.info.answer == [5, 1]  # the order they were made in, not the order they ended
