"""``rt.call``, ``rt.call_batch`` and ``rt.broadcast``: what nodes do inside a run."""

from __future__ import annotations

import copy
import inspect
import logging
from typing import TYPE_CHECKING, ParamSpec, TypeVar, overload

import trio

from ._context import current_frame
from ._exceptions import OutsideRunError, RoutineCallError
from ._node import as_node
from ._publisher import EventKind

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from ._context import RoutineCaller
    from ._node import Node
    from ._run import NodeActor, RunRoot

P = ParamSpec("P")
T = TypeVar("T")


def _caller(api: str, arg: object, *, node_arg: bool = True) -> NodeActor | RunRoot:
    """The node actor running the calling task (or the run's root, in an ``rt.Session`` block), or an :class:`OutsideRunError` for *api*.

    *arg* is the call's first argument, for the message: a node when
    *node_arg*, else a value (``rt.broadcast``'s item, ``rt.log``'s message).
    """
    frame = current_frame.get(None)
    if frame is not None and frame.routine is not None and node_arg:
        label = getattr(arg, "name", None) or getattr(arg, "__name__", None) or repr(arg)
        msg = (
            f"{api}({label}) was called in a handler of routine {frame.routine.routine_id!r}: a routine "
            "graph's job runs routines, not node requests. Emit an event to a routine that does the work, "
            "or run a node flow from the handler with await rt.Flow(...).ainvoke(...)."
        )
        raise RoutineCallError(msg)
    if frame is not None and frame.actor is None and frame.root is not None:
        return frame.root
    if frame is None or frame.actor is None:
        if node_arg:
            label = entry = getattr(arg, "name", None) or getattr(arg, "__name__", None) or repr(arg)
        else:
            label, entry = repr(arg), "node"
        msg = (
            f"{api}({label}) was called outside a run. Start one with "
            f"rt.Flow('demo', entry_point={entry}).invoke(...), or await flow.ainvoke(...) from Trio code."
        )
        raise OutsideRunError(msg)
    return frame.actor


def _routine() -> RoutineCaller | None:
    """The routine whose handler runs the calling task, if any."""
    frame = current_frame.get(None)
    return None if frame is None else frame.routine


