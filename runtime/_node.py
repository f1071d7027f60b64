"""``@function_node``: turn a function into a node that runs can call."""

from __future__ import annotations

import functools
import inspect
import sys
import warnings
from typing import TYPE_CHECKING, Generic, ParamSpec, Protocol, TypeAlias, TypeVar, cast, final, overload

from ._context import current_frame
from ._exceptions import DirectNodeCallWarning, NodeArgumentError, NotANodeError
from ._executor import Executor, Submission, check_executor, threads

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

P = ParamSpec("P")
T = TypeVar("T")

_SIMPLE_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD,)

KeyFunction: TypeAlias = "Callable[..., str]"  # type: ignore[explicit-any]  # called with a node's arguments
"""An ``idempotency_key`` function: a call's key from its arguments."""


@final
class Node(Generic[P, T]):
    """A function that a run can call as a node: see :func:`function_node`.

    Calling a node directly calls the function, as a plain function. Inside a
    run, call it with ``await rt.call(node, ...)``, which runs it as a child
    request; calling it directly there (``await node(...)``) runs it inline,
    missing from the request tree, and warns with
    :class:`~runtime.DirectNodeCallWarning` (once per node).

    Attributes:
        name: the node's name in request trees, events and errors.
        fn: the wrapped function.
        thread: whether the function runs off the loop (in a worker thread,
            or on its executor): ``True`` for a plain function unless it was
            made with ``thread=False``, always ``False`` for an async one.
        executor: the executor the node was given (``thread=True`` gives
            :data:`DEFAULT_THREADS`), or ``None``: a plain node then runs on
            its flow's executor, by default in a worker thread.
        idempotent: whether running the node twice for one call is harmless
            (the default). A resumed run does not run again, unasked, a call
            of a node made with ``idempotent=False`` that its stored run
            started and never saw end (see ``docs/durable.md``).
        idempotency_key: the function that gives a call of the node its key
            from the call's arguments, or ``None``: a call is then keyed by
            its place among its caller's calls (see ``docs/durable.md``).

    .. versionadded:: 0.1
    """

    __slots__ = (
        "__dict__",  # functools.update_wrapper keeps __doc__, __wrapped__, ... there
        "_names",
        "_required",
        "_simple",
        "_warned",
        "executor",
        "fn",
        "idempotency_key",
        "idempotent",
        "is_async",
        "name",
        "signature",
        "thread",
    )

    def __init__(
        self,
        fn: Callable[P, T] | Callable[P, Awaitable[T]],
        *,
        name: str | None = None,
        thread: bool | None = None,
        executor: Executor | None = None,
        idempotent: bool = True,
        idempotency_key: KeyFunction | None = None,
    ) -> None:
        if isinstance(fn, Node):
            msg = f"{fn.name!r} is already a node; apply @function_node once."
            raise TypeError(msg)
        if not callable(fn):
            msg = f"@function_node needs a function, not {type(fn).__qualname__} {fn!r}."
            raise TypeError(msg)
        self.fn = fn
        self.name: str = name if name is not None else getattr(fn, "__name__", repr(fn))
        self.is_async = inspect.iscoroutinefunction(fn)
        if type(idempotent) is not bool:
            msg = f"@function_node(idempotent={idempotent!r}) on {self.name!r}: idempotent is True (the default) or False."
            raise TypeError(msg)
        self.idempotent = idempotent
        if idempotency_key is not None and not callable(idempotency_key):
            msg = f"@function_node(idempotency_key={idempotency_key!r}) on {self.name!r}: give a function of the node's arguments that returns a str, e.g. idempotency_key=lambda order_id: order_id."
            raise TypeError(msg)
        self.idempotency_key = idempotency_key
        if thread is not None and type(thread) is not bool:
            msg = f"@function_node(thread={thread!r}) on {self.name!r}: thread is True, False or None (the default: a plain function runs in a worker thread)."
            raise TypeError(msg)
        if thread and self.is_async:
            msg = f"@function_node(thread=True) on {self.name!r}: only plain functions can run in a worker thread; this one is async."
            raise TypeError(msg)
        self.thread: bool = not self.is_async and thread is not False
        self.executor: Executor | None = DEFAULT_THREADS if thread else None
        if executor is not None:
            where = f"@function_node(executor={executor!r}) on {self.name!r}"
            if self.is_async:
                msg = f"{where}: async nodes run on the event loop; only plain functions run on an executor. Drop executor=, or make {self.name!r} a plain def."
                raise TypeError(msg)
            if thread is not None:
                msg = f"{where}: thread={thread!r} says where it runs too; give one (thread=True is executor=rt.threads())."
                raise TypeError(msg)
            self.executor = check_executor(executor, where=where)
        self.signature = inspect.signature(fn)
        params = list(self.signature.parameters.values())
        self._simple = all(p.kind in _SIMPLE_KINDS for p in params)
        self._names = tuple(p.name for p in params)
        self._required = frozenset(p.name for p in params if p.default is inspect.Parameter.empty)
        self._warned = False
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<Node {self.name}{self.signature}>"

    def call_key(self, args: tuple[object, ...], kwargs: Mapping[str, object]) -> str:
        """The key of a call of this node with *args* and *kwargs*: its ``idempotency_key`` function's.

        Raises:
            TypeError: the function did not return a str.
        """
        assert self.idempotency_key is not None
        key = self.idempotency_key(*args, **kwargs)
        if type(key) is not str:
            msg = (
                f"The idempotency_key function of node {self.name!r} returned {key!r} (type {type(key).__name__}) "
                "for a call; it must return a str that tells the node's calls apart, e.g. lambda order_id: str(order_id)."
            )
            raise TypeError(msg)
        return key

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T | Awaitable[T]:
        """Call the function directly, as a plain function call.

        Inside a run this warns (once per node) with
        :class:`~runtime.DirectNodeCallWarning`: use ``await rt.call(node, ...)``.
        """
        if not self._warned and current_frame.get(None) is not None:
            self._warned = True
            where = "await " if self.is_async else ""
            msg = (
                f"{where}{self.name}(...) called node {self.name!r} directly inside a run: it ran inline as a plain "
                f"function call, is no child request, and is missing from the run's request tree. Use "
                f"await rt.call({self.name}, ...) to run it as a child request. (Warned once per node.)"
            )
            warnings.warn(msg, DirectNodeCallWarning, stacklevel=2)
        return self.fn(*args, **kwargs)

    def __reduce__(self) -> str | tuple[object, ...]:
        # By reference (module and name), as pickle does for functions, so a
        # worker process imports the node rather than receiving a copy. A node
        # not reachable by name (made in a function, or in __main__, which a Ray
        # worker does not have) is pickled as its function and name.
        module = sys.modules.get(self.__module__)
        qualname: str = getattr(self, "__qualname__", "")
        if module is not None and module.__name__ != "__main__" and qualname:
            found: object = module
            for part in qualname.split("."):
                found = getattr(found, part, None)
            if found is self:
                return qualname
        return (_rebuild, (self.fn, self.name))

    def check_arguments(self, args: tuple[object, ...], kwargs: Mapping[str, object]) -> None:
        """Raise :class:`NodeArgumentError` unless *args* and *kwargs* fit the signature."""
        if self._simple:
            names = self._names
            if len(args) <= len(names):
                given = names[: len(args)]
                if not kwargs:
                    if self._required.issubset(given):
                        return
                elif all(k in names and k not in given for k in kwargs) and self._required.issubset(
                    (*given, *kwargs)
                ):
                    return
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            msg = f"Cannot call node {self.name!r} with these arguments: {exc}. Its signature is {self.name}{self.signature}."
            raise NodeArgumentError(msg) from None

    async def invoke(self, args: tuple[object, ...], kwargs: Mapping[str, object]) -> T:
        """Run the function: awaited if async, on its executor (a worker thread by default) if plain, inline if made with ``thread=False``.

        A run resolves the executor itself (the node's, else the flow's):
        see ``NodeActor``.
        """
        fn = self.fn
        if self.is_async:
            return await cast("Callable[..., Awaitable[T]]", fn)(*args, **kwargs)  # type: ignore[explicit-any]
        if self.thread:
            executor = self.executor if self.executor is not None else DEFAULT_THREADS
            return cast("T", await executor.run(Submission(self, args, kwargs, node=self.name, request="-")))
        return cast("Callable[..., T]", fn)(*args, **kwargs)  # type: ignore[explicit-any]


