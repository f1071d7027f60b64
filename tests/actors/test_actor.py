"""The Actor base class: one message at a time, hooks, children (actors/_actor.py)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import actors


class Logged(actors.Actor[int, int]):
    """Logs its hooks and the start and end of each message it handles."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def on_start(self) -> None:
        self.log.append("start")

    async def handle(self, message: int) -> int:
        self.log.append(f"enter {message}")
        await trio.sleep(1)
        self.log.append(f"exit {message}")
        return message

    async def on_stop(self) -> None:
        self.log.append("stop")


async def test_messages_are_handled_one_at_a_time_in_mailbox_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    async with actors.open_system() as system:
        ref = await system.spawn(Logged(log))
        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(ref.ask, i)
                await trio.testing.wait_all_tasks_blocked()
            await ref.tell(3)
    assert log == [
        "start",
        *(f"{step} {i}" for i in range(4) for step in ("enter", "exit")),
        "stop",
    ]


async def test_on_start_runs_before_the_first_message_even_if_it_was_queued_first() -> None:
    log: list[str] = []
    async with actors.open_system() as system:
        ref = system.spawn_nowait(Logged(log))
        ref.tell_nowait(7)  # queued before the actor's task has even started
        await trio.testing.wait_all_tasks_blocked()
        assert log == ["start", "enter 7"]
        ref.cancel()
    assert log == ["start", "enter 7"]  # cancelled: no exit, no on_stop


async def test_hooks_default_to_doing_nothing() -> None:
    class Plain(actors.Actor[int, int]):
        async def handle(self, message: int) -> int:
            return message + 1

    async with actors.open_system() as system:
        ref = await system.spawn(Plain())
        assert await ref.ask(1) == 2


async def test_handle_must_be_overridden() -> None:
    class Mute(actors.Actor[int, int]):
        pass

    async with actors.open_system() as system:
        ref = await system.spawn(Mute())
        with pytest.raises(
            NotImplementedError, match=r"^.*Mute must override handle\(\) to receive messages\.$"
        ):
            await ref.ask(1)


async def test_ref_of_an_actor_never_spawned_raises() -> None:
    with pytest.raises(
        RuntimeError,
        match=r"^Logged has no ref: it was never spawned\. Spawn it with system\.spawn\(\.\.\.\)\.$",
    ):
        _ = Logged([]).ref


async def test_spawn_from_an_actor_that_is_not_running_raises() -> None:
    with pytest.raises(
        RuntimeError,
        match=r"^Logged\.spawn\(\) was called while the actor is not running\. "
        r"Spawn children from on_start\(\) or handle\(\)\.$",
    ):
        await Logged([]).spawn(Logged([]))


async def test_spawn_nowait_from_an_actor_that_is_not_running_raises() -> None:
    with pytest.raises(
        RuntimeError,
        match=r"^Logged\.spawn_nowait\(\) was called while the actor is not running\. "
        r"Spawn children from on_start\(\) or handle\(\)\.$",
    ):
        Logged([]).spawn_nowait(Logged([]))


async def test_an_instance_cannot_run_twice_at_once() -> None:
    async with actors.open_system() as system:
        actor = Logged([])
        await system.spawn(actor, name="one")
        with pytest.raises(
            RuntimeError,
            match=r"^Logged instance is already running as 'one'; spawn a new instance\.$",
        ):
            await system.spawn(actor)


# -- children ----------------------------------------------------------------


class Leaf(actors.Actor[str, str]):
    def __init__(self, flags: dict[str, bool]) -> None:
        self.flags = flags

    async def handle(self, message: str) -> str:
        if message == "block":
            try:
                await trio.sleep_forever()
            finally:
                self.flags["leaf finally"] = True
        return message

    async def on_stop(self) -> None:
        self.flags["leaf stopped"] = True


