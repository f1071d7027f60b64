"""The run core: what node runs and graph jobs share, written once.

Both engines (``_run`` for trees of node calls, ``_job`` for routine graphs)
import this module and neither imports the other nor ``_flow``. It holds:

- run ids (:func:`new_run_id`, :func:`new_job_id`);
- :class:`RunDefaults`, the settings every Flow falls back on (``rt.set_config``),
  held in a :class:`~contextvars.ContextVar`;
- :class:`RunSettings`, the Flow's settings as one frozen value handed to an
  engine for each run, so an engine never reads a Flow;
- :class:`RunResult`, how a finished run ended, returned by both engines;
- how a run ends: :func:`end_state` (the final status, error and result in the
  state, and the ``run_finished`` payload), :func:`timeout_error`,
  :func:`cancelled_error` and :func:`save_state`.

The checks that an entry point runs where it can (``check_not_in_trio``,
``check_in_trio``) sit lower still, in ``_util``, for the sessions too.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar, final

import attrs

from ._exceptions import RunCancelledError, RunTimeoutError
from ._serialize import state_file_name, write_state_file
from ._state import ErrorSummary, JobState, Status

if TYPE_CHECKING:
    import pathlib

    from ._executor import Executor
    from ._publisher import Event, Recorder

#: What ``rt.broadcast`` items are handed to: ``Flow(broadcast_callback=...)``.
BroadcastCallback = Callable[[object], object]

T = TypeVar("T")

_state_logger = logging.getLogger("runtime.state")


# -- ids ------------------------------------------------------------------------

_ID_PREFIX = os.urandom(4).hex()
_id_counter = itertools.count(1)


def new_run_id() -> str:
    """A fresh, unique run id: 48 random bits (``uuid4`` costs ten times more, on every run's path)."""
    return f"run-{os.urandom(6).hex()}"


def new_job_id() -> str:
    """A fresh job id, unique in this process (and, by its random prefix, across processes)."""
    return f"job-{_ID_PREFIX}{next(_id_counter):04x}"


# -- settings and results ----------------------------------------------------------


@final
@attrs.frozen
class RunDefaults:
    """The settings a Flow falls back on for those it was not given (``rt.set_config``).

    Attributes:
        timeout: seconds a run may take; ``None``: no limit.
        end_on_error: end the whole run at the first failing node.
        save_state: write each run's state document when it ends.
        broadcast_callback: called with every ``rt.broadcast`` item.
    """

    timeout: float | None = None
    end_on_error: bool = False
    save_state: bool = False
    broadcast_callback: BroadcastCallback | None = None


#: The defaults in force: set by ``rt.set_config``, read when a run starts.
#: A context variable, so Trio tasks (and ``trio.run``) inherit what was set
#: where they were started, and a setting made in one task never reaches a
#: sibling task's runs.
run_defaults: contextvars.ContextVar[RunDefaults] = contextvars.ContextVar(
    "trioflow_run_defaults", default=RunDefaults()  # noqa: B039 (RunDefaults is frozen)
)


@final
@attrs.frozen
class RunSettings:
    """A Flow's run settings, as one value: what an engine needs to run it once.

    Built by the Flow for each run, so a setting changed on the Flow applies
    from the next run on and never to a run in flight.
    """

    name: str
    timeout: float | None
    end_on_error: bool
    save_state: bool
    state_dir: pathlib.Path
    subscribers: tuple[Callable[[Event], object], ...]
    recorders: tuple[Recorder, ...]
    context: dict[str, object]
    executor: Executor | None = None
    #: Called by the engine with the run's state as soon as it exists, before
    #: any node or routine runs: a ``FlowConnection`` reads the live context there.
    on_state: Callable[[JobState], object] | None = None
    #: Called with each ``rt.broadcast`` item of a node run, in the broadcasting
    #: node's own task as it awaits ``rt.broadcast`` (no publisher needed).
    broadcast_callback: BroadcastCallback | None = None

    @property
    def state_path(self) -> pathlib.Path:
        """Where ``save_state`` keeps the flow's latest run: worked out only when a run is saved."""
        return self.state_dir / state_file_name(self.name)

    def run_state_path(self, run_id: str) -> pathlib.Path:
        """Where ``save_state`` writes run *run_id*: its own file, in a directory of the flow's runs."""
        return run_state_path(self.state_dir, self.name, run_id)


@final
@attrs.frozen(repr=False)
class RunResult(Generic[T]):
    """How a finished run ended: its state, and its result or error.

    Returned by :meth:`Flow.arun <runtime.Flow.arun>` and
    :meth:`Flow.run <runtime.Flow.run>`, which do not raise a node's error.

    Attributes:
        state: the run's :class:`~runtime.JobState`.
        result: the entry point's return value, or ``None`` if it did not return.
        error: the error that ended the run, or ``None``.

    .. versionadded:: 0.1
    """

    state: JobState
    result: T | None
    error: BaseException | None

    @property
    def status(self) -> Status:
        """The run's final status."""
        return self.state.status

    def unwrap(self) -> T:
        """Return the result, or raise the run's error."""
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]

    def __repr__(self) -> str:
        # Short: a failing assertion on a result prints this, not the whole state.
        state = self.state
        ended = f"error={self.error!r}" if self.error is not None else f"result={_short(self.result)}"
        return (
            f"<RunResult of run {state.job_id} of flow {state.flow_name!r}: {state.status.value}, {ended}, "
            f"{len(state.requests)} requests>"
        )


