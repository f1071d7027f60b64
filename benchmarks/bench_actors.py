"""The actor kernel against raw Trio doing the same work (issue 2's figures).

- ask round trip: ``await ref.ask(i)`` to an echo actor, one at a time. Floor:
  a raw task answering requests from a memory channel, each request carrying
  its own ``trio.Event`` for the reply.
- one-way send: ``await ref.tell(i)`` n times, then a graceful stop that drains
  them. Floor: ``await send.send(i)`` n times on a raw memory channel, then
  closing it and waiting for the receiving task to finish. ``tell`` is a cancel
  point but yields to the scheduler only when the mailbox is full, while a raw
  ``send()`` yields on every message: that is most of the difference.
- spawn + stop: spawn an idle actor and stop it, one after another. Floor:
  ``nursery.start_soon`` of a task blocked on a fresh channel pair, then closing
  the channel and waiting for the task to end.
- idle memory: bytes (``tracemalloc``) per idle actor, 10k of them. Floor: a
  bare task blocked on a channel pair of the same capacity.

Every channel, floor or mailbox, holds the kernel's default mailbox size.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import final

import trio
import trio.testing

import actors

from ._harness import Options, Row, trio_best_of_pair

_IDLE_ACTORS = 10_000
DEFAULT_MAILBOX_SIZE = actors.Actor.mailbox_size


@final
class _Echo(actors.Actor[int, int]):
    async def handle(self, message: int) -> int:
        return message


@final
class _Count(actors.Actor[int, None]):
    def __init__(self) -> None:
        self.count = 0

    async def handle(self, message: int) -> None:
        self.count += 1


@final
class _Request:
    __slots__ = ("done", "reply", "value")

    def __init__(self, value: int) -> None:
        self.value = value
        self.reply: int | None = None
        self.done = trio.Event()


# -- ask round trip ---------------------------------------------------------


async def _ask_ours(n: int) -> float:
    async with actors.open_system() as system:
        ref = await system.spawn(_Echo())
        await ref.ask(-1)
        start = time.perf_counter()
        for i in range(n):
            await ref.ask(i)
        return time.perf_counter() - start


async def _ask_floor(n: int) -> float:
    send, receive = trio.open_memory_channel[_Request](DEFAULT_MAILBOX_SIZE)

    async def server() -> None:
        async for request in receive:
            request.reply = request.value
            request.done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        start = time.perf_counter()
        for i in range(n):
            request = _Request(i)
            await send.send(request)
            await request.done.wait()
        elapsed = time.perf_counter() - start
        await send.aclose()
    return elapsed


def bench_ask(opts: Options) -> Row:
    n = opts.scale(20_000)
    ours, floor = trio_best_of_pair(opts.repeat, lambda: _ask_ours(n), lambda: _ask_floor(n))
    return Row("ask round trip", ours / n, floor / n, "s", budget=2.0)


# -- one-way send throughput ------------------------------------------------


async def _send_ours(n: int) -> float:
    async with actors.open_system() as system:
        actor = _Count()
        ref = await system.spawn(actor)
        await ref.ask(-1)
        start = time.perf_counter()
        for i in range(n):
            await ref.tell(i)
        await ref.stop()
        elapsed = time.perf_counter() - start
    assert actor.count == n + 1
    return elapsed


async def _send_floor(n: int) -> float:
    send, receive = trio.open_memory_channel[int](DEFAULT_MAILBOX_SIZE)
    count = 0

    async def consumer() -> None:
        nonlocal count
        async for _ in receive:
            count += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        for i in range(n):
            await send.send(i)
        await send.aclose()
    elapsed = time.perf_counter() - start
    assert count == n
    return elapsed


def bench_send(opts: Options) -> Row:
    n = opts.scale(100_000)
    ours, floor = trio_best_of_pair(opts.repeat, lambda: _send_ours(n), lambda: _send_floor(n))
    return Row("one-way send (per message)", ours / n, floor / n, "s", budget=2.0)


# -- spawn + stop -----------------------------------------------------------


async def _spawn_ours(n: int) -> float:
    async with actors.open_system() as system:
        start = time.perf_counter()
        for _ in range(n):
            ref = await system.spawn(_Echo())
            await ref.stop()
        return time.perf_counter() - start


async def _spawn_floor(n: int) -> float:
    async def idle(receive: trio.MemoryReceiveChannel[int], done: trio.Event) -> None:
        async for _ in receive:
            pass
        done.set()

    async with trio.open_nursery() as nursery:
        start = time.perf_counter()
        for _ in range(n):
            send, receive = trio.open_memory_channel[int](DEFAULT_MAILBOX_SIZE)
            done = trio.Event()
            nursery.start_soon(idle, receive, done)
            send.close()
            await done.wait()
        return time.perf_counter() - start


def bench_spawn(opts: Options) -> Row:
    n = opts.scale(10_000)
    ours, floor = trio_best_of_pair(opts.repeat, lambda: _spawn_ours(n), lambda: _spawn_floor(n))
    return Row("spawn + stop an actor", ours / n, floor / n, "s")


# -- idle memory per actor --------------------------------------------------


def _traced_bytes_since(base: int) -> int:
    current, _peak = tracemalloc.get_traced_memory()
    return current - base


async def _memory_ours(n: int) -> float:
    async with actors.open_system() as system:
        gc.collect()
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            refs = [system.spawn_nowait(_Echo()) for _ in range(n)]
            await trio.testing.wait_all_tasks_blocked()
            used = _traced_bytes_since(base)
        finally:
            tracemalloc.stop()
        assert len(refs) == n
        return used / n


async def _memory_floor(n: int) -> float:
    async def idle(receive: trio.MemoryReceiveChannel[int]) -> None:
        async for _ in receive:
            pass

    async with trio.open_nursery() as nursery:
        gc.collect()
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            sends = []
            for _ in range(n):
                send, receive = trio.open_memory_channel[int](DEFAULT_MAILBOX_SIZE)
                sends.append(send)
                nursery.start_soon(idle, receive)
            await trio.testing.wait_all_tasks_blocked()
            used = _traced_bytes_since(base)
        finally:
            tracemalloc.stop()
        for send in sends:
            send.close()
        return used / n


def bench_memory(opts: Options) -> Row:
    ours = trio.run(_memory_ours, _IDLE_ACTORS)
    floor = trio.run(_memory_floor, _IDLE_ACTORS)
    return Row(f"idle memory per actor ({_IDLE_ACTORS // 1000}k actors)", ours, floor, "B", budget=1.5)


BENCHMARKS = [bench_ask, bench_send, bench_spawn, bench_memory]