class _NodeDecorator(Protocol):
    """What ``@function_node(name=..., thread=...)`` returns: a generic decorator."""

    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Node[P, T]: ...
    @overload
    def __call__(self, fn: Callable[P, T], /) -> Node[P, T]: ...


@overload
def function_node(fn: Callable[P, Awaitable[T]], /) -> Node[P, T]: ...
@overload
def function_node(fn: Callable[P, T], /) -> Node[P, T]: ...
@overload
def function_node(
    *,
    name: str | None = None,
    thread: bool | None = None,
    executor: Executor | None = None,
    idempotent: bool = True,
    idempotency_key: KeyFunction | None = None,
) -> _NodeDecorator: ...
def function_node(
    fn: Callable[P, T] | Callable[P, Awaitable[T]] | None = None,
    /,
    *,
    name: str | None = None,
    thread: bool | None = None,
    executor: Executor | None = None,
    idempotent: bool = True,
    idempotency_key: KeyFunction | None = None,
) -> Node[P, T] | _NodeDecorator:
    """Make *fn* a node that runs can call with ``await rt.call(node, ...)``.

    Works on async and plain functions and keeps their signature and docstring.
    An async function runs in its node's task. A plain function runs in a
    Trio worker thread (:func:`trio.to_thread.run_sync`, with Trio's default
    :class:`~trio.CapacityLimiter`, one per Trio run, 40 threads by default),
    so it never blocks the loop and plain siblings in a
    :func:`~runtime.call_batch` overlap. A thread cannot be interrupted: when
    the run is cancelled (or times out) it waits for the thread to return, so
    no work outlives the run, and discards what it returned; the node ends
    ``cancelled`` and the run ``timed_out`` (or ``cancelled``) once the
    thread has returned. A long-running function can stop early by calling
    :func:`trio.from_thread.check_cancelled`, which raises ``trio.Cancelled``
    in the thread once the run is cancelled.

    ``thread=False`` keeps a plain function on the loop, inline in its node's
    task: for a quick function that must run in Trio's thread (it calls
    ``trio.current_time()``, or touches objects only the loop may touch). It
    blocks every other node while it runs, and a timeout is noticed only
    after it returns.

    ``executor=`` runs a plain function elsewhere: :func:`~runtime.threads`
    with a limit of its own, :func:`~runtime.processes` for CPU-bound work,
    :func:`~runtime.ray` on a Ray cluster. Without one, a plain node runs on
    its flow's executor (``Flow(..., executor=...)``), by default
    ``rt.threads()``. The request records the executor's name.

    Use bare (``@rt.function_node``) or with options
    (``@rt.function_node(name="fetch", thread=False)``).

    Args:
        fn: the function.
        name: the node's name; by default the function's ``__name__``.
        thread: ``None`` (the default) or ``True``: a plain function runs in a
            worker thread. ``False``: it runs inline on the loop. An async
            function always runs on the loop; ``thread=True`` on one is an error.
        executor: where a plain function runs (see above).
        idempotent: ``False`` for a node whose work must not be done twice
            (a payment): when a run is resumed, a call of it that the stored
            run started and never saw end is not run again unless the resume
            says so (``flow.resume(run_id, rerun=[key])``); the resumed run
            stops with :class:`~runtime.ResumeError` naming the call instead.
            Give the node's external service :func:`~runtime.idempotency_key`
            to let it skip work it already did.
        idempotency_key: a function of the node's arguments giving each call
            its key (a str): a call the node's caller makes is then keyed by it
            (``caller > node<key>``) rather than by its place among the
            caller's calls, so a resumed run replays its stored result even
            when the caller's concurrent calls start in another order.

    Raises:
        TypeError: *fn* is not callable, is already a node, is async with
            ``thread=True`` or with an *executor*, *thread* is not ``True``,
            ``False`` or ``None``, *executor* is not an executor, both
            *thread* and *executor* are given, *idempotent* is not a bool,
            or *idempotency_key* is not callable.

    .. versionadded:: 0.1
    """
    if fn is None:
        return cast(
            "_NodeDecorator",
            functools.partial(
                Node,
                name=name,
                thread=thread,
                executor=executor,
                idempotent=idempotent,
                idempotency_key=idempotency_key,
            ),
        )
    return Node(
        fn, name=name, thread=thread, executor=executor, idempotent=idempotent, idempotency_key=idempotency_key
    )


DEFAULT_THREADS = threads()
"""The executor of plain nodes given none, and of ``thread=True``: Trio's default thread limiter."""


def _rebuild(fn: Callable[..., object], name: str) -> AnyNode:  # type: ignore[explicit-any]
    """Unpickle a node pickled by value (see ``Node.__reduce__``): in a worker, only its function matters."""
    return Node(fn, name=name)


AnyNode: TypeAlias = "Node[..., object]"  # type: ignore[explicit-any]  # a node whose signature is checked at run time
"""A node of any signature."""


def as_node(obj: object, *, where: str) -> AnyNode:
    """Return *obj* as a node, or raise :class:`NotANodeError` saying how to make one."""
    if isinstance(obj, Node):
        return obj
    if callable(obj):
        label = getattr(obj, "__name__", repr(obj))
        msg = (
            f"{where} got {label!r}, which is a plain callable, not a node. "
            f"Decorate it with @rt.function_node to call it in a run."
        )
    else:
        msg = f"{where} got {type(obj).__qualname__} {obj!r}, which is not a node. Pass a function decorated with @rt.function_node."
    raise NotANodeError(msg)