def _short(value: object, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


# -- how a run ends ------------------------------------------------------------------


def end_state(
    state: JobState,
    status: Status,
    error: BaseException | None,
    result: str | None,
    *,
    error_path: tuple[str, ...] = (),
) -> dict[str, object]:
    """Write how the run ended into *state*; return the ``run_finished`` event's payload.

    Args:
        state: the run's state.
        status: its final status.
        error: what ended it, if anything.
        result: the summary of its result (see :func:`~runtime.summarize`).
        error_path: where *error* was raised (request path or routine id).
    """
    state.status = status
    state.error = None if error is None else ErrorSummary.from_exception(error, error_path)
    state.result = result
    return {
        "status": status.value,
        "result": result,
        "error": None if state.error is None else f"{state.error.type}: {state.error.message}",
    }


def _what(state: JobState, unit: str) -> str:
    if unit == "node":
        return f"Flow {state.flow_id!r} (run {state.job_id})"
    return f"Job {state.job_id!r} of flow {state.flow_id!r}"


def timeout_error(state: JobState, timeout: float | None, unit: str) -> RunTimeoutError:
    """The error of a run that passed its *timeout*; *unit* is ``"node"`` or ``"routine"``."""
    if unit == "node":
        ended = "every node of it was cancelled and its finally blocks ran."
    else:
        ended = "every routine of it was cancelled."
    return RunTimeoutError(f"{_what(state, unit)} timed out after {timeout} s; {ended}")


def cancelled_error(state: JobState, unit: str, cause: BaseException | None = None) -> RunCancelledError:
    """The error of a run cancelled from outside (by its caller's cancel scope)."""
    error = RunCancelledError(f"{_what(state, unit)} was cancelled from outside.")
    error.__cause__ = cause
    return error


def run_state_path(state_dir: pathlib.Path, flow_name: str, run_id: str) -> pathlib.Path:
    """The state file of run *run_id* of flow *flow_name*: ``<state_dir>/<flow file stem>.runs/<run id>.json``.

    Both names pass through :func:`~runtime.state_file_name`, so a run id
    (which a caller may choose) never leads outside *state_dir*.
    """
    return state_dir / (state_file_name(flow_name).removesuffix(".json") + ".runs") / state_file_name(run_id)


def save_state(settings: RunSettings, state: JobState) -> None:
    """Write *state* to its run's own state file, then make it the Flow's latest; a failed write is logged, never raised.

    Each run writes its own file (:meth:`RunSettings.run_state_path`), so
    concurrent runs of one flow never overwrite each other; the Flow's state
    file (:attr:`RunSettings.state_path`) is then replaced, atomically, by a
    link to it (a copy where links are not possible): it always holds one
    whole run, the latest to end. The run's own outcome is what the caller
    gets: a full disk must not turn a finished run into an ``OSError``.
    """
    latest = settings.state_path
    try:
        own = write_state_file(state, settings.run_state_path(state.job_id), strict=False)
        if latest.exists() or latest.is_symlink():
            _state_logger.warning("State file %s already exists, overwriting.", os.fspath(latest))
        tmp = latest.parent / f".{latest.name}.{uuid.uuid4().hex}.tmp"
        try:
            os.link(own, tmp)
        except OSError:
            shutil.copyfile(own, tmp)
        try:
            os.replace(tmp, latest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError:
        _state_logger.exception(
            "Could not save the state of run %s of flow %r to %s.",
            state.job_id,
            settings.name,
            latest,
        )
