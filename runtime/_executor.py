"""Executors: where a plain (synchronous) node's function runs.

An async node runs on the event loop. A plain function would block the loop
there, so it runs on an *executor*: :func:`threads` (a Trio worker thread),
:func:`processes` (a worker process, for CPU-bound work) or :func:`ray` (a Ray
task, on this machine or a cluster). Anything with a ``name`` and an async
``run(submission)`` is an executor (:class:`Executor`).

What an executor guarantees: the run waits for the work, and a cancel reaches
it. A thread cannot be interrupted, so a cancel waits for it to return
(``cancelled``); a worker process is killed (``killed``); a Ray task is
cancelled softly, then forcibly after a grace period (``cancelled`` or
``killed``), and if even that is not confirmed in time the run stops waiting
and says so (``orphaned``). The ending is reported on the
:class:`Submission`, and the request records it.

Crossing to another process: the function and its arguments are pickled
before anything is sent (an argument that cannot be is named by its
parameter); the function's exception comes back as itself, with the remote
traceback as a note, or as a :class:`~runtime.RemoteError` naming its class
when it cannot be rebuilt here. Pickling costs a copy of the arguments and
the result: pass references (paths, keys) for large data.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import pickle
import signal
import socket
import traceback
from typing import TYPE_CHECKING, Protocol, TypeAlias, final, runtime_checkable

import trio

from ._exceptions import ExecutorError, RemoteError
from ._state import Status

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

AnyFunction: TypeAlias = "Callable[..., object]"  # type: ignore[explicit-any]  # any signature: the node checks it


@final
class Submission:
    """One call of a function on an executor: what to run, and how a cancel ended it.

    Made by the runtime for each request whose node runs on an executor.

    Attributes:
        fn: the function to call (a node, which pickles by reference).
        args: positional arguments.
        kwargs: keyword arguments.
        node: the node's name (a routine's id), for messages.
        request: the request's id (a routine's slot), for messages.
        kind: ``"node"``, or ``"routine"`` for a routine's slot handler
            (then *fn* is the runtime's handler trampoline, and *args* are
            the handler, the routine or ``None``, and the routine's id).
        ending: how the work ended if the call was cancelled. An executor
            leaves ``cancelled`` when the work stopped (or never began), and
            sets ``killed`` when it killed the worker to stop it, or
            ``orphaned`` when it could not confirm that the work stopped.

    .. versionadded:: 0.1
    """

    __slots__ = ("args", "ending", "fn", "kind", "kwargs", "node", "request")

    def __init__(
        self,
        fn: AnyFunction,
        args: tuple[object, ...],
        kwargs: Mapping[str, object],
        *,
        node: str,
        request: str,
        kind: str = "node",
    ) -> None:
        self.fn = fn
        self.kind = kind
        self.args = args
        self.kwargs = kwargs
        self.node = node
        self.request = request
        self.ending = Status.CANCELLED

    def __repr__(self) -> str:
        return f"<Submission {self.kind}={self.node!r} request={self.request!r} ending={self.ending.value!r}>"

    @property
    def label(self) -> str:
        """``node 'parse' (r3)`` or ``routine 'sum' (slot 'in')``: the call, as messages name it."""
        return f"{self.kind} {self.node!r} ({self.request})"


@runtime_checkable
class Executor(Protocol):
    """Where a plain node's function runs: :func:`threads`, :func:`processes`, :func:`ray`, or yours.

    ``await executor.run(submission)`` calls ``submission.fn(*args, **kwargs)``
    somewhere and returns its result or raises its exception. It must not
    return before the work has ended (or been given up, see
    :attr:`Submission.ending`): when cancelled, it stops the work, sets the
    submission's ending, and raises :class:`trio.Cancelled`.

    .. versionadded:: 0.1
    """

    @property
    def name(self) -> str:
        """The executor's name, recorded on each request that runs on it."""
        ...

    async def run(self, submission: Submission) -> object:
        """Run *submission* and return its result; see the class docstring."""
        ...


def check_executor(executor: object, *, where: str) -> Executor:
    """Return *executor*, or raise ``TypeError`` saying what an executor is (for *where*)."""
    if isinstance(executor, Executor) and inspect.iscoroutinefunction(executor.run):
        return executor
    msg = (
        f"{where}: executor={executor!r} is not an executor. Pass rt.threads(), rt.processes(), "
        "rt.ray(), or an object with a name and an async run(submission) method."
    )
    raise TypeError(msg)


def _limiter_for(limits: trio.lowlevel.RunVar[trio.CapacityLimiter], limit: float) -> trio.CapacityLimiter:
    """This Trio run's limiter in *limits*, made with *limit* on first use.

    Per run, since a limiter belongs to one run, and one executor may serve
    runs in several threads.
    """
    try:
        return limits.get()
    except LookupError:
        limiter = trio.CapacityLimiter(limit)
        limits.set(limiter)
        return limiter


def _check_limit(api: str, limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        msg = f"{api}(limit={limit!r}): the limit is how many calls run at once, a whole number of at least 1 (or None for the default)."
        raise ValueError(msg)


# -- threads -----------------------------------------------------------------------------


@final
class _Threads:
    """Trio worker threads: see :func:`threads`."""

    __slots__ = ("_limit", "_limiters")
    name = "threads"

    def __init__(self, limit: int | None) -> None:
        self._limit = limit
        self._limiters: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("trioflow.threads")

    def __repr__(self) -> str:
        return f"rt.threads(limit={self._limit!r})"

    async def run(self, submission: Submission) -> object:
        limiter = (
            trio.to_thread.current_default_thread_limiter()
            if self._limit is None
            else _limiter_for(self._limiters, self._limit)
        )
        # In this process the node's own function is called (functools.wraps
        # keeps it as __wrapped__): calling the node object inside a run would
        # warn of a direct call that skips rt.call.
        fn = getattr(submission.fn, "__wrapped__", submission.fn)
        call = functools.partial(fn, *submission.args, **submission.kwargs)
        # A thread cannot be interrupted: a cancel waits for it to return (so no
        # work outlives the run), then discards what it returned.
        result = await trio.to_thread.run_sync(call, limiter=limiter)
        await trio.lowlevel.checkpoint_if_cancelled()
        return result


def threads(*, limit: int | None = None) -> Executor:
    """An executor that runs a plain node in a Trio worker thread.

    The default for plain nodes, made explicit and configurable. The node's
    context (``rt.context``, ``rt.request()``) is the same as on the loop.
    A thread cannot be interrupted: when the run is cancelled or times out,
    it waits for the thread to return, so no work outlives the run, then
    discards the result; the request ends ``cancelled``. A long function can
    stop early by calling :func:`trio.from_thread.check_cancelled`, which
    raises :class:`trio.Cancelled` in the thread once the run is cancelled.

    Args:
        limit: how many of this executor's calls run at once, per Trio run;
            ``None`` shares Trio's default thread limiter (40 threads).

    Raises:
        ValueError: *limit* is not a whole number of at least 1.

    .. versionadded:: 0.1
    """
    _check_limit("rt.threads", limit)
    return _Threads(limit)


# -- crossing to another process -----------------------------------------------------------

_OK = "ok"
_RAISED = "raised"
_UNSENDABLE_RESULT = "unsendable result"
_UNLOADABLE = "unloadable"


def pack(submission: Submission, dumps: Callable[[object], bytes], *, where: str) -> bytes:
    """Pickle *submission*'s function and arguments for *where*, or name what cannot be.

    Raises:
        ExecutorError: the function or an argument cannot be pickled; the
            error names the parameter.
    """
    try:
        return dumps((submission.fn, submission.args, dict(submission.kwargs)))
    except Exception as exc:
        raise _unsendable(submission, dumps, exc, where) from exc


def _unsendable(
    submission: Submission, dumps: Callable[[object], bytes], exc: Exception, where: str
) -> ExecutorError:
    """The error saying which part of *submission* could not be pickled for *where*."""
    if submission.kind == "routine":
        return _unsendable_handler(submission, dumps, exc, where)
    try:
        dumps(submission.fn)
    except Exception as fn_exc:
        msg = (
            f"Cannot send {submission.label} to {where}: its function cannot be pickled "
            f"({type(fn_exc).__name__}: {fn_exc}). Define the node at the top level of an importable "
            "module (not in a function, a class or __main__), or run it on rt.threads()."
        )
        return ExecutorError(msg, node=submission.node)
    try:
        bound = inspect.signature(submission.fn).bind_partial(*submission.args, **submission.kwargs).arguments
    except (TypeError, ValueError):
        bound = {f"#{i}": value for i, value in enumerate(submission.args)} | dict(submission.kwargs)
    for parameter, value in bound.items():
        try:
            dumps(value)
        except Exception as arg_exc:
            msg = (
                f"Cannot send argument {parameter!r} of {submission.label} to {where}: pickle refused "
                f"its {type(value).__qualname__} ({type(arg_exc).__name__}: {arg_exc}). Pass a value "
                "that pickle can copy (plain data, or a path or key to what it stands for), or run the "
                "node on rt.threads()."
            )
            return ExecutorError(msg, node=submission.node, parameter=parameter)
    msg = f"Cannot send {submission.label} to {where}: pickle refused it ({type(exc).__name__}: {exc})."
    return ExecutorError(msg, node=submission.node)


def _unsendable_handler(
    submission: Submission, dumps: Callable[[object], bytes], exc: Exception, where: str
) -> ExecutorError:
    """The error saying which part of a routine handler's call could not be pickled for *where*."""
    handler, routine = submission.args[0], submission.args[1]
    label = submission.label
    try:
        dumps(handler)
    except Exception as fn_exc:
        name = getattr(handler, "__qualname__", repr(handler))
        msg = (
            f"Cannot send {label} to {where}: its handler {name} cannot be pickled "
            f"({type(fn_exc).__name__}: {fn_exc}). Make the handler a method of a routine class, or a "
            "function, defined at the top level of an importable module (not in a function or __main__), "
            "or run the routine on rt.threads()."
        )
        return ExecutorError(msg, node=submission.node)
    if routine is not None:
        # The routine's own attributes first: its slots and recipe hold it again.
        for attribute, value in sorted(vars(routine).items(), key=lambda item: item[0].startswith("_")):
            try:
                dumps(value)
            except Exception as attr_exc:
                what = (
                    "its constructor arguments or settings"
                    if attribute == "_recipe"
                    else f"its attribute {attribute!r} (a {type(value).__qualname__})"
                )
                msg = (
                    f"Cannot send {label} to {where}: the handler is a method, so the routine goes with "
                    f"it, and {what} cannot be pickled ({type(attr_exc).__name__}: {attr_exc}). Keep what "
                    "cannot be pickled off the routine, make the handler a function at the top level of a "
                    "module (it then runs without the routine), or run the routine on rt.threads()."
                )
                return ExecutorError(msg, node=submission.node, parameter=attribute)
    # The message's values, as the handler takes them: by keyword, or positionally (see Routine).
    positional: tuple[object, ...] = submission.args[3] if len(submission.args) > 3 else ()  # type: ignore[assignment]
    try:
        names = [
            p.name
            for p in inspect.signature(handler).parameters.values()  # type: ignore[arg-type]
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ][0 if routine is None else 1 :]
    except (TypeError, ValueError):
        names = []
    names += [f"#{i}" for i in range(len(names), len(positional))]
    for parameter, value in [*zip(names, positional, strict=False), *submission.kwargs.items()]:
        try:
            dumps(value)
        except Exception as arg_exc:
            msg = (
                f"Cannot send {label} to {where}: pickle refused the message's {parameter!r}, a "
                f"{type(value).__qualname__} ({type(arg_exc).__name__}: {arg_exc}). Emit values that "
                "pickle can copy (plain data, or a path or key to what they stand for), or run the routine "
                "on rt.threads()."
            )
            return ExecutorError(msg, node=submission.node, parameter=parameter)
    msg = f"Cannot send {label} to {where}: pickle refused it ({type(exc).__name__}: {exc})."
    return ExecutorError(msg, node=submission.node)


def run_packed(payload: bytes, cloud: bool) -> tuple[object, ...]:
    """Run a packed call in a worker and pack its outcome; private, called remotely.

    Returns ``("ok", pickled result)``, ``("raised", pickled exception or
    None, class name, message, traceback, host)``, ``("unsendable result",
    class name, why)`` or ``("unloadable", why)``. Only ``Exception`` is caught:
    ``KeyboardInterrupt`` (Ray's soft cancel) ends the task as a cancel.
    """
    dumps: Callable[[object], bytes]
    if cloud:
        from ray import cloudpickle  # only in Ray workers

        dumps = cloudpickle.dumps
    else:
        dumps = functools.partial(pickle.dumps, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        fn, args, kwargs = pickle.loads(payload)
    except Exception as exc:  # the worker cannot import the node's module, most often
        return (_UNLOADABLE, f"{_qualified(type(exc))}: {exc}")
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:
        tb = exc.__traceback__
        text = "".join(traceback.format_exception(type(exc), exc, tb.tb_next if tb is not None else None))
        data: bytes | None
        try:
            data = dumps(exc)
            pickle.loads(data)  # an exception whose __init__ cannot be replayed fails here, not there
        except Exception:
            data = None
        host = f"{socket.gethostname()} pid {os.getpid()}"
        return (_RAISED, data, _qualified(type(exc)), str(exc), text, host)
    try:
        return (_OK, dumps(result))
    except Exception as exc:
        return (_UNSENDABLE_RESULT, type(result).__qualname__, f"{type(exc).__name__}: {exc}")


def _what(submission: Submission) -> str:
    """What *submission* runs, as messages name it: ``node`` or ``handler``."""
    return "handler" if submission.kind == "routine" else "node"


def _qualified(cls: type) -> str:
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def unpack(reply: tuple[object, ...], submission: Submission, *, where: str) -> object:
    """Return the result packed by :func:`run_packed`, or raise the remote exception."""
    if reply[0] == _OK:
        return pickle.loads(reply[1])  # type: ignore[arg-type]
    if reply[0] == _RAISED:
        _, data, type_name, message, text, host = reply
        exc: object = None
        if data is not None:
            try:
                exc = pickle.loads(data)  # type: ignore[arg-type]
            except Exception:
                exc = None
        if not isinstance(exc, BaseException):
            exc = RemoteError(
                f"{type_name}: {message} (raised on {where} by {submission.label}; its exception "
                "could not be sent back as itself)",
                type_name=str(type_name),
            )
        exc.add_note(f"remote traceback ({where}, {host}):\n{str(text).rstrip()}")
        raise exc
    if reply[0] == _UNLOADABLE:
        msg = (
            f"{where.capitalize()} could not load {submission.label}: {reply[1]}. The worker imports the "
            f"{_what(submission)} by its module and name: make that module importable there (installed, or on the "
            "workers' path; for Ray, shipped with rt.ray(runtime_env={'working_dir': ...}))."
        )
        raise ExecutorError(msg, node=submission.node)
    _, type_name, why = reply
    msg = (
        f"{submission.label} returned a {type_name} on {where} that cannot be sent back: pickle "
        f"refused it ({why}). Return a value that pickle can copy, or run the {submission.kind} on "
        "rt.threads()."
    )
    raise ExecutorError(msg, node=submission.node)


# -- processes -------------------------------------------------------------------------------


def died(submission: Submission, exit_code: int | None, where: str, *, detail: str = "") -> ExecutorError:
    """The error for a worker (*where*) that died under *submission*."""
    if exit_code is None:
        how = f"(it reports no exit code: {detail})" if detail else "(no exit code is known)"
    elif exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        how = f"killed by {name} (exit code {exit_code})"
    else:
        how = f"with exit code {exit_code}"
    msg = (
        f"The {where} running {submission.label} died {how} before it returned. The "
        f"{_what(submission)} failed; "
        "the run goes on per its error rules. If the function ends its process (os._exit, a crash in "
        "C code, the out-of-memory killer), guard it there."
    )
    return ExecutorError(msg, node=submission.node, exit_code=exit_code)


@final
class _Processes:
    """``trio-parallel`` worker processes: see :func:`processes`."""

    __slots__ = ("_given", "_limit", "_limiters", "_unlimited")
    name = "processes"

    def __init__(self, limit: int | None) -> None:
        self._limit = limit if limit is not None else (os.cpu_count() or 1)
        self._given = limit
        self._limiters: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar(
            "trioflow.processes"
        )
        self._unlimited: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar(
            "trioflow.processes.unlimited"
        )

    def __repr__(self) -> str:
        return f"rt.processes(limit={self._given!r})"

    async def run(self, submission: Submission) -> object:
        import trio_parallel  # imported on first use: it starts no process until then

        where = "a worker process"
        payload = pack(
            submission, functools.partial(pickle.dumps, protocol=pickle.HIGHEST_PROTOCOL), where=where
        )
        limiter = _limiter_for(self._limiters, self._limit)
        try:
            limiter.acquire_nowait()  # no scheduling round when a worker is free
        except trio.WouldBlock:
            await limiter.acquire()
        try:
            # From here the call is in a worker: a cancel kills it (and waits for it to die).
            submission.ending = Status.KILLED
            reply = await trio_parallel.run_sync(
                run_packed,
                payload,
                False,
                kill_on_cancel=True,
                limiter=_limiter_for(self._unlimited, math.inf),
            )
        except trio_parallel.BrokenWorkerError as exc:
            proc = exc.args[-1] if exc.args else None
            raise died(submission, getattr(proc, "exitcode", None), "worker process") from None
        finally:
            limiter.release()
        return unpack(reply, submission, where=where)


def processes(*, limit: int | None = None) -> Executor:
    """An executor that runs a plain node in a worker process, for CPU-bound work.

    Built on ``trio-parallel``: worker processes are started on first use
    and kept (idle) for later calls, like Trio's worker threads. The
    function and its arguments are pickled before anything is sent; an
    argument that cannot be is named by its parameter. The node's exception
    comes back as itself, with the worker's traceback as a note.

    Cancellation (a cancel, a timeout, ``end_on_error``) kills the worker at
    once and waits for it to die: the request ends ``killed``. A call still
    waiting for a free worker ends ``cancelled``. A worker that dies under a
    node (a crash, ``os._exit``) fails that node with an
    :class:`~runtime.ExecutorError` naming the exit code; the run goes on per
    its error rules.

    The node runs in another process: ``rt.call``, ``rt.context`` and the
    other run-scoped APIs are not available in it.

    Args:
        limit: how many of this executor's calls run at once, per Trio run;
            ``None`` for the number of CPUs.

    Raises:
        ValueError: *limit* is not a whole number of at least 1.

    .. versionadded:: 0.1
    """
    _check_limit("rt.processes", limit)
    return _Processes(limit)
