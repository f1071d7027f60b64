"""Executors against the primitive each is built on (issue 19's budgets: each <= 1.5x).

Each row is the round trip of a trivial plain node called with ``rt.call``
from an async node, one call at a time, against the bare primitive doing
the same call from plain Trio (or plain Python, for Ray):

- ``rt.threads()`` vs ``trio.to_thread.run_sync(fn, i)``;
- ``rt.processes()`` vs ``trio_parallel.run_sync(fn, i)`` (warm workers on both sides);
- ``rt.ray()`` vs ``ray.get(f.remote(i))``, on a local Ray with 2 CPUs started
  here (and shut down after). Without Ray installed the row is not measured,
  and says so on stderr.

Ours includes everything a node call costs: the request's actor, its
records, pickling the call before it is sent. Two rows without a budget
split that cost: the executor alone (``executor.run``, no node call) against
the same floor, for threads and processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings

import trio
import trio_parallel

import runtime as rt
from runtime._executor import Submission

from ._harness import Options, Row, best_of, trio_best_of_pair


def echo(i: int) -> int:
    return i


# Each node decorates a function of its own, as users write them: it pickles by name.
@rt.function_node(executor=rt.threads())
def on_threads(i: int) -> int:
    return i


@rt.function_node(executor=rt.processes())
def on_processes(i: int) -> int:
    return i


def on_ray(i: int) -> int:
    return i


# The node takes the function's place, so it pickles by name like the others. Ray is
# optional: without it on_ray stays a function, and bench_ray says it was not measured.
with contextlib.suppress(ImportError):
    on_ray = rt.function_node(executor=rt.ray())(on_ray)  # type: ignore[assignment]


@rt.function_node
async def _loop(node: rt.Node[[int], int], n: int) -> float:
    await rt.call(node, -1)  # warm: a worker process, a Ray worker
    start = time.perf_counter()
    for i in range(n):
        await rt.call(node, i)
    return time.perf_counter() - start


async def _ours(node: rt.Node[[int], int], n: int) -> float:
    return await rt.Flow("bench-executor", entry_point=_loop).ainvoke(node, n)


async def _threads_floor(n: int) -> float:
    await trio.to_thread.run_sync(echo, -1)
    start = time.perf_counter()
    for i in range(n):
        await trio.to_thread.run_sync(echo, i)
    return time.perf_counter() - start


async def _processes_floor(n: int) -> float:
    await trio_parallel.run_sync(echo, -1)
    start = time.perf_counter()
    for i in range(n):
        await trio_parallel.run_sync(echo, i)
    return time.perf_counter() - start


async def _executor_alone(executor: rt.Executor, n: int) -> float:
    await executor.run(Submission(echo, (-1,), {}, node="echo", request="r0"))
    start = time.perf_counter()
    for i in range(n):
        await executor.run(Submission(echo, (i,), {}, node="echo", request="r1"))
    return time.perf_counter() - start


def bench_threads(opts: Options) -> list[Row]:
    n = opts.scale(2_000)
    ours, floor = trio_best_of_pair(opts.repeat, lambda: _ours(on_threads, n), lambda: _threads_floor(n))
    alone, floor2 = trio_best_of_pair(
        opts.repeat, lambda: _executor_alone(rt.threads(), n), lambda: _threads_floor(n)
    )
    return [
        Row("rt.threads round trip vs trio.to_thread", ours / n, floor / n, "s", budget=1.5),
        Row("  rt.threads executor alone (no node call)", alone / n, floor2 / n, "s"),
    ]


def bench_processes(opts: Options) -> list[Row]:
    n = opts.scale(1_000)
    ours, floor = trio_best_of_pair(opts.repeat, lambda: _ours(on_processes, n), lambda: _processes_floor(n))
    alone, floor2 = trio_best_of_pair(
        opts.repeat, lambda: _executor_alone(rt.processes(), n), lambda: _processes_floor(n)
    )
    return [
        Row("rt.processes round trip vs trio_parallel", ours / n, floor / n, "s", budget=1.5),
        Row("  rt.processes executor alone (no node call)", alone / n, floor2 / n, "s"),
    ]


def bench_ray(opts: Options) -> list[Row]:
    try:
        import ray
    except ImportError:
        assert not isinstance(on_ray, rt.Node)
        print(
            "  executor: rt.ray row not measured: Ray is not installed (pip install '.[ray]')",
            file=sys.stderr,
        )
        return []
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # local only: no usage report leaves the machine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,
        )
    try:
        remote_echo = ray.remote(max_retries=0)(echo)
        n = opts.scale(500)

        def floor() -> float:
            ray.get(remote_echo.remote(-1))
            start = time.perf_counter()
            for i in range(n):
                ray.get(remote_echo.remote(i))
            return time.perf_counter() - start

        assert isinstance(on_ray, rt.Node)
        best_ours = best_floor = float("inf")
        for _ in range(opts.repeat):  # taking turns, as trio_best_of_pair does
            best_ours = min(
                best_ours, trio_best_of_pair(1, lambda: _ours(on_ray, n), trio.lowlevel.checkpoint)[0]
            )
            best_floor = min(best_floor, best_of(1, floor))
        return [
            Row("rt.ray round trip vs ray.get(f.remote())", best_ours / n, best_floor / n, "s", budget=1.5)
        ]
    finally:
        ray.shutdown()


BENCHMARKS = [bench_threads, bench_processes, bench_ray]
