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
  ``async with``. A ``broadcast_callback`` is no consumer: each item is
  handed to it in the broadcasting node's task, as ``rt.broadcast`` is awaited.

Outside Trio, a plain ``with rt.Session(...)`` is a run whose block reads and
writes ``rt.context`` (no task, no cancel scope, nothing of Trio's is held);
an ``rt.call`` in it is refused, naming the forms that run calls.

``rt.Session`` is also the name of a session manager's lease
(:class:`runtime.Session`, from ``manager.session()``); calling it, which a
lease never allowed, builds this block.
"""

from __future__ import annotations

import pathlib
import reprlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, final

from ._context import RequestMetadata, current_frame
from ._core import RunSettings, new_run_id, run_defaults
from ._exceptions import NestedRunError, RunTimeoutError
from ._flow import ExecutionInfo, RunContextView, SessionConfig, report_payload
from ._run import open_run
from ._serialize import dump_state
from ._util import check_in_trio, warn_deprecated

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence
    from types import TracebackType

    from ._core import RunResult
    from ._executor import Executor
    from ._publisher import Event, Recorder
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
        if value is not None and not isinstance(value, bool):
            msg = f"rt.Session({label}={_show(value)}): {label} must be True, False or None."
            raise TypeError(msg)


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

    A plain ``with`` works too; outside Trio, its block reads and writes the
    run's context and an ``rt.call`` in it raises
    :class:`~runtime.OutsideTrioError`. Railtracks' reads work in and after
    the block: :attr:`info` (an :class:`~runtime.ExecutionInfo`),
    :meth:`payload`, :attr:`executor_config` (``rt_state.executor_config``).

    Args:
        context: the run's context (``rt.context``), copied.
        name: the run's flow name (its state file's name); by default
            *flow_name*, else ``"session"``.
        flow_name: Railtracks' name of the flow the session belongs to.
        flow_id: Railtracks' id of that flow; kept, not used.
        timeout: seconds the block may take; ``None``: the
            :func:`~runtime.set_config` default (no limit unless set).
        end_on_error: end the run at the first failing request; ``None``:
            the :func:`~runtime.set_config` default (off).
        save_state: write the run's state document to *state_dir* when it
            ends; ``None``: the :func:`~runtime.set_config` default (off).
        state_dir: where *save_state* writes; default ``.trioflow``.
        subscribers: called with every :class:`~runtime.Event` (``async with`` only).
        recorders: get every record (``async with`` only).
        broadcast_callback: called (plain or async) with each ``rt.broadcast``
            item, in the broadcasting node's task as it awaits ``rt.broadcast``;
            what it raises is logged, naming it. ``None``: the
            :func:`~runtime.set_config` default.
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

    __slots__ = (
        "_block",
        "_config",
        "_identifier",
        "_payload_callback",
        "_settings",
        "flow_id",
        "flow_name",
        "name",
    )

    def __init__(
        self,
        context: Mapping[str, object] | None = None,
        *,
        name: str | None = None,
        flow_name: str | None = None,
        flow_id: str | None = None,
        timeout: float | None = None,
        end_on_error: bool | None = None,
        save_state: bool | None = None,
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
        # As in Railtracks, the session's settings are fixed when it is made:
        # its own, else the rt.set_config defaults in force now.
        defaults = run_defaults.get()
        self._config = config = SessionConfig(
            timeout=defaults.timeout if timeout is None else timeout,
            end_on_error=defaults.end_on_error if end_on_error is None else end_on_error,
            save_state=defaults.save_state if save_state is None else save_state,
            broadcast_callback=defaults.broadcast_callback if broadcast_callback is None else broadcast_callback,
        )
        self._settings = RunSettings(
            name=name or flow_name or "session",
            timeout=config.timeout,
            end_on_error=config.end_on_error,
            save_state=config.save_state,
            state_dir=pathlib.Path(state_dir),
            subscribers=tuple(subscribers),
            recorders=tuple(recorders),
            context=dict(context or {}),
            executor=executor,
            broadcast_callback=config.broadcast_callback,
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
    def session_id(self) -> str:
        """The id of the session's run, as :attr:`FlowConnection.session_id <runtime.FlowConnection.session_id>` gives it."""
        return self._identifier

    @property
    def context(self) -> RunContextView:
        """The run's context, read from outside the block: live in it, what it left after it.

        Raises:
            RuntimeError: the session was never entered.
        """
        return RunContextView(self.state.context)

    @property
    def result(self) -> RunResult[object] | None:
        """How the run ended, once the block has been left; ``None`` before."""
        return None if self._block is None else self._block.run.outcome

    @property
    def info(self) -> ExecutionInfo:
        """The run's requests and answer (Railtracks' ``Session.info``): a read-only view of :attr:`state`.

        ``info.answer`` is what the block's ``rt.call`` requests returned (one
        value, or a list if several did).

        Raises:
            RuntimeError: the session was never entered.
        """
        state = self.state
        assert self._block is not None
        root = self._block.run.root
        answers = {} if root is None else root.answers
        tops = [r.id for r in state.requests.values() if r.parent_id is None]  # in call order
        return ExecutionInfo(state, [answers[i] for i in tops if i in answers])

    @property
    def executor_config(self) -> SessionConfig:
        """The settings the session's run has: its own, else the :func:`~runtime.set_config` defaults when it was made."""
        return self._config

    @property
    def rt_state(self) -> SessionBlock:
        """The session itself, for Railtracks code that reads ``session.rt_state.executor_config``."""
        return self

    def payload(self) -> dict[str, object]:
        """The run's state document (:func:`~runtime.dump_state`), as ``payload_callback`` gets it.

        Raises:
            RuntimeError: the session was never entered.
        """
        return dump_state(self.state, strict=False)

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
        settings = self._settings
        if settings.subscribers or settings.recorders:
            msg = (
                f"`with rt.Session({settings.name!r}, ...)` has subscribers or recorders, and a plain `with` "
                "cannot await their delivery of the run's end. Write `async with rt.Session(...)` instead."
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
