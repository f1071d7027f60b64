"""Supervision policies: what happens when an actor's handler raises."""

from __future__ import annotations

import math
from typing import Literal, final

import attrs

_Kind = Literal["escalate", "restart", "stop"]


@final
@attrs.frozen
class Supervision:
    """What an actor does when a ``tell`` handler (or a start/stop hook) raises.

    An exception raised while handling an ``ask`` always goes back to the asker
    and never reaches supervision: the asker is the one who can handle it.

    Build one with :meth:`escalate` (the default), :meth:`restart` or :meth:`stop`.

    .. versionadded:: 0.1
    """

    kind: _Kind
    max_restarts: int = 0
    within: float = math.inf

    @classmethod
    def escalate(cls) -> Supervision:
        """Let the exception propagate to the parent: the actor dies, its nursery
        cancels its siblings, and the parent (or the system's block) raises it."""
        return cls("escalate")

    @classmethod
    def restart(cls, max_restarts: int = 3, *, within: float = 60.0) -> Supervision:
        """Drop the failing message and restart the actor.

        The actor is rebuilt by its factory (or, when it was spawned as an
        instance, its ``on_start`` hook runs again) and goes on with the rest of
        its mailbox. More than *max_restarts* failures within *within* seconds
        (on Trio's clock) escalate the last failure instead.

        Raises:
            ValueError: *max_restarts* is negative or *within* is not positive.
        """
        if max_restarts < 0:
            msg = f"Supervision.restart(max_restarts={max_restarts!r}): max_restarts must be 0 or more."
            raise ValueError(msg)
        if not within > 0:
            msg = f"Supervision.restart(within={within!r}): within must be a positive number of seconds."
            raise ValueError(msg)
        return cls("restart", max_restarts, within)

    @classmethod
    def stop(cls) -> Supervision:
        """Stop the actor quietly: it runs ``on_stop``, pending asks get
        :class:`~actors.ActorStoppedError`, and the failure is kept on
        :attr:`ActorRef.failure <actors.ActorRef.failure>` instead of being raised."""
        return cls("stop")
