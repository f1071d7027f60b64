"""actors.open_nursery(): children scoped to a block of an actor's work (actors/_nursery.py)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import actors


class Child(actors.Actor[str, str]):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def handle(self, message: str) -> str:
        if message == "fail":
            raise ValueError("child failed")
        if message == "slow":
            try:
                await trio.sleep(3)
            finally:
                self.log.append("slow finally")
        self.log.append(f"handled {message}")
        return message

    async def on_stop(self) -> None:
        self.log.append("child stopped")


class Scoped(actors.Actor[str, object]):
    """Spawns one child for the length of each message's handling."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def handle(self, message: str) -> object:
        async with actors.open_nursery() as nursery:
            child = await nursery.spawn(Child(self.log), name="child")
            self.log.append(f"parent of child: {child.statistics().parent}")
            await child.tell(message)
            if message == "raise":
                raise KeyError("block")
            if message == "cancel":
                nursery.cancel_scope.cancel()
        self.log.append(f"block over, child alive: {child.is_alive}")
        return child


async def test_children_are_the_actors_and_are_stopped_gracefully_when_the_block_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    async with actors.open_system() as system:
        ref = await system.spawn(Scoped(log), name="scoped")
        start = trio.current_time()
        await ref.ask("slow")
        assert trio.current_time() - start == 3  # the block waited for the child to drain
    assert log == [
        "parent of child: scoped",
        "slow finally",
        "handled slow",
        "child stopped",
        "block over, child alive: False",
    ]


async def test_an_error_in_the_block_cancels_its_children(autojump_clock: trio.testing.MockClock) -> None:
    log: list[str] = []
    async with actors.open_system() as system:
        ref = await system.spawn(Scoped(log))
        with pytest.RaisesGroup(pytest.RaisesExc(KeyError, match=r"^'block'$")):
            await ref.ask("raise")
        assert trio.current_time() == 0
        assert ref.is_alive
    # The child was cancelled before it handled anything; the block never ended normally.
    assert log == [f"parent of child: {ref.name}"]


async def test_cancelling_the_blocks_scope_cancels_its_children() -> None:
    log: list[str] = []
    async with actors.open_system() as system:
        ref = await system.spawn(Scoped(log))
        child = await ref.ask("cancel")
        assert isinstance(child, actors.ActorRef)
        assert not child.is_alive
    assert log[-1] == "block over, child alive: False"
    assert "child stopped" not in log


async def test_an_escalated_child_failure_is_raised_from_the_block() -> None:
    log: list[str] = []
    async with actors.open_system() as system:
        ref = await system.spawn(Scoped(log))
        with pytest.RaisesGroup(
            pytest.RaisesExc(
                ValueError, match=r"^child failed\nEscalated by actor 'child' \(supervision: escalate\)\.$"
            )
        ):
            await ref.ask("fail")
        assert ref.is_alive  # the ask's asker got it; the actor goes on


async def test_open_nursery_outside_an_actor_raises() -> None:
    with pytest.raises(
        RuntimeError,
        match=r"^actors\.open_nursery\(\) was used outside an actor\. Use it in an actor's "
        r"on_start\(\), handle\(\) or on_stop\(\); outside actors, spawn with system\.spawn\(\)\.$",
    ):
        async with actors.open_nursery():
            pass  # pragma: no cover


async def test_actor_nursery_has_no_public_constructor() -> None:
    with pytest.raises(TypeError, match=r"^actors\.ActorNursery has no public constructor\.$"):
        actors.ActorNursery()  # type: ignore[call-arg]


class Light(actors.Actor[str, object]):
    keeps_nursery = False

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def handle(self, message: str) -> object:
        if message == "spawn":
            return await self.spawn(Child(self.log))
        if message == "spawn_nowait":
            return self.spawn_nowait(Child(self.log))
        if message == "block":
            try:
                await trio.sleep_forever()
            finally:
                self.log.append("light finally")
        async with actors.open_nursery() as nursery:
            child = await nursery.spawn(Child(self.log))
            return await child.ask(message)


async def test_an_actor_without_a_nursery_spawns_only_in_blocks() -> None:
    log: list[str] = []
    async with actors.open_system() as system:
        ref = await system.spawn(Light(log))
        with pytest.raises(
            RuntimeError,
            match=r"^Light\.spawn\(\): this actor keeps no nursery \(keeps_nursery = False\)\. "
            r"Spawn children inside `async with actors\.open_nursery\(\) as nursery:` instead\.$",
        ):
            await ref.ask("spawn")
        with pytest.raises(RuntimeError, match=r"^Light\.spawn_nowait\(\): this actor keeps no nursery"):
            await ref.ask("spawn_nowait")
        assert await ref.ask("hi") == "hi"
        assert log == ["handled hi", "child stopped"]


async def test_an_actor_without_a_nursery_can_still_be_cancelled() -> None:
    log: list[str] = []
    async with actors.open_system() as system:
        ref = await system.spawn(Light(log))
        await ref.tell("block")
        await trio.testing.wait_all_tasks_blocked()
        ref.cancel()
        await ref.wait_stopped()
    assert log == ["light finally"]
