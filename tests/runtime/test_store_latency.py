"""Durable runs: a store gets a run's records as the run goes, not only when a batch fills."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

import runtime as rt

if TYPE_CHECKING:
    from pathlib import Path


@rt.function_node
async def quick(i: int) -> int:
    return i


async def test_a_completed_calls_result_is_committed_while_a_later_node_waits(tmp_path: Path) -> None:
    """Invariant: a record made 10 ms or more after the run's last batch went sends the batch on to the store."""
    gate, waiting = trio.Event(), trio.Event()

    @rt.function_node
    async def slow() -> int:
        waiting.set()
        await gate.wait()  # an LLM call, an approval: minutes, in which the process may die
        return 1

    @rt.function_node
    async def entry() -> int:
        first = await rt.call(quick, 41)
        await trio.sleep(0.05)  # the run's next record comes 50 ms after the last batch went
        return first + await rt.call(slow)

    committed = trio.Event()
    store = rt.SQLiteStore(tmp_path / "runs.db", on_commit=lambda count: committed.set())
    flow = rt.Flow("latency", entry_point=entry, store=store)
    async with store, trio.open_nursery() as nursery:
        nursery.start_soon(flow.ainvoke)
        await waiting.wait()
        with trio.fail_after(10):  # without the linger, nothing would reach the store until the run ends
            await committed.wait()
        (summary,) = await store.runs()
        stored = await store.records(summary.run_id)
        assert [(r.kind, r.node) for r in stored if r.kind is rt.EventKind.REQUEST_SUCCEEDED] == [
            (rt.EventKind.REQUEST_SUCCEEDED, "quick")
        ]
        gate.set()
