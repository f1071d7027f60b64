"""Bounded mailboxes: backpressure, no silent drops, sizes (actors/_mailbox.py)."""

from __future__ import annotations

import outcome
import pytest
import trio
import trio.testing

import actors
from actors._mailbox import CLOSED, DEFAULT_MAILBOX_SIZE, Mailbox, Reply

SIZE_TAIL = r"Give a whole number of messages, 0 or more \(0 means every tell waits for the handler\)\."


class Held(actors.Actor[int, None]):
    """Handles messages only while ``gate`` is set."""

    def __init__(self) -> None:
        self.gate = trio.Event()
        self.seen: list[int] = []

    async def handle(self, message: int) -> None:
        await self.gate.wait()
        self.seen.append(message)


async def test_a_full_mailbox_blocks_tell_and_drops_nothing() -> None:
    async with actors.open_system() as system:
        actor = Held()
        ref = await system.spawn(actor, name="held", mailbox_size=2)
        await ref.tell(1)
        await trio.testing.wait_all_tasks_blocked()  # 1 is being handled
        await ref.tell(2)
        await ref.tell(3)
        assert ref.statistics().mailbox_used == 2
        sent: list[int] = []

        async def send(message: int) -> None:
            await ref.tell(message)
            sent.append(message)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, 4)
            await trio.testing.wait_all_tasks_blocked()
            assert sent == []  # backpressure: the sender waits for room
            with pytest.raises(
                actors.MailboxFullError,
                match=r"^Cannot tell_nowait\(\) actor 'held': its mailbox is full \(2 messages\)\. "
                r"Use await tell\(\) to wait for room\.$",
            ):
                ref.tell_nowait(5)
            actor.gate.set()
        assert sent == [4]
        await ref.stop()
        assert actor.seen == [1, 2, 3, 4]


async def test_tell_waiting_for_room_can_be_cancelled_and_sends_nothing() -> None:
    async with actors.open_system() as system:
        actor = Held()
        ref = await system.spawn(actor, mailbox_size=1)
        await ref.tell(1)
        await trio.testing.wait_all_tasks_blocked()
        await ref.tell(2)
        with trio.move_on_after(0) as scope:
            await ref.tell(3)
        assert scope.cancelled_caught
        actor.gate.set()
        await ref.stop()
        assert actor.seen == [1, 2]


async def test_a_zero_size_mailbox_hands_each_message_to_the_waiting_handler() -> None:
    async with actors.open_system() as system:
        actor = Held()
        actor.gate.set()
        ref = await system.spawn(actor, mailbox_size=0)
        await trio.testing.wait_all_tasks_blocked()
        for i in range(3):
            await ref.tell(i)
        await ref.stop()
        assert actor.seen == [0, 1, 2]
        assert ref.statistics().mailbox_size == 0


async def test_mailbox_size_defaults_to_the_class_attribute() -> None:
    class Small(Held):
        mailbox_size = 3

    async with actors.open_system() as system:
        assert (await system.spawn(Held())).statistics().mailbox_size == DEFAULT_MAILBOX_SIZE
        assert (await system.spawn(Small())).statistics().mailbox_size == 3
        assert (await system.spawn(Small(), mailbox_size=5)).statistics().mailbox_size == 5


async def test_mailbox_size_below_zero_is_a_value_error() -> None:
    async with actors.open_system() as system:
        with pytest.raises(ValueError, match=rf"^mailbox_size=-1 for actor 'neg' is below 0\. {SIZE_TAIL}$"):
            await system.spawn(Held(), name="neg", mailbox_size=-1)
        assert system.statistics().actors == ()


@pytest.mark.parametrize("size", [1.5, "3", None])
async def test_mailbox_size_that_is_not_an_int_is_a_type_error(size: object) -> None:
    class Odd(Held):
        mailbox_size = size  # type: ignore[assignment]

    async with actors.open_system() as system:
        with pytest.raises(
            TypeError,
            match=rf"^mailbox_size={size!r} for actor 'odd' is not an integer\. {SIZE_TAIL}$",
        ):
            await system.spawn(Odd(), name="odd")
        assert system.statistics().actors == ()


