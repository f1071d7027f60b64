"""``open_system()``: the root of an actor tree, embedded in a Trio program."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, TypeVar, final

import attrs
import trio

from ._actor import Actor
from ._cell import Cell
from ._exceptions import NotAnActorError
from ._mailbox import check_mailbox_size
from ._ref import ActorStatistics, State
from ._supervision import Supervision
from ._util import NoPublicConstructor

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager
    from types import TracebackType

    from ._ref import ActorRef

M = TypeVar("M")
R = TypeVar("R")

_ESCALATE = Supervision.escalate()


@final
@attrs.frozen
class SystemStatistics:
    """A snapshot of every live actor of a system, from :meth:`ActorSystem.statistics`.

    Attributes:
        actors: one :class:`~actors.ActorStatistics` per live actor, parents
            before their children.

    .. versionadded:: 0.1
    """

    actors: tuple[ActorStatistics, ...]

    def names(self) -> list[str]:
        """The names of the live actors."""
        return [a.name for a in self.actors]


@final
class ActorSystem(metaclass=NoPublicConstructor):
    """A tree of actors living in one nursery.

    Only :func:`open_system` builds one. Top-level actors live in the system's
    nursery; children live in their parent's own nursery, so the actor tree is
    the nursery tree.

    .. versionadded:: 0.1
    """

    __slots__ = ("_closing", "_ids", "_live", "_nursery")

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._ids = itertools.count(1)
        self._live: dict[int, Cell] = {}
        self._closing = False

    async def spawn(
        self,
        actor: Actor[M, R] | Callable[[], Actor[M, R]],
        *,
        name: str | None = None,
        mailbox_size: int | None = None,
        supervision: Supervision | None = None,
    ) -> ActorRef[M, R]:
        """Start *actor* as a top-level actor of this system and return its ref.

        Messages can be sent to the ref at once; the actor handles them after
        its ``on_start`` hook has run. This does not wait for the actor to start.

        Args:
            actor: an :class:`~actors.Actor` instance, or a callable that builds
                one (needed for :meth:`Supervision.restart
                <actors.Supervision.restart>` to start from a fresh instance).
            name: a name for errors and statistics; by default the class name
                and the actor's id.
            mailbox_size: the mailbox capacity; by default the class's
                ``mailbox_size``.
            supervision: what to do when a ``tell`` handler raises; by default
                :meth:`Supervision.escalate <actors.Supervision.escalate>`.

        Raises:
            NotAnActorError: *actor* is not an actor, nor builds one.
            ValueError: *mailbox_size* is below 0.
            RuntimeError: the system's block has already been left.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        return self._spawn(actor, name, mailbox_size, supervision, None, None)

    def spawn_nowait(
        self,
        actor: Actor[M, R] | Callable[[], Actor[M, R]],
        *,
        name: str | None = None,
        mailbox_size: int | None = None,
        supervision: Supervision | None = None,
    ) -> ActorRef[M, R]:
        """Like :meth:`spawn`, from synchronous code (it never blocks).

        .. versionadded:: 0.1
        """
        return self._spawn(actor, name, mailbox_size, supervision, None, None)

    def _spawn(
        self,
        actor: Actor[M, R] | Callable[[], Actor[M, R]],
        name: str | None,
        mailbox_size: int | None,
        supervision: Supervision | None,
        parent: Cell | None,
        nursery: trio.Nursery | None,
    ) -> ActorRef[M, R]:
        """Start *actor*: top-level if *parent* is ``None``, else a child of *parent*.

        A child lives in *nursery* (an :func:`open_nursery` block's), or by
        default in its parent's own nursery. The public spawns of systems,
        actors and actor nurseries all come here.
        """
        if self._closing and parent is None:
            msg = "Cannot spawn into an actor system whose `async with` block has been left."
            raise RuntimeError(msg)
        factory: Callable[[], Actor[M, R]] | None = None
        if isinstance(actor, Actor):
            instance = actor
        elif callable(actor):
            factory = actor
            instance = actor()
            if not isinstance(instance, Actor):
                msg = (
                    f"spawn() got {actor!r}, which returned {type(instance).__qualname__}, "
                    "not an Actor. Give an Actor instance or a callable that returns one."
                )
                raise NotAnActorError(msg)
        else:
            msg = (
                f"spawn() got {type(actor).__qualname__} {actor!r}, which is not an Actor. "
                "Subclass actors.Actor and pass an instance (or a callable that returns one)."
            )
            raise NotAnActorError(msg)
        if instance._cell is not None and instance._cell.state is not State.STOPPED:
            msg = f"{type(instance).__qualname__} instance is already running as {instance._cell.name!r}; spawn a new instance."
            raise RuntimeError(msg)
        actor_id = next(self._ids)
        if name is None:
            name = f"{type(instance).__qualname__} #{actor_id}"
        size = check_mailbox_size(
            type(instance).mailbox_size if mailbox_size is None else mailbox_size, actor=name
        )
        cell = Cell(
            system=self,
            parent=parent,
            actor=instance,  # type: ignore[arg-type]
            factory=factory,  # type: ignore[arg-type]
            id=actor_id,
            name=name,
            mailbox_size=size,
            supervision=_ESCALATE if supervision is None else supervision,
        )
        self._live[actor_id] = cell
        if parent is None:
            nursery = self._nursery
        else:
            if nursery is None:
                nursery = parent.nursery
            parent.children[actor_id] = cell
        assert nursery is not None
        nursery.start_soon(cell.run, name=name)
        return cell.ref  # type: ignore[return-value]

    def _unregister(self, cell: Cell) -> None:
        del self._live[cell.id]
        if cell.parent is not None:
            cell.parent.children.pop(cell.id, None)

    def statistics(self) -> SystemStatistics:
        """A snapshot of the live actors: names, parents, mailbox use."""
        return SystemStatistics(tuple(cell.ref.statistics() for cell in self._live.values()))

    def cancel(self) -> None:
        """Cancel every actor of the system at once."""
        self._nursery.cancel_scope.cancel()

    @property
    def cancel_scope(self) -> trio.CancelScope:
        """The cancel scope of the system's block: the block's own code and every actor of the system.

        Cancelling it is :meth:`cancel`, and cancels the code of the
        ``async with`` block too (a shielded actor goes on until stopped); a
        deadline set on it is a timeout for the block. It is the cancel scope
        of the nursery the block opens, so using it costs no scope of one's own.

        .. versionadded:: 0.2
        """
        return self._nursery.cancel_scope

    def _stop_all(self) -> None:
        self._closing = True
        for cell in list(self._live.values()):
            if cell.parent is None:
                cell.request_stop()


@final
class _OpenSystem:
    """The async context manager :func:`open_system` returns (a class, not a
    generator: opening a system is on the path of every run)."""

    __slots__ = ("_manager", "_system")

    def __init__(self) -> None:
        self._manager = trio.open_nursery()
        self._system: ActorSystem | None = None

    async def __aenter__(self) -> ActorSystem:
        self._system = ActorSystem._create(await self._manager.__aenter__())
        return self._system

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._system is not None
        self._system._stop_all()
        return await self._manager.__aexit__(exc_type, exc, tb)


def open_system() -> AbstractAsyncContextManager[ActorSystem]:
    """Open an actor system for the duration of an ``async with`` block.

    Leaving the block stops every top-level actor gracefully (each handles what
    is already in its mailbox, then stops its children) and waits for them; if
    the block raises, every actor is cancelled instead. Nothing of the system
    runs after the block. An actor's escalated failure cancels the block and is
    raised from it (inside an :class:`ExceptionGroup`, as Trio nurseries do).

    .. versionadded:: 0.1
    """
    return _OpenSystem()
