"""Hypothesis checks of ``rt.SessionManager``'s invariants (SPEC section 6).

Each test states its invariant in its name and docstring. A scenario is a random
mix of users, sessions, runs (durations, failures, slow clean-ups, streams),
caller cancellations, failing and slow builds, and a shutdown moment. Clients
live in a nursery *outside* the manager's block, so the shutdown really
interrupts them. Trio runs inside the sync ``@given`` tests with
``trio.run(..., clock=MockClock(autojump_threshold=0))``.

The stateful machine at the end drives one manager in a Trio loop in a helper
thread, a rule at a time, on a mock clock that moves only when a rule says so.
"""

from __future__ import annotations

import contextlib
import math
import threading
from typing import TYPE_CHECKING, final

import attrs
import trio
import trio.testing
from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule

import runtime as rt
from runtime import testing as rtt

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

# Virtual seconds after which a scenario that has not finished counts as hung.
HANG = 10_000


# -- scenarios ---------------------------------------------------------------


@final
@attrs.frozen
class Run:
    duration: float
    fails: bool
    cleanup: float
    stream: bool
    leave_after: int | None  # streams: leave after this many events


@final
@attrs.frozen
class Request:
    user: str
    start: float
    runs: tuple[Run, ...]
    cancel_after: float | None
    hold: float


@final
@attrs.frozen
class Scenario:
    per_user: bool
    max_concurrency: int | None
    per_user_max_concurrency: int | None
    fail_fast: bool
    idle_timeout: float | None
    shutdown_grace: float
    build_retry_backoff: float
    build_delays: dict[str, float]
    build_failures: dict[str, int]
    requests: tuple[Request, ...]
    shutdown_at: float


USERS = ("ada", "bob", "cy")
times = st.integers(0, 40).map(lambda tenths: tenths / 10)
runs = st.builds(
    Run,
    duration=times,
    fails=st.booleans(),
    cleanup=st.sampled_from([0.0, 0.0, 0.5, 1.5]),
    stream=st.booleans(),
    leave_after=st.none() | st.integers(0, 3),
)
requests = st.builds(
    Request,
    user=st.sampled_from(USERS),
    start=times,
    runs=st.lists(runs, max_size=3).map(tuple),
    cancel_after=st.none() | times,
    hold=times,
)
scenarios = st.builds(
    Scenario,
    per_user=st.booleans(),
    max_concurrency=st.none() | st.integers(1, 4),
    per_user_max_concurrency=st.none() | st.integers(1, 3),
    fail_fast=st.booleans(),
    idle_timeout=st.none() | st.sampled_from([0.5, 1.0, 3.0]),
    shutdown_grace=st.sampled_from([0.0, 1.0, 4.0]),
    build_retry_backoff=st.sampled_from([0.0, 0.5, 2.0]),
    build_delays=st.fixed_dictionaries({u: st.sampled_from([0.0, 0.0, 0.7, 2.5]) for u in USERS}),
    build_failures=st.fixed_dictionaries({u: st.sampled_from([0, 0, 1, 2]) for u in USERS}),
    requests=st.lists(requests, min_size=1, max_size=8).map(tuple),
    shutdown_at=st.integers(0, 120).map(lambda tenths: tenths / 10),
)
per_user_scenarios = scenarios.map(lambda s: attrs.evolve(s, per_user=True))


@final
@attrs.define
class Observed:
    """What a scenario saw, for the properties to check."""

    # Runs inside a node (its clean-up included), overall and per user.
    in_flight: int = 0
    peak: int = 0
    user_in_flight: dict[str | None, int] = attrs.field(factory=dict)
    user_peak: dict[str | None, int] = attrs.field(factory=dict)
    # Builds: in progress or open, per user, and the peak of that.
    building_or_open: dict[str, int] = attrs.field(factory=dict)
    build_peak: int = 0
    opened: dict[int, trio.lowlevel.Task] = attrs.field(factory=dict)
    closed: list[tuple[int, trio.lowlevel.Task]] = attrs.field(factory=list)
    # Requests the manager counted, as the clients can tell; BusyError refusals.
    counted: int = 0
    busy: int = 0
    ok_seen: int = 0
    metrics: rt.WorkflowMetrics | None = None
    user_metrics: list[rt.WorkflowMetrics] = attrs.field(factory=list)
    left_behind: list[str] = attrs.field(factory=list)
    alive_after: bool = False


