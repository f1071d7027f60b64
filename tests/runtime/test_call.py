"""``rt.call``, ``rt.call_batch`` and ``rt.broadcast``."""

import datetime
import logging
import re

import pytest
import trio
import trio.testing

import runtime as rt
from runtime import testing as rtt


@rt.function_node
async def double(x: int) -> int:
    return 2 * x


@rt.function_node
async def fail(message: str) -> None:
    raise ValueError(message)


async def test_call_returns_the_childs_result() -> None:
    @rt.function_node
    async def parent() -> list[int]:
        return [await rt.call(double, 1), await rt.call(double, x=21)]

    result = await rt.Flow("p", entry_point=parent).arun()
    assert result.result == [2, 42]
    tree = [(r.id, r.parent_id, r.node, r.status) for r in result.state.requests.values()]
    assert tree == [
        ("r1", None, "parent", rt.Status.COMPLETED),
        ("r2", "r1", "double", rt.Status.COMPLETED),
        ("r3", "r1", "double", rt.Status.COMPLETED),
    ]
    assert [r.result for r in result.state.requests.values()] == ["[2, 42]", "2", "42"]


async def test_call_raises_the_childs_original_exception_with_the_request_path() -> None:
    raised: list[BaseException] = []
    caught: list[BaseException] = []

    @rt.function_node
    async def leaf() -> None:
        exc = KeyError("missing")
        raised.append(exc)
        raise exc

    @rt.function_node
    async def middle() -> None:
        await rt.call(leaf)

    @rt.function_node
    async def top() -> str:
        try:
            await rt.call(middle)
        except KeyError as exc:
            caught.append(exc)
            return "caught"
        return "not raised"

    assert await rt.Flow("t", entry_point=top).ainvoke() == "caught"
    assert caught[0] is raised[0]
    assert caught[0].__notes__ == ["raised in node 'leaf', request path: top > middle > leaf (r3)"]


async def test_an_uncaught_child_error_fails_every_caller_up_to_the_run() -> None:
    @rt.function_node
    async def top() -> None:
        await rt.call(fail, "deep")

    result = await rt.Flow("t", entry_point=top).arun()
    assert result.status is rt.Status.FAILED
    assert isinstance(result.error, ValueError)
    assert str(result.error) == "deep"
    statuses = {r.node: r.status for r in result.state.requests.values()}
    assert statuses == {"top": rt.Status.FAILED, "fail": rt.Status.FAILED}
    error = result.state.requests["r2"].error
    assert error is not None
    assert (error.type, error.message, error.path) == ("ValueError", "deep", ("top", "fail"))


async def test_call_from_a_task_started_inside_a_node() -> None:
    @rt.function_node
    async def fan() -> list[int]:
        results: list[int] = []

        async def one(x: int) -> None:
            results.append(await rt.call(double, x))

        async with trio.open_nursery() as nursery:
            for x in range(3):
                nursery.start_soon(one, x)
        return sorted(results)

    result = await rt.Flow("fan", entry_point=fan).arun()
    assert result.result == [0, 2, 4]
    assert [r.parent_id for r in result.state.requests.values()] == [None, "r1", "r1", "r1"]


# -- call_batch ---------------------------------------------------------------


async def test_call_batch_returns_results_in_argument_order(autojump_clock: trio.abc.Clock) -> None:
    @rt.function_node
    async def slow_double(x: int, delay: float) -> int:
        await trio.sleep(delay)
        return 2 * x

    @rt.function_node
    async def batch() -> list[object]:
        return await rt.call_batch(slow_double, [1, 2, 3], [3.0, 1.0, 2.0])

    result = await rt.Flow("b", entry_point=batch).arun()
    assert result.result == [2, 4, 6]
    assert trio.current_time() == 3.0  # concurrently, not 6 s one after another
    assert [r.node for r in result.state.requests.values()] == ["batch", *["slow_double"] * 3]


