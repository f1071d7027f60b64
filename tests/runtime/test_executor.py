"""Executors run directly: ``rt.threads()`` and ``rt.processes()`` (``rt.ray()`` is in test_ray.py).

The functions the workers run are at the top of this module, so a worker
process can import them by name.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
import types

import pytest
import trio

import runtime as rt
import runtime.testing as rtt


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
    pair = threading.Barrier(2, timeout=10)  # two calls must be in at once to pass

    def count() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        pair.wait()
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


async def test_processes_say_when_the_worker_cannot_import_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    ghost = types.ModuleType("ghost_module")  # importable here only: it is on no path
    exec("def haunt():\n    return 1\n", ghost.__dict__)
    monkeypatch.setitem(sys.modules, "ghost_module", ghost)
    message = (
        "A worker process could not load node 'haunt' (r1): ModuleNotFoundError: No module named "
        "'ghost_module'. The worker imports the node by its module and name: make that module "
        "importable there (installed, or on the workers' path; for Ray, shipped with "
        "rt.ray(runtime_env={'working_dir': ...}))."
    )
    with pytest.raises(rt.ExecutorError, match=f"^{re.escape(message)}$"):
        await rt.processes().run(_submission(ghost.haunt))


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


# -- executors in runs -----------------------------------------------------------------------


@rt.function_node(executor=rt.processes())
def square(x: int) -> int:
    return x * x


@rt.function_node(executor=rt.processes(limit=2))
def burn(seconds: float) -> float:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return seconds


@rt.function_node(executor=rt.processes())
def crash(code: int) -> None:
    os._exit(code)


@rt.function_node
def plain(x: int) -> int:
    return x + 1


@rt.function_node(thread=False)
def inline(x: int) -> int:
    return x + 2


@rt.function_node
async def squares(xs: list[int]) -> list[object]:
    return await rt.call_batch(square, xs)


def _executors(result: rt.RunResult[object]) -> dict[str, str | None]:
    return {r.node: r.executor for r in result.state.requests.values()}


async def test_a_node_runs_on_its_executor_and_the_request_names_it() -> None:
    result = await rt.Flow("sq", entry_point=squares).arun([1, 2, 3])
    assert result.unwrap() == [1, 4, 9]
    assert _executors(result) == {"squares": None, "square": "processes"}
    assert [r.status for r in result.state.requests.values()] == [rt.Status.COMPLETED] * 4


async def test_plain_nodes_run_on_the_flows_executor_by_default_in_threads() -> None:
    @rt.function_node
    async def entry(x: int) -> list[object]:
        return [await rt.call(plain, x), await rt.call(inline, x), await rt.call(square, x)]

    default = await rt.Flow("default", entry_point=entry).arun(3)
    assert default.unwrap() == [4, 5, 9]
    assert _executors(default) == {"entry": None, "plain": "threads", "inline": None, "square": "processes"}
    pid = await rt.Flow("pid", entry_point=rt.function_node(os.getpid), executor=rt.processes()).arun()
    assert pid.unwrap() != os.getpid()
    assert _executors(pid) == {"getpid": "processes"}


def test_the_executor_is_kept_in_the_state_document() -> None:
    result = rt.Flow("doc", entry_point=squares).run([2])
    loaded = rt.load_state(rt.dump_state(result.state))
    assert [r.executor for r in loaded.requests.values()] == [None, "processes"]
    assert loaded.requests == result.state.requests


def test_an_executor_on_an_async_node_is_an_error() -> None:
    async def fetch() -> None:
        pass

    message = (
        "@function_node(executor=rt.processes(limit=None)) on 'fetch': async nodes run on the event loop; "
        "only plain functions run on an executor. Drop executor=, or make 'fetch' a plain def."
    )
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        rt.function_node(executor=rt.processes())(fetch)


@pytest.mark.parametrize("thread", [True, False])
def test_thread_and_executor_together_is_an_error(thread: bool) -> None:
    message = (
        f"@function_node(executor=rt.threads(limit=None)) on 'add': thread={thread} says where it runs "
        "too; give one (thread=True is executor=rt.threads())."
    )
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        rt.function_node(executor=rt.threads(), thread=thread)(add)


def test_something_that_is_not_an_executor_is_refused() -> None:
    message = (
        "@function_node(executor='processes') on 'add': executor='processes' is not an executor. Pass "
        "rt.threads(), rt.processes(), rt.ray(), or an object with a name and an async run(submission) method."
    )
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        rt.function_node(executor="processes")(add)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"^Flow\('f'\): executor=3 is not an executor\."):
        rt.Flow("f", entry_point=squares, executor=3)  # type: ignore[arg-type]


async def test_a_worker_that_dies_fails_its_request_and_the_run_goes_on() -> None:
    @rt.function_node
    async def careful() -> str:
        try:
            await rt.call(crash, 7)
        except rt.ExecutorError as exc:
            return f"caught exit code {exc.exit_code}"
        return "no crash"

    result = await rt.Flow("crash", entry_point=careful).arun()
    assert result.unwrap() == "caught exit code 7"
    (failed,) = [r for r in result.state.requests.values() if r.node == "crash"]
    assert failed.status is rt.Status.FAILED
    assert failed.error is not None
    assert failed.error.message.startswith(
        "The worker process running node 'crash' (r2) died with exit code 7 "
    )


@rt.function_node
async def burn_four(seconds: float) -> list[object]:
    return await rt.call_batch(burn, [seconds] * 4)


@rt.function_node
async def burn_serially(seconds: float) -> list[object]:
    return [await rt.call(burn, seconds) for _ in range(4)]


async def test_a_cpu_bound_batch_of_four_on_two_workers_takes_about_half_the_serial_time() -> None:
    await rt.Flow("warm", entry_point=burn_four).arun(0.0)  # start both workers first

    start = time.monotonic()
    assert (await rt.Flow("serial", entry_point=burn_serially).arun(0.25)).unwrap() == [0.25] * 4
    serial = time.monotonic() - start
    start = time.monotonic()
    assert (await rt.Flow("parallel", entry_point=burn_four).arun(0.25)).unwrap() == [0.25] * 4
    parallel = time.monotonic() - start
    assert parallel < 0.8 * serial, (parallel, serial)


async def test_a_timeout_kills_the_workers_within_a_second_and_every_request_settles() -> None:
    await rt.Flow("warm", entry_point=burn_four).arun(0.0)
    events: list[rt.Event] = []
    start = time.monotonic()
    result = await rt.Flow("slow", entry_point=burn_four, timeout=0.5, subscribers=[events.append]).arun(60.0)
    assert time.monotonic() - start < 1.5
    rtt.check_events(events, result)  # the events say killed where the state does
    assert result.status is rt.Status.TIMED_OUT
    assert isinstance(result.error, rt.RunTimeoutError)
    statuses = [(r.node, r.status) for r in result.state.requests.values()]
    # limit=2: two calls ran and were killed, two waited for a worker and were only cancelled
    assert sorted(statuses) == sorted(
        [("burn_four", rt.Status.CANCELLED)]
        + [("burn", rt.Status.KILLED)] * 2
        + [("burn", rt.Status.CANCELLED)] * 2
    )