def run_scenario(scenario: Scenario) -> Observed:
    """Run *scenario* under an autojumping mock clock and return what it observed."""
    seen = Observed()
    builds = 0

    @rt.function_node
    async def work(run: Run) -> str:
        user = rt.request().user_id
        seen.in_flight += 1
        seen.peak = max(seen.peak, seen.in_flight)
        now = seen.user_in_flight[user] = seen.user_in_flight.get(user, 0) + 1
        seen.user_peak[user] = max(seen.user_peak.get(user, 0), now)
        try:
            await rt.broadcast("step")
            await trio.sleep(run.duration)
            if run.fails:
                raise ValueError("the run failed")
            return "done"
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(run.cleanup)
            seen.in_flight -= 1
            seen.user_in_flight[user] -= 1

    flow = rt.Flow("work", entry_point=work)
    failures_left = dict(scenario.build_failures)

    @contextlib.asynccontextmanager
    async def builder(user: str) -> AsyncIterator[rt.Flow[[Run], str]]:
        nonlocal builds
        builds += 1
        number = builds
        seen.building_or_open[user] = seen.building_or_open.get(user, 0) + 1
        seen.build_peak = max(seen.build_peak, seen.building_or_open[user])
        try:
            await trio.sleep(scenario.build_delays[user])
            if failures_left[user]:
                failures_left[user] -= 1
                raise ConnectionError("the model is down")
            seen.opened[number] = trio.lowlevel.current_task()
            try:
                yield flow
            finally:
                seen.closed.append((number, trio.lowlevel.current_task()))
        finally:
            seen.building_or_open[user] -= 1

    async def client(manager: rt.SessionManager[str], request: Request) -> None:
        await trio.sleep(request.start)
        deadline = math.inf if request.cancel_after is None else trio.current_time() + request.cancel_after
        with trio.CancelScope(deadline=deadline), contextlib.suppress(rt.SessionClosedError, rt.WorkflowBuildError):
            async with manager.session(user_id=request.user) as session:
                for run in request.runs:
                    await one_run(session, run)
                await trio.sleep(request.hold)

    async def one_run(session: rt.Session[str], run: Run) -> None:
        try:
            if run.stream:
                async with session.stream(run) as events:
                    seen.counted += 1
                    count = 0
                    async for _ in events:
                        count += 1
                        if run.leave_after is not None and count > run.leave_after:
                            break
                    if events.finished is not None and events.finished.data["status"] == "completed":  # type: ignore[index]
                        seen.ok_seen += 1
            else:
                seen.counted += 1
                await session.run(run)
                seen.ok_seen += 1
        except rt.BusyError:
            seen.busy += 1
            if run.stream:
                seen.counted += 1  # refused on entering the block, and counted as rejected
        except ValueError:
            pass
        except rt.SessionClosedError as exc:
            if not run.stream and not str(exc).startswith("The run was cancelled because"):
                seen.counted -= 1  # refused before it was counted
            raise

    async def main() -> None:
        before = rtt.current_tasks()
        async with trio.open_nursery() as clients:
            manager: rt.SessionManager[str]
            if scenario.per_user:
                manager = rt.SessionManager(builder=builder, **settings_of(scenario))
            else:
                manager = rt.SessionManager(workflow=flow, **settings_of(scenario))
            async with manager:
                for i, request in enumerate(scenario.requests):
                    clients.start_soon(client, manager, request, name=f"client {i}")
                await trio.sleep(scenario.shutdown_at)
            for task in rtt.current_tasks() - before:
                if not task.name.startswith("client ") or any(n.child_tasks for n in task.child_nurseries):
                    seen.left_behind.append(task.name)
        seen.alive_after = rtt.current_tasks() != before
        seen.metrics = manager.metrics()
        seen.user_metrics = [manager.metrics(user) for user in USERS]

    async def bounded() -> None:
        with trio.fail_after(HANG):
            await main()

    trio.run(bounded, clock=trio.testing.MockClock(autojump_threshold=0))
    note(repr(seen))
    return seen


