"""``open_nursery()``: children of the current actor, scoped to a block of its code."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, final

import trio

from ._cell import current_cell
from ._util import NoPublicConstructor

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from ._actor import Actor
    from ._cell import Cell
    from ._ref import ActorRef
    from ._supervision import Supervision

M = TypeVar("M")
R = TypeVar("R")


@final
class ActorNursery(metaclass=NoPublicConstructor):
    """Children of the current actor that live only as long as an ``async with`` block.

    From :func:`open_nursery`. The children are the current actor's (they show
    as such in statistics), but live in a Trio nursery the block owns: when
    the block ends, the children still running are stopped gracefully and the
    block waits for them; if the block raises, they are cancelled.

    .. versionadded:: 0.1
    """

    __slots__ = ("_cell", "_children", "_nursery")

    def __init__(self, cell: Cell, nursery: trio.Nursery) -> None:
        self._cell = cell
        self._nursery = nursery
        self._children: list[ActorRef[object, object]] = []

    @property
    def cancel_scope(self) -> trio.CancelScope:
        """The block's cancel scope: cancelling it cancels every child spawned here."""
        return self._nursery.cancel_scope

    def spawn_nowait(
        self,
        actor: Actor[M, R] | Callable[[], Actor[M, R]],
        *,
        name: str | None = None,
        mailbox_size: int | None = None,
        supervision: Supervision | None = None,
    ) -> ActorRef[M, R]:
        """Start *actor* as a child of the current actor, in this block's nursery.

        Arguments and errors are as for :meth:`ActorSystem.spawn <actors.ActorSystem.spawn>`.
        """
        ref = self._cell.system._spawn(actor, name, mailbox_size, supervision, self._cell, self._nursery)
        self._children.append(ref)  # type: ignore[arg-type]
        return ref

    async def spawn(
        self,
        actor: Actor[M, R] | Callable[[], Actor[M, R]],
        *,
        name: str | None = None,
        mailbox_size: int | None = None,
        supervision: Supervision | None = None,
    ) -> ActorRef[M, R]:
        """Like :meth:`spawn_nowait`; a checkpoint for cancellation first."""
        await trio.lowlevel.checkpoint_if_cancelled()
        return self.spawn_nowait(actor, name=name, mailbox_size=mailbox_size, supervision=supervision)


@final
class _OpenNursery:
    """The async context manager :func:`open_nursery` returns."""

    __slots__ = ("_actor_nursery", "_manager")

    def __init__(self) -> None:
        self._manager = trio.open_nursery()
        self._actor_nursery: ActorNursery | None = None

    async def __aenter__(self) -> ActorNursery:
        cell = current_cell.get(None)
        if cell is None:
            msg = (
                "actors.open_nursery() was used outside an actor. Use it in an actor's "
                "on_start(), handle() or on_stop(); outside actors, spawn with system.spawn()."
            )
            raise RuntimeError(msg)
        nursery = await self._manager.__aenter__()
        self._actor_nursery = ActorNursery._create(cell, nursery)
        return self._actor_nursery

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._actor_nursery is not None
        for child in self._actor_nursery._children:
            child.stop_nowait()
        return await self._manager.__aexit__(exc_type, exc, tb)


def open_nursery() -> _OpenNursery:
    """Open a block whose children are the current actor's: ``async with actors.open_nursery() as n:``.

    Use it inside an actor (``on_start``, ``handle``, ``on_stop``) to spawn
    children that must not outlive a piece of its work: when the block ends,
    children still running are stopped gracefully (they finish what is in
    their mailboxes) and the block waits for them. If the block raises or is
    cancelled, they are cancelled. An escalated child failure is raised from
    the block, in an :class:`ExceptionGroup`.

    Raises:
        RuntimeError: used outside an actor's task.

    .. versionadded:: 0.1
    """
    return _OpenNursery()
