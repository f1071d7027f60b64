"""The runners' real-time watchdog, and their watch on the tasks a run leaves behind.

The kit's synchronous runners run Trio under ``MockClock(autojump_threshold=0)``:
a run that never ends (a node that waits for something that never comes, or
that swallows ``trio.Cancelled`` in a loop) would spin forever, and Ctrl-C
with it when the node swallows that too. So a runner does not call
``trio.run``: it drives the run as a Trio *guest run*
(:func:`trio.lowlevel.start_guest_run`) whose host loop is
:func:`run_guarded` itself, on the calling thread. Trio hands the host one
callback per batch of tasks; between two callbacks no Trio code runs, so the
host can look at the real clock, and at the run's state, safely.

When the watchdog's real-time budget is spent, the host asks for a
description of what is still running (the requests, by path), cancels the
run, and lets it run a little longer to end. If it does not (a node ignores
cancellation), the run is *abandoned*: the host stops driving it and closes
Trio's run loop, which resets the thread's Trio state so that the next
``trio.run`` works. Either way the watchdog fails with the description. The
abandoned tasks are kept referenced, never resumed or closed: closing a
coroutine that swallows every exception in a loop would loop forever.

No thread is started, and Trio's state is only touched on the calling
thread. (A task that blocks without reaching a checkpoint, e.g. in
``time.sleep``, blocks the host too; the watchdog cannot see past it.)
"""

from __future__ import annotations

import ctypes
import queue
import time
import warnings
from typing import TYPE_CHECKING, TypeVar, final

import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    import outcome

T = TypeVar("T")

#: Real seconds a runner lets its runs take before its watchdog fails them.
DEFAULT_WATCHDOG = 5.0

# Runs abandoned by a watchdog: kept so that their coroutines are never
# closed by the garbage collector (see the module docstring). Only a failing
# example abandons a run, so this stays small.
_ABANDONED: list[object] = []


def check_watchdog(seconds: object, api: str) -> float | None:
    """*seconds* as a watchdog budget, or a ``ValueError`` naming *api*."""
    if seconds is None:
        return None
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not seconds > 0
        or seconds == float("inf")
    ):
        msg = f"{api}: watchdog={seconds!r} must be a positive, finite number of real seconds, or None to turn it off."
        raise ValueError(msg)
    return float(seconds)


@final
class RunTasks(trio.abc.Instrument):
    """The tasks started, at any depth, from a set of root tasks, and which are still alive.

    Unlike :class:`~runtime.testing.TaskWatch`, which finds a node run by its
    task's name, this follows tasks the runner starts itself (one per run),
    so it works for node runs and routine-graph jobs alike. A task counts as
    its root's whatever nursery it was started in: a system nursery, or a
    nursery kept from another run.
    """

    __slots__ = ("_alive", "_order", "_root_of", "_spawner")

    def __init__(self) -> None:
        self._root_of: dict[trio.lowlevel.Task, int] = {}
        self._spawner: dict[trio.lowlevel.Task, trio.lowlevel.Task] = {}
        self._order: list[trio.lowlevel.Task] = []
        self._alive: set[trio.lowlevel.Task] = set()

    def add_root(self, index: int) -> None:
        """Make the calling task the root of run *index*."""
        self._root_of[trio.lowlevel.current_task()] = index

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        try:
            spawner = trio.lowlevel.current_task()
        except RuntimeError:  # pragma: no cover - spawned outside any task
            return
        root = self._root_of.get(spawner)
        if root is not None:
            self._root_of[task] = root
            self._spawner[task] = spawner
            self._order.append(task)
            self._alive.add(task)

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self._alive.discard(task)

    def alive(self, index: int) -> list[str]:
        """Run *index*'s tasks that have not ended, each as ``name (started by spawner)``."""
        found = []
        for task in self._order:
            if task in self._alive and self._root_of[task] == index:
                spawner = self._spawner[task]
                found.append(f"{task.name!r} (started by {spawner.name!r})")
        return found


