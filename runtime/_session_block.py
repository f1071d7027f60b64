"""``rt.Session(...)`` as a block: Railtracks' deprecated form of one run.

In Railtracks 1.7 a program runs nodes with ``with rt.Session(...):`` around
its ``await rt.call(...)`` lines; every call in the block is a top-level request
of one run, with the session's timeout, context and ``end_on_error``. Here
that block is :func:`~runtime._run.open_run`, the primitive every Flow run is
built on, entered in the caller's task: same records, state, subscribers and
timeouts as a Flow run, and no task of its own.

Both forms work inside Trio code:

- ``async with rt.Session(...) as s:`` is the full form: the run's actor
  system (a nursery) spans the block, so subscribers and recorders get every
  record, ``run_finished`` last.
- ``with rt.Session(...) as s:`` (Railtracks' spelling) is honoured too: its
  timeout is a cancel scope entered by ``__enter__`` (as ``trio.fail_after``
  is), and each ``rt.call`` in the block opens an actor system of its own for
  its request. A plain ``with`` cannot await, so it cannot hand the run's end
  to consumers: with subscribers or recorders it is refused, naming
  ``async with``.

``rt.Session`` is also the name of a session manager's lease
(:class:`runtime.Session`, from ``manager.session()``); calling it, which a
lease never allowed, builds this block.
"""

from __future__ import annotations

import pathlib
import reprlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, final

import trio

from ._context import RequestMetadata, current_frame
from ._core import RunSettings, new_run_id
from ._exceptions import NestedRunError, OutsideTrioError, RunTimeoutError
from ._flow import report_payload
from ._publisher import Event, EventKind
from ._run import open_run
from ._util import check_in_trio, warn_deprecated

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence
    from types import TracebackType

    from ._executor import Executor
    from ._publisher import Recorder
    from ._run import OpenRun
    from ._state import JobState

_INSTEAD = "rt.Flow(name, entry_point=node, ...) and await flow.ainvoke(...)"


def _show(value: object) -> str:
    return reprlib.repr(value)


def _check(
    *, timeout: object, context: object, end_on_error: object, save_state: object, name: object
) -> None:
    """Raise an error naming the first setting ``rt.Session`` does not accept, and what it accepts."""
    if name is not None and (not isinstance(name, str) or not name):
        msg = f"rt.Session(name={_show(name)}): name must be a non-empty string, or None."
        raise TypeError(msg)
    if timeout is not None:
        if not isinstance(timeout, int | float) or isinstance(timeout, bool):
            msg = f"rt.Session(timeout={_show(timeout)}): timeout must be a positive number of seconds, or None."
            raise TypeError(msg)
        if not timeout > 0:  # NaN too
            msg = f"rt.Session(timeout={timeout!r}): timeout must be a positive number of seconds, or None."
            raise ValueError(msg)
    if context is not None and (
        not isinstance(context, Mapping) or not all(isinstance(key, str) for key in context)
    ):
        msg = f"rt.Session(context={_show(context)}): context must be a dict of str keys to values, or None."
        raise TypeError(msg)
    for label, value in (("end_on_error", end_on_error), ("save_state", save_state)):
        if not isinstance(value, bool):
            msg = f"rt.Session({label}={_show(value)}): {label} must be True or False."
            raise TypeError(msg)


def _broadcasts_to(callback: Callable[[object], object]) -> Callable[[Event], object]:
    """A subscriber that calls *callback* with each ``rt.broadcast`` item (Railtracks' ``broadcast_callback``)."""

    def subscriber(event: Event) -> object:
        if event.kind is EventKind.STREAM:
            return callback(event.data)
        return None

    return subscriber


