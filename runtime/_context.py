"""What a node can see of its run: ``rt.context``, ``rt.request()``, the current frame.

The current run and node are held in a :class:`contextvars.ContextVar`. Trio
copies a task's context into the tasks it starts, so a node's task sees its
own run and nothing else; there is no global registry.
"""

from __future__ import annotations

import contextvars
import copy
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, final

import attrs

from ._exceptions import OutsideRunError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._run import NodeActor, Run


@final
@attrs.frozen
class RequestMetadata:
    """Who asked for a run and how: an immutable value passed into the run.

    A session builds one per request; a node reads it with :func:`request`.
    Nothing of one request is ever replayed into another.

    .. versionadded:: 0.1
    """

    user_id: str | None = None
    conversation_id: str | None = None
    user_message_id: str | None = None
    message: object = None
    trace_id: str | None = None
    run_id: str | None = None
    parent_id: str | None = None
    parent_name: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    extra: tuple[tuple[str, object], ...] = ()


@attrs.define(slots=True)
class Frame:
    """Where the current task is: which run, and which node actor (if any)."""

    run: Run
    actor: NodeActor | None


current_frame: contextvars.ContextVar[Frame] = contextvars.ContextVar("trioflow_frame")


@final
@attrs.frozen
class Invocation:
    """One call of user code about to run, as an invocation hook sees it.

    Attributes:
        kind: ``"node"`` for a node request, ``"routine"`` for a routine's slot handler.
        name: the node's name, or the routine's id.
        path: for a node, the node names from the run's entry point down to it;
            for a routine, ``(routine_id, slot_name)``.
        args: the positional arguments (a node's).
        kwargs: the keyword arguments (a node's), or the slot's data (a routine's).
    """

    kind: str
    name: str
    path: tuple[str, ...]
    args: tuple[object, ...]
    kwargs: Mapping[str, object]


#: Awaited once the user's code of an invocation has returned, with its result;
#: what it raises is raised as if by that code (its result is then lost).
AfterHook = Callable[[object], Awaitable[None]]

#: Called (and awaited) in the invoking task just before each node or routine
#: handler runs; what it raises is raised as if by the user's code. It may
#: return an :data:`AfterHook` to await once that code has returned. Set by
#: ``runtime.testing`` to inject faults without editing a workflow. Being a
#: context variable, it reaches exactly the runs started where it is set.
invocation_hook: contextvars.ContextVar[Callable[[Invocation], Awaitable[AfterHook | None]] | None] = (
    contextvars.ContextVar("trioflow_invocation_hook", default=None)
)


def current_run(api: str) -> Run:
    """The run the calling task belongs to, or an :class:`OutsideRunError` for *api*."""
    frame = current_frame.get(None)
    if frame is None:
        msg = (
            f"{api} was called outside a run. Start one with rt.Flow('demo', entry_point=node).invoke(...), "
            "or await flow.ainvoke(...) from Trio code."
        )
        raise OutsideRunError(msg)
    return frame.run


def request() -> RequestMetadata:
    """The metadata of the request that started the current run.

    A run started without a session gets an empty :class:`RequestMetadata`
    carrying only its run id.

    Raises:
        OutsideRunError: called outside a run.

    .. versionadded:: 0.1
    """
    return current_run("rt.request()").metadata


_MISSING = object()


@final
class _RunContext:
    """The global context of the current run: ``rt.context``.

    Each run starts from a deep copy of its Flow's ``context``, so writes here,
    in-place changes to mutable values included, are seen by this run's nodes
    only: never by another run, nor by the Flow's dict.

    .. versionadded:: 0.1
    """

    __slots__ = ()

    def get(self, key: str, default: object = None) -> object:
        """The value under *key*, or *default*."""
        return current_run("rt.context.get()").state.context.get(key, default)

    def put(self, key: str, value: object) -> None:
        """Set *key* to *value* for the rest of this run."""
        current_run("rt.context.put()").state.context[key] = value

    def update(self, values: Mapping[str, object]) -> None:
        """Set every key of *values*."""
        current_run("rt.context.update()").state.context.update(values)

    def delete(self, key: str) -> None:
        """Remove *key*.

        Raises:
            KeyError: *key* is not in the context; the message lists the keys that are.
        """
        ctx = current_run("rt.context.delete()").state.context
        if key not in ctx:
            known = ", ".join(repr(k) for k in ctx) or "none"
            msg = f"rt.context.delete({key!r}): the run's context has no key {key!r}; its keys are {known}."
            raise KeyError(msg)
        del ctx[key]

    def __contains__(self, key: str) -> bool:
        return key in current_run("rt.context").state.context

    def as_dict(self) -> dict[str, object]:
        """A deep copy of the whole context."""
        return copy.deepcopy(current_run("rt.context.as_dict()").state.context)


context = _RunContext()


def copy_context(context: Mapping[str, object]) -> dict[str, object]:
    """A deep copy of *context* for one run.

    A value that cannot be deep-copied (a socket, a lock, a client holding
    one) is shared as it is: such resources cannot be duplicated, and a run
    that uses one must coordinate through it anyway. Everything else, nested
    containers and their in-place changes included, is the run's own.
    """
    try:
        return copy.deepcopy(dict(context))
    except (TypeError, copy.Error):
        copied: dict[str, object] = {}
        for key, value in context.items():
            try:
                copied[key] = copy.deepcopy(value)
            except (TypeError, copy.Error):
                copied[key] = value
        return copied
