"""Routine graphs against raw Trio doing the same work (issue 4's figures).

- event hop (chain of 4 routines): the entry routine emits n events, two
  routines forward each one, the last one counts them: three hops per
  event, inside one job. Floor: four raw tasks passing the same n messages
  over three memory channels of the routines' mailbox size.
- fan-out to 100 slots: the entry routine emits n events, each delivered to
  100 routines. Floor: one raw task sending each message to 100 memory
  channels, each read by its own task.
- job start + finish: a whole job of a two-routine flow (the entry emits one
  event to the other), one after another. Floor: opening a nursery with two
  tasks and a channel (one message through it) and closing it. A second,
  unbudgeted row measures the same actor structure with no runtime on top
  (a system, two actors, one message forwarded, the starter waiting for the
  end): what the kernel alone costs against the same floor.

Each figure is per event (per event and slot for fan-out) or per job.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, final

import trio

import actors
import runtime as rt
from runtime._job import _ROUTINE_MAILBOX

from ._harness import Options, Row, trio_best_of

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


@final
class _Source(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger", handler=self.send)
        self.define_event("out", ["i"])

    def send(self, n: int = 1) -> None:
        for i in range(n):
            self.emit("out", i=i)


@final
class _Forward(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.forward)
        self.define_event("out", ["i"])

    def forward(self, i: int) -> None:
        self.emit("out", i=i)


@final
class _Count(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.count)
        self.seen = 0

    def count(self, i: int) -> None:
        self.seen += 1


def _chain_flow() -> rt.Flow[..., object]:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="bench-chain")
    flow.add_routine(_Source(), "r0")
    flow.add_routine(_Forward(), "r1")
    flow.add_routine(_Forward(), "r2")
    flow.add_routine(_Count(), "r3")
    for a, b in (("r0", "r1"), ("r1", "r2"), ("r2", "r3")):
        flow.connect(a, "out", b, "input")
    return flow


def _fanout_flow(width: int) -> rt.Flow[..., object]:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="bench-fanout")
    flow.add_routine(_Source(), "source")
    for k in range(width):
        flow.add_routine(_Count(), f"sink{k}")
        flow.connect("source", "out", f"sink{k}", "input")
    return flow


def _check(state: rt.JobState) -> None:
    if state.status is not rt.Status.COMPLETED:
        raise RuntimeError(f"benchmark job ended {state.status}: {state.error}")


def _interleaved(
    repeat: int, ours: Callable[[], Awaitable[float]], floor: Callable[[], Awaitable[float]]
) -> tuple[float, float]:
    """Best of *repeat* tries each, ours and the floor taking turns, so a change in
    the machine's load between them does not skew the ratio."""
    best_ours = best_floor = float("inf")
    for _ in range(repeat):
        best_ours = min(best_ours, trio_best_of(1, ours))
        best_floor = min(best_floor, trio_best_of(1, floor))
    return best_ours, best_floor


# -- event hop through a chain ------------------------------------------------


async def _chain_ours(n: int) -> float:
    flow = _chain_flow()
    start = time.perf_counter()
    state = await flow.aexecute("r0", {"n": n})
    elapsed = time.perf_counter() - start
    _check(state)
    return elapsed


async def _chain_floor(n: int) -> float:
    channels = [trio.open_memory_channel[int](_ROUTINE_MAILBOX) for _ in range(3)]
    count = 0

    async def source(send: trio.MemorySendChannel[int]) -> None:
        async with send:
            for i in range(n):
                await send.send(i)

    async def forward(receive: trio.MemoryReceiveChannel[int], send: trio.MemorySendChannel[int]) -> None:
        async with send:
            async for i in receive:
                await send.send(i)

    async def sink(receive: trio.MemoryReceiveChannel[int]) -> None:
        nonlocal count
        async for _ in receive:
            count += 1

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(source, channels[0][0])
        nursery.start_soon(forward, channels[0][1], channels[1][0])
        nursery.start_soon(forward, channels[1][1], channels[2][0])
        nursery.start_soon(sink, channels[2][1])
    elapsed = time.perf_counter() - start
    assert count == n
    return elapsed


