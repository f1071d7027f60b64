"""A Hypothesis state machine for SessionManager, driven with runtime.testing.TrioDriver.

Rules open and close sessions, start runs, cancel them from the caller's side,
move the clock and shut the manager down, in any order; after every step the
limits hold, the metrics add up to what the callers saw, and after shutdown
nothing of the manager is alive. Also the driver's own tests.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, final

import attrs
import pytest
import trio
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

import runtime as rt
from runtime import testing as rtt

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

USERS = ["ann", "bob", "cy"]


# -- TrioDriver --------------------------------------------------------------------------


def test_driver_runs_steps_and_settles() -> None:
    seen: list[str] = []

    async def worker() -> None:
        seen.append("started")
        await trio.sleep(5)
        seen.append("woke")

    with rtt.TrioDriver() as driver:
        driver.start_soon(worker)
        assert seen == ["started"]  # settled: the worker ran up to its sleep
        assert [name.rsplit(".", 1)[-1] for name in driver.alive()] == ["worker"]
        driver.jump(4.9)
        assert seen == ["started"]
        driver.jump(0.1)
        assert seen == ["started", "woke"]
        assert driver.alive() == []

        async def now() -> float:
            return trio.current_time()

        assert driver.run(now) == 5.0


def test_driver_raises_a_steps_error_and_goes_on() -> None:
    async def boom() -> None:
        raise KeyError("step")

    async def fine() -> int:
        return 1

    with rtt.TrioDriver() as driver:
        with pytest.raises(KeyError, match="step"):
            driver.run(boom)
        assert driver.run(fine) == 1


def test_driver_reports_a_step_that_waits_for_time() -> None:
    with rtt.TrioDriver(step_timeout=0.2) as driver:
        with pytest.raises(
            AssertionError,
            match=r"^TrioDriver\.run\(sleep\) was still running after 0\.2 s of real time and was cancelled\. "
            r"Time moves only with jump\(\)",
        ):
            driver.run(trio.sleep, 1)
        driver.jump(1)  # the loop is still usable


def test_driver_reports_a_background_failure() -> None:
    async def crash() -> None:
        await trio.sleep(1)
        raise ValueError("background")

    driver = rtt.TrioDriver()
    driver.start_soon(crash)
    # The step during which the task raises reports it, and so does every later one.
    with pytest.raises(RuntimeError, match=r"^TrioDriver\.jump\(\): the Trio loop has ended"):
        driver.jump(1)
    with pytest.raises(RuntimeError, match=r"^TrioDriver\.alive\(\): the Trio loop has ended"):
        driver.alive()
    with pytest.RaisesGroup(pytest.RaisesExc(ValueError, match="background")):
        driver.close()
    with pytest.raises(RuntimeError, match=r"^TrioDriver\.run\(\) was called after close\(\)"):
        driver.run(trio.sleep, 0)


# -- the session machine ---------------------------------------------------------------------


@final
@attrs.define(eq=False)
class Lease:
    """A session held open by a task of the loop until the machine closes it."""

    user: str
    release: trio.Event = attrs.field(factory=trio.Event)
    session: rt.Session[float] | None = None
    refused: BaseException | None = None
    closed: bool = False


@final
@attrs.define(eq=False)
class Call:
    """One session.run() by a caller task; the machine may cancel the caller."""

    lease: Lease
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    outcome: str | None = None


class SessionMachine(RuleBasedStateMachine):
    """Sessions, runs, caller cancels and shutdown against one SessionManager."""

    #: Slots the manager gets beyond what the machine checks against: 0 here;
    #: a test sets 1 to prove the limit invariant can fail.
    EXTRA_SLOTS = 0

    leases = Bundle("leases")
    closed_leases = Bundle("closed_leases")
    calls = Bundle("calls")

    def __init__(self) -> None:
        super().__init__()
        self.trio = rtt.TrioDriver()
        self.manager: rt.SessionManager[float] | None = None
        self.limit = 2
        self.per_user = 1
        self.fail_fast = False
        self.per_user_mode = False
        self.running = 0
        self.user_running: dict[str, int] = {}
        self.peak = 0
        self.user_peak = 0
        self.open_workflows: dict[str, int] = {}
        self.wrong_closer = 0
        self.leases_open: list[Lease] = []
        self.all_calls: list[Call] = []
        self.stop = trio.Event()
        self.stopped = trio.Event()
        self.shut = False

    # -- the system under test -----------------------------------------------------------

    @initialize(
        limit=st.integers(1, 2),
        per_user=st.none() | st.integers(1, 2),
        fail_fast=st.booleans(),
        per_user_mode=st.booleans(),
    )
    def open_manager(self, limit: int, per_user: int | None, fail_fast: bool, per_user_mode: bool) -> None:
        self.limit, self.fail_fast, self.per_user_mode = limit, fail_fast, per_user_mode
        self.per_user = per_user if per_user is not None else limit

        @rt.function_node
        async def work(seconds: float) -> float:
            user = rt.request().user_id or "?"
            self.running += 1
            self.user_running[user] = self.user_running.get(user, 0) + 1
            self.peak = max(self.peak, self.running)
            self.user_peak = max(self.user_peak, self.user_running[user])
            try:
                await trio.sleep(seconds)
            finally:
                self.running -= 1
                self.user_running[user] -= 1
            return seconds

        flow = rt.Flow("work", entry_point=work)

        @contextlib.asynccontextmanager
        async def builder(user: str) -> AsyncIterator[rt.Flow[[float], float]]:
            self.open_workflows[user] = self.open_workflows.get(user, 0) + 1
            opener = trio.lowlevel.current_task()
            try:
                yield flow
            finally:
                self.open_workflows[user] -= 1
                if trio.lowlevel.current_task() is not opener:
                    self.wrong_closer += 1

        manager: rt.SessionManager[float] = (
            rt.SessionManager(
                builder=builder,
                max_concurrency=limit + self.EXTRA_SLOTS,
                per_user_max_concurrency=per_user,
                fail_fast=fail_fast,
                idle_timeout=5.0,
                shutdown_grace=2.0,
            )
            if per_user_mode
            else rt.SessionManager(
                workflow=flow,
                max_concurrency=limit + self.EXTRA_SLOTS,
                per_user_max_concurrency=per_user,
                fail_fast=fail_fast,
                shutdown_grace=2.0,
            )
        )
        self.manager = manager

        async def serve() -> None:
            async with manager:
                await self.stop.wait()
            self.stopped.set()

        self.trio.start_soon(serve)

    # -- rules ---------------------------------------------------------------------------------

    @rule(target=leases, user=st.sampled_from(USERS))
    def open_session(self, user: str) -> Lease:
        lease = Lease(user)
        manager = self.manager
        assert manager is not None

        async def hold() -> None:
            try:
                # May wait: e.g. for the user's evicted workflow to finish closing.
                async with manager.session(user_id=user) as session:
                    lease.session = session
                    self.leases_open.append(lease)
                    await lease.release.wait()
            except rt.SessionClosedError as exc:
                lease.refused = exc
            finally:
                lease.closed = True
                if lease in self.leases_open:
                    self.leases_open.remove(lease)

        self.trio.start_soon(hold)
        if self.shut:
            assert lease.refused is not None, "a session was opened after shutdown began"
            assert str(lease.refused).startswith(f"SessionManager {manager.name!r}")
        return lease

    @rule(target=closed_leases, lease=consumes(leases))
    def close_session(self, lease: Lease) -> Lease:
        async def close() -> None:
            lease.release.set()

        was_open = lease.session is not None
        self.trio.run(close)
        if was_open:
            assert lease.closed
        return lease

    @rule(lease=closed_leases)
    def use_a_closed_session(self, lease: Lease) -> None:
        session = lease.session
        if session is None:
            return

        async def use() -> None:
            with pytest.raises(rt.SessionClosedError, match=r"was used after its `async with manager\.session\(\.\.\.\)` block ended"):
                await session.run(0.0)

        self.trio.run(use)

    @rule(
        target=calls,
        lease=leases,
        seconds=st.sampled_from([1.0, 3.0, 0.0]),
        callers=st.integers(min_value=1, max_value=3),
    )
    def start_runs(self, lease: Lease, seconds: float, callers: int) -> MultipleResults[Call]:
        """*callers* concurrent session.run() calls on one session, as a busy client makes."""
        started = [Call(lease) for _ in range(callers)]
        self.all_calls.extend(started)

        async def go(call: Call) -> None:
            session = lease.session
            if session is None:
                call.outcome = "no session"
                return
            try:
                with call.scope:
                    await session.run(seconds)
                    call.outcome = "ok"
            except rt.BusyError:
                call.outcome = "busy"
            except rt.SessionClosedError as exc:
                call.outcome = "cancelled by shutdown" if "cancelled" in str(exc) else "refused"
            finally:
                if call.outcome is None:
                    call.outcome = "cancelled"

        for call in started:
            self.trio.start_soon(go, call)
        if any(call.outcome == "busy" for call in started):
            assert self.fail_fast
        return multiple(*started)

    @rule(call=calls)
    def caller_cancels(self, call: Call) -> None:
        async def cancel() -> None:
            call.scope.cancel()

        self.trio.run(cancel)
        assert call.outcome is not None, "a cancelled caller was left waiting"

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5, 6.0]))
    def time_passes(self, seconds: float) -> None:
        self.trio.jump(seconds)

    # Shutting down while runs are in flight is the interesting case (drain,
    # then cancel); teardown shuts an idle manager down.
    @precondition(lambda self: not self.shut and self.running > 0)
    @rule()
    def shut_down(self) -> None:
        self.shut = True
        self.trio.run(self._stop)

    async def _stop(self) -> None:
        self.stop.set()

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def in_flight_runs_stay_within_the_limits(self) -> None:
        assert self.peak <= self.limit, f"{self.peak} runs at once with max_concurrency={self.limit}"
        assert self.user_peak <= self.per_user, (
            f"{self.user_peak} runs of one user at once with per_user_max_concurrency={self.per_user}"
        )
        if self.manager is not None:
            assert self.manager.metrics().running <= self.limit

    @invariant()
    def metrics_add_up(self) -> None:
        if self.manager is None:
            return
        m = self.manager.metrics()
        assert m.requests == m.ok + m.error + m.cancelled + m.timed_out + m.rejected + m.in_flight, m
        outcomes = [c.outcome for c in self.all_calls]
        assert m.ok == outcomes.count("ok"), (m, outcomes)
        assert m.rejected == outcomes.count("busy"), (m, outcomes)
        assert m.cancelled == outcomes.count("cancelled") + outcomes.count("cancelled by shutdown"), (m, outcomes)
        assert m.in_flight == outcomes.count(None), (m, outcomes)
        assert m.error == m.timed_out == 0
        if not self.shut:
            assert m.active_leases == len(self.leases_open), (m, self.leases_open)
        for user in USERS:
            per = self.manager.metrics(user)
            assert per.requests == per.finished + per.in_flight, per

    @invariant()
    def one_workflow_per_user_closed_by_its_opener(self) -> None:
        assert all(n <= 1 for n in self.open_workflows.values()), self.open_workflows
        assert self.wrong_closer == 0

    def teardown(self) -> None:
        try:
            if self.manager is not None:
                if not self.shut:
                    self.shut = True
                    self.trio.run(self._stop)
                for _ in range(10):  # the grace period, then everything is cancelled
                    if self.stopped.is_set():
                        break
                    self.trio.jump(1.0)
                assert self.stopped.is_set(), "the manager's block did not end after its grace period"
                # Nothing of the manager is alive; only the test's own callers may be.
                ours = ("hold", "go")
                leftover = [name for name in self.trio.alive() if not name.endswith(ours)]
                assert leftover == [], f"alive after the manager's block ended: {leftover}"
                m = self.manager.metrics()
                assert m.in_flight == 0
                assert m.loaded == 0
                assert all(n == 0 for n in self.open_workflows.values())
                assert all(c.outcome is not None for c in self.all_calls)
        finally:
            self.trio.close()


SessionMachine.TestCase.settings = settings(deadline=None, stateful_step_count=25)
TestSessionMachine = SessionMachine.TestCase


class OneSlotTooMany(SessionMachine):
    """The manager gets one slot more than the machine allows."""

    EXTRA_SLOTS = 1


def test_the_machine_catches_a_manager_over_its_limit() -> None:
    # No shrinking: this only proves the invariant can fail.
    budget = settings(max_examples=100, deadline=None, stateful_step_count=25, derandomize=True, phases=[Phase.generate])
    with pytest.raises(AssertionError, match=r"(?m)\A\d runs at once with max_concurrency=\d$"):
        run_state_machine_as_test(OneSlotTooMany, settings=budget)
