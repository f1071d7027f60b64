"""``rt.SessionManager`` and ``rt.Session``: leases, builds, eviction, limits, metrics, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import TYPE_CHECKING

import attrs
import pytest
import trio
import trio.testing

import runtime as rt
from runtime import testing as rtt

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@rt.function_node
async def echo(message: object) -> object:
    return message


@rt.function_node
async def whoami(message: object) -> rt.RequestMetadata:
    return rt.request()


@rt.function_node
async def nap(seconds: float) -> float:
    await trio.sleep(seconds)
    return seconds


@rt.function_node
async def boom(message: str) -> None:
    raise ValueError(message)


ECHO = rt.Flow("echo", entry_point=echo)
NAP = rt.Flow("nap", entry_point=nap)


class Gauge:
    """Counts runs in flight, overall and per user, and keeps the peaks."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.per_user: dict[str | None, int] = {}
        self.user_peak: dict[str | None, int] = {}

    @contextlib.contextmanager
    def inside(self, user: str | None) -> AsyncIterator[None]:  # type: ignore[misc]
        self.now += 1
        self.peak = max(self.peak, self.now)
        n = self.per_user[user] = self.per_user.get(user, 0) + 1
        self.user_peak[user] = max(self.user_peak.get(user, 0), n)
        try:
            yield
        finally:
            self.now -= 1
            self.per_user[user] -= 1


def gauged_flow(gauge: Gauge) -> rt.Flow[[float], float]:
    @rt.function_node
    async def work(seconds: float) -> float:
        with gauge.inside(rt.request().user_id):
            await trio.sleep(seconds)
        return seconds

    return rt.Flow("gauged", entry_point=work)


class Builds:
    """A builder that records which task opened and closed each user's workflow."""

    def __init__(
        self, *, delay: float = 0.0, fail: int = 0, only: str | None = None, entry: rt.Node[..., object] = whoami
    ) -> None:
        self.only = only
        self.entry = entry
        self.delay = delay
        self.fail = fail
        self.calls = 0
        self.opened: list[tuple[str, trio.lowlevel.Task]] = []
        self.closed: list[tuple[str, trio.lowlevel.Task]] = []
        self.open_now: dict[str, int] = {}
        self.gate: trio.Event | None = None

    @contextlib.asynccontextmanager
    async def __call__(self, user_id: str) -> AsyncIterator[rt.Flow[[object], object]]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        await trio.sleep(self.delay)
        if self.fail and self.only in (None, user_id):
            self.fail -= 1
            raise ConnectionError(f"no model for {user_id}")
        task = trio.lowlevel.current_task()
        self.opened.append((user_id, task))
        self.open_now[user_id] = self.open_now.get(user_id, 0) + 1
        assert self.open_now[user_id] == 1, "two workflows of one user open at once"
        try:
            yield rt.Flow(f"flow-{user_id}", entry_point=self.entry)
        finally:
            self.open_now[user_id] -= 1
            self.closed.append((user_id, trio.lowlevel.current_task()))


# -- shared mode: runs, streams, metadata --------------------------------------


async def test_run_returns_the_result_and_nodes_see_the_request() -> None:
    async with (
        rt.SessionManager(workflow=rt.Flow("who", entry_point=whoami)) as manager,
        manager.session(
            user_id="ada",
            conversation_id="c1",
            user_message_id="m1",
            parent_id="step-7",
            parent_name="router",
            trace_id="t-1",
            headers={"x-tenant": "acme"},
            metadata={"plan": "pro"},
        ) as session,
    ):
        seen = await session.run("hello")
        again = await session.run("again")
    assert isinstance(seen, rt.RequestMetadata)
    assert (seen.user_id, seen.conversation_id, seen.user_message_id, seen.message) == ("ada", "c1", "m1", "hello")
    assert (seen.parent_id, seen.parent_name, seen.trace_id) == ("step-7", "router", "t-1")
    assert seen.headers == (("x-tenant", "acme"),)
    assert seen.extra == (("plan", "pro"),)
    assert seen.run_id is not None
    assert again.message == "again"
    assert again.run_id != seen.run_id
    assert session.user_id == "ada"
    assert session.conversation_id == "c1"


async def test_nothing_of_one_request_is_replayed_into_another() -> None:
    @rt.function_node
    async def meddle(message: object) -> rt.RequestMetadata:
        request = rt.request()
        if request.extra:
            dict(request.extra)["prefs"]["theme"] = "dark"  # type: ignore[index]
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            request.user_id = "mallory"  # type: ignore[misc]
        return request

    prefs = {"theme": "light"}
    async with rt.SessionManager(workflow=rt.Flow("meddle", entry_point=meddle)) as manager:
        async with manager.session(user_id="ada", conversation_id="c1", metadata={"prefs": prefs}) as session:
            first = await session.run(1)
            second = await session.run(2)
        async with manager.session() as anonymous:
            third = await anonymous.run(3)
    assert dict(first.extra)["prefs"] == {"theme": "dark"}
    assert dict(second.extra)["prefs"] == {"theme": "dark"}  # its own copy, changed by its own run
    assert prefs == {"theme": "light"}
    assert (third.user_id, third.conversation_id, third.extra) == (None, None, ())
    assert third.trace_id != first.trace_id


