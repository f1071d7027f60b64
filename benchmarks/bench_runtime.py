"""Runs of nodes against raw Trio doing the same work (issue 3's figures).

- sequential ``rt.call`` of a trivial node, 1k and 10k calls in one run. Floor:
  the same function in a fresh task of a fresh nursery, awaited, per call
  (one task per invocation is what an actor per node costs at least).
- ``rt.call_batch`` of 1,000 calls. Floor: 1,000 ``start_soon`` in one nursery
  collecting the results, per call. Two rows under it, against the same
  floor, show where the cost lies: the bare actor kernel doing the batch's
  shape (an actor and an ask per call, nothing recorded), and the least any
  actor per call can cost (each task in a cancel scope of its own); a row
  above them measures the batch against that least floor (budget 2.3x).
- ``flow.invoke`` of a one-node flow. Floor: ``trio.run`` of the same function.
- ``await flow.ainvoke`` of a one-node flow inside Trio. Floor: the same
  function in a fresh task of a fresh nursery (issue 13's run cost). Two rows
  under it show the actor kernel's share: a run's structure with nothing of
  the runtime, with and without a nursery in the entry actor.
- peak memory of a run of 10,000 sequential calls, per recorded request
  (``tracemalloc``, above the same run with no calls). It has no raw-Trio
  floor; the floor column is the 2 KB budget, so the ratio must stay below 1.
"""

from __future__ import annotations

import gc
import time
import tracemalloc

import trio

import actors
import runtime as rt

from ._harness import Options, Row, best_of, trio_best_of_pair

_MEMORY_CALLS = 10_000
_MEMORY_BUDGET_BYTES = 2048.0


async def _trivial(i: int) -> int:
    return i


trivial = rt.function_node(_trivial)


# -- sequential calls --------------------------------------------------------------


