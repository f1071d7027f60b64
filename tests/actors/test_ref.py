"""ActorRef: tell, ask, stop, cancel, and their errors (actors/_ref.py)."""

from __future__ import annotations

import math
import re

import pytest
import trio
import trio.testing

import actors

STOPPED_TAIL = (
    r"Messages to a stopped actor are never delivered; catch ActorStoppedError if it may stop first\."
)


class Echo(actors.Actor[object, object]):
    async def handle(self, message: object) -> object:
        return message


class Gate(actors.Actor[str, str]):
    """Handles each message only once ``gate`` is set; records what it handled."""

    def __init__(self) -> None:
        self.gate = trio.Event()
        self.handled: list[str] = []
        self.finally_ran = False
        self.stopped = False

    async def handle(self, message: str) -> str:
        try:
            await self.gate.wait()
            self.handled.append(message)
            return message.upper()
        finally:
            self.finally_ran = True

    async def on_stop(self) -> None:
        self.stopped = True


class Failing(actors.Actor[str, str]):
    async def handle(self, message: str) -> str:
        raise KeyError(message)


# -- ask --------------------------------------------------------------------


async def test_ask_returns_the_handlers_reply() -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Echo())
        assert await ref.ask("hi") == "hi"
        assert await ref.ask(42, timeout=1) == 42


async def test_ask_raises_the_handlers_exception_and_the_actor_goes_on() -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Failing())
        with pytest.raises(KeyError, match=r"^'nope'$"):
            await ref.ask("nope")
        # An ask's failure belongs to the asker: the actor is not supervised for it.
        assert ref.is_alive
        assert ref.failure is None


async def test_ask_timeout_raises_ask_timeout_error(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system() as system:
        gate = Gate()
        ref = await system.spawn(gate, name="slow")
        start = trio.current_time()
        with pytest.raises(
            actors.AskTimeoutError,
            match=(
                r"^Actor 'slow' did not reply to ask\(\) within 2\.5 s\. The message may still be handled; "
                r"give a longer timeout, or None to wait as long as it takes\.$"
            ),
        ) as info:
            await ref.ask("x", timeout=2.5)
        assert trio.current_time() - start == 2.5
        assert isinstance(info.value, TimeoutError)
        # The message may still be handled after the asker gave up.
        gate.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert gate.handled == ["x"]


@pytest.mark.parametrize("bad", [0, -1, -0.5, math.nan, -math.inf])
async def test_ask_rejects_a_non_positive_or_nan_timeout(bad: float) -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Echo(), name="echo")
        with pytest.raises(
            ValueError,
            match=(
                rf"^ask\(timeout={re.escape(repr(bad))}\) to actor 'echo': "
                r"timeout must be a positive number of seconds, or None\.$"
            ),
        ):
            await ref.ask("x", timeout=bad)
        assert ref.statistics().handled == 0


async def test_ask_an_infinite_timeout_waits_like_none() -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Echo())
        assert await ref.ask("x", timeout=math.inf) == "x"


async def test_ask_nowait_keeps_several_asks_in_flight() -> None:
    async with actors.open_system() as system:
        gate = Gate()
        ref = await system.spawn(gate)
        replies = [ref.ask_nowait(word) for word in ("a", "b", "c")]
        await trio.testing.wait_all_tasks_blocked()
        assert not any(reply.done for reply in replies)
        gate.gate.set()
        assert [await reply.wait() for reply in replies] == ["A", "B", "C"]
        assert all(reply.done for reply in replies)


async def test_ask_nowait_on_a_full_mailbox_raises() -> None:
    async with actors.open_system() as system:
        gate = Gate()
        ref = await system.spawn(gate, name="g", mailbox_size=1)
        ref.ask_nowait("a")
        await trio.testing.wait_all_tasks_blocked()  # "a" is being handled
        ref.ask_nowait("b")  # fills the mailbox
        with pytest.raises(
            actors.MailboxFullError,
            match=r"^Cannot ask_nowait\(\) actor 'g': its mailbox is full \(1 messages\)\. "
            r"Use await ask\(\) to wait for room\.$",
        ):
            ref.ask_nowait("c")
        gate.gate.set()


# -- an ask whose actor dies ------------------------------------------------


async def test_an_ask_being_handled_when_the_actor_is_cancelled_raises() -> None:
    async with actors.open_system() as system:
        gate = Gate()
        ref = await system.spawn(gate, name="g")
        async with trio.open_nursery() as nursery:

            async def cancel_soon() -> None:
                await trio.testing.wait_all_tasks_blocked()
                ref.cancel()

            nursery.start_soon(cancel_soon)
            with pytest.raises(
                actors.ActorStoppedError,
                match=rf"^Cannot get a reply from actor 'g': it was cancelled while handling this message\. "
                rf"{STOPPED_TAIL}$",
            ) as info:
                await ref.ask("x")
        assert info.value.actor == "g"
        assert gate.finally_ran
        assert gate.handled == []