@final
class SessionBlock:
    """One run whose top-level requests are the ``rt.call`` requests of a block: ``rt.Session(...)``.

    Deprecated, as in Railtracks 1.7: build a :class:`~runtime.Flow` and
    ``await flow.ainvoke(...)``. Inside Trio code::

        async with rt.Session(name="demo", timeout=30) as session:
            a = await rt.call(fetch, "x")
            b = await rt.call(parse, a)
        session.state.status  # rt.Status.COMPLETED

    Each ``rt.call`` in the block (or in tasks the block starts) is a
    top-level request of the one run; ``rt.context`` in the block reads and
    writes the run's context. The block ends the run: if the block's code
    raises, the run is ``failed`` and the error propagates; at the *timeout*
    every request is cancelled (their ``finally`` blocks run) and
    :class:`~runtime.RunTimeoutError` is raised from the block; with
    *end_on_error* the first failing request cancels the block and its error
    is raised from it; a cancel from outside leaves the run ``cancelled``.

    Args:
        context: the run's context (``rt.context``), copied.
        name: the run's flow name (its state file's name); by default
            *flow_name*, else ``"session"``.
        flow_name: Railtracks' name of the flow the session belongs to.
        flow_id: Railtracks' id of that flow; kept, not used.
        timeout: seconds the block may take, or ``None``.
        end_on_error: end the run at the first failing request.
        save_state: write the run's state document to *state_dir* when it ends.
        state_dir: where *save_state* writes; default ``.trioflow``.
        subscribers: called with every :class:`~runtime.Event` (``async with`` only).
        recorders: get every record (``async with`` only).
        broadcast_callback: called with each ``rt.broadcast`` item (``async with`` only).
        payload_callback: called once with the run's state document (as
            ``save_state`` writes it) when the block ends, however it ends; what
            it raises is logged, naming it, and changes nothing.
        executor: where plain (sync) nodes run; by default worker threads.

    Raises:
        TypeError, ValueError: a setting of the wrong type or value; the
            message names it.

    .. deprecated:: 0.2
        Use ``rt.Flow(name, entry_point=node, ...)`` and ``await flow.ainvoke(...)``.
    """

    __slots__ = ("_block", "_identifier", "_payload_callback", "_settings", "flow_id", "flow_name", "name")

    def __init__(
        self,
        context: Mapping[str, object] | None = None,
        *,
        name: str | None = None,
        flow_name: str | None = None,
        flow_id: str | None = None,
        timeout: float | None = None,
        end_on_error: bool = False,
        save_state: bool = False,
        state_dir: str | os.PathLike[str] = ".trioflow",
        subscribers: Sequence[Callable[[Event], object]] = (),
        recorders: Sequence[Recorder] = (),
        broadcast_callback: Callable[[object], object] | None = None,
        payload_callback: Callable[[dict[str, object]], object] | None = None,
        executor: Executor | None = None,
    ) -> None:
        warn_deprecated("rt.Session(...)", version="0.2", instead=_INSTEAD, issue=15, stacklevel=4)
        _check(timeout=timeout, context=context, end_on_error=end_on_error, save_state=save_state, name=name)
        #: The session's name, as given (Railtracks' ``Session.name``).
        self.name = name
        #: Railtracks' flow name and id, as given.
        self.flow_name = flow_name
        self.flow_id = flow_id
        self._identifier = new_run_id()
        subscribed = tuple(subscribers)
        if broadcast_callback is not None:
            subscribed = (*subscribed, _broadcasts_to(broadcast_callback))
        self._settings = RunSettings(
            name=name or flow_name or "session",
            timeout=timeout,
            end_on_error=end_on_error,
            save_state=save_state,
            state_dir=pathlib.Path(state_dir),
            subscribers=subscribed,
            recorders=tuple(recorders),
            context=dict(context or {}),
            executor=executor,
        )
        self._block: OpenRun | None = None
        self._payload_callback = payload_callback

    def __repr__(self) -> str:
        if self._block is None:
            where = "not entered"
        elif self._block.run.outcome is None:
            where = "running"
        else:
            where = self._block.run.state.status.value
        return f"<rt.Session {self._settings.name!r} run {self._identifier}: {where}>"

    @property
    def identifier(self) -> str:
        """The id of the session's run (Railtracks' ``Session.identifier``): ``state.run_id``."""
        return self._identifier

    @property
    def state(self) -> JobState:
        """The run's :class:`~runtime.JobState`: live in the block, final after it.

        Raises:
            RuntimeError: the session was never entered.
        """
        if self._block is None:
            msg = f"{self!r} has no state yet: enter it first, with `async with rt.Session(...) as session:`."
            raise RuntimeError(msg)
        return self._block.run.state

    @property
    def info(self) -> JobState:
        """Railtracks' ``ExecutionInfo`` has no counterpart: read :attr:`state` (a :class:`~runtime.JobState`).

        Raises:
            AttributeError: always; the message says what to read instead.
        """
        msg = (
            "rt.Session has no .info (Railtracks' ExecutionInfo): read session.state, an rt.JobState with "
            "the run's requests (state.requests), status, result, error and shared log."
        )
        raise AttributeError(msg)

    @property
    def rt_state(self) -> JobState:
        """Railtracks' ``RTState`` has no counterpart: read :attr:`state`.

        Raises:
            AttributeError: always; the message says what to read instead.
        """
        msg = "rt.Session has no .rt_state (Railtracks' RTState): read session.state, an rt.JobState."
        raise AttributeError(msg)

    def payload(self) -> dict[str, object]:
        """Railtracks' JSON payload has no counterpart: the run's state document is.

        Raises:
            AttributeError: always; the message says what to use instead.
        """
        msg = (
            "rt.Session has no payload(): read session.state (an rt.JobState), or write its document with "
            "rt.Session(save_state=True, state_dir=...) and read it back with rt.read_state_file(path)."
        )
        raise AttributeError(msg)

    def _open(self, form: str) -> OpenRun:
        if self._block is not None:
            msg = f"{self!r} was entered already: make a new rt.Session(...) for each `{form}` block."
            raise RuntimeError(msg)
        frame = current_frame.get(None)
        if frame is not None:
            outer = frame.run
            msg = (
                f"`{form} rt.Session(...)` was entered inside run {outer.state.job_id} of flow {outer.flow_name!r}: "
                "a session is a run of its own, and it cannot nest in another. In a node, call the other nodes "
                "with rt.call(...) (they join the current run), or start a separate run with "
                "await rt.Flow(name, entry_point=node).ainvoke(...)."
            )
            raise NestedRunError(msg)
        self._block = block = open_run(
            self._settings,
            metadata=RequestMetadata(run_id=self._identifier),
            where=f"rt.Session({self._settings.name!r})",
        )
        return block

    def _raise_run_error(self, suppressed: bool) -> None:
        """After the block: tell ``payload_callback``, then raise a timeout or ``end_on_error`` failure.

        The block itself saw those only as its cancellation.
        """
        assert self._block is not None
        if self._payload_callback is not None:
            report_payload(self._payload_callback, self._block.run.state, f"rt.Session {self._settings.name!r}")
        outcome = self._block.run.outcome
        if suppressed and outcome is not None and outcome.error is not None:
            error = outcome.error
            if isinstance(error, RunTimeoutError):
                raise error from None
            raise error

    async def __aenter__(self) -> SessionBlock:
        check_in_trio("async with rt.Session(...)", how="entered")
        await self._open("async with").__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        assert self._block is not None
        suppressed = await self._block.__aexit__(exc_type, exc, tb)
        self._raise_run_error(suppressed)
        return suppressed

    def __enter__(self) -> SessionBlock:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            msg = (
                "`with rt.Session(...)` was entered outside a Trio run, but its nodes run on Trio. Enter it in "
                "Trio code (async def main(): with rt.Session(...): await rt.call(node, ...); then trio.run(main)), "
                "or from synchronous code run rt.Flow(name, entry_point=node, ...).invoke(...)."
            )
            raise OutsideTrioError(msg) from None
        settings = self._settings
        if settings.subscribers or settings.recorders:
            msg = (
                f"`with rt.Session({settings.name!r}, ...)` has subscribers, recorders or a broadcast_callback, "
                "and a plain `with` cannot await their delivery of the run's end. Write "
                "`async with rt.Session(...)` instead."
            )
            raise TypeError(msg)
        self._open("with").__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        assert self._block is not None
        suppressed = self._block.__exit__(exc_type, exc, tb)
        self._raise_run_error(suppressed)
        return suppressed