async def test_call_batch_first_failure_cancels_its_siblings(autojump_clock: trio.abc.Clock) -> None:
    ended: dict[int, str] = {}

    @rt.function_node
    async def item(i: int) -> int:
        try:
            if i == 2:
                await trio.sleep(1)
                raise ValueError("item 2 failed")
            await trio.sleep(100)
            ended[i] = "returned"
            return i
        finally:
            ended.setdefault(i, f"finally at {trio.current_time()}")

    @rt.function_node
    async def batch() -> object:
        try:
            return await rt.call_batch(item, [0, 1, 2, 3], return_exceptions=False)
        except ValueError as exc:
            # every sibling already ended when the failure arrives here
            return (str(exc), dict(ended))

    result = await rt.Flow("b", entry_point=batch).arun()
    assert result.result == (
        "item 2 failed",
        {0: "finally at 1.0", 1: "finally at 1.0", 2: "finally at 1.0", 3: "finally at 1.0"},
    )
    statuses = [r.status for r in result.state.requests.values()]
    assert statuses == [
        rt.Status.COMPLETED,
        rt.Status.CANCELLED,
        rt.Status.CANCELLED,
        rt.Status.FAILED,
        rt.Status.CANCELLED,
    ]


async def test_call_batch_raises_the_first_failure_in_time_not_in_argument_order(
    autojump_clock: trio.abc.Clock,
) -> None:
    @rt.function_node
    async def fail_after(delay: float) -> None:
        await trio.sleep(delay)
        raise ValueError(f"after {delay}")

    @rt.function_node
    async def batch() -> None:
        await rt.call_batch(fail_after, [5.0, 1.0, 3.0], return_exceptions=False)

    result = await rt.Flow("b", entry_point=batch).arun()
    assert isinstance(result.error, ValueError)
    assert str(result.error) == "after 1.0"
    assert trio.current_time() == 1.0


async def test_call_batch_return_exceptions_keeps_every_outcome(autojump_clock: trio.abc.Clock) -> None:
    @rt.function_node
    async def maybe(x: int) -> int:
        await trio.sleep(x)
        if x % 2:
            raise ValueError(f"odd {x}")
        return x

    @rt.function_node
    async def batch() -> list[object]:
        return await rt.call_batch(maybe, [1, 2, 3, 4], return_exceptions=True)

    result = await rt.Flow("b", entry_point=batch).arun()
    assert result.result is not None
    assert [repr(r) for r in result.result] == ["ValueError('odd 1')", "2", "ValueError('odd 3')", "4"]
    assert trio.current_time() == 4.0  # a failure cancels nothing
    statuses = [r.status for r in result.state.requests.values()][1:]
    assert statuses == [rt.Status.FAILED, rt.Status.COMPLETED, rt.Status.FAILED, rt.Status.COMPLETED]


async def test_call_batch_returns_exceptions_by_default_as_railtracks_does() -> None:
    """Railtracks' ``call_batch`` gathers with ``return_exceptions=True`` unless told otherwise."""

    @rt.function_node
    async def check(x: str) -> str:
        if x == "bad":
            raise ValueError("bad input")
        return x

    @rt.function_node
    async def batch() -> list[object]:
        return await rt.call_batch(check, ["ok", "bad", "fine"])

    result = await rt.Flow("b", entry_point=batch).arun()
    assert result.status is rt.Status.COMPLETED
    assert result.result is not None
    assert [repr(r) for r in result.result] == ["'ok'", "ValueError('bad input')", "'fine'"]


async def test_call_batch_end_on_error_still_ends_the_run_at_the_first_failure(
    autojump_clock: trio.abc.Clock,
) -> None:
    finished: list[str] = []

    @rt.function_node
    async def check(x: str) -> str:
        if x == "bad":
            raise ValueError("bad input")
        await trio.sleep(10)
        finished.append(x)
        return x

    @rt.function_node
    async def batch() -> list[object]:
        return await rt.call_batch(check, ["ok", "bad"])

    result = await rt.Flow("b", entry_point=batch, end_on_error=True).arun()
    assert result.status is rt.Status.FAILED
    assert isinstance(result.error, ValueError)
    assert finished == []
    assert trio.current_time() == 0.0


async def test_call_batch_of_nothing_is_an_empty_list() -> None:
    @rt.function_node
    async def batch() -> list[object]:
        return await rt.call_batch(double, [])

    assert await rt.Flow("b", entry_point=batch).ainvoke() == []


async def test_call_batch_checks_every_argument_set_before_starting_any() -> None:
    started: list[object] = []

    @rt.function_node
    async def one(x: int) -> None:
        started.append(x)

    @rt.function_node
    async def two(a: int, b: int) -> None:
        started.append((a, b))

    @rt.function_node
    async def batch() -> None:
        await rt.call_batch(one, [1, 2], [3, 4])

    result = await rt.Flow("b", entry_point=batch).arun()
    assert isinstance(result.error, rt.NodeArgumentError)
    assert str(result.error) == (
        "Cannot call node 'one' with these arguments: too many positional arguments. "
        "Its signature is one(x: int) -> None."
    )
    assert started == []
    assert list(result.state.requests) == ["r1"]