def bench_chain(opts: Options) -> Row:
    n = opts.scale(10_000)
    ours, floor = _interleaved(opts.repeat, lambda: _chain_ours(n), lambda: _chain_floor(n))
    return Row("event hop, chain of 4 routines (per event)", ours / n, floor / n, "s", budget=3.0)


# -- fan-out to 100 slots -----------------------------------------------------

_WIDTH = 100


async def _fanout_ours(n: int) -> float:
    flow = _fanout_flow(_WIDTH)
    start = time.perf_counter()
    state = await flow.aexecute("source", {"n": n})
    elapsed = time.perf_counter() - start
    _check(state)
    return elapsed


async def _fanout_floor(n: int) -> float:
    channels = [trio.open_memory_channel[int](_ROUTINE_MAILBOX) for _ in range(_WIDTH)]
    count = 0

    async def source() -> None:
        for i in range(n):
            for send, _ in channels:
                await send.send(i)
        for send, _ in channels:
            await send.aclose()

    async def sink(receive: trio.MemoryReceiveChannel[int]) -> None:
        nonlocal count
        async for _ in receive:
            count += 1

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _, receive in channels:
            nursery.start_soon(sink, receive)
        nursery.start_soon(source)
    elapsed = time.perf_counter() - start
    assert count == n * _WIDTH
    return elapsed


def bench_fanout(opts: Options) -> Row:
    n = opts.scale(1_000)
    ours, floor = _interleaved(opts.repeat, lambda: _fanout_ours(n), lambda: _fanout_floor(n))
    per = n * _WIDTH
    return Row(f"fan-out to {_WIDTH} slots (per delivery)", ours / per, floor / per, "s", budget=3.0)


# -- job start + finish -------------------------------------------------------


def _pair_flow() -> rt.Flow[..., object]:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="bench-pair")
    flow.add_routine(_Source(), "a")
    flow.add_routine(_Count(), "b")
    flow.connect("a", "out", "b", "input")
    return flow


async def _job_ours(n: int) -> float:
    flow = _pair_flow()
    await flow.aexecute("a")
    start = time.perf_counter()
    for _ in range(n):
        await flow.aexecute("a")
    return time.perf_counter() - start


async def _job_floor(n: int) -> float:
    async def producer(send: trio.MemorySendChannel[int]) -> None:
        async with send:
            await send.send(0)

    async def consumer(receive: trio.MemoryReceiveChannel[int]) -> None:
        async for _ in receive:
            pass

    start = time.perf_counter()
    for _ in range(n):
        send, receive = trio.open_memory_channel[int](_ROUTINE_MAILBOX)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer, send)
            nursery.start_soon(consumer, receive)
    return time.perf_counter() - start


@final
class _Forwarder(actors.Actor[int, None]):
    keeps_nursery = False

    def __init__(self) -> None:
        self.peer: actors.ActorRef[int, None] | None = None

    async def handle(self, message: int) -> None:
        assert self.peer is not None
        self.peer.tell_nowait(message)


@final
class _Last(actors.Actor[int, None]):
    keeps_nursery = False

    def __init__(self, done: trio.Event) -> None:
        self.done = done

    async def handle(self, message: int) -> None:
        self.done.set()


async def _job_kernel(n: int) -> float:
    """The actor structure of a two-routine job, and nothing else: a system,
    two actors, one message forwarded, the starter waiting for the end."""
    start = time.perf_counter()
    for _ in range(n):
        done = trio.Event()
        async with actors.open_system() as system:
            first = _Forwarder()
            last = system.spawn_nowait(_Last(done))
            ref = system.spawn_nowait(first)
            first.peer = last
            ref.tell_nowait(0)
            await done.wait()
            ref.stop_nowait()
            last.stop_nowait()
    return time.perf_counter() - start


def bench_job(opts: Options) -> list[Row]:
    n = opts.scale(5_000)
    ours, floor = _interleaved(2 * opts.repeat, lambda: _job_ours(n), lambda: _job_floor(n))
    kernel, floor2 = _interleaved(opts.repeat, lambda: _job_kernel(n), lambda: _job_floor(n))
    return [
        Row("job start + finish, two routines", ours / n, floor / n, "s", budget=2.0),
        Row("  of which the actor kernel (2 actors, 1 hop)", kernel / n, floor2 / n, "s"),
    ]


BENCHMARKS = [bench_chain, bench_fanout, bench_job]