def settings_of(scenario: Scenario) -> dict[str, object]:
    return {
        "max_concurrency": scenario.max_concurrency,
        "per_user_max_concurrency": scenario.per_user_max_concurrency,
        "fail_fast": scenario.fail_fast,
        "idle_timeout": scenario.idle_timeout,
        "shutdown_grace": scenario.shutdown_grace,
        "build_retry_backoff": scenario.build_retry_backoff,
    }


# -- the properties -------------------------------------------------------------


@settings(deadline=None)
@given(scenarios)
def test_in_flight_runs_never_exceed_the_global_or_the_per_user_limit(scenario: Scenario) -> None:
    """Runs in flight (counted inside the node, slow clean-ups included) never
    exceed ``max_concurrency``, nor ``per_user_max_concurrency`` for any user,
    whatever the callers' cancellations and the shutdown moment."""
    seen = run_scenario(scenario)
    if scenario.max_concurrency is not None:
        assert seen.peak <= scenario.max_concurrency
    if scenario.per_user_max_concurrency is not None:
        assert all(peak <= scenario.per_user_max_concurrency for peak in seen.user_peak.values())


@settings(deadline=None)
@given(per_user_scenarios)
def test_one_build_per_user_at_a_time(scenario: Scenario) -> None:
    """A user never has two builds in progress, nor a build next to an open
    workflow: builds and open workflows of one user never overlap."""
    seen = run_scenario(scenario)
    assert seen.build_peak <= 1


@settings(deadline=None)
@given(per_user_scenarios)
def test_every_builder_is_closed_exactly_once_by_the_task_that_opened_it(scenario: Scenario) -> None:
    """Every workflow a builder opened is closed exactly once, by the very task
    that opened it, by the time the manager's block has ended."""
    seen = run_scenario(scenario)
    closed_ids = [number for number, _ in seen.closed]
    assert sorted(closed_ids) == sorted(seen.opened)
    for number, task in seen.closed:
        assert task is seen.opened[number]
    assert all(count == 0 for count in seen.building_or_open.values())


@settings(deadline=None)
@given(scenarios)
def test_metrics_outcome_counts_add_up_to_the_number_of_runs(scenario: Scenario) -> None:
    """After the manager exits, every counted request has exactly one outcome
    (ok, error, cancelled, timed out, rejected), the count of requests is the
    number of runs the clients asked for, nothing is in flight or leased, and
    per-user counters add up to the totals."""
    seen = run_scenario(scenario)
    metrics = seen.metrics
    assert metrics is not None
    assert metrics.requests == seen.counted
    assert metrics.requests == metrics.ok + metrics.error + metrics.cancelled + metrics.timed_out + metrics.rejected
    assert (metrics.queued, metrics.running, metrics.active_leases, metrics.loaded) == (0, 0, 0, 0)
    assert metrics.rejected == seen.busy
    assert metrics.ok >= seen.ok_seen
    assert metrics.started <= metrics.requests - metrics.rejected
    for field in ("requests", "ok", "error", "cancelled", "timed_out", "rejected", "started"):
        assert sum(getattr(m, field) for m in seen.user_metrics) == getattr(metrics, field), field
    assert metrics.queue_time >= 0
    assert metrics.run_time >= 0


@settings(deadline=None)
@given(scenarios)
def test_nothing_is_alive_after_the_manager_exits(scenario: Scenario) -> None:
    """When the manager's block ends, no task of it is left (no holder, run,
    actor or build): only the clients' own tasks, which hold nothing of it."""
    seen = run_scenario(scenario)
    assert seen.left_behind == []
    assert not seen.alive_after


# -- a stateful machine ----------------------------------------------------------


