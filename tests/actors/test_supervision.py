"""Supervision: escalate, restart (bounded), stop (actors/_supervision.py)."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

import actors

STOPPED_TAIL = (
    r"Messages to a stopped actor are never delivered; catch ActorStoppedError if it may stop first\."
)


class Flaky(actors.Actor[str, str]):
    """Fails on "fail"; counts its starts and stops; ``instances`` counts builds."""

    instances = 0

    def __init__(self, log: list[str] | None = None) -> None:
        type(self).instances += 1
        self.number = type(self).instances
        self.log = [] if log is None else log
        self.seen: list[str] = []

    async def on_start(self) -> None:
        self.log.append(f"start {self.number}")

    async def handle(self, message: str) -> str:
        if message == "fail":
            raise ValueError(f"boom in #{self.number}")
        if message == "block":
            try:
                await trio.sleep_forever()
            finally:
                self.log.append(f"finally {self.number}")
        self.seen.append(message)
        return f"{message} from #{self.number}"

    async def on_stop(self) -> None:
        self.log.append(f"stop {self.number}")


@pytest.fixture(autouse=True)
def _reset_instances() -> None:
    Flaky.instances = 0


# -- escalate ----------------------------------------------------------------


async def test_escalate_is_the_default_and_reaches_the_system_block() -> None:
    log: list[str] = []
    with pytest.RaisesGroup(
        pytest.RaisesExc(
            ValueError, match=r"^boom in #1\nEscalated by actor 'flaky' \(supervision: escalate\)\.$"
        )
    ) as info:
        async with actors.open_system() as system:
            ref = await system.spawn(Flaky(), name="flaky")
            sibling = await system.spawn(Flaky(log), name="sibling")
            await sibling.tell("block")
            assert await ref.ask("before") == "before from #1"
            ref.tell_nowait("fail")
            queued = ref.ask_nowait("queued")  # behind the failing message
            await trio.sleep_forever()  # the escalation cancels the block
    assert ref.failure is info.value.exceptions[0]
    assert system.statistics().actors == ()
    assert log == ["start 2", "finally 2"]  # the sibling was cancelled
    with pytest.raises(
        actors.ActorStoppedError,
        match=rf"^Cannot get a reply from actor 'flaky': it failed with ValueError: boom in #1\. {STOPPED_TAIL}$",
    ):
        await queued.wait()


async def test_an_escalation_from_deep_in_the_tree_arrives_in_one_group() -> None:
    leaves: list[actors.ActorRef[str, str]] = []

    class Nest(actors.Actor[None, None]):
        def __init__(self, depth: int) -> None:
            self.depth = depth

        async def on_start(self) -> None:
            if self.depth > 1:
                await self.spawn(Nest(self.depth - 1), name=f"level {self.depth - 1}")
            else:
                leaves.append(await self.spawn(Flaky(), name="leaf"))

    with pytest.RaisesGroup(ValueError) as info:
        async with actors.open_system() as system:
            top = await system.spawn(Nest(3), name="level 3")
            await trio.testing.wait_all_tasks_blocked()
            assert system.statistics().names() == ["level 3", "level 2", "level 1", "leaf"]
            await leaves[0].tell("fail")
    error = info.value.exceptions[0]
    assert error.__notes__ == ["Escalated by actor 'leaf' (supervision: escalate)."]
    assert top.failure is error
    assert leaves[0].failure is error


async def test_a_failing_on_start_escalates() -> None:
    class BadStart(actors.Actor[None, None]):
        async def on_start(self) -> None:
            raise OSError("no socket")

    with pytest.RaisesGroup(
        pytest.RaisesExc(OSError, match=r"^no socket\nEscalated by actor 'bad' \(supervision: escalate\)\.$")
    ):
        async with actors.open_system() as system:
            await system.spawn(BadStart(), name="bad")


async def test_a_failing_on_stop_escalates() -> None:
    class BadStop(actors.Actor[None, None]):
        async def on_stop(self) -> None:
            raise OSError("cannot flush")

    with pytest.RaisesGroup(
        pytest.RaisesExc(
            OSError, match=r"^cannot flush\nEscalated by actor 'bad' \(supervision: escalate\)\.$"
        )
    ):
        async with actors.open_system() as system:
            await system.spawn(BadStop(), name="bad")


# -- restart -----------------------------------------------------------------


async def test_restart_from_a_factory_gives_a_fresh_instance_and_keeps_the_mailbox() -> None:
    log: list[str] = []
    async with actors.open_system() as system:
        ref = await system.spawn(lambda: Flaky(log), name="f", supervision=actors.Supervision.restart(3))
        assert await ref.ask("a") == "a from #1"
        await ref.tell("fail")
        reply = ref.ask_nowait("b")  # queued behind the failure, handled after the restart
        assert await reply.wait() == "b from #2"
        assert ref.statistics().restarts == 1
        assert ref.failure is None
    assert log == ["start 1", "stop 1", "start 2", "stop 2"]


async def test_restart_of_an_instance_runs_its_on_start_again() -> None:
    log: list[str] = []
    actor = Flaky(log)
    async with actors.open_system() as system:
        ref = await system.spawn(actor, supervision=actors.Supervision.restart())
        await ref.ask("a")
        await ref.tell("fail")
        await ref.ask("b")
    assert log == ["start 1", "stop 1", "start 1", "stop 1"]
    assert actor.seen == ["a", "b"]  # the same instance, its state kept
    assert Flaky.instances == 1


async def test_more_than_max_restarts_within_the_window_escalates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with pytest.RaisesGroup(
        pytest.RaisesExc(
            ValueError,
            match=r"^boom in #3\nEscalated by actor 'f' after 2 restarts within 10\.0 s \(its supervision's limit\)\.$",
        )
    ):
        async with actors.open_system() as system:
            ref = await system.spawn(Flaky, name="f", supervision=actors.Supervision.restart(2, within=10.0))
            for _ in range(3):
                await ref.tell("fail")
                await trio.sleep(1)
    assert Flaky.instances == 3


async def test_failures_spread_wider_than_the_window_restart_forever(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Flaky, supervision=actors.Supervision.restart(1, within=10.0))
        for _ in range(5):
            await ref.tell("fail")
            await trio.sleep(11)
        assert await ref.ask("a") == "a from #6"
        assert ref.statistics().restarts == 5


async def test_a_failing_on_stop_during_a_restart_escalates() -> None:
    class BadStop(Flaky):
        async def on_stop(self) -> None:
            raise OSError("cannot flush")

    with pytest.RaisesGroup(
        pytest.RaisesExc(
            OSError,
            match=r"^cannot flush\nEscalated by actor 'bad' \(its on_stop\(\) failed during a restart\)\.$",
        )
    ) as info:
        async with actors.open_system() as system:
            ref = await system.spawn(BadStop, name="bad", supervision=actors.Supervision.restart())
            await ref.tell("fail")
    # The handler's failure that prompted the restart is kept as the context.
    assert isinstance(info.value.exceptions[0].__context__, ValueError)


async def test_restart_with_zero_restarts_escalates_at_once() -> None:
    with pytest.RaisesGroup(ValueError):
        async with actors.open_system() as system:
            ref = await system.spawn(Flaky, supervision=actors.Supervision.restart(0))
            await ref.tell("fail")


async def test_a_failing_on_start_under_restart_is_retried_then_escalates() -> None:
    starts = 0

    class BadStart(actors.Actor[None, None]):
        async def on_start(self) -> None:
            nonlocal starts
            starts += 1
            raise OSError(f"start {starts}")

    with pytest.RaisesGroup(
        pytest.RaisesExc(
            OSError,
            match=r"^start 3\nEscalated by actor 'bad' after 2 restarts within 60\.0 s \(its supervision's limit\)\.$",
        )
    ):
        async with actors.open_system() as system:
            await system.spawn(BadStart, name="bad", supervision=actors.Supervision.restart(2))
    assert starts == 3


# -- stop --------------------------------------------------------------------


async def test_stop_keeps_the_failure_on_the_ref_and_fails_pending_asks() -> None:
    log: list[str] = []
    async with actors.open_system() as system:
        ref = await system.spawn(Flaky(log), name="f", supervision=actors.Supervision.stop())
        other = await system.spawn(Flaky(), name="other")
        await ref.tell("fail")
        pending = ref.ask_nowait("queued")
        with pytest.raises(
            actors.ActorStoppedError,
            match=rf"^Cannot get a reply from actor 'f': it failed with ValueError: boom in #1\. {STOPPED_TAIL}$",
        ):
            await pending.wait()
        await ref.wait_stopped()
        assert isinstance(ref.failure, ValueError)
        assert str(ref.failure) == "boom in #1"
        with pytest.raises(
            actors.ActorStoppedError,
            match=rf"^Cannot tell\(\) actor 'f': it failed with ValueError: boom in #1\. {STOPPED_TAIL}$",
        ):
            await ref.tell("more")
        assert await other.ask("x") == "x from #2"  # siblings are untouched
    assert log == ["start 1", "stop 1"]


async def test_stop_after_a_failing_on_stop_keeps_that_failure() -> None:
    class BadStop(Flaky):
        async def on_stop(self) -> None:
            raise OSError("cannot flush")

    async with actors.open_system() as system:
        ref = await system.spawn(BadStop(), supervision=actors.Supervision.stop())
        await ref.tell("fail")
        await ref.wait_stopped()
        assert isinstance(ref.failure, OSError)


async def test_ask_failures_never_reach_supervision() -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Flaky, supervision=actors.Supervision.stop())
        with pytest.raises(ValueError, match=r"^boom in #1$"):
            await ref.ask("fail")
        assert ref.is_alive
        assert ref.failure is None


# -- building policies -------------------------------------------------------


def test_policies() -> None:
    assert actors.Supervision.escalate() == actors.Supervision("escalate")
    assert actors.Supervision.stop().kind == "stop"
    restart = actors.Supervision.restart(5, within=2.0)
    assert (restart.kind, restart.max_restarts, restart.within) == ("restart", 5, 2.0)
    assert actors.Supervision.restart() == actors.Supervision("restart", 3, 60.0)


def test_restart_rejects_negative_max_restarts() -> None:
    with pytest.raises(
        ValueError, match=r"^Supervision\.restart\(max_restarts=-1\): max_restarts must be 0 or more\.$"
    ):
        actors.Supervision.restart(-1)


@pytest.mark.parametrize("within", [0, -1.0, math.nan])
def test_restart_rejects_a_window_that_is_not_positive(within: float) -> None:
    with pytest.raises(
        ValueError,
        match=rf"^Supervision\.restart\(within={within!r}\): within must be a positive number of seconds\.$",
    ):
        actors.Supervision.restart(within=within)