async def test_asks_queued_behind_a_cancelled_one_raise_too() -> None:
    async with actors.open_system() as system:
        gate = Gate()
        ref = await system.spawn(gate, name="g")
        replies = [ref.ask_nowait(word) for word in ("a", "b", "c")]
        await trio.testing.wait_all_tasks_blocked()
        ref.cancel()
        for reply in replies[1:]:
            with pytest.raises(
                actors.ActorStoppedError,
                match=rf"^Cannot get a reply from actor 'g': it was cancelled\. {STOPPED_TAIL}$",
            ):
                await reply.wait()
        with pytest.raises(actors.ActorStoppedError, match=r"while handling this message"):
            await replies[0].wait()
        assert gate.handled == []
        assert not gate.stopped  # on_stop does not run for a cancelled actor


async def test_a_full_mailbox_of_asks_all_fail_when_the_actor_is_cancelled_mid_batch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Regression: a cancel landing between taking a message and handling it lost the ask."""

    class Sync(actors.Actor[int, int]):
        async def handle(self, message: int) -> int:
            if message == 5:
                self.ref.cancel()  # no checkpoint follows until the loop's own
            return message

    async with actors.open_system() as system:
        ref = await system.spawn(Sync(), mailbox_size=100)
        replies = [ref.ask_nowait(i) for i in range(100)]
        results: list[object] = []
        with trio.fail_after(60):  # it used to hang here
            for reply in replies:
                try:
                    results.append(await reply.wait())
                except actors.ActorStoppedError:
                    results.append("stopped")
        assert results == [0, 1, 2, 3, 4, 5] + ["stopped"] * 94


async def test_an_ask_waiting_for_mailbox_room_raises_when_the_actor_stops() -> None:
    async with actors.open_system() as system:
        gate = Gate()
        ref = await system.spawn(gate, name="g", mailbox_size=0)
        first = ref.ask_nowait  # a zero-size mailbox has no room for ask_nowait...
        with pytest.raises(actors.MailboxFullError):
            first("first")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ref.tell, "first")  # ...but a tell meets the waiting actor
            await trio.testing.wait_all_tasks_blocked()
            assert ref.statistics().handled == 1

            async def stop_soon() -> None:
                await trio.testing.wait_all_tasks_blocked()
                ref.cancel()

            nursery.start_soon(stop_soon)
            with pytest.raises(
                actors.ActorStoppedError,
                match=rf"^Cannot ask\(\) actor 'g': it was cancelled\. {STOPPED_TAIL}$",
            ):
                await ref.ask("second")  # waits for room that never comes
        assert gate.finally_ran


# -- using a stopped actor --------------------------------------------------


async def test_tell_and_ask_to_a_stopped_actor_raise() -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Echo(), name="done")
        await ref.stop()
        assert not ref.is_alive
        with pytest.raises(
            actors.ActorStoppedError,
            match=rf"^Cannot tell\(\) actor 'done': it has stopped\. {STOPPED_TAIL}$",
        ):
            await ref.tell("x")
        with pytest.raises(
            actors.ActorStoppedError,
            match=rf"^Cannot tell_nowait\(\) actor 'done': it has stopped\. {STOPPED_TAIL}$",
        ):
            ref.tell_nowait("x")
        with pytest.raises(
            actors.ActorStoppedError,
            match=rf"^Cannot ask\(\) actor 'done': it has stopped\. {STOPPED_TAIL}$",
        ):
            await ref.ask("x")
        with pytest.raises(
            actors.ActorStoppedError,
            match=rf"^Cannot ask_nowait\(\) actor 'done': it has stopped\. {STOPPED_TAIL}$",
        ):
            ref.ask_nowait("x")


async def test_tell_to_a_cancelled_actor_says_so() -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Echo(), name="c")
        ref.cancel()
        await ref.wait_stopped()
        with pytest.raises(
            actors.ActorStoppedError,
            match=rf"^Cannot tell\(\) actor 'c': it was cancelled\. {STOPPED_TAIL}$",
        ):
            await ref.tell("x")


# -- graceful stop ----------------------------------------------------------


async def test_stop_drains_queued_messages_and_refuses_new_ones() -> None:
    async with actors.open_system() as system:
        gate = Gate()
        ref = await system.spawn(gate, name="g")
        for word in ("a", "b", "c"):
            await ref.tell(word)
        ref.stop_nowait()
        assert ref.is_alive
        assert ref.statistics().state == "stopping"
        with pytest.raises(
            actors.ActorStoppedError,
            match=rf"^Cannot tell\(\) actor 'g': it is stopping and takes no new messages\. {STOPPED_TAIL}$",
        ):
            await ref.tell("late")
        gate.gate.set()
        await ref.wait_stopped()
        assert gate.handled == ["a", "b", "c"]
        assert gate.stopped
        assert ref.statistics().state == "stopped"


async def test_stop_waits_until_the_actor_has_stopped() -> None:
    async with actors.open_system() as system:
        gate = Gate()
        ref = await system.spawn(gate)
        await ref.tell("a")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ref.stop)
            await trio.testing.wait_all_tasks_blocked()
            assert ref.is_alive
            gate.gate.set()
        assert not ref.is_alive
        assert gate.handled == ["a"]
        await ref.stop()  # stopping a stopped actor is a no-op
        await ref.wait_stopped()


async def test_stop_of_an_ask_in_flight_still_replies() -> None:
    async with actors.open_system() as system:
        gate = Gate()
        ref = await system.spawn(gate)
        reply = ref.ask_nowait("a")
        ref.stop_nowait()
        gate.gate.set()
        assert await reply.wait() == "A"


# -- cancel -----------------------------------------------------------------


async def test_cancel_is_immediate_and_runs_the_handlers_finally() -> None:
    async with actors.open_system() as system:
        gate = Gate()
        ref = await system.spawn(gate)
        for word in ("a", "b"):
            await ref.tell(word)
        await trio.testing.wait_all_tasks_blocked()
        ref.cancel()
        await ref.wait_stopped()
        assert gate.finally_ran
        assert gate.handled == []
        assert not gate.stopped
        assert ref.statistics().handled == 1  # "b" was dropped unhandled
        ref.cancel()  # cancelling a stopped actor is a no-op


async def test_cancel_before_the_actor_starts_skips_on_start() -> None:
    started = False

    class Hooked(Echo):
        async def on_start(self) -> None:
            nonlocal started
            started = True

    async with actors.open_system() as system:
        ref = system.spawn_nowait(Hooked())
        ref.cancel()
        await ref.wait_stopped()
    assert not started


# -- introspection ----------------------------------------------------------


async def test_ref_has_no_public_constructor() -> None:
    with pytest.raises(TypeError, match=r"^actors\.ActorRef has no public constructor\.$"):
        actors.ActorRef()  # type: ignore[call-arg]


async def test_ref_name_repr_and_statistics() -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Echo(), name="e", mailbox_size=7)
        assert ref.name == "e"
        assert repr(ref) == "<ActorRef 'e' (running)>"
        await ref.ask(1)
        stats = ref.statistics()
        assert stats == actors.ActorStatistics(
            id=stats.id,
            name="e",
            parent=None,
            state="running",
            mailbox_used=0,
            mailbox_size=7,
            handled=1,
            restarts=0,
        )
        await ref.stop()
        assert repr(ref) == "<ActorRef 'e' (stopped)>"


async def test_actor_ref_property_is_the_spawned_ref() -> None:
    async with actors.open_system() as system:
        actor = Echo()
        ref = await system.spawn(actor)
        assert actor.ref is ref


# -- waiting on oneself ------------------------------------------------------


class Selfish(actors.Actor[str, object]):
    async def handle(self, message: str) -> object:
        if message == "ask":
            return await self.ref.ask("x")
        if message == "stop":
            await self.ref.stop()
        elif message == "wait":
            await self.ref.wait_stopped()
        elif message == "stop_nowait":
            self.ref.stop_nowait()
        return message


@pytest.mark.parametrize(
    ("message", "action", "fix"),
    [
        ("ask", r"await ask\(\) of", r"Call the code you need directly instead\."),
        (
            "stop",
            r"await stop\(\) of",
            r"Call stop_nowait\(\): the actor stops once it has handled what is queued\.",
        ),
        (
            "wait",
            r"await wait_stopped\(\) of",
            r"Call stop_nowait\(\): the actor stops once it has handled what is queued\.",
        ),
    ],
)
async def test_an_actor_waiting_on_itself_gets_an_error_instead_of_a_hang(
    message: str, action: str, fix: str
) -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Selfish(), name="me")
        with pytest.raises(
            RuntimeError,
            match=rf"^Cannot {action} actor 'me' from its own task: it would wait forever for itself\. {fix}$",
        ):
            await ref.ask(message)
        assert ref.is_alive


async def test_an_actor_can_stop_itself_without_waiting() -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Selfish())
        assert await ref.ask("stop_nowait") == "stop_nowait"
        await ref.wait_stopped()
