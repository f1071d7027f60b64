"""The publisher: callbacks on a Flow, ``flow.stream`` subscriptions, overflow."""

import logging
import pathlib

import pytest
import trio
import trio.lowlevel
import trio.testing

import runtime as rt

K = rt.EventKind


@rt.function_node
async def leaf(x: int) -> int:
    await rt.broadcast(f"leaf {x}")
    return x


@rt.function_node
async def root() -> int:
    a = await rt.call(leaf, 1)
    rest = await rt.call_batch(leaf, [2, 3])
    return a + sum(rest)  # type: ignore[arg-type]


@rt.function_node
async def broken() -> None:
    await rt.call(leaf, 1)
    raise ValueError("broken")


def _assert_causal(events: list[rt.Event]) -> None:
    """Every event once, in causal order, run_finished last."""
    assert [e.seq for e in events] == list(range(len(events)))
    assert len({e.run_id for e in events}) == 1
    assert events[0].kind is K.RUN_STARTED
    assert events[-1].kind is K.RUN_FINISHED
    assert [e.kind for e in events].count(K.RUN_FINISHED) == 1
    created: dict[str, int] = {}
    ended: dict[str, int] = {}
    for e in events:
        if e.kind is K.REQUEST_CREATED:
            assert e.request_id not in created
            assert e.parent_id is None or e.parent_id in created
            created[e.request_id] = e.seq  # type: ignore[index]
        elif e.kind in (K.REQUEST_SUCCEEDED, K.REQUEST_FAILED, K.REQUEST_CANCELLED):
            assert e.request_id in created
            assert e.request_id not in ended
            ended[e.request_id] = e.seq  # type: ignore[index]
        elif e.kind is K.STREAM:
            assert e.request_id in created
            assert e.request_id not in ended
    assert set(created) == set(ended)


def _summary(events: list[rt.Event]) -> list[tuple[str, str | None, str | None, object]]:
    return [(e.kind.value, e.request_id, e.node, e.data) for e in events]


_ROOT_EVENTS = [
    ("run_started", None, None, "events"),
    ("request_created", "r1", "root", None),
    ("request_created", "r2", "leaf", None),
    ("stream", "r2", "leaf", "leaf 1"),
    ("request_succeeded", "r2", "leaf", "1"),
    ("request_created", "r3", "leaf", None),
    ("request_created", "r4", "leaf", None),
]


async def test_sync_and_async_callbacks_get_every_event_in_causal_order() -> None:
    sync_seen: list[rt.Event] = []
    async_seen: list[rt.Event] = []

    async def slow_callback(event: rt.Event) -> None:
        await trio.lowlevel.checkpoint()
        async_seen.append(event)

    flow = rt.Flow("events", entry_point=root, subscribers=[sync_seen.append, slow_callback])
    assert await flow.ainvoke() == 6
    assert sync_seen == async_seen
    _assert_causal(sync_seen)
    summary = _summary(sync_seen)
    assert summary[: len(_ROOT_EVENTS)] == _ROOT_EVENTS
    # the two batched calls interleave in any order; their own events keep theirs
    assert sorted(summary[len(_ROOT_EVENTS) : -2], key=str) == sorted(
        [
            ("stream", "r3", "leaf", "leaf 2"),
            ("request_succeeded", "r3", "leaf", "2"),
            ("stream", "r4", "leaf", "leaf 3"),
            ("request_succeeded", "r4", "leaf", "3"),
        ],
        key=str,
    )
    assert summary[-2:] == [
        ("request_succeeded", "r1", "root", "6"),
        ("run_finished", None, None, {"status": "completed", "result": "6", "error": None}),
    ]


async def test_failed_request_event_carries_the_error_summary() -> None:
    seen: list[rt.Event] = []
    result = await rt.Flow("events", entry_point=broken, subscribers=[seen.append]).arun()
    assert result.status is rt.Status.FAILED
    _assert_causal(seen)
    failed = [e for e in seen if e.kind is K.REQUEST_FAILED]
    assert [(e.request_id, e.data) for e in failed] == [
        ("r1", rt.ErrorSummary("ValueError", "broken", ("broken",)))
    ]
    assert seen[-1].data == {"status": "failed", "result": None, "error": "ValueError: broken"}


