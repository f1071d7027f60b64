"""The few ``asyncio`` names Railtracks' tests use, mapped onto Trio.

The harness puts this object in place of the ``asyncio`` module in each test
module and conftest it loads (and nowhere else): ``asyncio.sleep``,
``gather``, ``run``, ``create_task``, ``wait_for``, ``to_thread``, ``Event``
and ``Lock`` become their Trio counterparts. Every other name is the real
asyncio's. Tasks made with ``create_task`` run in the nursery of the test (or
of the ``asyncio.run`` call) that made them, and are cancelled when it ends,
as asyncio cancels pending tasks when its loop closes.
"""

from __future__ import annotations

import asyncio as _asyncio
import contextvars
import functools
import types
from typing import TYPE_CHECKING, Any

import outcome
import trio
import trio.lowlevel

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Generator

_nursery: contextvars.ContextVar[trio.Nursery] = contextvars.ContextVar("compat_nursery")


async def sleep(delay: float, result: object = None) -> object:
    """``asyncio.sleep``; ``sleep(0)`` lets every task that was ready run a step first, as in asyncio.

    (One Trio checkpoint may run this task first in the next batch; two never do.)
    """
    await trio.sleep(delay)
    if delay <= 0:
        await trio.lowlevel.checkpoint()
    return result


async def gather(*aws: Awaitable[Any], return_exceptions: bool = False) -> list[Any]:
    """``asyncio.gather``: every awaitable in a task of one nursery; results in order.

    Without *return_exceptions*, the first failure is raised (itself, not in
    an exception group) once the others are cancelled.
    """
    results: list[Any] = [None] * len(aws)
    failure: list[BaseException] = []

    async with trio.open_nursery() as nursery:

        async def one(index: int, aw: Awaitable[Any]) -> None:
            try:
                results[index] = await aw
            except Exception as exc:
                if return_exceptions:
                    results[index] = exc
                elif not failure:
                    failure.append(exc)
                    nursery.cancel_scope.cancel()

        for index, aw in enumerate(aws):
            nursery.start_soon(one, index, aw)
    if failure:
        raise failure[0]
    return results


class Task:
    """What ``create_task`` returns: awaitable once, like an asyncio task."""

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._coro = coro
        self._done = trio.Event()
        self._outcome: outcome.Outcome[Any] | None = None
        self._scope = trio.CancelScope()

    async def _run(self) -> None:
        try:
            with self._scope:
                try:
                    self._outcome = outcome.Value(await self._coro)
                except Exception as exc:
                    self._outcome = outcome.Error(exc)
            if self._outcome is None:  # cancelled through cancel()
                self._outcome = outcome.Error(_asyncio.CancelledError())
        finally:
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> bool:
        self._scope.cancel()
        return True

    def result(self) -> Any:
        if self._outcome is None:
            raise _asyncio.InvalidStateError("Result is not set.")
        return self._outcome.unwrap()

    def __await__(self) -> Generator[Any, None, Any]:
        return self._wait().__await__()

    async def _wait(self) -> Any:
        await self._done.wait()
        assert self._outcome is not None
        return self._outcome.unwrap()


def create_task(coro: Coroutine[Any, Any, Any], *, name: str | None = None) -> Task:
    """``asyncio.create_task``: start *coro* in the enclosing test's nursery."""
    task = Task(coro)
    _nursery.get().start_soon(task._run)
    return task


async def wait_for(aw: Awaitable[Any], timeout: float | None) -> Any:  # noqa: ASYNC109 (asyncio's signature)
    """``asyncio.wait_for``: ``TimeoutError`` when *timeout* passes."""
    if timeout is None:
        return await aw
    try:
        with trio.fail_after(timeout):
            return await aw
    except trio.TooSlowError:
        raise TimeoutError from None


async def to_thread(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``asyncio.to_thread``."""
    return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


async def in_nursery(fn: Callable[[], Awaitable[Any]]) -> Any:
    """Await ``fn()`` with a nursery for ``create_task``; leftover tasks are cancelled."""
    async with trio.open_nursery() as nursery:
        token = _nursery.set(nursery)
        try:
            return await fn()
        finally:
            _nursery.reset(token)
            nursery.cancel_scope.cancel()


def run_in_trio(fn: Callable[[], Awaitable[Any]]) -> Any:
    """``trio.run(in_nursery, fn)``, raising a lone error itself, not in the nursery's exception group.

    asyncio raises a coroutine's error as it is; the nursery that hosts
    ``create_task`` would wrap it in a group.
    """
    try:
        return trio.run(in_nursery, fn)
    except BaseExceptionGroup as group:
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        if error is group:
            raise
        raise error from None


def run(main: Coroutine[Any, Any, Any], *, debug: bool | None = None) -> Any:
    """``asyncio.run``: ``trio.run``."""

    async def await_main() -> Any:
        return await main

    return run_in_trio(await_main)


def module() -> types.ModuleType:
    """The stand-in for ``asyncio``: these names, the real module's for the rest."""
    mapped = types.ModuleType("asyncio")
    mapped.__dict__.update(
        sleep=sleep,
        gather=gather,
        create_task=create_task,
        wait_for=wait_for,
        to_thread=to_thread,
        run=run,
        Event=trio.Event,
        Lock=trio.Lock,
        TimeoutError=TimeoutError,
    )
    mapped.__getattr__ = lambda name: getattr(_asyncio, name)  # type: ignore[method-assign]
    return mapped
