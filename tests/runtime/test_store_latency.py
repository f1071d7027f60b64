"""Durable runs: a store gets a run's records as the run goes, not only when a batch fills."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import trio
import trio.testing

import runtime as rt
from runtime._record import MAX_AHEAD
from runtime.store import _sqlite

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


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


async def test_a_busy_run_makes_at_most_max_ahead_records_its_store_has_not_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invariant: a run kept by a store waits once it is ``MAX_AHEAD`` records (and a batch) past its committed ones.

    The store's writer commits in a thread; a run whose loop never waits keeps
    that thread from the GIL, so its first commit came seconds late while the
    run went tens of thousands of records ahead (all lost in a crash). Here
    the writer's thread is held until the run stops making records.
    """
    gate = threading.Event()
    write = _sqlite._write

    def held_write(*args: object, **kwargs: object) -> None:
        gate.wait()
        write(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_sqlite, "_write", held_write)
    steps = 0

    @rt.function_node
    async def step(i: int) -> int:
        nonlocal steps
        steps += 1
        await rt.log("step", i=i)
        return i

    @rt.function_node
    async def forever() -> None:
        i = 0
        while True:
            await rt.call(step, i)
            i += 1

    made = 0
    went_on = trio.Event()
    store = rt.SQLiteStore(tmp_path / "runs.db", on_commit=lambda count: count > made > 0 and went_on.set())
    flow = rt.Flow("busy", entry_point=forever, store=store)
    async with store, trio.open_nursery() as nursery:
        nursery.start_soon(flow.arun)
        try:
            await trio.testing.wait_all_tasks_blocked()  # the run waits for its store
            made = 3 * steps  # each step: its request's creation, its log entry, its result
            assert store.committed == 0
            # The run waits at its first flush past MAX_AHEAD (a step counts from its start): batches are 256.
            assert MAX_AHEAD - 3 <= made <= MAX_AHEAD + 2 * 256
        finally:
            gate.set()  # before the store's block ends: its writer waits for it
        await went_on.wait()  # the run went on as the store committed
        nursery.cancel_scope.cancel()
