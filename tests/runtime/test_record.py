"""The record path: recorders attached to a Flow get every record of every run, in order."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing
from recording import Collect, Counter, fan_into_slow

import runtime as rt

if TYPE_CHECKING:
    from collections.abc import Sequence


@rt.function_node
async def leaf(x: int) -> int:
    await rt.log("leaf", x=x)
    return x * 2


@rt.function_node
async def root(n: int) -> list[int]:
    return [await rt.call(leaf, i) for i in range(n)]


async def test_a_recorder_gets_every_record_of_a_node_run_in_order_without_a_subscriber() -> None:
    recorder = Collect()
    flow = rt.Flow("recorded", entry_point=root, recorders=[recorder])
    result = await flow.arun(2)
    records = recorder.records
    assert [r.seq for r in records] == list(range(len(records)))
    assert {r.run_id for r in records} == {result.state.run_id}
    assert [(r.kind, r.request_id, r.node) for r in records] == [
        (rt.EventKind.RUN_STARTED, None, None),
        (rt.EventKind.REQUEST_CREATED, "r1", "root"),
        (rt.EventKind.REQUEST_CREATED, "r2", "leaf"),
        (rt.EventKind.LOG, "r2", "leaf"),
        (rt.EventKind.REQUEST_SUCCEEDED, "r2", "leaf"),
        (rt.EventKind.REQUEST_CREATED, "r3", "leaf"),
        (rt.EventKind.LOG, "r3", "leaf"),
        (rt.EventKind.REQUEST_SUCCEEDED, "r3", "leaf"),
        (rt.EventKind.REQUEST_SUCCEEDED, "r1", "root"),
        (rt.EventKind.RUN_FINISHED, None, None),
    ]
    assert records[-1].data == {"status": "completed", "result": "[0, 2]", "error": None}
    # Nobody watches live: the records come in a batch, not one message each.
    assert len(recorder.batches) < len(records)


async def test_a_recorder_gets_a_graph_jobs_state_changes_made_by_handlers() -> None:
    recorder = Collect()
    flow: rt.Flow[..., object] = rt.Flow(flow_id="graph-recorded", recorders=[recorder])
    flow.add_routine(Counter(), "counter")
    state = await flow.aexecute("counter", {"data": 3})
    assert state.status is rt.Status.COMPLETED
    kinds = [(r.kind, r.node, r.data) for r in recorder.records]
    assert kinds[0] == (rt.EventKind.RUN_STARTED, None, "graph-recorded")
    assert kinds[1:4] == [
        (rt.EventKind.ROUTINE_STATE, "counter", {"seen": 3}),
        (rt.EventKind.SHARED_DATA, None, {"key": "last", "value": 3}),
        (rt.EventKind.LOG, None, state.shared_log[0]),
    ]
    assert kinds[4] == (rt.EventKind.ROUTINE_EVENT, "counter", {"event": "counted", "data": {"n": 3}})
    assert kinds[5] == (rt.EventKind.STREAM, "counter", {"output_type": "total", "data": {"n": 3}})
    assert kinds[-1][0] is rt.EventKind.RUN_FINISHED


async def test_a_cancelled_job_records_what_it_never_delivered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Collect()
    flow = fan_into_slow(recorders=[recorder])
    async with flow.open_job("fan") as job:
        await trio.sleep(1)
        job.cancel()
        state = await job.wait()
    undelivered = [r.data for r in recorder.records if r.kind is rt.EventKind.UNDELIVERED]
    assert len(undelivered) == len(state.undelivered) == 2
    assert undelivered == [
        {"source": d.source, "event": d.event, "target": d.target, "slot": d.slot, "data": d.data}
        for d in state.undelivered
    ]


async def test_a_recorder_that_raises_is_logged_and_the_run_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        async def record(self, records: Sequence[rt.Event]) -> None:
            raise OSError("disk full")

        def __repr__(self) -> str:
            return "<Broken recorder>"

    good = Collect()
    flow = rt.Flow("broken", entry_point=leaf, recorders=[Broken(), good])
    with caplog.at_level(logging.ERROR, logger="runtime.publisher"):
        assert await flow.ainvoke(4) == 8
    assert good.records[-1].kind is rt.EventKind.RUN_FINISHED
    assert any(
        r.getMessage().startswith("Recorder <Broken recorder> raised on records #0-#") for r in caplog.records
    )


def test_a_recorder_without_a_record_method_is_refused() -> None:
    with pytest.raises(
        TypeError,
        match=r"^Flow\('bad', recorders=\[\.\.\., 42, \.\.\.\]\): a recorder has an async record\(records\) "
        r"method \(see rt\.Recorder\)\.$",
    ):
        rt.Flow("bad", entry_point=leaf, recorders=[42])  # type: ignore[list-item]


# -- live batches -----------------------------------------------------------------------------

K = rt.EventKind


class _SlowRecorder(Collect):
    """Takes a second (of Trio's clock) over its first batch: the publisher is busy meanwhile."""

    async def record(self, records: Sequence[rt.Event]) -> None:
        await super().record(records)
        if len(self.batches) == 1:
            await trio.sleep(1)


async def test_live_records_made_while_the_publisher_is_busy_reach_it_as_one_batch_in_order(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Invariant: a live run's records arrive once each, in order, and coalesce while the publisher is busy."""

    @rt.function_node
    async def burst() -> int:
        for i in range(100):
            await rt.broadcast(i)
        return 100

    seen: list[rt.Event] = []
    recorder = _SlowRecorder()
    result = await rt.Flow("burst", entry_point=burst, subscribers=[seen.append], recorders=[recorder]).arun()
    assert result.unwrap() == 100
    assert [e.seq for e in seen] == list(range(len(seen)))
    assert recorder.records == seen
    assert [e.data for e in seen if e.kind is K.STREAM] == list(range(100))
    # The burst never waits: its records join the batch the publisher has not taken yet,
    # so they come as a few messages, not one per record.
    assert len(recorder.batches) <= 3
    assert max(len(b) for b in recorder.batches) > 90


async def test_a_live_record_reaches_its_subscriber_without_waiting_for_a_batch_to_fill(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Invariant: live, a record reaches the subscriber while the run waits (no batch to fill, no timer)."""
    seen_ping = trio.Event()

    def watch(event: rt.Event) -> None:
        if event.kind is K.STREAM and event.data == "ping":
            seen_ping.set()

    @rt.function_node
    async def ping() -> float:
        start = trio.current_time()
        await rt.broadcast("ping")
        await seen_ping.wait()
        return trio.current_time() - start

    with trio.fail_after(5):
        result = await rt.Flow("ping", entry_point=ping, subscribers=[watch]).arun()
    assert result.unwrap() == 0.0  # no time passed: no timer, nothing waited to fill


async def test_a_slow_live_subscriber_still_holds_the_run_back_when_batches_are_full(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Invariant: coalescing keeps backpressure: a live run gets at most a bounded batch ahead of its publisher."""
    sent_at: list[float] = []

    @rt.function_node
    async def burst() -> None:
        for i in range(2000):
            await rt.broadcast(i)
            sent_at.append(trio.current_time())

    recorder = _SlowRecorder()
    await rt.Flow("burst", entry_point=burst, subscribers=[lambda _e: None], recorders=[recorder]).arun()
    held = sum(1 for t in sent_at if t == 0)
    assert 0 < held <= 600  # the open batch, at most 256 records, and the one being handled
    assert max(len(b) for b in recorder.batches) <= 256