async def test_a_failing_run_raises_the_node_error_and_counts_it() -> None:
    async with rt.SessionManager(workflow=rt.Flow("boom", entry_point=boom)) as manager:
        async with manager.session(user_id="ada") as session:
            with pytest.raises(ValueError, match=r"^bad\n"):
                await session.run("bad")
        assert manager.metrics().error == 1
        assert manager.metrics("ada").error == 1


async def test_a_run_that_passes_its_timeout_is_counted_as_timed_out(autojump_clock: trio.testing.MockClock) -> None:
    flow = rt.Flow("slow", entry_point=nap, timeout=1)
    async with rt.SessionManager(workflow=flow) as manager, manager.session() as session:
        with pytest.raises(rt.RunTimeoutError):
            await session.run(5)
    metrics = manager.metrics()
    assert (metrics.requests, metrics.timed_out, metrics.error, metrics.ok) == (1, 1, 0, 0)


async def test_stream_gives_the_events_with_the_result_last() -> None:
    @rt.function_node
    async def chatty(message: str) -> str:
        await rt.broadcast("thinking")
        return message.upper()

    async with rt.SessionManager(workflow=rt.Flow("chatty", entry_point=chatty)) as manager:
        async with manager.session(user_id="ada") as session, session.stream("hi") as events:
            kinds = [event.kind async for event in events]
        assert kinds[-1] is rt.EventKind.RUN_FINISHED
        assert rt.EventKind.STREAM in kinds
        assert events.finished is not None
        assert events.finished.data["result"] == "'HI'"  # type: ignore[index]
        assert manager.metrics().ok == 1


async def test_leaving_a_stream_early_cancels_the_run_and_is_not_an_error() -> None:
    cleaned = trio.Event()

    @rt.function_node
    async def endless(message: str) -> None:
        try:
            while True:
                await rt.broadcast(message)
                await trio.lowlevel.checkpoint()
        finally:
            cleaned.set()

    async with (
        rt.SessionManager(workflow=rt.Flow("endless", entry_point=endless)) as manager,
        manager.session() as session,
    ):
        async with session.stream("tick") as events:
            async for event in events:
                if event.kind is rt.EventKind.STREAM:
                    break
        assert cleaned.is_set()
        metrics = manager.metrics()
        assert (metrics.cancelled, metrics.in_flight) == (1, 0)


async def test_a_failed_run_does_not_raise_from_its_stream() -> None:
    async with rt.SessionManager(workflow=rt.Flow("boom", entry_point=boom)) as manager:
        async with manager.session() as session, session.stream("bad") as events:
            async for _ in events:
                pass
        assert events.finished is not None
        assert events.finished.data["status"] == "failed"  # type: ignore[index]
        assert manager.metrics().error == 1


# -- bad input ---------------------------------------------------------------------


async def test_a_session_refuses_use_after_its_block() -> None:
    async with rt.SessionManager(workflow=ECHO) as manager:
        async with manager.session(user_id="ada") as session:
            assert not session.closed
        assert session.closed
        expected = (
            r"^This session \(user 'ada'\) was used after its `async with manager\.session\(\.\.\.\)` block "
            r"ended\. A session is good for its block only; open a new one for each request\.$"
        )
        with pytest.raises(rt.SessionClosedError, match=expected):
            await session.run("late")
        with pytest.raises(rt.SessionClosedError, match=expected):
            async with session.stream("late"):
                pass
        with pytest.raises(rt.SessionClosedError, match=expected):
            _ = session.workflow


async def test_a_manager_refuses_sessions_before_it_opens_and_after_it_shuts_down() -> None:
    manager = rt.SessionManager(workflow=ECHO, name="api")
    with pytest.raises(
        rt.SessionClosedError,
        match=r"^SessionManager 'api' is not open\. Open sessions inside `async with rt\.SessionManager\(\.\.\.\) as manager:`\.$",
    ):
        async with manager.session():
            pass
    async with manager:
        pass
    with pytest.raises(
        rt.SessionClosedError,
        match=(
            r"^SessionManager 'api' is shut down and takes no new sessions: its `async with` block has ended\. "
            r"Open sessions inside the block\.$"
        ),
    ):
        async with manager.session():
            pass
    with pytest.raises(
        RuntimeError,
        match=(
            r"^SessionManager 'api' was already opened once; a manager cannot be reopened after shutdown\. "
            r"Build a new rt\.SessionManager\(\.\.\.\)\.$"
        ),
    ):
        async with manager:
            pass


async def test_per_user_mode_needs_a_user_id() -> None:
    async with rt.SessionManager(builder=Builds(), name="api") as manager:
        with pytest.raises(
            TypeError,
            match=(
                r"^SessionManager 'api' builds one workflow per user, so session\(\) needs a user: "
                r"call manager\.session\(user_id=\.\.\.\)\.$"
            ),
        ):
            manager.session(conversation_id="c1")