class TrioThread:
    """One Trio loop in a helper thread, on a mock clock that moves only when told.

    Each rule runs one coroutine in the loop with ``trio.from_thread.run`` and
    waits until every task there is blocked before it returns.
    """

    def __init__(self, main: Callable[[TrioThread], Awaitable[None]]) -> None:
        self.clock = trio.testing.MockClock()
        self.error: BaseException | None = None
        self.nursery: trio.Nursery | None = None
        self._main = main
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._leave = threading.Event()
        self._left: trio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="trio for a session machine")
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        try:
            trio.run(self._body, clock=self.clock)
        except BaseException as exc:  # reported by close()
            self.error = exc
        finally:
            self._ready.set()

    async def _body(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._left = trio.Event()
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            nursery.start_soon(self._main, self)
            self._ready.set()
            await self._left.wait()
            nursery.cancel_scope.cancel()

    def call(self, step: Callable[[], Awaitable[object]]) -> object:
        """Run *step* in the loop, then wait until every task is blocked."""

        async def settled() -> object:
            result = await step()
            await trio.testing.wait_all_tasks_blocked()
            return result

        return trio.from_thread.run(settled, trio_token=self._token)

    def close(self) -> None:
        if self._left is not None and self.error is None:
            trio.from_thread.run_sync(self._left.set, trio_token=self._token)
        self._thread.join()
        if self.error is not None:
            raise self.error


@final
@attrs.define(eq=False)
class Handle:
    """A session held open by a task of the machine's loop until told to close."""

    user: str
    opened: trio.Event = attrs.field(factory=trio.Event)
    release: trio.Event = attrs.field(factory=trio.Event)
    ended: trio.Event = attrs.field(factory=trio.Event)
    session: rt.Session[str] | None = None
    error: BaseException | None = None


@final
@attrs.define(eq=False)
class RunHandle:
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    ended: trio.Event = attrs.field(factory=trio.Event)
    outcome: str | None = None


class SessionLifecycles(RuleBasedStateMachine):
    """Sessions opened and closed, runs started, finished and cancelled, time
    moved and the manager shut down, in any order; the limits, the lease count,
    one workflow per user and honest metrics hold after every step."""

    sessions = Bundle("sessions")
    runs = Bundle("runs")

    LIMIT = 2
    PER_USER = 1
    IDLE = 5.0

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.peak = 0
        self.user_in_flight: dict[str, int] = {}
        self.open_workflows: dict[str, int] = {}
        self.open_peak = 0
        self.opened_by: dict[int, trio.lowlevel.Task] = {}
        self.wrong_closer = 0
        self.manager: rt.SessionManager[str] | None = None
        self.shut = False
        self.shutdown_done: trio.Event | None = None
        self.stop_manager: trio.Event | None = None
        self.live: list[Handle] = []
        self.run_calls = 0
        self.refused = 0
        self.loop = TrioThread(self._serve)

    async def _serve(self, loop: TrioThread) -> None:
        @rt.function_node
        async def work(seconds: float) -> float:
            user = rt.request().user_id
            assert user is not None
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self.user_in_flight[user] = self.user_in_flight.get(user, 0) + 1
            try:
                await trio.sleep(seconds)
            finally:
                self.in_flight -= 1
                self.user_in_flight[user] -= 1
            return seconds

        flow = rt.Flow("work", entry_point=work)

        @contextlib.asynccontextmanager
        async def builder(user: str) -> AsyncIterator[rt.Flow[[float], float]]:
            self.open_workflows[user] = self.open_workflows.get(user, 0) + 1
            self.open_peak = max(self.open_peak, self.open_workflows[user])
            task = trio.lowlevel.current_task()
            try:
                yield flow
            finally:
                self.open_workflows[user] -= 1
                if trio.lowlevel.current_task() is not task:
                    self.wrong_closer += 1

        self.stop_manager = trio.Event()
        self.shutdown_done = trio.Event()
        manager = rt.SessionManager(
            builder=builder,
            max_concurrency=self.LIMIT,
            per_user_max_concurrency=self.PER_USER,
            idle_timeout=self.IDLE,
            shutdown_grace=2.0,
        )
        self.manager = manager
        async with manager:
            await self.stop_manager.wait()
        self.shutdown_done.set()

    # -- rules -----------------------------------------------------------------

    @rule(target=sessions, user=st.sampled_from(USERS))
    def open_session(self, user: str) -> Handle:
        handle = Handle(user)
        assert self.loop.nursery is not None

        async def hold() -> None:
            assert self.manager is not None
            try:
                async with self.manager.session(user_id=user) as session:
                    handle.session = session
                    handle.opened.set()
                    await handle.release.wait()
            except rt.SessionClosedError as exc:
                handle.error = exc
            finally:
                handle.opened.set()
                handle.ended.set()

        async def start() -> None:
            assert self.loop.nursery is not None
            self.loop.nursery.start_soon(hold)

        self.loop.call(start)
        if handle.session is not None:
            self.live.append(handle)
        else:
            assert self.shut or not handle.opened.is_set()
        return handle

    @rule(handle=sessions)
    def close_session(self, handle: Handle) -> None:
        async def close() -> None:
            handle.release.set()

        self.loop.call(close)
        if handle in self.live:
            self.live.remove(handle)

    @rule(target=runs, handle=sessions, seconds=st.sampled_from([0.0, 1.0, 3.0]))
    def start_run(self, handle: Handle, seconds: float) -> RunHandle:
        run = RunHandle()

        async def go() -> None:
            session = handle.session
            if session is None:
                run.outcome = "no session"
                run.ended.set()
                return
            self.run_calls += 1
            try:
                with run.scope:
                    await session.run(seconds)
                    run.outcome = "ok"
            except rt.SessionClosedError as exc:
                run.outcome = "closed"
                if not str(exc).startswith("The run was cancelled because"):
                    self.refused += 1
            finally:
                if run.outcome is None:
                    run.outcome = "cancelled"
                run.ended.set()

        async def start() -> None:
            assert self.loop.nursery is not None
            self.loop.nursery.start_soon(go)

        self.loop.call(start)
        return run

    @rule(run=runs)
    def cancel_run(self, run: RunHandle) -> None:
        async def cancel() -> None:
            run.scope.cancel()

        self.loop.call(cancel)

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.0, 6.0]))
    def advance(self, seconds: float) -> None:
        async def jump() -> None:
            self.loop.clock.jump(seconds)

        self.loop.call(jump)

    @precondition(lambda self: not self.shut)
    @rule()
    def shut_down(self) -> None:
        self.shut = True

        async def stop() -> None:
            assert self.stop_manager is not None
            self.stop_manager.set()

        self.loop.call(stop)

    # -- invariants ---------------------------------------------------------------

    @invariant()
    def limits_hold(self) -> None:
        assert self.peak <= self.LIMIT
        assert all(n <= self.PER_USER for n in self.user_in_flight.values())

    @invariant()
    def one_workflow_per_user(self) -> None:
        assert self.open_peak <= 1
        assert self.wrong_closer == 0

    @invariant()
    def leases_match_open_sessions(self) -> None:
        if self.manager is None:
            return
        metrics = self.manager.metrics()
        if not self.shut:
            assert metrics.active_leases == sum(1 for h in self.live if not h.release.is_set())
        assert metrics.requests == metrics.finished + metrics.in_flight
        assert metrics.requests == self.run_calls - self.refused

    def teardown(self) -> None:
        try:
            if not self.shut:
                self.shut_down()

            async def finish() -> None:
                assert self.shutdown_done is not None
                while not self.shutdown_done.is_set():
                    self.loop.clock.jump(1.0)
                    await trio.testing.wait_all_tasks_blocked()
                    await trio.lowlevel.checkpoint()
                assert self.manager is not None
                metrics = self.manager.metrics()
                assert metrics.in_flight == 0
                assert metrics.loaded == 0
                assert all(n == 0 for n in self.open_workflows.values())

            self.loop.call(finish)
        finally:
            self.loop.close()


SessionLifecycles.TestCase.settings = settings(deadline=None, stateful_step_count=20)
TestSessionLifecycles = SessionLifecycles.TestCase