@overload
async def call(node: Node[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...
@overload
async def call(node: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T: ...
async def call(node: object, /, *args: object, **kwargs: object) -> object:
    """Run *node* as a child request of the current node and return its result.

    The child runs in its own actor, in the calling node's nursery; this waits
    for it. If the child raises, the same exception is raised here, with a note
    giving the request path. If this wait is cancelled, the child is cancelled
    too.

    Raises:
        OutsideRunError: called outside a run.
        RoutineCallError: called in a routine handler.
        NotANodeError: *node* is not a node.
        NodeArgumentError: the arguments do not fit the node's signature (the
            node does not start).

    .. versionadded:: 0.1
    """
    actor = _caller("rt.call", node)
    target = as_node(node, where="rt.call()")
    target.check_arguments(args, kwargs)
    return await actor.call(target, args, kwargs)


async def call_batch(
    node: object, /, *iterables: Iterable[object], return_exceptions: bool = True
) -> list[object]:
    """Run *node* once per set of arguments, concurrently; results in argument order.

    Like :func:`map`: ``await rt.call_batch(greet, ["Bob", "Ann"])`` calls
    ``greet("Bob")`` and ``greet("Ann")`` as sibling child requests. Every
    argument set is checked before any child starts.

    .. warning::
        **A failed call does not raise by default.** As in Railtracks,
        ``return_exceptions`` defaults to ``True``: a failed call's exception
        is *returned* in its place in the list
        (``['ok', ValueError('bad')]``) and the other calls run on. Check the
        results with ``isinstance(r, Exception)``, or pass
        ``return_exceptions=False`` to raise the first failure and cancel the
        other calls, as Trio code usually expects. A Flow with
        ``end_on_error=True`` still ends the whole run at the first failure
        either way.

    Args:
        node: the node to run.
        iterables: one iterable per positional parameter, zipped together.
        return_exceptions: ``True`` (the default): put a failed call's
            exception in its place in the list. ``False``: raise the first
            failure once the other calls are cancelled and have ended.

    Returns:
        The results (or, by default, exceptions), in the order of the arguments.

    Raises:
        Exception: with ``return_exceptions=False``, the first call to fail
            (the first in time, not in argument order).

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
        ``return_exceptions`` defaults to ``True``, as in Railtracks.
    """
    actor = _caller("rt.call_batch", node)
    target = as_node(node, where="rt.call_batch()")
    arg_sets = list(zip(*iterables, strict=True))
    for args in arg_sets:
        target.check_arguments(args, {})
    return await actor.call_batch(target, arg_sets, return_exceptions=return_exceptions)


async def broadcast(item: object) -> None:
    """Stream *item* to the run's subscribers, as a ``stream`` event of the current request.

    In a routine handler, the event names the routine. Waits only while the
    run's event pipeline is full (backpressure from a slow subscriber).

    Raises:
        OutsideRunError: called outside a run.

    .. versionadded:: 0.1
    """
    routine = _routine()
    if routine is not None:
        await trio.lowlevel.checkpoint_if_cancelled()
        await routine.broadcast(item)
        return
    actor = _caller("rt.broadcast", item, node_arg=False)
    await trio.lowlevel.checkpoint_if_cancelled()
    run = actor.run
    await run.record(EventKind.STREAM, actor.request_id, actor.parent_id, actor.node_name, item)
    callback = run.broadcast_callback
    if callback is not None:
        await _deliver(callback, item, run.state.job_id, run.flow_name, actor.node_name)


_flow_logger = logging.getLogger("runtime.flow")


def _callback_name(callback: object) -> str:
    name = getattr(callback, "__qualname__", None)
    module = getattr(callback, "__module__", None)
    if isinstance(name, str):
        return f"{module}.{name}" if isinstance(module, str) else name
    return repr(callback)


async def _deliver(
    callback: Callable[[object], object], item: object, run_id: str, flow_name: str, node: str | None
) -> None:
    """Hand *item* to a run's ``broadcast_callback`` in the broadcasting task; log what it raises.

    The callback is a listener: called (and, if async, awaited) here, so the
    item has been handled when ``rt.broadcast`` returns, in the block's form
    too (no publisher needed); what it raises never reaches the node.
    """
    try:
        result = callback(item)
        if inspect.isawaitable(result):
            await result
    except Exception:
        _flow_logger.exception(
            "The broadcast_callback %s of Flow %r raised on the rt.broadcast item of run %s (from %s); "
            "the run goes on.",
            _callback_name(callback),
            flow_name,
            run_id,
            node or "the block",
        )


_node_logger = logging.getLogger("runtime.node")


async def log(message: str, *, level: int = logging.INFO, **data: object) -> None:
    """Record a log entry for the current request, in order with its other events.

    The entry goes to the run's shared log (``JobState.get_shared_log()``,
    stamped, with the request and node, or in a routine handler the
    routine), to subscribers as a ``log`` event, and to the standard
    :mod:`logging` logger ``runtime.node``.

    Args:
        message: what happened.
        level: a :mod:`logging` level; ``logging.INFO`` by default.
        data: JSON-friendly details to keep with the entry.

    Raises:
        OutsideRunError: called outside a run.

    .. versionadded:: 0.1
    """
    routine = _routine()
    if routine is not None:
        await trio.lowlevel.checkpoint_if_cancelled()
        await routine.log(level, message, copy.deepcopy(data))
        return
    actor = _caller("rt.log", message, node_arg=False)
    await trio.lowlevel.checkpoint_if_cancelled()
    _node_logger.log(level, "%s [%s %s]: %s", actor.run.flow_name, actor.node_name, actor.request_id, message)
    # Copied now: the node may change its objects after the entry is recorded.
    entry = {"level": logging.getLevelName(level), "message": message, **copy.deepcopy(data)}
    await actor.run.record(EventKind.LOG, actor.request_id, actor.parent_id, actor.node_name, entry)


async def interrupt(payload: object = None) -> object:
    """Pause the run here until somebody answers *payload*; return the answer.

    The first time a run reaches this call, the run pauses: every node of it
    is cancelled (their ``finally`` blocks run), the run ends with status
    ``paused``, and its store keeps it with *payload*. ``flow.run(...)``
    returns a :class:`~runtime.RunResult` whose state says ``paused``;
    ``flow.invoke(...)`` raises :class:`~runtime.RunPausedError`, carrying
    the run id and *payload*. Later, from this process or another,
    ``flow.resume(run_id, value)`` runs the flow again: calls that completed
    are replayed from the store, and this call returns *value*.

    The run's flow needs a store (``Flow(..., store=...)``) to be resumed.
    Code before the interrupt in this node runs again on resume (nodes run
    at least once; see ``docs/durable.md``).

    Args:
        payload: what the run waits on, for whoever answers (a JSON value,
            to be kept by a store).

    Raises:
        OutsideRunError: called outside a run (or in a routine handler).

    .. versionadded:: 0.1
    """
    actor = _caller("rt.interrupt", payload, node_arg=False)
    return await actor.interrupt(payload)


def idempotency_key() -> str:
    """A key for the current call that stays the same in every attempt of its run: ``"<run id>:<call key>"``.

    Give it to an external service that de-duplicates requests by key (a
    payment provider's ``Idempotency-Key``, a message queue's deduplication
    id, a unique column): a node run again when its run is resumed (see
    ``docs/durable.md``) then sends the same key, and the service does the
    work once. The call key (:attr:`Event.key <runtime.Event.key>`) is the
    call's place in the run's tree, so calls a node makes one after another,
    or in one :func:`~runtime.call_batch`, keep their keys across attempts;
    calls started concurrently from a node's own tasks take their places in
    the order they start, unless their node is made with
    ``@rt.function_node(idempotency_key=fn)``: then a call is keyed by
    ``fn(*args, **kwargs)``, whatever the order.

    Raises:
        OutsideRunError: called outside a node's request (outside a run, in
            an ``rt.Session`` block's own code, or in a routine handler).

    .. versionadded:: 0.1
    """
    frame = current_frame.get(None)
    actor = None if frame is None else frame.actor
    if actor is None:
        msg = (
            "rt.idempotency_key() was called outside a node's request: a key names one call of a node in a run. "
            "Call it in a node that a run calls, e.g. inside rt.Flow('demo', entry_point=node).invoke(...)."
        )
        raise OutsideRunError(msg)
    return f"{actor.run.state.job_id}:{actor.key}"