@pytest.mark.parametrize("limit", [0, -3])
def test_max_concurrency_below_one_is_refused(limit: int) -> None:
    with pytest.raises(
        ValueError,
        match=rf"^SessionManager\(max_concurrency={limit}\): max_concurrency must be 1 or more, or None for no limit\.$",
    ):
        rt.SessionManager(workflow=ECHO, max_concurrency=limit)
    with pytest.raises(
        ValueError,
        match=(
            rf"^SessionManager\(per_user_max_concurrency={limit}\): per_user_max_concurrency must be 1 or more, "
            r"or None for no limit\.$"
        ),
    ):
        rt.SessionManager(workflow=ECHO, per_user_max_concurrency=limit)


def test_other_bad_constructor_arguments_are_refused() -> None:
    with pytest.raises(
        TypeError,
        match=(
            r"^SessionManager\(max_concurrency=2\.5\): max_concurrency must be a whole number of runs, "
            r"or None for no limit\.$"
        ),
    ):
        rt.SessionManager(workflow=ECHO, max_concurrency=2.5)  # type: ignore[arg-type]
    both = r"^SessionManager needs exactly one of workflow= \(one workflow shared by every session\) or builder="
    with pytest.raises(TypeError, match=both):
        rt.SessionManager()
    with pytest.raises(TypeError, match=both):
        rt.SessionManager(workflow=ECHO, builder=Builds())
    with pytest.raises(
        TypeError, match=r"^SessionManager\(workflow=\.\.\.\) got int 3, which is not a runnable workflow\. Pass an rt\.Flow\.$"
    ):
        rt.SessionManager(workflow=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^SessionManager\(idle_timeout=0\): idle_timeout must be a positive"):
        rt.SessionManager(builder=Builds(), idle_timeout=0)
    with pytest.raises(ValueError, match=r"^SessionManager\(shutdown_grace=-1\): shutdown_grace must be 0 or more"):
        rt.SessionManager(workflow=ECHO, shutdown_grace=-1)


async def test_a_builder_that_raises_gives_a_build_error_and_backs_off(autojump_clock: trio.testing.MockClock) -> None:
    builds = Builds(fail=3, only="ada")
    async with rt.SessionManager(builder=builds, build_retry_backoff=2.0) as manager:
        with pytest.raises(
            rt.WorkflowBuildError,
            match=(
                r"^Building the workflow for user 'ada' failed: builder\('ada'\) raised ConnectionError: "
                r"no model for ada\. Fix the builder; sessions of this user get this error until a build succeeds\.$"
            ),
        ) as first:
            async with manager.session(user_id="ada"):
                pass
        assert isinstance(first.value.__cause__, ConnectionError)
        backing_off = (
            r"^The workflow for user 'ada' is not built: its builder failed 1 time in a row, last with "
            r"ConnectionError: no model for ada\. The next build is tried after a back-off of 2 s, in 2 s\.$"
        )
        with pytest.raises(rt.WorkflowBuildError, match=backing_off):
            async with manager.session(user_id="ada"):
                pass
        assert builds.calls == 1
        await trio.sleep(2)
        with pytest.raises(rt.WorkflowBuildError, match=r"^Building the workflow"):
            async with manager.session(user_id="ada"):
                pass
        assert builds.calls == 2
        # Doubled: 4 s now.
        await trio.sleep(3)
        with pytest.raises(rt.WorkflowBuildError, match=r"failed 2 times in a row.*back-off of 4 s, in 1 s\.$"):
            async with manager.session(user_id="ada"):
                pass
        # Other users are not held back.
        async with manager.session(user_id="bob") as session:
            assert (await session.run("hi")).user_id == "bob"
        await trio.sleep(1)
        with pytest.raises(rt.WorkflowBuildError):
            async with manager.session(user_id="ada"):
                pass
        await trio.sleep(8)
        async with manager.session(user_id="ada") as session:
            assert (await session.run("at last")).message == "at last"
        metrics = manager.metrics("ada")
        assert (metrics.builds, metrics.build_failures) == (1, 3)


async def test_the_build_back_off_doubles_up_to_its_maximum(autojump_clock: trio.testing.MockClock) -> None:
    """The back-off the error states is the one the manager waits: 1, 2, then 3 s (capped, not 4)."""
    builds = Builds(fail=10, only="ada")
    async with rt.SessionManager(builder=builds, build_retry_backoff=1.0, max_build_retry_backoff=3.0) as manager:
        for failures, backoff in [(1, 1), (2, 2), (3, 3), (4, 3)]:
            with pytest.raises(rt.WorkflowBuildError, match=r"^Building the workflow"):
                async with manager.session(user_id="ada"):
                    pass
            assert builds.calls == failures
            with pytest.raises(
                rt.WorkflowBuildError,
                match=rf"failed {failures} times? in a row.*back-off of {backoff} s, in {backoff} s\.$",
            ):
                async with manager.session(user_id="ada"):
                    pass
            await trio.sleep(backoff - 0.5)
            with pytest.raises(rt.WorkflowBuildError, match=rf"back-off of {backoff} s, in 0\.5 s\.$"):
                async with manager.session(user_id="ada"):
                    pass
            await trio.sleep(0.5)


async def test_a_builder_that_gives_something_unrunnable_is_refused_and_closed() -> None:
    closed: list[str] = []

    @contextlib.asynccontextmanager
    async def gives_a_string(user_id: str) -> AsyncIterator[str]:
        try:
            yield "not a flow"
        finally:
            closed.append(user_id)

    def gives_an_int(user_id: str) -> int:
        return 3

    async with rt.SessionManager(builder=gives_an_int) as manager:  # type: ignore[arg-type]
        with pytest.raises(
            rt.WorkflowBuildError,
            match=(
                r"^Building the workflow for user 'ada' failed: builder\('ada'\) gave int 3, which is not a runnable "
                r"workflow\. Return an rt\.Flow, an awaitable of one, or an async context manager \(or async "
                r"generator\) that yields one\.$"
            ),
        ):
            async with manager.session(user_id="ada"):
                pass
    async with rt.SessionManager(builder=gives_a_string) as manager:  # type: ignore[arg-type]
        with pytest.raises(rt.WorkflowBuildError, match=r"gave str 'not a flow', which is not a runnable workflow"):
            async with manager.session(user_id="ada"):
                pass
        assert closed == ["ada"]

    @rt.function_node
    async def no_arguments() -> None:
        pass

    async with rt.SessionManager(builder=lambda user_id: rt.Flow("none", entry_point=no_arguments)) as manager:
        with pytest.raises(
            rt.WorkflowBuildError,
            match=re.escape("gave Flow <Flow 'none' entry_point=no_arguments>, whose entry point no_arguments() cannot take"),
        ):
            async with manager.session(user_id="ada"):
                pass


# -- per-user workflows: builds ---------------------------------------------------


async def test_every_form_of_builder_is_accepted() -> None:
    def plain(user_id: str) -> rt.Flow[[object], object]:
        return rt.Flow(user_id, entry_point=echo)

    async def awaitable(user_id: str) -> rt.Flow[[object], object]:
        await trio.lowlevel.checkpoint()
        return rt.Flow(user_id, entry_point=echo)

    events: list[str] = []

    async def generator(user_id: str) -> AsyncIterator[rt.Flow[[object], object]]:
        events.append("open")
        yield rt.Flow(user_id, entry_point=echo)
        events.append("close")

    @contextlib.contextmanager
    def sync_cm(user_id: str) -> AsyncIterator[rt.Flow[[object], object]]:  # type: ignore[misc]
        events.append("sync open")
        yield rt.Flow(user_id, entry_point=echo)
        events.append("sync close")

    for builder in (plain, awaitable, generator, sync_cm, Builds()):
        async with (
            rt.SessionManager(builder=builder) as manager,  # type: ignore[arg-type]
            manager.session(user_id="ada") as session,
        ):
            assert await session.run(7) is not None
    assert events == ["open", "close", "sync open", "sync close"]


async def test_one_build_per_user_and_none_blocks_another_user(autojump_clock: trio.testing.MockClock) -> None:
    builds = Builds(delay=1.0)
    ada_gate = trio.Event()
    results: dict[str, list[str]] = {"ada": [], "bob": []}
    bob_done = trio.Event()

    async def ask(user: str) -> None:
        async with manager.session(user_id=user) as session:
            results[user].append((await session.run(user)).user_id)  # type: ignore[union-attr]
        if user == "bob":
            bob_done.set()

    real = builds.__call__

    @contextlib.asynccontextmanager
    async def builder(user_id: str) -> AsyncIterator[rt.Flow[[object], object]]:
        if user_id == "ada":
            await ada_gate.wait()
        async with real(user_id) as flow:
            yield flow

    async with rt.SessionManager(builder=builder) as manager:
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(ask, "ada")
            nursery.start_soon(ask, "bob")
            await trio.testing.wait_all_tasks_blocked()
            with trio.fail_after(5):
                await bob_done.wait()
            assert results["ada"] == []  # still building: bob did not wait for it
            ada_gate.set()
        assert results == {"ada": ["ada"] * 5, "bob": ["bob"]}
        assert builds.calls == 2
        assert manager.metrics().builds == 2


async def test_a_requester_cancelled_mid_build_leaves_the_build_cached(autojump_clock: trio.testing.MockClock) -> None:
    builds = Builds(delay=10.0)
    async with rt.SessionManager(builder=builds) as manager:
        with trio.move_on_after(1) as scope:
            async with manager.session(user_id="ada"):
                pytest.fail("the build takes 10 s")
        assert scope.cancelled_caught
        await trio.sleep(20)
        assert manager.users() == ["ada"]
        assert builds.calls == 1
        async with manager.session(user_id="ada") as session:
            await session.run("hi")
        assert builds.calls == 1
    assert [user for user, _ in builds.closed] == ["ada"]


async def test_a_build_failing_after_its_requester_left_is_closed_by_its_own_task() -> None:
    entered: list[trio.lowlevel.Task] = []
    exited: list[trio.lowlevel.Task] = []
    gate = trio.Event()

    @contextlib.asynccontextmanager
    async def builder(user_id: str) -> AsyncIterator[str]:
        entered.append(trio.lowlevel.current_task())
        try:
            await gate.wait()
            yield "oops"
        finally:
            exited.append(trio.lowlevel.current_task())

    async with rt.SessionManager(builder=builder) as manager:  # type: ignore[arg-type]
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def requester() -> None:
                    async with manager.session(user_id="ada"):
                        pass

                nursery.start_soon(requester)
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert entered == exited
        assert len(entered) == 1
        assert manager.metrics("ada").build_failures == 1


async def test_a_builder_is_entered_and_exited_by_the_same_task() -> None:
    builds = Builds()
    async with rt.SessionManager(builder=builds) as manager:
        for user in ("ada", "bob"):
            async with manager.session(user_id=user) as session:
                await session.run(user)
    assert dict(builds.opened) == dict(builds.closed)
    assert builds.opened[0][1] is not builds.opened[1][1]
    assert trio.lowlevel.current_task() not in {task for _, task in builds.opened}


# -- per-user workflows: idle eviction ---------------------------------------------


async def test_an_idle_workflow_is_evicted_after_the_timeout_and_rebuilt(autojump_clock: trio.testing.MockClock) -> None:
    builds = Builds()
    async with rt.SessionManager(builder=builds, idle_timeout=10) as manager:
        async with manager.session(user_id="ada") as session:
            await session.run(1)
        await trio.sleep(9.5)
        assert manager.users() == ["ada"]
        await trio.sleep(1)
        await trio.testing.wait_all_tasks_blocked()
        assert manager.users() == []
        assert [user for user, _ in builds.closed] == ["ada"]
        metrics = manager.metrics("ada")
        assert (metrics.ok, metrics.builds, metrics.evictions, metrics.loaded) == (1, 1, 1, 0)
        async with manager.session(user_id="ada") as session:
            await session.run(2)
        metrics = manager.metrics("ada")
        assert (metrics.ok, metrics.builds, metrics.evictions, metrics.loaded) == (2, 2, 1, 1)


async def test_a_leased_workflow_is_never_evicted(autojump_clock: trio.testing.MockClock) -> None:
    builds = Builds()
    async with rt.SessionManager(builder=builds, idle_timeout=1) as manager:
        async with manager.session(user_id="ada") as session:
            await trio.sleep(100)
            assert manager.users() == ["ada"]
            await session.run("still here")
        assert builds.closed == []


async def test_each_use_pushes_the_eviction_deadline_back(autojump_clock: trio.testing.MockClock) -> None:
    async with rt.SessionManager(builder=Builds(), idle_timeout=10) as manager:
        for _ in range(5):
            async with manager.session(user_id="ada") as session:
                await session.run(0)
            await trio.sleep(8)
        assert manager.users() == ["ada"]
        await trio.sleep(2.5)
        await trio.testing.wait_all_tasks_blocked()
        assert manager.users() == []
        assert manager.metrics("ada").builds == 1


async def test_a_run_in_flight_keeps_its_workflow_loaded_after_its_session_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    builds = Builds(entry=nap)

    def loaded() -> tuple[int, int, int]:
        metrics = manager.metrics("ada")
        return metrics.builds, metrics.evictions, metrics.loaded

    async with rt.SessionManager(builder=builds, idle_timeout=5) as manager, trio.open_nursery() as nursery:
        async with manager.session(user_id="ada") as session:
            nursery.start_soon(session.run, 10)  # outlives the session's block
            await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(8)
        await trio.testing.wait_all_tasks_blocked()
        # Past idle_timeout since the lease ended, but a run is in flight: not idle.
        assert loaded() == (1, 0, 1)
        async with manager.session(user_id="ada") as session:
            # The loaded workflow, at once: no wait for an eviction to finish, no build.
            assert trio.current_time() == 8
            assert await session.run(0) == 0
        assert loaded() == (1, 0, 1)
        # The run ends at 10, after the last lease (8): the idle timer counts from 10.
        await trio.sleep(14.5 - trio.current_time())
        await trio.testing.wait_all_tasks_blocked()
        assert loaded() == (1, 0, 1)
        await trio.sleep(0.5)
        await trio.testing.wait_all_tasks_blocked()
        assert loaded() == (1, 1, 0)
        assert manager.users() == []
        assert [user for user, _ in builds.closed] == ["ada"]
    assert manager.metrics("ada").ok == 2


# -- concurrency -----------------------------------------------------------------


async def test_runs_never_exceed_the_global_limit(autojump_clock: trio.testing.MockClock) -> None:
    gauge = Gauge()
    async with rt.SessionManager(workflow=gauged_flow(gauge), max_concurrency=3) as manager:

        async def one(i: int) -> None:
            async with manager.session(user_id=f"u{i % 4}") as session:
                await session.run(1.0)

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(one, i)
            await trio.testing.wait_all_tasks_blocked()
            metrics = manager.metrics()
            assert (metrics.running, metrics.queued) == (3, 17)
    assert gauge.peak == 3
    metrics = manager.metrics()
    assert (metrics.requests, metrics.ok) == (20, 20)
    assert metrics.run_time == pytest.approx(20.0)
    assert metrics.max_queue_time == pytest.approx(6.0)
    assert metrics.queue_time == pytest.approx(3 * (1 + 2 + 3 + 4 + 5 + 6) - 3 * 6 + 2 * 6)


async def test_runs_never_exceed_the_per_user_limit(autojump_clock: trio.testing.MockClock) -> None:
    gauge = Gauge()
    flow = gauged_flow(gauge)
    async with rt.SessionManager(builder=lambda user: flow, max_concurrency=4, per_user_max_concurrency=2) as manager:

        async def one(user: str) -> None:
            async with manager.session(user_id=user) as session:
                await session.run(1.0)

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(one, "ada")
            nursery.start_soon(one, "bob")
            nursery.start_soon(one, "cy")
            await trio.testing.wait_all_tasks_blocked()
            # ada's queued runs hold no global slot: bob and cy run at once.
            assert gauge.per_user == {"ada": 2, "bob": 1, "cy": 1}
    assert gauge.user_peak["ada"] == 2
    assert gauge.peak == 4
    assert manager.metrics("ada").max_queue_time == pytest.approx(2.0)


async def test_fail_fast_raises_busy_instead_of_queueing(autojump_clock: trio.testing.MockClock) -> None:
    async with (
        rt.SessionManager(workflow=NAP, max_concurrency=1, fail_fast=True, name="api") as manager,
        manager.session(user_id="ada") as first,
        manager.session(user_id="bob") as second,
    ):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(first.run, 5)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(
                rt.BusyError,
                match=(
                    r"^No free run slot: max_concurrency=1 runs are already in flight, and SessionManager "
                    r"'api' was opened with fail_fast=True\. Retry later, or open it with fail_fast=False to queue\.$"
                ),
            ):
                await second.run(1)
            with pytest.raises(rt.BusyError):
                async with second.stream(1):
                    pytest.fail("no slot")
        assert await second.run(1) == 1
    metrics = manager.metrics()
    assert (metrics.requests, metrics.ok, metrics.rejected) == (4, 2, 2)


async def test_fail_fast_per_user(autojump_clock: trio.testing.MockClock) -> None:
    async with (
        rt.SessionManager(builder=lambda user: NAP, per_user_max_concurrency=1, fail_fast=True) as manager,
        manager.session(user_id="ada") as session,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(session.run, 5)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(
            rt.BusyError,
            match=r"^No free run slot: user 'ada' already has per_user_max_concurrency=1 runs in flight, and",
        ):
            await session.run(1)


async def test_a_cancelled_caller_cancels_its_run_before_its_slot_is_freed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timeline: list[tuple[str, float]] = []

    @rt.function_node
    async def slow(name: str) -> str:
        timeline.append((f"{name} start", trio.current_time()))
        try:
            await trio.sleep(100)
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(3)  # a slow clean-up
            timeline.append((f"{name} end", trio.current_time()))
        return name

    async with (
        rt.SessionManager(workflow=rt.Flow("slow", entry_point=slow), max_concurrency=1) as manager,
        manager.session(user_id="ada") as a,
        manager.session(user_id="bob") as b,
        trio.open_nursery() as nursery,
    ):
        with trio.move_on_after(1):
            nursery.start_soon(b.run, "second")  # queued behind the first
            await a.run("first")
        # The caller is back only once its run has ended, and the slot was not
        # given to the second run before that.
        assert timeline == [("first start", 0.0), ("first end", 4.0)]
        await trio.testing.wait_all_tasks_blocked()
        assert timeline[2] == ("second start", 4.0)
        assert manager.metrics().running == 1
        nursery.cancel_scope.cancel()
    metrics = manager.metrics()
    assert (metrics.requests, metrics.cancelled, metrics.in_flight) == (2, 2, 0)


# -- shutdown ---------------------------------------------------------------------


async def test_shutdown_lets_open_sessions_finish_within_the_grace(autojump_clock: trio.testing.MockClock) -> None:
    results: list[float] = []
    async with trio.open_nursery() as outer:
        async with rt.SessionManager(builder=lambda user: NAP, shutdown_grace=10) as manager:
            opened = trio.Event()

            async def request() -> None:
                async with manager.session(user_id="ada") as session:
                    opened.set()
                    results.append(await session.run(3))

            outer.start_soon(request)
            await opened.wait()
            start = trio.current_time()
        # Left the block: it waited for the session, which ended well within the grace.
        assert trio.current_time() - start == pytest.approx(3)
        assert results == [3]


async def test_shutdown_refuses_new_sessions_while_draining(autojump_clock: trio.testing.MockClock) -> None:
    errors: list[BaseException] = []
    opened = trio.Event()
    async with (
        trio.open_nursery() as outer,
        rt.SessionManager(workflow=NAP, shutdown_grace=10, name="api") as manager,
    ):

        async def holder() -> None:
            async with manager.session() as session:
                opened.set()
                await session.run(5)

        async def latecomer() -> None:
            await trio.sleep(1)
            try:
                async with manager.session():
                    pass
            except rt.SessionClosedError as exc:
                errors.append(exc)

        outer.start_soon(holder)
        outer.start_soon(latecomer)
        await opened.wait()
    assert len(errors) == 1
    assert re.match(
        r"^SessionManager 'api' is shutting down and takes no new sessions: its `async with` block has ended\. "
        r"Open sessions inside the block\.$",
        str(errors[0]),
    )


async def test_shutdown_cancels_what_is_left_after_the_grace(autojump_clock: trio.testing.MockClock) -> None:
    builds = Builds(entry=nap)
    errors: list[BaseException] = []
    before = rtt.current_tasks()
    async with trio.open_nursery() as outer:
        async with rt.SessionManager(builder=builds, shutdown_grace=5, name="api") as manager:
            ready = trio.Event()

            async def request() -> None:
                async with manager.session(user_id="ada") as session:
                    assert session.workflow.name == "flow-ada"
                    ready.set()
                    try:
                        await session.run(1000)
                    except rt.SessionClosedError as exc:
                        errors.append(exc)

            outer.start_soon(request)
            await ready.wait()
            start = trio.current_time()
        assert trio.current_time() - start == pytest.approx(5)
    assert len(errors) == 1
    assert re.match(
        r"^The run was cancelled because SessionManager 'api' shut down: this session was still open when its "
        r"shutdown_grace of 5 s ran out\.$",
        str(errors[0]),
    )
    assert builds.opened == builds.closed
    assert rtt.current_tasks() == before


async def test_shutdown_cancels_a_build_in_progress_and_closes_it(autojump_clock: trio.testing.MockClock) -> None:
    builds = Builds()
    builds.gate = trio.Event()
    errors: list[BaseException] = []
    async with (
        trio.open_nursery() as outer,
        rt.SessionManager(builder=builds, shutdown_grace=2) as manager,
    ):

        async def request() -> None:
            try:
                async with manager.session(user_id="ada"):
                    pytest.fail("the build never finishes")
            except rt.SessionClosedError as exc:
                errors.append(exc)

        outer.start_soon(request)
        await trio.testing.wait_all_tasks_blocked()
    assert builds.calls == 1
    assert builds.opened == []
    assert len(errors) == 1
    assert str(errors[0]) == (
        "SessionManager 'session-manager' shut down before the workflow of user 'ada' was built, "
        "so this session was not opened."
    )


async def test_nothing_outlives_the_manager_block(autojump_clock: trio.testing.MockClock) -> None:
    before = rtt.current_tasks()
    builds = Builds()
    async with rt.SessionManager(builder=builds, idle_timeout=None) as manager:
        for user in ("ada", "bob", "cy"):
            async with manager.session(user_id=user) as session:
                await session.run(user)
        assert len(rtt.current_tasks()) > len(before)
    assert rtt.current_tasks() == before
    assert dict(builds.opened) == dict(builds.closed)
    assert manager.metrics().loaded == 0


async def test_an_error_in_the_block_cancels_everything_and_propagates_unwrapped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    before = rtt.current_tasks()
    builds = Builds()

    async def fails_inside() -> None:
        async with (
            rt.SessionManager(builder=builds, shutdown_grace=100) as manager,
            manager.session(user_id="ada"),
        ):
            raise KeyError("oops")

    with pytest.raises(KeyError, match="oops"):
        await fails_inside()
    assert trio.current_time() < 100
    assert builds.opened == builds.closed
    assert rtt.current_tasks() == before


# -- metrics ---------------------------------------------------------------------


async def test_metrics_are_frozen_snapshots_that_add_up(autojump_clock: trio.testing.MockClock) -> None:
    async with rt.SessionManager(workflow=rt.Flow("boom", entry_point=boom)) as manager:
        async with manager.session(user_id="ada") as session:
            snapshot = manager.metrics()
            assert snapshot.active_leases == 1
            assert manager.metrics("ada").active_leases == 1
            for _ in range(3):
                with pytest.raises(ValueError, match="x"):
                    await session.run("x")
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            snapshot.requests = 5  # type: ignore[misc]
        assert snapshot.requests == 0
        metrics = manager.metrics()
        assert metrics.requests == metrics.finished + metrics.in_flight == 3
        assert metrics.active_leases == 0
        assert manager.metrics("nobody") == rt.WorkflowMetrics("nobody")
        assert metrics.mean_queue_time == 0.0


async def test_calling_session_builds_railtracks_block_not_a_lease() -> None:
    """A lease only comes from manager.session(); calling rt.Session is Railtracks' deprecated block."""
    with pytest.warns(rt.TrioflowDeprecationWarning, match=r"^rt\.Session\(\.\.\.\) is deprecated"):
        block = rt.Session()
    assert isinstance(block, rt.Session)
    assert not hasattr(block, "workflow")


@pytest.mark.parametrize("seed", range(8))
def test_a_run_that_ended_before_a_shutdown_cut_its_wind_down_counts_as_it_ended(seed: int) -> None:
    """The run completes at the very moment the manager shuts down with no grace:
    whichever task the scheduler runs first, the run is counted as it ended, and
    a caller that saw it complete sees the same in the metrics."""

    @rt.function_node
    async def work(message: object) -> str:
        try:
            await trio.sleep(1)
            return "done"
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.5)

    seen: list[str] = []

    async def main() -> rt.WorkflowMetrics:
        manager = rt.SessionManager(workflow=rt.Flow("work", entry_point=work), shutdown_grace=0)
        async with trio.open_nursery() as clients:

            async def client() -> None:
                with contextlib.suppress(rt.SessionClosedError):
                    async with manager.session() as session, session.stream("go") as events:
                        async for _ in events:
                            pass
                        assert events.finished is not None
                        seen.append(events.finished.data["status"])  # type: ignore[index]

            async with manager:
                clients.start_soon(client)
                await trio.sleep(1.5)  # the node's clean-up ends now too
        return manager.metrics()

    with rtt.deterministic_scheduling(seed):
        metrics = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert metrics.requests == 1
    counted = {"completed": metrics.ok, "cancelled": metrics.cancelled}
    assert sum(counted.values()) == 1
    for status in seen:
        assert counted[status] == 1, (status, metrics)


# -- routine graphs, and what is left ------------------------------------------------


async def test_a_routine_graph_serves_sessions_with_the_message_as_entry_params() -> None:
    class Upper(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.take)

        def take(self, data: object = None, **kwargs: object) -> None:
            self.send_output("answer", text=f"{rt.request().user_id}: {str(data).upper()}")

    def build(user_id: str) -> rt.Flow[..., object]:  # type: ignore[explicit-any]
        flow: rt.Flow[..., object] = rt.Flow(flow_id=f"graph-{user_id}")  # type: ignore[explicit-any]
        flow.add_routine(Upper(), "upper")
        return flow

    async with rt.SessionManager(builder=build) as manager, manager.session(user_id="ada") as session:
        outputs = await session.run("hi")
        assert [(o["output_type"], o["data"]) for o in outputs] == [("answer", {"text": "ada: HI"})]  # type: ignore[attr-defined, index]
        assert manager.metrics("ada").ok == 1


async def test_a_session_open_past_the_grace_can_no_longer_run(autojump_clock: trio.testing.MockClock) -> None:
    errors: list[BaseException] = []
    opened = trio.Event()
    async with (
        trio.open_nursery() as outer,
        rt.SessionManager(workflow=NAP, shutdown_grace=1, name="api") as manager,
    ):

        async def request() -> None:
            async with manager.session(user_id="ada") as session:
                opened.set()
                for _ in range(2):
                    try:
                        await session.run(100)
                    except rt.SessionClosedError as exc:
                        errors.append(exc)
                try:
                    async with session.stream(1):
                        pass
                except rt.SessionClosedError as exc:
                    errors.append(exc)

        outer.start_soon(request)
        await opened.wait()
    assert [str(e).split(":")[0] for e in errors] == [
        "The run was cancelled because SessionManager 'api' shut down",
        "This session can no longer run",
        "This session can no longer run",
    ]
    assert str(errors[1]) == (
        "This session can no longer run: SessionManager 'api' shut down and closed its workflow. "
        "Open sessions inside the manager's `async with` block."
    )
    metrics = manager.metrics()
    assert (metrics.requests, metrics.cancelled, metrics.active_leases) == (1, 1, 0)


async def test_a_stream_cut_by_shutdown_raises_on_leaving_its_block(autojump_clock: trio.testing.MockClock) -> None:
    errors: list[BaseException] = []
    async with trio.open_nursery() as outer, rt.SessionManager(workflow=NAP, shutdown_grace=1) as manager:
        opened = trio.Event()

        async def request() -> None:
            async with manager.session() as session:
                try:
                    async with session.stream(100) as events:
                        opened.set()
                        async for _ in events:
                            pass
                except rt.SessionClosedError as exc:
                    errors.append(exc)

        outer.start_soon(request)
        await opened.wait()
    assert len(errors) == 1
    assert str(errors[0]).startswith("The run was cancelled because SessionManager 'session-manager' shut down")


async def test_shared_mode_applies_the_per_user_limit_and_counts_per_user(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gauge = Gauge()
    async with rt.SessionManager(workflow=gauged_flow(gauge), per_user_max_concurrency=1) as manager:

        async def one(user: str | None) -> None:
            async with manager.session(user_id=user) as session:
                await session.run(1.0)

        async with trio.open_nursery() as nursery:
            for user in ("ada", "ada", "ada", "bob", None, None):
                nursery.start_soon(one, user)
            await trio.testing.wait_all_tasks_blocked()
            assert manager.metrics("ada").active_leases == 3
            assert gauge.per_user == {"ada": 1, "bob": 1, None: 2}
    assert gauge.user_peak["ada"] == 1
    assert manager.metrics("ada").requests == 3
    assert manager.metrics().requests == 6
    assert manager.metrics("ada").active_leases == 0


async def test_a_session_opener_is_entered_once_and_headers_may_be_pairs() -> None:
    async with rt.SessionManager(workflow=rt.Flow("who", entry_point=whoami)) as manager:
        opener = manager.session(headers=[("a", "1"), ("b", "2")])
        async with opener as session:
            assert (await session.run(0)).headers == (("a", "1"), ("b", "2"))
            assert "open" in repr(session)
        with pytest.raises(
            RuntimeError,
            match=r"^This manager\.session\(\.\.\.\) was entered already; call manager\.session\(\.\.\.\) for each",
        ):
            async with opener:
                pass
        assert repr(manager) == "<SessionManager 'session-manager' shared open>"
    assert repr(manager) == "<SessionManager 'session-manager' shared shut down>"


def test_entering_a_session_manager_from_asyncio_says_trioflow_runs_on_trio() -> None:
    async def main() -> None:
        async with rt.SessionManager(workflow=ECHO, name="support"):
            pass

    with pytest.raises(
        rt.OutsideTrioError,
        match=r"^async with SessionManager\('support'\) was entered in asyncio, but trioflow runs on Trio\. ",
    ):
        asyncio.run(main())
