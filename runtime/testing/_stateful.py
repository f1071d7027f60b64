"""Drive a Trio program step by step from synchronous code: for Hypothesis stateful tests.

A :class:`hypothesis.stateful.RuleBasedStateMachine` calls its rules as plain
functions, one after another; a Trio app (a :class:`~runtime.SessionManager`,
a job, a set of actors) needs a running loop that keeps its tasks alive
between rules. :class:`TrioDriver` keeps one Trio run open as a *guest run*
(:func:`trio.lowlevel.start_guest_run`) on a :class:`trio.testing.MockClock`
that moves only when told. The driver itself is the host loop: Trio hands it
callbacks through a queue, and each call of the driver runs them, on the
calling thread, until the rule's coroutine has finished and every task of
the loop is blocked again. Between calls no Trio code runs at all, so after
each step the program is settled and invariants read a consistent state.
"""

from __future__ import annotations

import contextlib
import queue
import time
from typing import TYPE_CHECKING, Generic, TypeVar, final

import outcome
import trio
import trio.testing

if TYPE_CHECKING:
    import types
    from collections.abc import Awaitable, Callable

T = TypeVar("T")


@final
class _Watch(trio.abc.Instrument):
    """The tasks started from the driver's steps, and which of them have ended."""

    def __init__(self) -> None:
        self.mine: set[trio.lowlevel.Task] = set()
        self.order: list[trio.lowlevel.Task] = []
        self.roots: set[trio.lowlevel.Task] = set()

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        try:
            parent = trio.lowlevel.current_task()
        except RuntimeError:  # pragma: no cover - spawned outside any task
            return
        if parent in self.mine or parent in self.roots:
            self.mine.add(task)
            self.order.append(task)

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.mine.discard(task)
        self.roots.discard(task)


@final
class _Step(Generic[T]):
    """How one step ended, written by its task in the loop and read by the driver."""

    __slots__ = ("ended", "interrupted", "result")

    def __init__(self) -> None:
        self.ended = False
        #: The step's own outcome, set once the loop has settled after it.
        self.result: outcome.Outcome[T] | None = None
        #: What stopped the step before that: a cancel from outside, a KeyboardInterrupt.
        self.interrupted: BaseException | None = None