def run_guarded(
    async_fn: Callable[[], Awaitable[T]],
    *,
    clock: trio.abc.Clock,
    watchdog: float | None,
    running: Callable[[], Sequence[str]],
    what: str,
    instruments: Sequence[trio.abc.Instrument] = (),
) -> T:
    """Run ``await async_fn()`` as a Trio guest run on this thread; fail it after *watchdog* real seconds.

    Args:
        async_fn: the run's main function.
        clock: Trio's clock for the run.
        watchdog: real seconds the run may take, or ``None`` for no limit.
        running: called (between two batches of Trio tasks) when the watchdog
            fires: one line per request still running, for the message.
        what: the runner, as the message names it: ``run_with_schedule(flow 'pay')``.
        instruments: Trio instruments for the run.

    Returns:
        What *async_fn* returned.

    Raises:
        AssertionError: the watchdog fired; the message names what was running.
        BaseException: what *async_fn* raised.
    """
    callbacks: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
    done: list[outcome.Outcome[T]] = []
    guest: list[object] = []
    scope = trio.CancelScope()
    tokens: list[trio.lowlevel.TrioToken] = []

    def run_sync_soon(callback: Callable[[], object]) -> None:
        if not guest:
            owner = getattr(callback, "__self__", None)
            if owner is not None and hasattr(owner, "unrolled_run_gen"):
                guest.append(owner)  # Trio's GuestState: how to abandon the run
        callbacks.put(callback)

    async def main() -> T:
        tokens.append(trio.lowlevel.current_trio_token())
        with scope:
            return await async_fn()
        msg = f"{what} was cancelled by its watchdog."
        raise AssertionError(msg)

    trio.lowlevel.start_guest_run(
        main,
        run_sync_soon_threadsafe=run_sync_soon,
        done_callback=done.append,
        clock=clock,
        instruments=instruments,
        host_uses_signal_set_wakeup_fd=False,
    )
    try:
        if watchdog is None:
            while not done:
                callbacks.get()()
            return done[0].unwrap()
        if _pump(callbacks, done, time.monotonic() + watchdog):
            return done[0].unwrap()
        return _expire(
            callbacks, done, guest, lambda: tokens[0].run_sync_soon(scope.cancel), watchdog, running, what
        )
    except BaseException:
        if not done:  # e.g. KeyboardInterrupt in the host: leave no half-run loop behind
            _abandon(guest)
        raise


def _expire(
    callbacks: queue.SimpleQueue[Callable[[], object]],
    done: list[outcome.Outcome[T]],
    guest: list[object],
    cancel: Callable[[], object],
    watchdog: float,
    running: Callable[[], Sequence[str]],
    what: str,
) -> T:
    lines = list(running())
    listed = "; ".join(lines) if lines else "no request is running (look for a task waiting outside any node)"
    problem = (
        f"{what} was still running after {watchdog:g} s of real time (its watchdog); still running: {listed}."
    )
    # Cancel the run and give it as long again, at most a second, to end.
    cancel()
    if _pump(callbacks, done, time.monotonic() + min(watchdog, 1.0)):
        msg = (
            f"{problem} Cancelled then, it ended: it waits for something that never comes "
            "(an event nobody sets, a lock never released, a message never sent)."
        )
        raise AssertionError(msg)
    _abandon(guest)
    msg = (
        f"{problem} Cancelled then, it still did not end, so it was abandoned: a node catches "
        "trio.Cancelled (or BaseException) and goes on, e.g. in a retry loop. Let Cancelled propagate."
    )
    raise AssertionError(msg)


def _pump(
    callbacks: queue.SimpleQueue[Callable[[], object]], done: list[outcome.Outcome[T]], deadline: float
) -> bool:
    """Run Trio's callbacks until the run ends (True) or *deadline* passes (False)."""
    get_nowait = callbacks.get_nowait
    clock = time.monotonic
    while not done:
        if clock() > deadline:
            return False
        try:
            callback = get_nowait()
        except queue.Empty:
            try:
                callback = callbacks.get(timeout=max(deadline - clock(), 0.0))
            except queue.Empty:
                return False
        callback()
    return True


def _abandon(guest: list[object]) -> None:
    """Stop a guest run for good: close Trio's run loop, so the thread leaves the run."""
    if not guest:  # already abandoned (or Trio no longer hands out its guest state)
        return
    state = guest.pop()
    runner = getattr(state, "runner", None)
    generator = getattr(state, "unrolled_run_gen", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "Trio guest run got abandoned ..."
        if generator is not None:
            generator.close()
    # Keep the tasks for good: never resumed, never closed. A coroutine that
    # swallows GeneratorExit in a loop would hang whoever closes it, the
    # garbage collector or the interpreter's exit included; so the list of
    # them gets one reference nobody owns, and is never freed.
    kept = [state, runner, list(getattr(runner, "tasks", ()))]
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(kept))
    _ABANDONED.append(kept)
