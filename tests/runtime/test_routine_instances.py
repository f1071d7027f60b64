"""What a routine was given is shared by its jobs; what it makes is each job's own (issue 11).

Each job makes its own instance of every routine from the routine's
constructor call (or factory), so collaborators handed to a constructor (a
channel, a list, a database connection) see every job's work, and nothing a
routine creates for itself crosses between jobs. No default step cap: large
jobs complete, and a runaway cycle is ended by the Flow's timeout.
"""

from __future__ import annotations

import collections
import itertools
import sqlite3
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

import runtime as rt
import runtime.testing as rtt

if TYPE_CHECKING:
    from collections.abc import Iterable


class Source(rt.Routine):
    """Emits each of the ``items`` it is triggered with, tagged with the job's ``tag``."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger", handler=self.send)
        self.define_event("output", ["tag", "item"])

    def send(self, tag: str, items: Iterable[object]) -> None:
        for item in items:
            self.emit("output", tag=tag, item=item)


class Forward(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.forward)
        self.define_event("output", ["tag", "item"])

    def forward(self, tag: str, item: object) -> None:
        self.emit("output", tag=tag, item=item)


class ToChannel(rt.Routine):
    """A sink given the sending end of a channel."""

    def __init__(self, send: trio.MemorySendChannel[tuple[str, object]]) -> None:
        super().__init__()
        self.send = send
        self.define_slot("input", handler=self.put)

    async def put(self, tag: str, item: object) -> None:
        await self.send.send((tag, item))


class ToList(rt.Routine):
    """A sink given a list to collect into."""

    def __init__(self, collector: list[tuple[str, object]]) -> None:
        super().__init__()
        self.collector = collector
        self.define_slot("input", handler=self.put)

    def put(self, tag: str, item: object) -> None:
        self.collector.append((tag, item))


def chain(*routines: tuple[str, rt.Routine], **flow_kwargs: object) -> rt.Flow[..., object]:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="chain", **flow_kwargs)  # type: ignore[arg-type]
    for routine_id, routine in routines:
        flow.add_routine(routine, routine_id)
    ids = [routine_id for routine_id, _ in routines]
    for a, b in itertools.pairwise(ids):
        flow.connect(a, "output", b, "input")
    return flow


# -- collaborators given to the constructor -------------------------------------------


@pytest.mark.parametrize("how", ["aexecute", "open_job"])
async def test_an_injected_channel_gets_every_emission_of_two_concurrent_jobs(how: str) -> None:
    send, receive = trio.open_memory_channel[tuple[str, object]](0)  # every send waits for the receiver
    flow = chain(("source", Source()), ("sink", ToChannel(send)))
    states: dict[str, rt.JobState] = {}

    async def one(tag: str) -> None:
        params = {"tag": tag, "items": range(100)}
        if how == "aexecute":
            states[tag] = await flow.aexecute("source", params)
        else:
            async with flow.open_job("source", params) as job:
                states[tag] = await job.wait()

    received: list[tuple[str, object]] = []
    async with trio.open_nursery() as nursery:

        async def receiver() -> None:
            async for message in receive:
                received.append(message)

        nursery.start_soon(receiver)
        async with trio.open_nursery() as jobs:
            jobs.start_soon(one, "a")
            jobs.start_soon(one, "b")
        await send.aclose()
    assert {tag: state.status for tag, state in states.items()} == {
        "a": rt.Status.COMPLETED,
        "b": rt.Status.COMPLETED,
    }
    for tag in "ab":
        assert [item for t, item in received if t == tag] == list(range(100))
    assert len(received) == 200


async def test_an_injected_list_collects_every_delivery_of_a_diamond_in_two_jobs() -> None:
    collector: list[tuple[str, object]] = []
    flow: rt.Flow[..., object] = rt.Flow(flow_id="diamond")
    flow.add_routine(Source(), "source")
    flow.add_routine(Forward(), "left")
    flow.add_routine(Forward(), "right")
    flow.add_routine(ToList(collector), "sink")
    for middle in ("left", "right"):
        flow.connect("source", "output", middle, "input")
        flow.connect(middle, "output", "sink", "input")
    states: list[rt.JobState] = []

    async def one(tag: str) -> None:
        states.append(await flow.aexecute("source", {"tag": tag, "items": range(1_000)}))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "a")
        nursery.start_soon(one, "b")
    assert [state.status for state in states] == [rt.Status.COMPLETED] * 2
    counts = collections.Counter(collector)
    assert counts == {(tag, i): 2 for tag in "ab" for i in range(1_000)}  # once through each side


async def test_an_injected_sqlite_connection_writes_every_row() -> None:
    class ToDb(rt.Routine):
        def __init__(self, conn: sqlite3.Connection) -> None:
            super().__init__()
            self.conn = conn
            self.define_slot("input", handler=self.write)

        def write(self, tag: str, item: object) -> None:
            self.conn.execute("INSERT INTO rows (tag, item) VALUES (?, ?)", (tag, item))

    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE rows (tag TEXT, item INTEGER)")
        flow = chain(("source", Source()), ("db", ToDb(conn)))
        first = await flow.aexecute("source", {"tag": "a", "items": range(500)})
        second = await flow.aexecute("source", {"tag": "b", "items": range(250)})
        assert (first.status, second.status) == (rt.Status.COMPLETED, rt.Status.COMPLETED)
        rows = conn.execute("SELECT tag, COUNT(*), SUM(item) FROM rows GROUP BY tag ORDER BY tag").fetchall()
        assert rows == [("a", 500, sum(range(500))), ("b", 250, sum(range(250)))]
    finally:
        conn.close()


async def test_a_routine_set_up_after_construction_works_in_a_job() -> None:
    # The Routilux pattern: a plain Routine with a slot added afterwards; a
    # handler bound to the routine; an attribute assigned from outside.
    collector: list[tuple[str, object]] = []
    plain_got: list[tuple[str, object]] = []
    plain = rt.Routine()
    plain.define_slot("input", handler=lambda tag, item: plain_got.append((tag, item)))

    class Sink(rt.Routine):
        def put(self, tag: str, item: object) -> None:
            self.out.append((tag, item))  # type: ignore[attr-defined]
            self.emit("output", tag=tag, item=item)  # from the job's instance, not the template

    sink = Sink()
    sink.define_slot("input", handler=sink.put)
    sink.define_event("output", ["tag", "item"])
    sink.out = collector  # type: ignore[attr-defined]
    flow = chain(("source", Source()), ("sink", sink), ("plain", plain))
    state = await flow.aexecute("source", {"tag": "a", "items": [1, 2]})
    assert state.status is rt.Status.COMPLETED, state.error
    assert collector == [("a", 1), ("a", 2)]
    assert plain_got == [("a", 1), ("a", 2)]
    assert [h.data for h in state.history if h.routine_id == "sink"] == [
        {"tag": "a", "item": 1},
        {"tag": "a", "item": 2},
    ]


async def test_state_a_routine_creates_is_each_jobs_own(autojump_clock: trio.testing.MockClock) -> None:
    class Keeper(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.kept: list[object] = []
            self.define_slot("input", handler=self.keep)

        async def keep(self, tag: str, item: object) -> None:
            self.kept.append(item)
            await trio.sleep(0.1)  # the two jobs interleave
            ctx = self.get_execution_context()
            assert ctx is not None
            ctx.job_state.update_routine_state(ctx.routine_id, {"kept": list(self.kept)})

    keeper = Keeper()
    flow = chain(("source", Source()), ("keeper", keeper))
    states: dict[str, rt.JobState] = {}

    async def one(tag: str, n: int) -> None:
        states[tag] = await flow.aexecute("source", {"tag": tag, "items": [f"{tag}{i}" for i in range(n)]})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "x", 3)
        nursery.start_soon(one, "y", 4)
    assert states["x"].get_routine_state("keeper") == {"kept": ["x0", "x1", "x2"]}
    assert states["y"].get_routine_state("keeper") == {"kept": ["y0", "y1", "y2", "y3"]}
    assert keeper.kept == []


# -- a constructor that cannot be called again ---------------------------------------------


class Recording(rt.Routine):
    """Records in a list it was given that its handler ran."""

    def __init__(self, ran: list[str]) -> None:
        super().__init__()
        self.ran = ran
        self.define_slot("trigger", handler=self.go)
        self.define_event("output", ["tag", "item"])

    def go(self, **kwargs: object) -> None:
        self.ran.append("ran")


def once_only() -> type[rt.Routine]:
    built: list[int] = []

    class OnceOnly(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            if built:
                msg = "OnceOnly holds the only handle to the device"
                raise RuntimeError(msg)
            built.append(1)
            self.define_slot("input")

    return OnceOnly


ONCE_ONLY_NOTE = (
    "Building routine 'device' for a job of flow 'chain': each job makes its own instance by calling "
    "OnceOnly() again. Make that safe to call once per job, or give add_routine() a factory that makes a "
    "fresh routine each time: flow.add_routine(lambda: OnceOnly(...), 'device')."
)


@pytest.mark.parametrize("how", ["aexecute", "open_job", "arun"])
async def test_a_constructor_that_fails_again_stops_the_job_before_any_routine_runs(how: str) -> None:
    ran: list[str] = []
    flow = chain(("first", Recording(ran)), ("device", once_only()()))
    before = rtt.current_tasks()

    async def start() -> None:
        if how == "aexecute":
            await flow.aexecute("first")
        elif how == "arun":
            await flow.arun()
        else:
            async with flow.open_job("first"):
                pass  # pragma: no cover - the job is never made

    with pytest.raises(RuntimeError, match=r"^OnceOnly holds the only handle to the device\n") as caught:
        await start()
    assert caught.value.__notes__ == [ONCE_ONLY_NOTE]
    assert ran == []
    assert rtt.current_tasks() == before


def test_execute_with_a_constructor_that_fails_again_runs_nothing() -> None:
    ran: list[str] = []
    flow = chain(("first", Recording(ran)), ("device", once_only()()))
    with pytest.raises(RuntimeError, match=r"^OnceOnly holds the only handle to the device\n") as caught:
        flow.execute("first")
    assert caught.value.__notes__ == [ONCE_ONLY_NOTE]
    assert ran == []


async def test_a_consumed_argument_is_refused_at_add_routine_and_a_factory_fixes_it() -> None:
    class FromRows(rt.Routine):
        def __init__(self, rows: Iterable[int]) -> None:
            super().__init__()
            self.rows = list(rows)
            self.define_slot("trigger", handler=self.send)
            self.define_event("output", ["tag", "item"])

        def send(self, tag: str) -> None:
            for row in self.rows:
                self.emit("output", tag=tag, item=row)

    def rows() -> Iterable[int]:
        yield from range(3)

    flow: rt.Flow[..., object] = rt.Flow(flow_id="rows")
    with pytest.raises(
        TypeError,
        match=r"^Flow\('rows'\)\.add_routine\(\): FromRows\(\.\.\.\) was given an iterator \(generator\) as its "
        r"argument 1\. Each job makes its own instance by calling the constructor again with the same arguments, "
        r"and an iterator is used up by the first job\. Pass a list, or a factory that makes a fresh routine for "
        r"each job: add_routine\(lambda: FromRows\(\.\.\.\), \.\.\.\)\.$",
    ):
        flow.add_routine(FromRows(rows()), "rows")
    assert dict(flow.routines) == {}
    collector: list[tuple[str, object]] = []
    assert flow.add_routine(lambda: FromRows(rows()), "rows") == "rows"
    flow.add_routine(ToList(collector), "sink")
    flow.connect("rows", "output", "sink", "input")
    for tag in "ab":
        assert (await flow.aexecute("rows", {"tag": tag})).status is rt.Status.COMPLETED
    assert collector == [(tag, i) for tag in "ab" for i in range(3)]


# -- no default step cap -------------------------------------------------------------------


class Count(rt.Routine):
    """Counts what it receives in a Counter it was given, under its own name."""

    def __init__(self, counts: collections.Counter[str], name: str) -> None:
        super().__init__()
        self.counts = counts
        self.name = name
        self.define_slot("input", handler=self.count)

    def count(self, tag: str, item: object) -> None:
        self.counts[self.name] += 1


async def test_a_chain_of_four_fed_30_000_records_completes() -> None:
    counts: collections.Counter[str] = collections.Counter()
    flow = chain(("source", Source()), ("a", Forward()), ("b", Forward()), ("sink", Count(counts, "sink")))
    state = await flow.aexecute("source", {"tag": "t", "items": range(30_000)})
    assert state.status is rt.Status.COMPLETED, state.error
    assert counts == {"sink": 30_000}
    assert state.metrics["steps"] == 1 + 3 * 30_000


async def test_a_fan_out_of_1_000_emissions_to_100_slots_completes() -> None:
    counts: collections.Counter[str] = collections.Counter()
    flow: rt.Flow[..., object] = rt.Flow(flow_id="fan-out")
    flow.add_routine(Source(), "source")
    for k in range(100):
        flow.add_routine(Count(counts, f"sink{k}"), f"sink{k}")
        flow.connect("source", "output", f"sink{k}", "input")
    state = await flow.aexecute("source", {"tag": "t", "items": range(1_000)})
    assert state.status is rt.Status.COMPLETED, state.error
    assert counts == {f"sink{k}": 1_000 for k in range(100)}
    assert state.metrics["steps"] == 1 + 100 * 1_000


class Loop(rt.Routine):
    """Sends every message back to itself, 10 ms later: a cycle that never ends."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.again)
        self.define_event("output", ["n"])

    async def again(self, n: int) -> None:
        await trio.sleep(0.01)
        self.emit("output", n=n + 1)