class Parent(actors.Actor[str, actors.ActorRef[str, str]]):
    def __init__(self, flags: dict[str, bool]) -> None:
        self.flags = flags
        self.child: actors.ActorRef[str, str] | None = None

    async def on_start(self) -> None:
        self.child = await self.spawn(Leaf(self.flags), name="leaf")

    async def handle(self, message: str) -> actors.ActorRef[str, str]:
        assert self.child is not None
        return self.child

    async def on_stop(self) -> None:
        assert self.child is not None
        self.flags["child alive at parent stop"] = self.child.is_alive


class SyncParent(Parent):
    """Spawns its child with spawn_nowait(), from synchronous code in its handler."""

    async def on_start(self) -> None:
        pass

    async def handle(self, message: str) -> actors.ActorRef[str, str]:
        if self.child is None:
            self.child = self.spawn_nowait(Leaf(self.flags), name="leaf")
        return self.child


@pytest.mark.parametrize("parent_class", [Parent, SyncParent], ids=["spawn", "spawn_nowait"])
async def test_a_child_is_stopped_with_its_parent(parent_class: type[Parent]) -> None:
    flags: dict[str, bool] = {}
    async with actors.open_system() as system:
        parent = await system.spawn(parent_class(flags), name="parent")
        child = await parent.ask("child?")
        assert child.statistics().parent == "parent"
        assert await child.ask("hi") == "hi"
        await parent.stop()
        # The parent's task ends only after its child's.
        assert not child.is_alive
        assert flags == {"child alive at parent stop": True, "leaf stopped": True}


async def test_a_child_is_cancelled_with_its_parent() -> None:
    flags: dict[str, bool] = {}
    async with actors.open_system() as system:
        parent = await system.spawn(Parent(flags))
        child = await parent.ask("child?")
        await child.tell("block")
        await trio.testing.wait_all_tasks_blocked()
        parent.cancel()
        await parent.wait_stopped()
        assert not child.is_alive
        assert flags == {"leaf finally": True}
        with pytest.raises(actors.ActorStoppedError):
            await child.ask("hi")


async def test_a_parent_waits_for_its_children_to_drain() -> None:
    flags: dict[str, bool] = {}
    async with actors.open_system() as system:
        parent = await system.spawn(Parent(flags))
        child = await parent.ask("child?")
        await child.tell("block")
        await trio.testing.wait_all_tasks_blocked()
        parent.stop_nowait()
        await trio.testing.wait_all_tasks_blocked()
        assert parent.is_alive  # its child is still handling "block"
        assert child.statistics().state == "stopping"
        child.cancel()
        await parent.wait_stopped()


# -- shielded actors ---------------------------------------------------------


class Bookkeeper(actors.Actor[str, None]):
    shielded = True

    def __init__(self) -> None:
        self.entries: list[str] = []

    async def handle(self, message: str) -> None:
        await trio.lowlevel.checkpoint()
        self.entries.append(message)


async def test_a_shielded_actor_outlives_a_cancel_of_its_surroundings_until_stopped() -> None:
    keeper = Bookkeeper()
    async with actors.open_system() as system:
        ref = await system.spawn(keeper)
        for entry in ("a", "b", "c"):
            await ref.tell(entry)
        system.cancel()
    # Its handler checkpoints, yet the cancel did not reach it: leaving the
    # block stopped it gracefully, after its mailbox was drained.
    assert keeper.entries == ["a", "b", "c"]
    assert not ref.is_alive


async def test_a_shielded_child_records_what_happens_after_its_parent_is_cancelled() -> None:
    keeper = Bookkeeper()

    class Run(actors.Actor[str, None]):
        async def on_start(self) -> None:
            self.book = await self.spawn(keeper)

        async def handle(self, message: str) -> None:
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await self.book.tell("cancelled")

    async with actors.open_system() as system:
        run = await system.spawn(Run())
        await run.tell("go")
        await trio.testing.wait_all_tasks_blocked()
        run.cancel()
        await run.wait_stopped()
    # The parent's finally sent the entry, and the shielded child handled it
    # before stopping with its parent.
    assert keeper.entries == ["cancelled"]


async def test_a_shielded_actor_can_still_be_cancelled_directly() -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Bookkeeper())
        ref.cancel()
        await ref.wait_stopped()
