"""open_system(), spawning and observing the actor tree (actors/_system.py)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import actors


class Tracked(actors.Actor[str, str]):
    """Records in *flags* that its handler's ``finally`` and its ``on_stop`` ran."""

    def __init__(self, flags: dict[str, list[str]], *, children: int = 0) -> None:
        self.flags = flags
        self.children = children
        self.handled: list[str] = []

    async def on_start(self) -> None:
        for i in range(self.children):
            await self.spawn(Tracked(self.flags), name=f"{self.ref.name}/{i}")

    async def handle(self, message: str) -> str:
        try:
            if message == "block":
                await trio.sleep_forever()
            self.handled.append(message)
            return message
        finally:
            self.flags["finally"].append(self.ref.name)

    async def on_stop(self) -> None:
        self.flags["on_stop"].append(self.ref.name)


def new_flags() -> dict[str, list[str]]:
    return {"finally": [], "on_stop": []}


async def test_leaving_the_block_stops_every_actor_after_draining_its_mailbox() -> None:
    flags = new_flags()
    async with actors.open_system() as system:
        top = [await system.spawn(Tracked(flags, children=2), name=f"t{i}") for i in range(2)]
        await trio.testing.wait_all_tasks_blocked()
        assert len(system.statistics().actors) == 6
        for ref in top:
            await ref.tell("queued")
    assert system.statistics().actors == ()
    assert not any(ref.is_alive for ref in top)
    assert sorted(flags["finally"]) == ["t0", "t1"]
    assert sorted(flags["on_stop"]) == ["t0", "t0/0", "t0/1", "t1", "t1/0", "t1/1"]


async def test_an_error_in_the_block_cancels_every_actor() -> None:
    flags = new_flags()
    with pytest.RaisesGroup(pytest.RaisesExc(KeyError, match=r"^'body'$")):
        async with actors.open_system() as system:
            ref = await system.spawn(Tracked(flags, children=1), name="t")
            await ref.tell("block")
            await trio.testing.wait_all_tasks_blocked()
            raise KeyError("body")
    assert system.statistics().actors == ()
    assert flags == {"finally": ["t"], "on_stop": []}


async def test_cancelling_the_system_cancels_every_actor_and_ends_the_block() -> None:
    flags = new_flags()
    async with actors.open_system() as system:
        ref = await system.spawn(Tracked(flags, children=1), name="t")
        await ref.tell("block")
        await trio.testing.wait_all_tasks_blocked()
        system.cancel()
        await trio.sleep_forever()  # cancelled with the system
    assert system.statistics().actors == ()
    assert flags == {"finally": ["t"], "on_stop": []}


async def test_the_block_waits_for_actors_still_handling_a_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Slow(actors.Actor[None, None]):
        async def handle(self, message: None) -> None:
            await trio.sleep(5)

    async with actors.open_system() as system:
        await (await system.spawn(Slow())).tell(None)
        start = trio.current_time()
    assert trio.current_time() - start == 5


async def test_spawning_after_the_block_was_left_raises() -> None:
    async with actors.open_system() as system:
        pass
    with pytest.raises(
        RuntimeError,
        match=r"^Cannot spawn into an actor system whose `async with` block has been left\.$",
    ):
        system.spawn_nowait(Tracked(new_flags()))


async def test_spawn_is_a_cancel_point_and_spawns_nothing_when_cancelled() -> None:
    async with actors.open_system() as system:
        with trio.CancelScope() as scope:
            scope.cancel()
            await system.spawn(Tracked(new_flags()))
        assert system.statistics().actors == ()


# -- bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("thing", "shown"),
    [
        (42, r"int 42"),
        ("echo", r"str 'echo'"),
        (None, r"NoneType None"),
    ],
)
async def test_spawning_a_non_actor_raises_not_an_actor_error(thing: object, shown: str) -> None:
    async with actors.open_system() as system:
        with pytest.raises(
            actors.NotAnActorError,
            match=rf"^spawn\(\) got {shown}, which is not an Actor\. "
            r"Subclass actors\.Actor and pass an instance \(or a callable that returns one\)\.$",
        ) as info:
            await system.spawn(thing)  # type: ignore[arg-type]
        assert isinstance(info.value, TypeError)
        assert system.statistics().actors == ()


async def test_spawning_a_callable_that_does_not_build_an_actor_raises() -> None:
    def build() -> object:
        return object()

    async with actors.open_system() as system:
        with pytest.raises(
            actors.NotAnActorError,
            match=r"^spawn\(\) got <function .*build at 0x[0-9a-f]+>, which returned object, not an Actor\. "
            r"Give an Actor instance or a callable that returns one\.$",
        ):
            await system.spawn(build)  # type: ignore[arg-type]


async def test_a_class_is_a_factory() -> None:
    class Echo(actors.Actor[int, int]):
        async def handle(self, message: int) -> int:
            return message

    async with actors.open_system() as system:
        ref = await system.spawn(Echo)
        assert await ref.ask(3) == 3


async def test_actor_system_has_no_public_constructor() -> None:
    with pytest.raises(TypeError, match=r"^actors\.ActorSystem has no public constructor\.$"):
        actors.ActorSystem()  # type: ignore[call-arg]


# -- statistics --------------------------------------------------------------


async def test_statistics_show_names_parents_and_mailboxes() -> None:
    flags = new_flags()
    async with actors.open_system() as system:
        unnamed = await system.spawn(Tracked(flags), mailbox_size=4)
        tree = await system.spawn(Tracked(flags, children=2), name="tree", mailbox_size=2)
        await trio.testing.wait_all_tasks_blocked()
        await unnamed.tell("block")
        await unnamed.tell("queued")
        await trio.testing.wait_all_tasks_blocked()
        stats = system.statistics()
        assert stats.names() == [f"Tracked #{unnamed.statistics().id}", "tree", "tree/0", "tree/1"]
        by_name = {a.name: a for a in stats.actors}
        assert [a.parent for a in stats.actors] == [None, None, "tree", "tree"]
        assert by_name["tree"].mailbox_size == 2
        assert by_name["tree/0"].mailbox_size == actors.Actor.mailbox_size
        assert (by_name[unnamed.name].mailbox_used, by_name[unnamed.name].mailbox_size) == (1, 4)
        assert by_name[unnamed.name].handled == 1
        assert all(a.state == "running" for a in stats.actors)
        assert isinstance(stats, actors.SystemStatistics)
        await tree.stop()
        assert system.statistics().names() == [unnamed.name]
        unnamed.cancel()


async def test_two_systems_are_independent() -> None:
    async with actors.open_system() as one, actors.open_system() as two:
        ref = await one.spawn(Tracked(new_flags()), name="a")
        assert one.statistics().names() == ["a"]
        assert two.statistics().actors == ()
        assert await ref.ask("x") == "x"
