"""``rt.ray()``: run plain nodes as Ray tasks, on this machine or a cluster.

Needs the optional extra ``trioflow[ray]``. ``ray.init`` stays the user's
call: trioflow never starts or joins a cluster by itself.

How a call is awaited: the task's object ref gives a
:class:`concurrent.futures.Future`; its done-callback (run on a Ray thread)
hands ``trio.Event.set`` to the run's loop through its Trio token. The loop
never blocks and never polls.

How a cancel reaches the task: ``ray.cancel(ref)`` raises
``KeyboardInterrupt`` in the task's Python code; if the task has not ended
after a grace period (it is in C code, or it swallowed the interrupt),
``ray.cancel(ref, force=True)`` kills its worker process; if even that is
not confirmed in time, the run stops waiting and the request says
``orphaned``.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import TYPE_CHECKING, final

import trio

from ._exceptions import ExecutorError
from ._executor import died, pack, run_packed, unpack
from ._state import Status

if TYPE_CHECKING:
    import concurrent.futures
    from types import ModuleType

    from ._executor import Executor, Submission

_WHERE = "a Ray task"


@functools.cache
def _boundary(ray: ModuleType) -> object:
    """The one remote function every call goes through (Ray exports it once)."""
    return ray.remote(run_packed)


@final
class _Ray:
    """Ray tasks: see :func:`ray`."""

    __slots__ = ("_grace_period", "_kill_timeout", "_options", "_ray", "_remote")
    name = "ray"

    def __init__(
        self, ray: ModuleType, grace_period: float, kill_timeout: float, options: dict[str, object]
    ) -> None:
        self._ray = ray
        self._grace_period = grace_period
        self._kill_timeout = kill_timeout
        # Ray re-runs a task whose worker died, three times by default; a run's
        # request is one call, so only the user turns that on.
        options = {"max_retries": 0, **options}
        self._options = options
        boundary = _boundary(ray)
        # Ray checks the options here, so a bad one fails at the decorator, not in a run.
        self._remote = boundary.options(**options)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        options = "".join(f", {key}={value!r}" for key, value in self._options.items())
        return f"rt.ray(grace_period={self._grace_period!r}, kill_timeout={self._kill_timeout!r}{options})"

    async def run(self, submission: Submission) -> object:
        ray = self._ray
        if not ray.is_initialized():
            msg = (
                f"{submission.label} runs on rt.ray(), but Ray is not initialised in this process. "
                "Call ray.init() (or ray.init(address='auto') to join a running cluster) before the run; "
                "trioflow never starts Ray by itself."
            )
            raise ExecutorError(msg, node=submission.node)
        payload = pack(submission, ray.cloudpickle.dumps, where=_WHERE)
        ref = self._remote.remote(payload, True)
        future: concurrent.futures.Future[tuple[object, ...]] = ref.future()
        done = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def wake(_: object) -> None:  # on a Ray thread, or here if already done
            with contextlib.suppress(trio.RunFinishedError):  # an orphaned task ended after its run
                token.run_sync_soon(done.set)

        future.add_done_callback(wake)
        try:
            await done.wait()
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                submission.ending = await self._stop(ref, done)
            raise
        try:
            reply = future.result()
        except ray.exceptions.WorkerCrashedError as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise died(submission, None, "Ray worker", detail=detail) from None
        return unpack(reply, submission, where=_WHERE)

    async def _stop(self, ref: object, done: trio.Event) -> Status:
        """Cancel the task behind *ref*: softly, then by force; return how it ended.

        Bounded: waits at most the grace period plus the kill timeout.
        """
        ray = self._ray
        ray.cancel(ref)
        with trio.move_on_after(self._grace_period):
            await done.wait()
            return Status.CANCELLED
        ray.cancel(ref, force=True)
        with trio.move_on_after(self._kill_timeout):
            await done.wait()
            return Status.KILLED
        return Status.ORPHANED


def ray(*, grace_period: float = 2.0, kill_timeout: float = 5.0, **options: object) -> Executor:
    """An executor that runs a plain node as a Ray task.

    Needs ``pip install 'trioflow[ray]'``, and Ray initialised by the caller
    (``ray.init(...)``) before the run. Each call is one task (a task, not an
    actor method: a running actor method cannot be cancelled). Awaiting it
    never blocks the Trio loop: the task's completion wakes the loop.

    The function and its arguments are pickled (``ray.cloudpickle``) before
    anything is sent; an argument that cannot be is named by its parameter.
    The node must be importable on the workers (a module on their path, or
    shipped with a ``runtime_env``). Its exception comes back as itself,
    with the task's traceback as a note.

    A cancel (a cancel, a timeout, ``end_on_error``) first calls
    ``ray.cancel(ref)``, which interrupts Python code in the task; the
    request ends ``cancelled`` if the task ends within *grace_period*.
    Otherwise ``ray.cancel(ref, force=True)`` kills its worker: ``killed``
    if that is confirmed within *kill_timeout*, else ``orphaned`` (the run
    stops waiting; the task may still be running).

    Args:
        grace_period: seconds a soft cancel has to end the task.
        kill_timeout: seconds a forced cancel has to be confirmed.
        options: Ray task options (``num_cpus``, ``resources``,
            ``runtime_env``, ...), as ``f.options(...)`` takes. ``max_retries``
            is 0 unless given: a worker that dies fails the request rather
            than running the function again.

    Raises:
        ImportError: Ray is not installed; the message names the extra.
        ValueError: *grace_period* or *kill_timeout* is negative or not a number,
            or Ray refused an option.

    .. versionadded:: 0.1
    """
    for label, value in (("grace_period", grace_period), ("kill_timeout", kill_timeout)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
            msg = f"rt.ray({label}={value!r}): {label} is a number of seconds, 0 or more."
            raise ValueError(msg)
    try:
        import ray as ray_module  # optional: only this executor needs it
    except ImportError as exc:
        msg = "rt.ray() needs Ray, which is not installed. Install the extra: pip install 'trioflow[ray]'."
        raise ImportError(msg, name="ray") from exc
    return _Ray(ray_module, float(grace_period), float(kill_timeout), dict(options))
