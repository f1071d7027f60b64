"""What a node can see of its run: ``rt.context``, ``rt.request()``, the current frame.

The current run and node are held in a :class:`contextvars.ContextVar`. Trio
copies a task's context into the tasks it starts, so a node's task sees its
own run and nothing else; there is no global registry.
"""

from __future__ import annotations

import contextvars
import copy
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar, final

import attrs

from ._exceptions import OutsideRunError

if TYPE_CHECKING:
    from collections.abc import KeysView, Mapping

    from ._run import NodeActor, RunRoot
    from ._state import JobState

T = TypeVar("T")


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


class RoutineCaller(Protocol):
    """A routine handler's side of ``rt.log`` and ``rt.broadcast`` (``runtime._job.RoutineActor``)."""

    routine_id: str

    async def log(self, level: int, message: str, data: dict[str, object]) -> None: ...

    async def broadcast(self, item: object) -> None: ...


class RunInfo(Protocol):
    """What every run offers the code running in it: a node run's ``Run`` or a graph ``Job``."""

    state: JobState
    metadata: RequestMetadata
    flow_name: str


@attrs.define(slots=True)
class Frame:
    """Where the current task is: which run, and which node actor or routine (if any).

    ``root`` is set in the task that holds a node run's block (an
    ``rt.Session`` block's own code): ``rt.call`` there makes a top-level request.
    """

    run: RunInfo
    actor: NodeActor | None
    routine: RoutineCaller | None = None
    root: RunRoot | None = None


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


def current_run(api: str) -> RunInfo:
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
class Shared(Generic[T]):
    """A context value shared by reference between runs, on purpose.

    Each run starts from a deep copy of its Flow's ``context``, so nothing one
    run writes is seen by another. A value that must not be copied (a database
    pool, a client holding a socket, a lock the runs coordinate through) is
    wrapped: ``Flow(..., context={"db": rt.Shared(pool)})``. Every run then
    sees that one object, and ``rt.context.get("db")`` returns it (not the
    wrapper); whatever a run does to it, the other runs see. A value that can
    be neither deep-copied nor is wrapped is refused, naming its key.

    The wrapper is what the run's :class:`~runtime.JobState` context holds,
    so a saved state document keeps its ``repr``.

    Attributes:
        value: the shared object.

    .. versionadded:: 0.1
    """

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        if isinstance(value, Shared):
            value = value.value
        self.value: T = value

    def __repr__(self) -> str:
        return f"Shared({self.value!r})"

    def __copy__(self) -> Shared[T]:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Shared[T]:
        return self


def _unwrap(value: object) -> object:
    return value.value if isinstance(value, Shared) else value


@final
class _RunContext:
    """The global context of the current run: ``rt.context``.

    Each run starts from a deep copy of its Flow's ``context``, so writes here,
    in-place changes to mutable values included, are seen by this run's nodes
    only: never by another run, nor by the Flow's dict. A value wrapped in
    :class:`~runtime.Shared` is the exception: every run sees that one object,
    and :meth:`get` returns it unwrapped.

    .. versionadded:: 0.1
    """

    __slots__ = ()

    def get(self, key: str, default: object = _MISSING) -> object:
        """The value under *key* (a :class:`~runtime.Shared` one unwrapped), or *default*.

        As in Railtracks, a missing key with no *default* is an error, not a
        silent ``None``; pass ``default=None`` to get ``None`` instead.

        Raises:
            KeyError: *key* is not in the context and no *default* was given;
                the message lists the keys that are.
            OutsideRunError: called outside a run.
        """
        ctx = current_run("rt.context.get()").state.context
        try:
            value = ctx[key]
        except KeyError:
            if default is not _MISSING:
                return default
            known = ", ".join(repr(k) for k in ctx) or "none"
            msg = (
                f"rt.context.get({key!r}): the run's context has no key {key!r}; its keys are {known}. "
                f"Pass a default to get one instead: rt.context.get({key!r}, None)."
            )
            raise KeyError(msg) from None
        return _unwrap(value)

    def keys(self) -> KeysView[str]:
        """The keys of the run's context (a live view).

        Raises:
            OutsideRunError: called outside a run.
        """
        return current_run("rt.context.keys()").state.context.keys()

    def put(self, key: str, value: object) -> None:
        """Set *key* to *value* for the rest of this run.

        The value is this run's own: it is never copied into another run, so
        it need not be copyable.
        """
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
        """A deep copy of the whole context; :class:`~runtime.Shared` values are the shared objects.

        Raises:
            TypeError: a value put in this run can be neither deep-copied nor
                is wrapped in :class:`~runtime.Shared`; the message names its key.
        """
        copied = copy_context(current_run("rt.context.as_dict()").state.context, where="rt.context.as_dict()")
        return {key: _unwrap(value) for key, value in copied.items()}


context = _RunContext()


def copy_context(context: Mapping[str, object], *, where: str) -> dict[str, object]:
    """A deep copy of *context* for one run: :class:`Shared` values by reference.

    Raises:
        TypeError: a value can be neither deep-copied nor is wrapped in
            :class:`Shared`; the message names its key and the fix, with
            *where* (the API that copied it).
    """
    try:
        return copy.deepcopy(dict(context))
    except (TypeError, copy.Error):
        pass
    copied: dict[str, object] = {}
    for key, value in context.items():
        try:
            copied[key] = copy.deepcopy(value)
        except (TypeError, copy.Error) as exc:
            msg = (
                f"{where}: the context value under {key!r} ({type(value).__qualname__}) cannot be deep-copied "
                f"({exc}), and each run starts from its own deep copy of the context. To share that one object "
                f"between runs on purpose, wrap it: {{{key!r}: rt.Shared(value)}}; or create it inside the run."
            )
            raise TypeError(msg) from None
    return copied