async def test_a_raising_callback_is_logged_and_stays_subscribed(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[rt.EventKind] = []

    def picky(event: rt.Event) -> None:
        calls.append(event.kind)
        if event.kind is K.RUN_STARTED:
            raise RuntimeError("subscriber bug")

    with caplog.at_level(logging.ERROR, logger="runtime.publisher"):
        assert await rt.Flow("f", entry_point=leaf, subscribers=[picky]).ainvoke(1) == 1
    assert calls[0] is K.RUN_STARTED
    assert calls[-1] is K.RUN_FINISHED
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith(f"Subscriber {picky!r} raised on event run_started #0")


async def test_callbacks_see_each_run_of_a_reused_flow_separately() -> None:
    seen: list[rt.Event] = []
    flow = rt.Flow("f", entry_point=leaf, subscribers=[seen.append])
    first = await flow.arun(1)
    second = await flow.arun(2)
    by_run = {first.state.run_id: [], second.state.run_id: []}  # type: dict[str, list[rt.Event]]
    for event in seen:
        by_run[event.run_id].append(event)
    for events in by_run.values():
        _assert_causal(events)


# -- streams ------------------------------------------------------------------


async def test_stream_yields_every_event_then_ends() -> None:
    flow = rt.Flow("events", entry_point=root)
    async with flow.stream() as events:
        seen = [event async for event in events]
        assert events.finished is seen[-1]
    _assert_causal(seen)
    assert _summary(seen)[: len(_ROOT_EVENTS)] == _ROOT_EVENTS
    assert seen[-1].data == {"status": "completed", "result": "6", "error": None}


async def test_stream_of_a_failing_run_reports_the_error_in_the_last_event() -> None:
    async with rt.Flow("events", entry_point=broken).stream() as events:
        seen = [event async for event in events]
    _assert_causal(seen)
    assert seen[-1].data == {"status": "failed", "result": None, "error": "ValueError: broken"}


async def test_leaving_a_stream_early_cancels_the_run(
    autojump_clock: trio.abc.Clock, tmp_path: pathlib.Path
) -> None:
    finally_ran: list[str] = []

    @rt.function_node
    async def endless() -> None:
        try:
            while True:
                await rt.broadcast("tick")
                await trio.sleep(1)
        finally:
            finally_ran.append("endless")

    flow = rt.Flow("endless", entry_point=endless, save_state=True, state_dir=tmp_path)
    ticks = 0
    async with flow.stream() as events:
        async for event in events:
            if event.kind is K.STREAM:
                ticks += 1
                if ticks == 3:
                    break
    assert finally_ran == ["endless"]
    assert trio.current_time() == 2.0
    state = rt.read_state_file(tmp_path / "endless.json")
    assert state.status is rt.Status.CANCELLED
    await trio.testing.wait_all_tasks_blocked()


async def test_a_blocking_subscriber_holds_the_run_back(autojump_clock: trio.abc.Clock) -> None:
    # More events than the subscriber's buffer and the run's queues (the
    # publisher's and the coordinator's mailboxes) hold, so the run must wait.
    n = 2000
    sent_at: list[float] = []  # when each broadcast returned, on Trio's clock

    @rt.function_node
    async def burst() -> int:
        for i in range(n):
            await rt.broadcast(i)
            sent_at.append(trio.current_time())
        return n

    start = trio.current_time()
    async with rt.Flow("burst", entry_point=burst)._open_stream((), {}, buffer=2) as events:
        await trio.sleep(10)  # the run waits for us: nothing is lost
        held_back = len(sent_at)
        seen = [event async for event in events]
    assert [e.data for e in seen if e.kind is K.STREAM] == list(range(n))
    assert seen[-1].data == {"status": "completed", "result": str(n), "error": None}
    # The run waited: while we slept it got only as far as the queues allow,
    # and the rest of its broadcasts returned once we read, 10 s later.
    assert 0 < held_back < n
    assert sent_at[:held_back] == [start] * held_back
    assert sent_at[held_back:] == [start + 10] * (n - held_back)
    assert seen[-1].offset == 10


async def test_overflow_fail_raises_after_the_received_events(autojump_clock: trio.abc.Clock) -> None:
    @rt.function_node
    async def burst() -> int:
        for i in range(50):
            await rt.broadcast(i)
        return 50

    received: list[rt.Event] = []
    async with rt.Flow("burst", entry_point=burst)._open_stream((), {}, buffer=4, overflow="fail") as events:
        await trio.sleep(10)  # fall behind
        with pytest.raises(
            rt.SubscriberOverflowError,
            match=r"^This subscriber fell behind and lost the events after seq 3\. "
            r"Read faster, give a larger buffer, or use overflow='block'\.$",
        ):
            await _drain(events, received)
    assert [e.seq for e in received] == [0, 1, 2, 3]


async def _drain(events: rt.Subscription, into: list[rt.Event]) -> None:
    async for event in events:
        into.append(event)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"overflow": "drop"},
            r"^overflow='drop': choose 'block' \(backpressure on the run\) or 'fail' \(raise in the subscriber\)\.$",
        ),
        ({"buffer": -1}, r"^buffer=-1: give a number of events, 0 or more\.$"),
    ],
)
async def test_bad_stream_options(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        async with rt.Flow("f", entry_point=leaf)._open_stream((1,), {}, **kwargs):  # type: ignore[arg-type]
            pass  # pragma: no cover


async def test_a_run_cancelled_with_its_records_backed_up_still_ends_recorded(
    autojump_clock: trio.abc.Clock, tmp_path: pathlib.Path
) -> None:
    """The subscriber reads nothing, so the publisher, its mailbox and the node
    all wait; leaving the stream then cancels a run whose last records
    must still get through."""
    finally_ran: list[str] = []

    @rt.function_node
    async def flood() -> None:
        try:
            for i in range(5000):
                await rt.broadcast(i)
        finally:
            finally_ran.append("flood")

    flow = rt.Flow("flood", entry_point=flood, save_state=True, state_dir=tmp_path)
    async with flow._open_stream((), {}, buffer=1):
        await trio.testing.wait_all_tasks_blocked()
    assert finally_ran == ["flood"]
    state = rt.read_state_file(tmp_path / "flood.json")
    assert state.status is rt.Status.CANCELLED
    assert [r.status for r in state.requests.values()] == [rt.Status.CANCELLED]
