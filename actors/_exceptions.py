"""The exceptions of :mod:`actors`; every one descends from :class:`ActorError`."""

from __future__ import annotations

from typing import final


class ActorError(Exception):
    """The root of every error raised by the actor kernel itself."""


@final
class ActorStoppedError(ActorError):
    """A message was sent to an actor that has stopped, or the actor stopped
    before it replied to an ``ask``.

    Attributes:
        actor: the name of the actor.
    """

    def __init__(self, message: str, *, actor: str) -> None:
        super().__init__(message)
        self.actor = actor


@final
class NotAnActorError(ActorError, TypeError):
    """``spawn`` was given something that is neither an :class:`Actor` nor a
    callable returning one."""


@final
class MailboxFullError(ActorError):
    """``tell_nowait`` found the actor's mailbox full."""


@final
class AskTimeoutError(ActorError, TimeoutError):
    """An ``ask`` got no reply within its ``timeout``."""
