"""The exceptions of :mod:`runtime`; every one descends from :class:`TrioflowError`.

Where the meaning fits, an error also subclasses the builtin a user would
catch anyway (``TypeError`` for a wrong argument, ``TimeoutError`` for a
deadline), as attrs and Hypothesis do.
"""

from __future__ import annotations

from typing import final


class TrioflowError(Exception):
    """The root of every error raised by :mod:`runtime` itself."""


@final
class NotANodeError(TrioflowError, TypeError):
    """Something that is not a node was given where a node is required."""


@final
class NodeArgumentError(TrioflowError, TypeError):
    """A node was called with arguments its signature does not accept."""


@final
class OutsideRunError(TrioflowError, RuntimeError):
    """A run-scoped API (``rt.call``, ``rt.context``, ...) was used outside a run."""


@final
class RoutineCallError(TrioflowError, RuntimeError):
    """``rt.call`` or ``rt.call_batch`` was called in a routine handler, where a job runs no node requests."""


@final
class NestedRunError(TrioflowError, RuntimeError):
    """A block that is a run of its own (``rt.Session``) was entered inside another run.

    .. versionadded:: 0.2
    """


@final
class InvokeInsideTrioError(TrioflowError, RuntimeError):
    """A synchronous entry point was called inside a running Trio program (or asyncio event loop)."""


@final
class OutsideTrioError(TrioflowError, RuntimeError):
    """An async entry point was awaited outside a Trio run (from asyncio, say): trioflow runs on Trio.

    .. versionadded:: 0.1
    """


@final
class RunTimeoutError(TrioflowError, TimeoutError):
    """A run or job passed its ``timeout``; every node of it was cancelled first."""


@final
class RunCancelledError(TrioflowError):
    """A run or job was cancelled before it finished."""


@final
class StateFileError(TrioflowError, ValueError):
    """A state document is corrupt, or of a format version this runtime cannot read."""


class StoreError(TrioflowError, RuntimeError):
    """A run store cannot be opened, read or written: its path, its schema, or its state.

    .. versionadded:: 0.1
    """


@final
class UnknownRunError(StoreError, KeyError):
    """A run store has no run of the id asked for; the message names the nearest ids it has.

    A :class:`KeyError`, so ``except KeyError`` catches it; its ``str`` is the message itself.

    .. versionadded:: 0.1
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@final
class ResumeError(StoreError, ValueError):
    """A stored run cannot be resumed: it completed, belongs to another flow or definition, or is held.

    A resumed run also stops with it before running again, unasked, a call of
    a node made with ``idempotent=False`` that its stored run started and
    never saw end.

    .. versionadded:: 0.1
    """


@final
class DivergenceError(TrioflowError, RuntimeError):
    """A resumed run made another call than its stored history at the same place.

    Attributes:
        run_id: the run.
        expected: the stored call key at that place.
        found: the call key the code made there.

    .. versionadded:: 0.1
    """

    def __init__(self, message: str, *, run_id: str, expected: str, found: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.expected = expected
        self.found = found


@final
class RunPausedError(TrioflowError):
    """A run paused at ``rt.interrupt(payload)``: resume it with ``flow.resume(run_id, value)``.

    Attributes:
        run_id: the paused run.
        payload: what the node passed to ``rt.interrupt``.
        key: the interrupt's call key.

    .. versionadded:: 0.1
    """

    def __init__(self, message: str, *, run_id: str, payload: object, key: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.payload = payload
        self.key = key


@final
class UnserializableValueError(TrioflowError, TypeError):
    """A value in a run's state cannot be written as JSON.

    Attributes:
        path: where the value sits in the state document, e.g. ``$.context.conn``.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


@final
class DefinitionDocumentError(TrioflowError, ValueError):
    """A flow definition document cannot be loaded: another format or version, a class the
    caller did not allow, or a value that does not fit; the message names its ``$.path``.

    .. versionadded:: 0.1
    """


@final
class GraphDefinitionError(TrioflowError, ValueError):
    """A routine graph names an unknown routine, slot or event, or repeats an id."""


@final
class EventDataError(TrioflowError, TypeError):
    """An event was emitted with parameters it did not declare, or was never defined."""


@final
class JobStateError(TrioflowError, RuntimeError):
    """A job was asked to do something its status does not allow (resume when not paused)."""


@final
class StepLimitError(TrioflowError, RuntimeError):
    """A job handled more messages than its ``max_steps``: likely a runaway cycle."""


@final
class FlowConnectionError(TrioflowError, RuntimeError):
    """A ``FlowConnection`` was read before anything ran on it, or invoked while it was running.

    A ``RuntimeError``, as in Railtracks.
    """


@final
class SessionClosedError(TrioflowError, RuntimeError):
    """A session was used after its ``async with`` block, or the manager is shutting down."""


@final
class BusyError(TrioflowError):
    """A fail-fast session run found no free concurrency slot.

    .. versionchanged:: 0.1
        Renamed from ``Busy``, which still works, with a deprecation warning, for one release.
    """


@final
class WorkflowBuildError(TrioflowError, RuntimeError):
    """A per-user workflow builder raised, or returned something that cannot run."""


@final
class SubscriberOverflowError(TrioflowError):
    """A subscriber with ``overflow="fail"`` fell behind by more than its buffer.

    Raised from the subscriber's iterator after the events it did receive, so
    the loss is never silent.
    """


@final
class DirectNodeCallWarning(UserWarning):
    """A node was called directly inside a run (``await node(x)``) instead of through ``rt.call``.

    The call runs the function inline, as a plain function call: it is no
    child request, is missing from the run's request tree and events, and
    ``end_on_error`` and the argument checks of ``rt.call`` do not apply to
    it. Warned once per node. Use ``await rt.call(node, x)``.

    .. versionadded:: 0.1
    """


@final
class ExecutorError(TrioflowError, RuntimeError):
    """A node (or routine handler) could not be run on its executor, or its worker failed under it.

    Raised when an argument or a result cannot cross to a worker process or a
    Ray task (``pickle`` refused it), when Ray is not installed or not
    initialised, or when the worker running the node died.

    Attributes:
        node: the node's name, or the routine's id.
        parameter: the parameter whose argument could not be sent (for a
            routine handler, the message key or the routine's attribute), if
            that was the problem; ``None`` otherwise.
        exit_code: the worker process's exit code (negative: killed by that
            signal), if it died; ``None`` otherwise.
    """

    def __init__(
        self, message: str, *, node: str, parameter: str | None = None, exit_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.node = node
        self.parameter = parameter
        self.exit_code = exit_code


@final
class RemoteError(TrioflowError):
    """A node on a worker raised an exception that could not be sent back as itself.

    Stands in for it (its class could not be pickled or rebuilt): the message
    names the original class and repeats its message, and the remote
    traceback is attached as a note.

    Attributes:
        type_name: the original exception's class, qualified by its module.
    """

    def __init__(self, message: str, *, type_name: str) -> None:
        super().__init__(message)
        self.type_name = type_name
