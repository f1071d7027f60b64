"""The :class:`Actor` base class."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Generic, NoReturn, TypeVar

import trio

from ._mailbox import DEFAULT_MAILBOX_SIZE

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._cell import Cell
    from ._ref import ActorRef
    from ._supervision import Supervision

M = TypeVar("M")
R = TypeVar("R")
CM = TypeVar("CM")
CR = TypeVar("CR")


class Actor(Generic[M, R]):
    """Base class for actors: objects that handle messages one at a time.

    Subclass it and override :meth:`handle`. The runtime calls :meth:`on_start`
    once before the first message, :meth:`handle` for each message in mailbox
    order (never two at once), and :meth:`on_stop` once after the last. The
    actor's attributes are touched only by its own task, so they need no locks.

    An actor is never called directly: spawn it with
    :meth:`ActorSystem.spawn <actors.ActorSystem.spawn>` or, for a child that
    lives and dies with this actor, :meth:`spawn`, and talk to it through the
    :class:`~actors.ActorRef` that returns.

    Attributes:
        mailbox_size: the default capacity of this class's mailbox.
        shielded: when true, cancellation from outside (its parent's nursery
            being cancelled) does not reach the actor: it ends only when
            stopped (its parent stops it as the parent ends, however the parent
            ends) or by :meth:`ActorRef.cancel <actors.ActorRef.cancel>`. For
            book-keeping actors that must record how a cancelled run ended;
            their handlers must not block for long.
        keeps_nursery: whether the actor keeps a nursery for :meth:`spawn`'d
            children its whole life (the default). An actor that spawns
            children only inside ``async with actors.open_nursery()`` blocks
            can set it false and is lighter: no nursery of its own, one
            scheduling round less to end.

        ``shielded`` and ``keeps_nursery`` are class attributes an instance may
        override before it is spawned.

    .. versionadded:: 0.1
    """

    mailbox_size: ClassVar[int] = DEFAULT_MAILBOX_SIZE
    shielded: bool = False
    keeps_nursery: bool = True
    _cell: Cell | None = None

    async def on_start(self) -> None:
        """Run once in the actor's task before its first message. Does nothing by default."""

    async def handle(self, message: M) -> R:
        """Handle one *message* and return the reply for an ``ask``.

        The return value of a ``tell`` is discarded. An exception raised while
        handling an ``ask`` is sent back to the asker; one raised while handling
        a ``tell`` goes to the actor's supervision policy.
        """
        msg = f"{type(self).__qualname__} must override handle() to receive messages."
        raise NotImplementedError(msg)

    async def on_stop(self) -> None:
        """Run once in the actor's task after its last message. Does nothing by default.

        It runs when the actor stops gracefully or under a ``stop`` supervision
        policy, but not when the actor is cancelled.
        """

    @property
    def ref(self) -> ActorRef[M, R]:
        """The reference others use to reach this actor.

        Raises:
            RuntimeError: the actor was never spawned.
        """
        cell = self._cell
        if cell is None:
            msg = f"{type(self).__qualname__} has no ref: it was never spawned. Spawn it with system.spawn(...)."
            raise RuntimeError(msg)
        return cell.ref  # type: ignore[return-value]

    def spawn_nowait(
        self,
        actor: Actor[CM, CR] | Callable[[], Actor[CM, CR]],
        *,
        name: str | None = None,
        mailbox_size: int | None = None,
        supervision: Supervision | None = None,
    ) -> ActorRef[CM, CR]:
        """Like :meth:`spawn`, from synchronous code (it never blocks).

        .. versionadded:: 0.1
        """
        cell = self._cell
        if cell is None or cell.nursery is None:
            self._refuse_spawn("spawn_nowait")
        return cell.system._spawn(actor, name, mailbox_size, supervision, cell, None)

    async def spawn(
        self,
        actor: Actor[CM, CR] | Callable[[], Actor[CM, CR]],
        *,
        name: str | None = None,
        mailbox_size: int | None = None,
        supervision: Supervision | None = None,
    ) -> ActorRef[CM, CR]:
        """Spawn a child actor in this actor's own nursery.

        The child dies with its parent: when this actor stops, its children are
        stopped (gracefully, or cancelled if this actor is cancelled), and this
        actor's task does not end before theirs. Arguments are as for
        :meth:`ActorSystem.spawn <actors.ActorSystem.spawn>`.

        Raises:
            RuntimeError: called from outside this actor's life.
        """
        cell = self._cell
        if cell is None or cell.nursery is None:
            self._refuse_spawn("spawn")
        await trio.lowlevel.checkpoint_if_cancelled()
        return cell.system._spawn(actor, name, mailbox_size, supervision, cell, None)

    def _refuse_spawn(self, method: str) -> NoReturn:
        """Raise the error for spawning a child when this actor has no nursery to put it in."""
        if self._cell is not None and not self.keeps_nursery:
            msg = (
                f"{type(self).__qualname__}.{method}(): this actor keeps no nursery (keeps_nursery = False). "
                "Spawn children inside `async with actors.open_nursery() as nursery:` instead."
            )
        else:
            msg = (
                f"{type(self).__qualname__}.{method}() was called while the actor is not running. "
                "Spawn children from on_start() or handle()."
            )
        raise RuntimeError(msg)
