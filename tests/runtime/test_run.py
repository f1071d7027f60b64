"""One run as actors: a block in the caller's task, its publisher, one actor per request."""

import pathlib

import pytest
import trio
import trio.testing

import runtime as rt
from runtime import testing as rtt


def _ancestry() -> list[str]:
    """The names of the tasks from the current one up to the root."""
    names = []
    task: trio.lowlevel.Task | None = trio.lowlevel.current_task()
    while task is not None:
        names.append(task.name)
        nursery = task.parent_nursery
        task = None if nursery is None else nursery.parent_task
    return names


async def test_each_request_is_an_actor_in_its_callers_nursery() -> None:
    seen: dict[str, list[str]] = {}

    @rt.function_node
    async def leaf() -> None:
        seen["leaf"] = _ancestry()

    @rt.function_node
    async def middle() -> None:
        seen["middle"] = _ancestry()
        await rt.call(leaf)

    @rt.function_node
    async def top() -> None:
        seen["top"] = _ancestry()
        seen["live"] = [task.name for task in rtt.current_tasks()]
        await rt.call(middle)

    await rt.Flow("tree", entry_point=top).arun()
    # The run is a block in the caller's task: the entry point's actor is a child of it.
    caller = trio.lowlevel.current_task().name
    assert seen["top"][:2] == ["top (r1)", caller]
    assert seen["middle"][:3] == ["middle (r2)", "top (r1)", caller]
    assert seen["leaf"][:4] == ["leaf (r3)", "middle (r2)", "top (r1)", caller]
    # The run writes its records into its state as they happen: nobody consumes
    # them, so there is no publisher, and no book-keeping actor at all.
    assert set(seen["live"]) - {"<init>", "<TrioToken.run_sync_soon task>"} == {
        "top (r1)",
        "pytest_trio.plugin._trio_test_runner_factory.<locals>._bootstrap_fixtures_and_run_test",
        "<test 'test_each_request_is_an_actor_in_its_callers_nursery'>",
    }


async def test_a_publisher_actor_serves_subscribers() -> None:
    live: list[str] = []

    @rt.function_node
    async def look() -> None:
        await trio.testing.wait_all_tasks_blocked()  # the book-keeping actors have started
        live.extend([task.name for task in rtt.current_tasks()])

    await rt.Flow("p", entry_point=look, subscribers=[lambda event: None]).ainvoke()
    assert {"publisher", "look (r1)"} <= set(live)


async def test_nothing_of_a_run_outlives_it(autojump_clock: trio.abc.Clock) -> None:
    @rt.function_node
    async def sleeper(x: int) -> int:
        await trio.sleep(x)
        return x

    @rt.function_node
    async def top() -> object:
        return await rt.call_batch(sleeper, [1, 2, 3])

    flows = [
        rt.Flow("ok", entry_point=top, subscribers=[lambda e: None]),
        rt.Flow("timeout", entry_point=top, timeout=1.5),
    ]
    for flow in flows:
        await flow.arun()
        await trio.testing.wait_all_tasks_blocked()
        live = [task.name for task in rtt.current_tasks()]
        assert not [name for name in live if "sleeper" in name or name.startswith("run ") or name == "publisher"]


async def test_request_timings_follow_trios_clock(autojump_clock: trio.abc.Clock) -> None:
    @rt.function_node
    async def nap(seconds: float) -> float:
        await trio.sleep(seconds)
        return seconds

    @rt.function_node
    async def top() -> None:
        await trio.sleep(1)
        await rt.call(nap, 2)
        await rt.call_batch(nap, [0.5, 3])

    result = await rt.Flow("t", entry_point=top).arun()
    timings = [(r.node, r.created_at, r.finished_at, r.duration) for r in result.state.requests.values()]
    assert timings == [
        ("top", 0.0, 6.0, 6.0),
        ("nap", 1.0, 3.0, 2.0),
        ("nap", 3.0, 3.5, 0.5),
        ("nap", 3.0, 6.0, 3.0),
    ]
    assert result.state.finished_at is not None
    assert result.state.started_at is not None
    assert (result.state.finished_at - result.state.started_at).total_seconds() >= 0


async def test_children_cancelled_before_they_start_are_recorded_as_cancelled(autojump_clock: trio.abc.Clock) -> None:
    events: list[rt.Event] = []

    @rt.function_node
    async def item(x: int) -> int:
        if x == 0:
            raise ValueError("first")
        await trio.sleep(1)
        return x

    @rt.function_node
    async def top() -> str:
        try:
            await rt.call_batch(item, range(20), return_exceptions=False)
        except ValueError:
            # by now every sibling has ended and been recorded
            return "caught"
        return "no error"

    result = await rt.Flow("t", entry_point=top, subscribers=[events.append]).arun()
    assert result.result == "caught"
    assert trio.current_time() == 0.0
    requests = list(result.state.requests.values())
    assert [r.status for r in requests] == [rt.Status.COMPLETED, rt.Status.FAILED] + [rt.Status.CANCELLED] * 19
    ends = {e.request_id: e.seq for e in events if e.kind.value.startswith("request_") and e.kind is not rt.EventKind.REQUEST_CREATED}
    assert len(ends) == 21
    assert all(ends[f"r{i}"] < ends["r1"] for i in range(2, 22))


async def test_end_on_error_keeps_the_first_failure(autojump_clock: trio.abc.Clock) -> None:
    @rt.function_node
    async def fail_after(seconds: float) -> None:
        await trio.sleep(seconds)
        raise ValueError(f"after {seconds}")

    @rt.function_node
    async def top() -> None:
        await rt.call_batch(fail_after, [2, 1], return_exceptions=True)

    result = await rt.Flow("t", entry_point=top, end_on_error=True).arun()
    assert result.status is rt.Status.FAILED
    assert str(result.error) == "after 1"
    assert trio.current_time() == 1.0
    assert [r.status for r in result.state.requests.values()] == [
        rt.Status.CANCELLED,
        rt.Status.CANCELLED,
        rt.Status.FAILED,
    ]


async def test_cancelled_run_state_says_why(autojump_clock: trio.abc.Clock, tmp_path: pathlib.Path) -> None:
    @rt.function_node
    async def forever() -> None:
        await trio.sleep_forever()

    flow = rt.Flow("stuck", entry_point=forever, save_state=True, state_dir=tmp_path)
    with trio.move_on_after(1):
        await flow.arun()
    state = rt.read_state_file(tmp_path / "stuck.json")
    assert state.status is rt.Status.CANCELLED
    assert state.error is not None
    assert state.error.type == "runtime.RunCancelledError"
    assert state.error.message == f"Flow 'stuck' (run {state.run_id}) was cancelled from outside."


def test_run_result_unwrap_and_status() -> None:
    @rt.function_node
    async def ok() -> int:
        return 1

    result = rt.Flow("ok", entry_point=ok).run()
    assert isinstance(result, rt.RunResult)
    assert result.status is result.state.status is rt.Status.COMPLETED
    assert result.unwrap() == 1
    with pytest.raises(AttributeError):
        result.result = 2  # type: ignore[misc]  # frozen
