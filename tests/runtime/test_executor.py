"""Executors run directly: ``rt.threads()`` and ``rt.processes()`` (``rt.ray()`` is in test_ray.py).

The functions the workers run are at the top of this module, so a worker
process can import them by name.
"""

from __future__ import annotations

import os
import re
import threading
import time

import pytest
import trio

import runtime as rt


def add(a: int, b: int = 0) -> int:
    return a + b


def fail(x: int) -> int:
    raise ValueError(f"bad input {x}")


class _Unrebuildable(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


def fail_oddly() -> None:
    raise _Unrebuildable(1, 2)


def return_a_lock() -> object:
    return threading.Lock()


def spin(seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "spun"


def die(code: int) -> None:
    os._exit(code)


def _submission(fn: object, *args: object, **kwargs: object) -> rt.Submission:
    return rt.Submission(fn, args, kwargs, node=getattr(fn, "__name__", "fn"), request="r1")  # type: ignore[arg-type]


# -- threads ---------------------------------------------------------------------------------


async def test_threads_run_the_function_in_a_worker_thread() -> None:
    loop_thread = threading.current_thread()
    seen: list[threading.Thread] = []

    def where(a: int, *, b: int) -> int:
        seen.append(threading.current_thread())
        return a * b

    assert await rt.threads().run(_submission(where, 6, b=7)) == 42
    assert seen != [loop_thread]
    assert len(seen) == 1


async def test_threads_raise_the_functions_exception_as_itself() -> None:
    with pytest.raises(ValueError, match=r"^bad input 3$"):
        await rt.threads().run(_submission(fail, 3))


async def test_threads_cancel_waits_for_the_thread_which_can_stop_early() -> None:
    started = threading.Event()
    stopped: list[str] = []

    def patient() -> None:
        started.set()
        try:
            while True:
                trio.from_thread.check_cancelled()
                time.sleep(0.001)
        finally:
            stopped.append("finally")

    submission = _submission(patient)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rt.threads().run, submission)
            await trio.to_thread.run_sync(started.wait)
            scope.cancel()
    assert stopped == ["finally"]  # the thread ended before the cancel returned
    assert submission.ending is rt.Status.CANCELLED


async def test_threads_limit_bounds_how_many_run_at_once() -> None:
    lock = threading.Lock()
    running = [0]
    most = [0]

    def count() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1

    executor = rt.threads(limit=2)
    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(executor.run, _submission(count))
    assert most[0] == 2


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, "2"])
def test_threads_and_processes_refuse_a_bad_limit(limit: object) -> None:
    for api, factory in (("rt.threads", rt.threads), ("rt.processes", rt.processes)):
        message = (
            f"{api}(limit={limit!r}): the limit is how many calls run at once, a whole number of at "
            "least 1 (or None for the default)."
        )
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            factory(limit=limit)  # type: ignore[arg-type]


def test_executors_are_executors_and_say_what_they_are() -> None:
    assert isinstance(rt.threads(), rt.Executor)
    assert isinstance(rt.processes(), rt.Executor)
    assert rt.threads().name == "threads"
    assert rt.processes().name == "processes"
    assert repr(rt.threads(limit=3)) == "rt.threads(limit=3)"
    assert repr(rt.processes()) == "rt.processes(limit=None)"


# -- processes -------------------------------------------------------------------------------


async def test_processes_run_the_function_in_another_process() -> None:
    assert await rt.processes().run(_submission(os.getpid)) != os.getpid()
    assert await rt.processes().run(_submission(add, 2, b=3)) == 5


async def test_processes_raise_the_remote_exception_with_its_traceback_as_a_note() -> None:
    with pytest.raises(ValueError, match=r"^bad input 3\n") as info:
        await rt.processes().run(_submission(fail, 3))
    assert str(info.value) == "bad input 3"
    (note,) = info.value.__notes__
    assert note.startswith("remote traceback (a worker process, ")
    assert 'raise ValueError(f"bad input {x}")' in note
    assert note.endswith("ValueError: bad input 3")


async def test_processes_stand_in_for_an_exception_that_cannot_be_rebuilt() -> None:
    with pytest.raises(rt.RemoteError) as info:
        await rt.processes().run(_submission(fail_oddly))
    assert str(info.value) == (
        "test_executor._Unrebuildable: 1/2 (raised on a worker process by node 'fail_oddly' (r1); "
        "its exception could not be sent back as itself)"
    )
    assert info.value.type_name == "test_executor._Unrebuildable"
    assert "raise _Unrebuildable(1, 2)" in info.value.__notes__[0]


async def test_processes_name_the_argument_that_cannot_be_sent_before_sending_anything() -> None:
    message = (
        "Cannot send argument 'b' of node 'add' (r1) to a worker process: pickle refused its lock "
        "(TypeError: cannot pickle '_thread.lock' object). Pass a value that pickle can copy (plain "
        "data, or a path or key to what it stands for), or run the node on rt.threads()."
    )
    with pytest.raises(rt.ExecutorError, match=f"^{re.escape(message)}$") as info:
        await rt.processes().run(_submission(add, 1, b=threading.Lock()))
    assert info.value.parameter == "b"
    assert info.value.node == "add"


async def test_processes_refuse_a_function_that_cannot_be_pickled() -> None:
    def local(x: int) -> int:
        return x

    with pytest.raises(
        rt.ExecutorError,
        match=r"^Cannot send node 'local' \(r1\) to a worker process: its function cannot be pickled \(.*\)\. Define the node at the top level of an importable module \(not in a function, a class or __main__\), or run it on rt\.threads\(\)\.$",
    ):
        await rt.processes().run(_submission(local, 1))


async def test_processes_name_a_result_that_cannot_be_sent_back() -> None:
    message = (
        "node 'return_a_lock' (r1) returned a lock on a worker process that cannot be sent back: "
        "pickle refused it (TypeError: cannot pickle '_thread.lock' object). Return a value that "
        "pickle can copy, or run the node on rt.threads()."
    )
    with pytest.raises(rt.ExecutorError, match=f"^{re.escape(message)}$"):
        await rt.processes().run(_submission(return_a_lock))


async def test_processes_name_the_exit_code_of_a_worker_that_dies() -> None:
    message = (
        "The worker process running node 'die' (r1) died with exit code 3 before it returned. The "
        "node failed; the run goes on per its error rules. If the function ends its process "
        "(os._exit, a crash in C code, the out-of-memory killer), guard it there."
    )
    with pytest.raises(rt.ExecutorError, match=f"^{re.escape(message)}$") as info:
        await rt.processes().run(_submission(die, 3))
    assert info.value.exit_code == 3
    assert await rt.processes().run(_submission(add, 1, 1)) == 2  # a new worker takes its place


async def test_processes_cancel_kills_the_worker_within_a_second() -> None:
    executor = rt.processes(limit=1)
    assert await executor.run(_submission(add, 0)) == 0  # a warm worker: startup is not measured
    submission = _submission(spin, 60.0)
    start = time.monotonic()
    with trio.move_on_after(0.2):
        await executor.run(submission)
    assert time.monotonic() - start < 1.2
    assert submission.ending is rt.Status.KILLED


async def test_processes_a_call_cancelled_while_waiting_for_a_worker_is_only_cancelled() -> None:
    executor = rt.processes(limit=1)
    running, waiting = _submission(spin, 60.0), _submission(add, 1)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(executor.run, running)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(executor.run, waiting)
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
    assert (running.ending, waiting.ending) == (rt.Status.KILLED, rt.Status.CANCELLED)