async def test_cancelling_the_caller_cancels_the_batch(autojump_clock: trio.abc.Clock) -> None:
    finished: list[int] = []

    @rt.function_node
    async def sleepy(x: int) -> None:
        try:
            await trio.sleep(100)
        finally:
            finished.append(x)

    @rt.function_node
    async def batch() -> str:
        with trio.move_on_after(2):
            await rt.call_batch(sleepy, [1, 2, 3])
        return "gave up"

    result = await rt.Flow("b", entry_point=batch).arun()
    assert result.result == "gave up"
    assert sorted(finished) == [1, 2, 3]
    assert [r.status for r in result.state.requests.values()][1:] == [rt.Status.CANCELLED] * 3


@pytest.mark.parametrize("through_batch", [False, True], ids=["own-nursery", "batch-child"])
async def test_a_cancelled_call_returns_only_after_its_child_ended(
    autojump_clock: trio.abc.Clock, through_batch: bool
) -> None:
    """Whether the caller keeps a nursery (a node called alone) or not (a batch
    child), a call whose wait is cancelled cancels the child and waits for its
    ``finally`` before the caller goes on."""
    order: list[str] = []

    @rt.function_node
    async def slow() -> None:
        try:
            await trio.sleep(100)
        finally:
            order.append("child finally")

    @rt.function_node
    async def caller(_: int = 0) -> str:
        with trio.move_on_after(2):
            await rt.call(slow)
        order.append("caller goes on")
        return "gave up"

    @rt.function_node
    async def top() -> object:
        if through_batch:
            return await rt.call_batch(caller, [0])
        return await rt.call(caller)

    result = await rt.Flow("c", entry_point=top).arun()
    assert result.result == (["gave up"] if through_batch else "gave up")
    assert order == ["child finally", "caller goes on"]
    assert trio.current_time() == 2.0
    assert [(r.node, r.status) for r in result.state.requests.values()] == [
        ("top", rt.Status.COMPLETED),
        ("caller", rt.Status.COMPLETED),
        ("slow", rt.Status.CANCELLED),
    ]


# -- broadcast ----------------------------------------------------------------


async def test_broadcast_streams_items_as_events_of_the_current_request() -> None:
    @rt.function_node
    async def chatty(n: int) -> int:
        for i in range(n):
            await rt.broadcast({"token": i})
        return n

    events: list[rt.Event] = []
    assert await rt.Flow("c", entry_point=chatty, subscribers=[events.append]).ainvoke(2) == 2
    streamed = [(e.request_id, e.node, e.data) for e in events if e.kind is rt.EventKind.STREAM]
    assert streamed == [("r1", "chatty", {"token": 0}), ("r1", "chatty", {"token": 1})]


async def test_broadcast_with_nobody_subscribed_is_a_no_op() -> None:
    @rt.function_node
    async def chatty() -> str:
        await rt.broadcast("hello")
        return "done"

    assert await rt.Flow("c", entry_point=chatty).ainvoke() == "done"


# -- bad input ----------------------------------------------------------------


async def test_call_outside_a_run() -> None:
    with pytest.raises(
        rt.OutsideRunError,
        match=re.escape(
            "rt.call(double) was called outside a run. Start one with "
            "rt.Flow('demo', entry_point=double).invoke(...), or await flow.ainvoke(...) from Trio code."
        )
        + "$",
    ):
        await rt.call(double, 1)


async def test_call_batch_outside_a_run() -> None:
    with pytest.raises(rt.OutsideRunError, match=r"^rt\.call_batch\(double\) was called outside a run\. "):
        await rt.call_batch(double, [1])


async def test_broadcast_outside_a_run() -> None:
    with pytest.raises(
        rt.OutsideRunError,
        match=re.escape(
            "rt.broadcast('hello') was called outside a run. Start one with "
            "rt.Flow('demo', entry_point=node).invoke(...), or await flow.ainvoke(...) from Trio code."
        )
        + "$",
    ):
        await rt.broadcast("hello")


