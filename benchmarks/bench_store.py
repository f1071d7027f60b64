"""Durable runs (issue 16): what keeping every record in a SQLite run store costs.

- records committed per second by the store: the records of a run of
  ``rt.call_batch`` of 1,000 calls (collected once), handed to an
  ``rt.SQLiteStore`` in the publisher's batches, timed until its block has
  committed every one, per record. Floor: 20 µs a record, the 50,000
  records/s budget; the ratio must stay at or below 1.
- the same run with the store attached, end to end (the engine's own work
  included), per record: reported, no budget.
- a durable run of 1,000 sequential ``rt.call``, per call (until every record
  is committed). Floor: the same run in memory. Budget 2x.
- memory kept per stored run: Python memory (``tracemalloc``) still held after
  1,000 more runs written to one store (measured once its block has closed, so
  its queue is empty), per run. Floor: 64 B, less than
  one dict entry, so anything the store kept per run would pass it.
  Budget 1x: memory does not grow with the number of stored runs.
- a durable routine-graph job (``aexecute``) of 1,000 hops of a message
  around a one-routine loop, per hop (until every record and snapshot is
  committed). Floor: the same job in memory. Reported, no budget.
- what the job's snapshots cost: the same durable job, a snapshot every
  1,000 records (the default) against none but the end's. Reported, no
  budget; a ratio near 1.
"""

from __future__ import annotations

import contextlib
import gc
import pathlib
import tempfile
import time
import tracemalloc
from typing import TYPE_CHECKING

import trio

import runtime as rt
from runtime import _graph_resume

from ._harness import Options, Row, trio_best_of, trio_best_of_pair

if TYPE_CHECKING:
    from collections.abc import Sequence

_CALLS = 1_000
_RECORDS_PER_SECOND = 50_000


async def _trivial(i: int) -> int:
    return i


trivial = rt.function_node(_trivial)


@rt.function_node
async def _batch(n: int) -> int:
    await rt.call_batch(trivial, range(n))
    return n


@rt.function_node
async def _call_loop(n: int) -> int:
    for i in range(n):
        await rt.call(trivial, i)
    return n


async def _stored(entry: rt.Node[[int], int], n: int, counted: list[int] | None = None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = rt.SQLiteStore(pathlib.Path(tmp) / "runs.db")
        flow = rt.Flow("bench-store", entry_point=entry, store=store)
        async with store:
            start = time.perf_counter()
            await flow.ainvoke(n)
        elapsed = time.perf_counter() - start
        if counted is not None:
            counted.append(store.committed)
    return elapsed


class _Collect:
    def __init__(self) -> None:
        self.batches: list[list[rt.Event]] = []

    async def record(self, records: Sequence[rt.Event]) -> None:
        self.batches.append(list(records))


async def _collect(n: int) -> list[list[rt.Event]]:
    collect = _Collect()
    await rt.Flow("bench-store", entry_point=_batch, recorders=[collect]).ainvoke(n)
    return collect.batches


async def _commit(batches: list[list[rt.Event]]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = rt.SQLiteStore(pathlib.Path(tmp) / "runs.db")
        async with store:
            start = time.perf_counter()
            for batch in batches:
                await store.record(batch)
        elapsed = time.perf_counter() - start
        assert store.committed == sum(map(len, batches))
    return elapsed


async def _in_memory(entry: rt.Node[[int], int], n: int) -> float:
    flow = rt.Flow("bench-store", entry_point=entry)
    start = time.perf_counter()
    await flow.ainvoke(n)
    return time.perf_counter() - start


class _Loop(rt.Routine):
    """One hop a message: counts on its instance (kept in each snapshot) and sends the message on."""

    def __init__(self, hops: int) -> None:
        super().__init__()
        self.hops = hops
        self.count = 0
        self.define_slot("tick", handler=self.tick)
        self.define_event("next", ["i"])

    def tick(self, i: int) -> None:
        self.count += 1
        if i < self.hops:
            self.emit("next", i=i + 1)


def _loop(hops: int, store: rt.SQLiteStore | None) -> rt.Flow[..., object]:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="bench-loop", store=store)
    flow.add_routine(_Loop(hops), "loop")
    flow.connect("loop", "next", "loop", "tick")
    return flow


async def _job(hops: int, durable: bool, every: int = _graph_resume.SNAPSHOT_EVERY) -> float:
    default, _graph_resume.SNAPSHOT_EVERY = _graph_resume.SNAPSHOT_EVERY, every
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = rt.SQLiteStore(pathlib.Path(tmp) / "runs.db") if durable else None
            flow = _loop(hops, store)
            async with contextlib.AsyncExitStack() as stack:
                if store is not None:
                    await stack.enter_async_context(store)
                start = time.perf_counter()
                await flow.aexecute("loop", {"i": 0})
            return time.perf_counter() - start
    finally:
        _graph_resume.SNAPSHOT_EVERY = default


_KEPT_FLOOR = 64


async def _kept_per_run(runs: int) -> float:
    """Bytes of Python memory still held after *runs* more runs written to one store, per run."""
    with tempfile.TemporaryDirectory() as tmp:
        store = rt.SQLiteStore(pathlib.Path(tmp) / "runs.db")
        flow = rt.Flow("bench-store", entry_point=_call_loop, store=store)
        # Measured between closed blocks, when the writer has committed everything queued.
        for warm in (True, False):
            async with store:
                for _ in range(20 if warm else runs):  # the first runs fill caches, once
                    await flow.ainvoke(3)
            gc.collect()
            if warm:
                tracemalloc.start()
                before, _ = tracemalloc.get_traced_memory()
        after, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return max(after - before, 0) / runs


def bench_store(opts: Options) -> list[Row]:
    n = opts.scale(_CALLS * 10) // 10 or 1
    batches = trio.run(_collect, n)
    records = sum(map(len, batches))
    per_record = trio_best_of(opts.repeat, lambda: _commit(batches)) / records
    counted: list[int] = []
    end_to_end = trio_best_of(opts.repeat, lambda: _stored(_batch, n, counted)) / counted[-1]
    ours, floor = trio_best_of_pair(
        opts.repeat, lambda: _stored(_call_loop, n), lambda: _in_memory(_call_loop, n)
    )
    kept_runs = max(opts.scale(1000), 100)
    kept = trio.run(_kept_per_run, kept_runs)
    job, job_floor = trio_best_of_pair(opts.repeat, lambda: _job(n, True), lambda: _job(n, False))
    snapshots, none = trio_best_of_pair(
        opts.repeat, lambda: _job(n, True), lambda: _job(n, True, every=2**62)
    )
    return [
        Row(
            f"records committed by the store, call_batch of {n} ({1 / per_record:,.0f}/s; per record)",
            per_record,
            1 / _RECORDS_PER_SECOND,
            "s",
            budget=1.0,
        ),
        Row(
            f"  the same run end to end, engine included ({1 / end_to_end:,.0f}/s; per record)",
            end_to_end,
            1 / _RECORDS_PER_SECOND,
            "s",
        ),
        Row(f"durable run of {n} sequential rt.call (per call)", ours / n, floor / n, "s", budget=2.0),
        Row(
            f"memory kept per stored run, {kept_runs} runs in one store",
            kept,
            _KEPT_FLOOR,
            "B",
            budget=1.0,
        ),
        Row(f"durable routine job of {n} hops, aexecute (per hop)", job / n, job_floor / n, "s"),
        Row("  its snapshots, one per 1,000 records vs none (per hop)", snapshots / n, none / n, "s"),
    ]


BENCHMARKS = [bench_store]