def self_cycle(**flow_kwargs: object) -> rt.Flow[..., object]:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="loop", **flow_kwargs)  # type: ignore[arg-type]
    flow.add_routine(Loop(), "loop")
    flow.connect("loop", "output", "loop", "input")
    return flow


async def test_a_self_cycle_without_a_limit_is_ended_by_the_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = await self_cycle(timeout=5.0005).aexecute("loop", {"n": 0})
    assert state.status is rt.Status.TIMED_OUT
    assert state.error is not None
    assert state.error.type == "runtime.RunTimeoutError"
    assert state.metrics["steps"] == 501  # the handler the timeout cut short counts
    assert trio.current_time() == pytest.approx(5.0005)


async def test_a_self_cycle_without_a_limit_is_ended_by_the_callers_cancel_scope(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flow = self_cycle()
    with trio.move_on_after(5):
        async with flow.open_job("loop", {"n": 0}) as job:
            await job.wait()
    assert job.status is rt.Status.CANCELLED
    assert job.state.metrics["steps"] == pytest.approx(500, abs=1)


async def test_an_explicit_step_limit_still_fails_the_job_with_its_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = await self_cycle(max_steps=10).aexecute("loop", {"n": 0})
    assert state.status is rt.Status.FAILED
    assert state.error is not None
    assert state.error.message == (
        f"Job {state.job_id!r} of flow 'loop' handled 10 messages, its max_steps, and routine 'loop' was about "
        "to handle another on slot 'input': a cycle that never ends? Make the cycle stop, or raise "
        "Flow(..., max_steps=...)."
    )