async def test_reply_keeps_the_first_outcome() -> None:
    reply: Reply[int] = Reply()
    assert not reply.done
    reply.send(outcome.Value(1))
    reply.send(outcome.Error(KeyError("late")))
    assert reply.done
    assert await reply.wait() == 1


async def test_reply_raises_the_error_it_was_sent() -> None:
    reply: Reply[int] = Reply()
    reply.send(outcome.Error(KeyError("k")))
    with pytest.raises(KeyError, match=r"^'k'$"):
        await reply.wait()


# -- the Mailbox itself ----------------------------------------------------------


async def test_senders_waiting_for_room_get_in_in_the_order_they_waited() -> None:
    mailbox = Mailbox(1)
    mailbox.put_nowait((0, None))
    async with trio.open_nursery() as nursery:
        for i in (1, 2, 3):
            nursery.start_soon(mailbox.put, (i, None))
            await trio.testing.wait_all_tasks_blocked()
        taken = []
        for _ in range(4):
            envelope = await mailbox.take()
            taken.append(envelope[0])
            await trio.testing.wait_all_tasks_blocked()
    assert taken == [0, 1, 2, 3]
    assert len(mailbox) == 0


async def test_a_new_sender_does_not_overtake_one_already_waiting() -> None:
    mailbox = Mailbox(1)
    mailbox.put_nowait(("first", None))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(mailbox.put, ("second", None))
        await trio.testing.wait_all_tasks_blocked()
        assert mailbox.take_nowait() == ("first", None)  # "second" moves into the room
        nursery.start_soon(mailbox.put, ("third", None))
        await trio.testing.wait_all_tasks_blocked()
        assert mailbox.take_nowait() == ("second", None)
        assert mailbox.take_nowait() == ("third", None)
    assert mailbox.take_nowait() is None


async def test_a_cancelled_put_leaves_nothing_behind(autojump_clock: trio.testing.MockClock) -> None:
    mailbox = Mailbox(0)
    with trio.move_on_after(1) as scope:
        await mailbox.put(("lost", None))
    assert scope.cancelled_caught
    assert mailbox.take_nowait() is None
    mailbox.close()
    assert mailbox.take_nowait() is CLOSED


async def test_a_cancelled_take_takes_nothing(autojump_clock: trio.testing.MockClock) -> None:
    mailbox = Mailbox(1)
    with trio.move_on_after(1) as scope:
        await mailbox.take()
    assert scope.cancelled_caught
    mailbox.put_nowait(("kept", None))  # not handed to the cancelled receiver
    assert mailbox.take_nowait() == ("kept", None)


async def test_a_rendezvous_hands_the_message_straight_to_the_waiting_receiver() -> None:
    mailbox = Mailbox(0)
    with pytest.raises(trio.WouldBlock):
        mailbox.put_nowait(("nobody waits", None))
    async with trio.open_nursery() as nursery:
        got: list[object] = []

        async def receive() -> None:
            got.append(await mailbox.take())

        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        mailbox.put_nowait(("handed", None))
    assert got == [("handed", None)]
    assert len(mailbox) == 0


async def test_closing_wakes_the_waiting_receiver_with_closed() -> None:
    mailbox = Mailbox(1)
    got: list[object] = []

    async def receive() -> None:
        got.append(await mailbox.take())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        mailbox.close()
    assert got == [CLOSED]
    with pytest.raises(trio.ClosedResourceError):
        mailbox.put_nowait(("after", None))


async def test_closing_fails_the_senders_waiting_for_room() -> None:
    mailbox = Mailbox(0)
    refused: list[BaseException] = []

    async def send() -> None:
        try:
            await mailbox.put(("late", None))
        except trio.ClosedResourceError as exc:
            refused.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        nursery.start_soon(send)
        await trio.testing.wait_all_tasks_blocked()
        mailbox.close()
    assert len(refused) == 2
    assert mailbox.take_nowait() is CLOSED


async def test_drain_closes_and_returns_what_was_queued_in_order() -> None:
    mailbox = Mailbox(3)
    for i in range(3):
        mailbox.put_nowait((i, None))
    assert mailbox.drain() == ((0, None), (1, None), (2, None))
    assert mailbox.closed
    assert mailbox.take_nowait() is CLOSED