def test_outside_run_error_is_a_runtime_error() -> None:
    assert issubclass(rt.OutsideRunError, RuntimeError)
    assert issubclass(rt.OutsideRunError, rt.TrioflowError)


async def test_calling_a_plain_function_says_how_to_make_it_a_node() -> None:
    async def plain(x: int) -> int:
        return x

    @rt.function_node
    async def parent() -> None:
        await rt.call(plain, 1)

    result = await rt.Flow("p", entry_point=parent).arun()
    assert isinstance(result.error, rt.NotANodeError)
    assert isinstance(result.error, TypeError)
    assert str(result.error) == (
        "rt.call() got 'plain', which is a plain callable, not a node. "
        "Decorate it with @rt.function_node to call it in a run."
    )


async def test_calling_a_non_callable_names_it() -> None:
    @rt.function_node
    async def parent() -> None:
        await rt.call_batch(42, [1])

    result = await rt.Flow("p", entry_point=parent).arun()
    assert isinstance(result.error, rt.NotANodeError)
    assert str(result.error) == (
        "rt.call_batch() got int 42, which is not a node. Pass a function decorated with @rt.function_node."
    )


async def test_wrong_arguments_fail_in_the_caller_before_the_node_starts() -> None:
    started: list[str] = []

    @rt.function_node
    async def greet(name: str) -> str:
        started.append(name)
        return name

    @rt.function_node
    async def parent() -> str:
        try:
            await rt.call(greet, nmae="Ann")
        except rt.NodeArgumentError as exc:
            return str(exc)
        return "no error"

    result = await rt.Flow("p", entry_point=parent).arun()
    assert result.result == (
        "Cannot call node 'greet' with these arguments: missing a required argument: 'name'. "
        "Its signature is greet(name: str) -> str."
    )
    assert started == []
    assert list(result.state.requests) == ["r1"]  # no request was made for the bad call


async def test_unexpected_keyword_is_named() -> None:
    @rt.function_node
    async def parent() -> None:
        await rt.call(double, 1, y=2)

    result = await rt.Flow("p", entry_point=parent).arun()
    assert isinstance(result.error, rt.NodeArgumentError)
    assert str(result.error) == (
        "Cannot call node 'double' with these arguments: got an unexpected keyword argument 'y'. "
        "Its signature is double(x: int) -> int."
    )


async def test_tasks_all_end_with_the_run() -> None:
    @rt.function_node
    async def parent() -> list[object]:
        return await rt.call_batch(double, range(5))

    assert await rt.Flow("p", entry_point=parent).ainvoke() == [0, 2, 4, 6, 8]
    await trio.testing.wait_all_tasks_blocked()
    live = [task.name for task in rtt.current_tasks()]
    assert any("test_tasks_all_end_with_the_run" in name for name in live)
    assert not any("double" in name or "run run-" in name for name in live), live


# -- log --------------------------------------------------------------------------


async def test_log_goes_to_the_shared_log_subscribers_and_logging(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    @rt.function_node
    async def step(n: int) -> int:
        details = {"n": n}
        await trio.sleep(1)
        await rt.log("halfway", level=logging.WARNING, details=details)
        details["n"] = -1  # later changes never reach the entry
        return n

    events: list[rt.Event] = []
    with caplog.at_level(logging.INFO, logger="runtime.node"):
        result = await rt.Flow("logged", entry_point=step, subscribers=[events.append]).arun(3)
    assert [(e.request_id, e.node, e.data) for e in events if e.kind is rt.EventKind.LOG] == [
        ("r1", "step", {"level": "WARNING", "message": "halfway", "details": {"n": 3}})
    ]
    (entry,) = result.state.get_shared_log()
    stamp = entry.pop("timestamp")
    assert entry == {"request": "r1", "node": "step", "level": "WARNING", "message": "halfway", "details": {"n": 3}}
    assert result.state.started_at is not None
    assert stamp == (result.state.started_at + datetime.timedelta(seconds=1)).isoformat()
    assert [r.getMessage() for r in caplog.records] == ["logged [step r1]: halfway"]


def test_log_outside_a_run_is_an_error() -> None:
    with pytest.raises(
        rt.OutsideRunError,
        match=r"^rt\.log\('hello'\) was called outside a run\. Start one with rt\.Flow\('demo', entry_point=node\)"
        r"\.invoke\(\.\.\.\), or await flow\.ainvoke\(\.\.\.\) from Trio code\.$",
    ):
        trio.run(rt.log, "hello")