@rt.function_node
async def _call_loop(n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        await rt.call(trivial, i)
    return time.perf_counter() - start


async def _sequential_ours(n: int) -> float:
    flow = rt.Flow("bench-sequential", entry_point=_call_loop)
    return await flow.ainvoke(n)


async def _sequential_floor(n: int) -> float:
    results: list[int] = []

    async def task(i: int) -> None:
        results.append(await _trivial(i))

    start = time.perf_counter()
    for i in range(n):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(task, i)
    elapsed = time.perf_counter() - start
    assert len(results) == n
    return elapsed


def _sequential_row(opts: Options, n: int) -> Row:
    count = opts.scale(n)
    ours, floor = trio_best_of_pair(opts.repeat, lambda: _sequential_ours(count), lambda: _sequential_floor(count))
    return Row(f"sequential rt.call ({n // 1000}k calls)", ours / count, floor / count, "s", budget=2.0)


def bench_sequential(opts: Options) -> list[Row]:
    return [_sequential_row(opts, 1_000), _sequential_row(opts, 10_000)]


# -- call_batch ---------------------------------------------------------------------


@rt.function_node
async def _batch(n: int) -> float:
    start = time.perf_counter()
    results = await rt.call_batch(trivial, range(n))
    elapsed = time.perf_counter() - start
    assert results == list(range(n))
    return elapsed


async def _batch_ours(n: int) -> float:
    return await rt.Flow("bench-batch", entry_point=_batch).ainvoke(n)


async def _batch_floor(n: int, *, own_scopes: bool = False) -> float:
    """1,000 ``start_soon`` collecting results; with *own_scopes*, each task in a
    cancel scope of its own: what an actor per call needs at least, to be
    cancelled on its own."""
    results: list[int | None] = [None] * n

    async def task(i: int) -> None:
        results[i] = await _trivial(i)

    async def scoped_task(i: int) -> None:
        with trio.CancelScope():
            results[i] = await _trivial(i)

    spawned = scoped_task if own_scopes else task
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(spawned, i)
    elapsed = time.perf_counter() - start
    assert results == list(range(n))
    return elapsed


class _Leaf(actors.Actor[int, int]):
    keeps_nursery = False
    mailbox_size = 1

    async def handle(self, message: int) -> int:
        self.ref.stop_nowait()
        return await _trivial(message)


class _BatchParent(actors.Actor[int, float]):
    """call_batch's shape in the bare kernel: an actor per call, one ask each, no records."""

    keeps_nursery = False

    async def handle(self, message: int) -> float:
        start = time.perf_counter()
        replies = []
        async with actors.open_nursery() as nursery:
            for i in range(message):
                replies.append(nursery.spawn_nowait(_Leaf(), name=f"leaf ({i})").ask_nowait(i))
        results = [await reply.wait() for reply in replies]
        elapsed = time.perf_counter() - start
        assert results == list(range(message))
        return elapsed


async def _batch_kernel(n: int) -> float:
    async with actors.open_system() as system:
        return await system.spawn_nowait(_BatchParent()).ask(n)


def bench_batch(opts: Options) -> list[Row]:
    n = 1_000
    ours, floor = trio_best_of_pair(opts.repeat + 2, lambda: _batch_ours(n), lambda: _batch_floor(n))
    kernel, floor2 = trio_best_of_pair(opts.repeat + 2, lambda: _batch_kernel(n), lambda: _batch_floor(n))
    scoped, floor3 = trio_best_of_pair(opts.repeat + 2, lambda: _batch_floor(n, own_scopes=True), lambda: _batch_floor(n))
    ours2, scoped2 = trio_best_of_pair(
        opts.repeat + 2, lambda: _batch_ours(n), lambda: _batch_floor(n, own_scopes=True)
    )
    return [
        Row("call_batch of 1,000 (per call)", ours / n, floor / n, "s", budget=4.0),
        Row("call_batch of 1,000 vs a task in its own cancel scope", ours2 / n, scoped2 / n, "s", budget=2.3),
        Row("  of which the actor kernel (an actor and an ask per call)", kernel / n, floor2 / n, "s"),
        Row("  least for any actor per call (a cancel scope per task)", scoped / n, floor3 / n, "s"),
    ]


# -- invoke ----------------------------------------------------------------------


def bench_invoke(opts: Options) -> Row:
    n = opts.scale(2_000)
    flow = rt.Flow("bench-invoke", entry_point=trivial)

    def ours() -> None:
        for i in range(n):
            flow.invoke(i)

    def floor() -> None:
        for i in range(n):
            trio.run(_trivial, i)

    best_ours = best_floor = float("inf")
    for _ in range(opts.repeat):
        best_ours = min(best_ours, best_of(1, ours))
        best_floor = min(best_floor, best_of(1, floor))
    return Row("flow.invoke of a one-node flow", best_ours / n, best_floor / n, "s", budget=1.6)


async def _ainvoke_ours(n: int) -> float:
    flow = rt.Flow("bench-ainvoke", entry_point=trivial)
    start = time.perf_counter()
    for i in range(n):
        await flow.ainvoke(i)
    return time.perf_counter() - start


async def _ainvoke_floor(n: int) -> float:
    return await _sequential_floor(n)


class _Entry(actors.Actor[int, int]):
    """The entry node's actor and nothing of the runtime: it keeps a nursery, as a node does."""

    mailbox_size = 1

    async def handle(self, message: int) -> int:
        self.ref.stop_nowait()
        return await _trivial(message)


class _BareEntry(_Entry):
    keeps_nursery = False


async def _ainvoke_kernel(n: int, *, nursery: bool = True) -> float:
    """A run's Trio and actor structure only: a system in the caller's task, one actor, one ask."""
    entry = _Entry if nursery else _BareEntry
    start = time.perf_counter()
    for i in range(n):
        async with actors.open_system() as system:
            reply = system.spawn_nowait(entry(), name="entry").ask_nowait(i)
            await reply.wait()
    return time.perf_counter() - start


def bench_ainvoke(opts: Options) -> list[Row]:
    """``await flow.ainvoke(x)`` inside Trio against a fresh nursery + task doing the same call (issue 13).

    Two rows under it, against the same floor, show where the cost lies: the
    actor kernel doing a run's shape (a system opened in the caller's task,
    the entry actor with its nursery, one ask), and the least an actor per
    node costs (the same with no nursery in the actor).
    """
    n = opts.scale(2_000)
    ours, floor = trio_best_of_pair(opts.repeat, lambda: _ainvoke_ours(n), lambda: _ainvoke_floor(n))
    kernel, floor2 = trio_best_of_pair(opts.repeat, lambda: _ainvoke_kernel(n), lambda: _ainvoke_floor(n))
    bare, floor3 = trio_best_of_pair(
        opts.repeat, lambda: _ainvoke_kernel(n, nursery=False), lambda: _ainvoke_floor(n)
    )
    return [
        Row("await flow.ainvoke of a one-node flow vs nursery + task", ours / n, floor / n, "s", budget=3.0),
        Row("  of which the actor kernel (system, entry actor, one ask)", kernel / n, floor2 / n, "s"),
        Row("  least for an actor per node (the same, no nursery in the actor)", bare / n, floor3 / n, "s"),
    ]


# -- memory per recorded request ----------------------------------------------------


@rt.function_node
async def _calls(n: int) -> int:
    for i in range(n):
        await rt.call(trivial, i)
    return n


def _peak_of_run(n: int) -> tuple[int, int]:
    """Peak bytes above the start of a run of *n* calls, and its recorded requests."""
    flow = rt.Flow("bench-memory", entry_point=_calls)
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = flow.run(n)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.status is rt.Status.COMPLETED
    return peak - base, len(result.state.requests)


def bench_memory(opts: Options) -> Row:
    _peak_of_run(10)  # warm up imports and caches outside the measurement
    empty, _ = _peak_of_run(0)
    peak, requests = _peak_of_run(_MEMORY_CALLS)
    per_request = (peak - empty) / (requests - 1)
    return Row(
        f"peak memory per recorded request ({_MEMORY_CALLS // 1000}k calls; floor = 2 KB budget)",
        per_request,
        _MEMORY_BUDGET_BYTES,
        "B",
        budget=1.0,
    )


BENCHMARKS = [bench_sequential, bench_batch, bench_invoke, bench_ainvoke, bench_memory]
