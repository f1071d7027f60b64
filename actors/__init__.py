"""The actor kernel of trioflow: Trio tasks with mailboxes, under structured concurrency.

An actor is a Trio task that owns a bounded mailbox and handles its messages
one at a time. Actors live in nurseries: top-level ones in the nursery of an
:func:`open_system` block, children in their parent's own nursery. Nothing of
an actor outlives the block that opened its system.

.. versionadded:: 0.1
"""

from ._actor import Actor as Actor
from ._exceptions import (
    ActorError as ActorError,
)
from ._exceptions import (
    ActorStoppedError as ActorStoppedError,
)
from ._exceptions import (
    AskTimeoutError as AskTimeoutError,
)
from ._exceptions import (
    MailboxFullError as MailboxFullError,
)
from ._exceptions import (
    NotAnActorError as NotAnActorError,
)
from ._mailbox import Reply as Reply
from ._nursery import ActorNursery as ActorNursery
from ._nursery import open_nursery as open_nursery
from ._ref import ActorRef as ActorRef
from ._ref import ActorStatistics as ActorStatistics
from ._supervision import Supervision as Supervision
from ._system import ActorSystem as ActorSystem
from ._system import SystemStatistics as SystemStatistics
from ._system import open_system as open_system

__all__ = [
    "Actor",
    "ActorRef",
    "ActorStatistics",
    "Reply",
    "ActorSystem",
    "SystemStatistics",
    "Supervision",
    "open_system",
    "open_nursery",
    "ActorNursery",
    "ActorError",
    "ActorStoppedError",
    "AskTimeoutError",
    "MailboxFullError",
    "NotAnActorError",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("actors."):
        _obj.__module__ = "actors"
del _name, _obj
