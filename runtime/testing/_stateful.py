"""Drive a Trio program step by step from synchronous code: for Hypothesis stateful tests.

A :class:`hypothesis.stateful.RuleBasedStateMachine` calls its rules as plain
functions, one after another; a Trio app (a :class:`~runtime.SessionManager`,
a job, a set of actors) needs a running loop that keeps its tasks alive
between rules. :class:`TrioDriver` runs one ``trio.run`` in a helper thread,
on a :class:`trio.testing.MockClock` that moves only when told, and runs each
rule's coroutine in it, returning once every task of the loop is blocked
again: after each step the program is settled, so invariants read a
consistent state.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from typing import TYPE_CHECKING, TypeVar, final

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
class TrioDriver:
    """One Trio loop in a helper thread, on a mock clock, driven one step at a time.

    Each :meth:`run` and :meth:`start_soon` runs in the loop and returns when
    every task of the loop is blocked (``wait_all_tasks_blocked``). Time moves
    only with :meth:`jump`, so a step that waits for time to pass never ends:
    start such waits with :meth:`start_soon`, then :meth:`jump`. A step still
    running after *step_timeout* real seconds is cancelled and reported.

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

    .. versionadded:: 0.1
    """

    __slots__ = (
        "_closed",
        "_error",
        "_leave",
        "_nursery",
        "_ready",
        "_step_timeout",
        "_thread",
        "_token",
        "_watch",
        "clock",
    )

    def __init__(self, *, clock: trio.testing.MockClock | None = None, step_timeout: float = 30.0) -> None:
        self.clock = trio.testing.MockClock() if clock is None else clock
        self._step_timeout = step_timeout
        self._watch = _Watch()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._leave: trio.Event | None = None
        self._closed = False
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, name="runtime.testing.TrioDriver", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _thread_main(self) -> None:
        try:
            trio.run(self._main, clock=self.clock, instruments=[self._watch])
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._leave = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._ready.set()
            await self._leave.wait()
            nursery.cancel_scope.cancel()

    def _check_running(self, api: str) -> tuple[trio.lowlevel.TrioToken, trio.Nursery]:
        if self._closed:
            msg = f"TrioDriver.{api}() was called after close(); make a new TrioDriver."
            raise RuntimeError(msg)
        if self._error is not None or not self._thread.is_alive():
            msg = f"TrioDriver.{api}(): the Trio loop has ended, because a task started with start_soon() raised."
            raise RuntimeError(msg) from self._error
        assert self._token is not None
        assert self._nursery is not None
        return self._token, self._nursery

    def run(self, async_fn: Callable[..., Awaitable[T]], *args: object) -> T:  # type: ignore[explicit-any]
        """Run ``await async_fn(*args)`` in the loop; return its result once the loop has settled.

        Its exception, if it raises, is raised here.

        Raises:
            AssertionError: the step was still running after *step_timeout*
                real seconds (it was cancelled): it waits for something that
                never comes, e.g. time, which moves only with :meth:`jump`.
            RuntimeError: the driver is closed, or its loop ended.
        """
        return self._run("run", async_fn, *args)

    def _run(self, api: str, async_fn: Callable[..., Awaitable[T]], *args: object) -> T:  # type: ignore[explicit-any]
        token, nursery = self._check_running(api)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        scope = trio.CancelScope()

        async def step() -> None:
            try:
                with scope:
                    result = await async_fn(*args)
                    await trio.testing.wait_all_tasks_blocked()
                    future.set_result(result)
                if not future.done():
                    future.set_exception(AssertionError("cancelled"))
            except BaseException as exc:
                future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise

        token.run_sync_soon(nursery.start_soon, step)
        try:
            return future.result(timeout=self._step_timeout)
        except concurrent.futures.TimeoutError:
            token.run_sync_soon(scope.cancel)
            with contextlib.suppress(BaseException):
                future.result(timeout=self._step_timeout)
            name = getattr(async_fn, "__qualname__", repr(async_fn))
            msg = (
                f"TrioDriver.run({name}) was still running after {self._step_timeout} s of real time and was "
                "cancelled. Time moves only with jump(): start what waits for time with start_soon(), then jump()."
            )
            raise AssertionError(msg) from None
        except trio.Cancelled:
            # Not ours to cancel: the loop is ending, because a background task raised.
            self._thread.join(timeout=self._step_timeout)
            self._check_running(api)
            raise

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
        """Cancel every background task, end the loop and join its thread.

        Raises:
            BaseException: what a background task raised, if one did.
        """
        if self._closed:
            return
        self._closed = True
        if self._error is None and self._thread.is_alive() and self._leave is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._leave.set, trio_token=self._token)
        self._thread.join()
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