@final
class TrioDriver:
    """One Trio loop on a mock clock, run as a guest of the calling thread, driven one step at a time.

    Each :meth:`run` and :meth:`start_soon` runs in the loop and returns when
    every task of the loop is blocked (``wait_all_tasks_blocked``). Time moves
    only with :meth:`jump`, so a step that waits for time to pass never ends:
    start such waits with :meth:`start_soon`, then :meth:`jump`. A step still
    running after *step_timeout* real seconds is cancelled and reported.

    The loop is a Trio guest run whose host is the driver itself: the driver
    starts no thread, and Trio's code runs on the thread that calls the
    driver, only during its calls (Trio keeps its own helper thread that waits
    for I/O). So the step timeout is checked between two batches of Trio
    tasks: a task that blocks without reaching a checkpoint (``time.sleep``,
    a busy loop) blocks the calling thread too, and that call does not return.

    Until :meth:`close`, the calling thread counts as being inside a Trio run
    (``trio.run()`` there refuses to start), so close every driver, best with
    ``with``; one thread holds one open driver at a time.

    Use it as a context manager, or call :meth:`close`::

        class Machine(RuleBasedStateMachine):
            def __init__(self):
                super().__init__()
                self.trio = rt.testing.TrioDriver()
                self.trio.start_soon(self.serve)      # e.g. opens a SessionManager

            @rule(seconds=st.sampled_from([0.5, 2.0]))
            def wait(self, seconds):
                self.trio.jump(seconds)

            def teardown(self):
                self.trio.close()

    Args:
        clock: the loop's clock; by default a new ``MockClock()`` (rate 0, no autojump).
        step_timeout: real seconds a step may take before it is cancelled.

    Raises:
        RuntimeError: this thread is already inside a Trio run, or has another
            open driver.

    .. versionadded:: 0.1
    """

    __slots__ = (
        "_closed",
        "_error",
        "_finished",
        "_leave",
        "_nursery",
        "_pumping",
        "_queue",
        "_step_timeout",
        "_token",
        "_watch",
        "clock",
    )

    def __init__(self, *, clock: trio.testing.MockClock | None = None, step_timeout: float = 30.0) -> None:
        if trio.lowlevel.in_trio_run():
            msg = (
                "TrioDriver() was created inside a Trio run, or while another TrioDriver is open in this "
                "thread; close() that one first."
            )
            raise RuntimeError(msg)
        self.clock = trio.testing.MockClock() if clock is None else clock
        self._step_timeout = step_timeout
        self._watch = _Watch()
        self._error: BaseException | None = None
        self._finished = False
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._leave: trio.Event | None = None
        self._closed = False
        self._pumping = False
        # The callbacks Trio asks its host to run; put() is thread-safe, as Trio needs.
        self._queue: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        trio.lowlevel.start_guest_run(
            self._main,
            run_sync_soon_threadsafe=self._queue.put,
            done_callback=self._done,
            clock=self.clock,
            instruments=[self._watch],
            host_uses_signal_set_wakeup_fd=False,
        )
        self._pump(lambda: self._nursery is not None, None)
        if self._error is not None:
            raise self._error

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._leave = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._leave.wait()
            nursery.cancel_scope.cancel()

    def _done(self, result: outcome.Outcome[None]) -> None:
        self._finished = True
        if isinstance(result, outcome.Error):
            self._error = result.error

    def _pump(self, until: Callable[[], bool], deadline: float | None) -> bool:
        """Run what Trio hands the host until *until()* or the run ends; False if *deadline* came first."""
        self._pumping = True
        try:
            while not until() and not self._finished:
                timeout = None if deadline is None else deadline - time.monotonic()
                if timeout is not None and timeout <= 0:
                    return False
                try:
                    callback = self._queue.get(timeout=timeout)
                except queue.Empty:
                    return False
                callback()
            return True
        finally:
            self._pumping = False

    def _check_running(self, api: str) -> tuple[trio.lowlevel.TrioToken, trio.Nursery]:
        if self._closed:
            msg = f"TrioDriver.{api}() was called after close(); make a new TrioDriver."
            raise RuntimeError(msg)
        if self._pumping:
            msg = f"TrioDriver.{api}() was called from inside the driver's own loop; call it from the test."
            raise RuntimeError(msg)
        if self._error is not None or self._finished:
            msg = f"TrioDriver.{api}(): the Trio loop has ended, because a task started with start_soon() raised."
            raise RuntimeError(msg) from self._error
        assert self._token is not None
        assert self._nursery is not None
        return self._token, self._nursery

    def run(self, async_fn: Callable[..., Awaitable[T]], *args: object) -> T:  # type: ignore[explicit-any]
        """Run ``await async_fn(*args)`` in the loop; return its result once the loop has settled.

        Its exception, if it raises, is raised here, also once the loop has settled.

        Raises:
            AssertionError: the step was still running after *step_timeout*
                real seconds (it was cancelled): it waits for something that
                never comes, e.g. time, which moves only with :meth:`jump`.
            RuntimeError: the driver is closed, or its loop ended.
        """
        return self._run("run", async_fn, *args)

    def _run(self, api: str, async_fn: Callable[..., Awaitable[T]], *args: object) -> T:  # type: ignore[explicit-any]
        token, nursery = self._check_running(api)
        step: _Step[T] = _Step()
        scope = trio.CancelScope()

        async def run_step() -> None:
            try:
                with scope:
                    result: outcome.Outcome[T]
                    try:
                        result = outcome.Value(await async_fn(*args))
                    except Exception as exc:
                        result = outcome.Error(exc)
                    await trio.testing.wait_all_tasks_blocked()
                    step.result = result
            except BaseException as exc:
                step.interrupted = exc
                raise
            finally:
                step.ended = True

        def spawn() -> None:
            try:
                nursery.start_soon(run_step)
            except RuntimeError:  # the nursery is closed: the loop is ending
                step.ended = True

        token.run_sync_soon(spawn)
        if not self._pump(lambda: step.ended, time.monotonic() + self._step_timeout):
            token.run_sync_soon(scope.cancel)
            self._pump(lambda: step.ended, time.monotonic() + self._step_timeout)
            name = getattr(async_fn, "__qualname__", repr(async_fn))
            msg = (
                f"TrioDriver.run({name}) was still running after {self._step_timeout} s of real time and was "
                "cancelled. Time moves only with jump(): start what waits for time with start_soon(), then jump()."
            )
            raise AssertionError(msg) from None
        if step.result is not None:
            return step.result.unwrap()
        if step.interrupted is not None and not isinstance(step.interrupted, trio.Cancelled):
            raise step.interrupted
        # Cancelled, or never started, by no one of ours: the loop is ending, because a background task raised.
        self._pump(lambda: False, time.monotonic() + self._step_timeout)
        self._check_running(api)
        if step.interrupted is not None:
            raise step.interrupted
        msg = f"TrioDriver.{api}(): the step could not start in the Trio loop."  # pragma: no cover
        raise RuntimeError(msg)  # pragma: no cover

    def start_soon(self, async_fn: Callable[..., Awaitable[object]], *args: object) -> None:  # type: ignore[explicit-any]
        """Start ``async_fn(*args)`` as a background task of the loop; return once the loop has settled.

        If the task raises, the loop ends: the next call of the driver raises
        :class:`RuntimeError` from that error, and so does :meth:`close`.
        """
        _, nursery = self._check_running("start_soon")

        async def start() -> None:
            self._watch.roots.add(trio.lowlevel.current_task())
            nursery.start_soon(async_fn, *args)

        self._run("start_soon", start)

    def jump(self, seconds: float) -> None:
        """Move the clock *seconds* forward; return once the loop has settled."""

        async def jump() -> None:
            self.clock.jump(seconds)

        self._run("jump", jump)

    def alive(self) -> list[str]:
        """The names of the tasks started through the driver's steps that are still running.

        Background tasks from :meth:`start_soon` count, and so does every task
        they started, however deep (a manager's actors, a run's nodes).
        """

        async def names() -> list[str]:
            return [task.name for task in self._watch.order if task in self._watch.mine]

        return self._run("alive", names)

    def close(self) -> None:
        """Cancel every background task and run the loop to its end.

        Raises:
            BaseException: what a background task raised, if one did.
        """
        if self._closed:
            return
        if self._pumping:
            msg = "TrioDriver.close() was called from inside the driver's own loop; call it from the test."
            raise RuntimeError(msg)
        self._closed = True
        if not self._finished and self._leave is not None and self._token is not None:
            with contextlib.suppress(trio.RunFinishedError):  # pragma: no cover - ended in between
                self._token.run_sync_soon(self._leave.set)
        self._pump(lambda: False, None)
        if self._error is not None:
            raise self._error

    def __enter__(self) -> TrioDriver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()
