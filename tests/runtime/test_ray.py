"""``rt.ray()``: nodes as Ray tasks, on the local Ray of the ``ray_cluster`` fixture (2 CPUs).

The functions the tasks run are at the top of this module; the fixture puts
this directory on the workers' path so they can import them.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest
import trio

import runtime as rt

if TYPE_CHECKING:
    from types import ModuleType


def add(a: int, b: int = 0) -> int:
    return a + b


def fail(x: int) -> int:
    raise ValueError(f"bad input {x}")


def spin(seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "spun"


def nap(seconds: float) -> str:
    time.sleep(seconds)  # in C: a soft cancel (KeyboardInterrupt) does not reach it
    return "napped"


def die(code: int) -> None:
    os._exit(code)


def _submission(fn: object, *args: object, **kwargs: object) -> rt.Submission:
    return rt.Submission(fn, args, kwargs, node=getattr(fn, "__name__", "fn"), request="r1")  # type: ignore[arg-type]


@pytest.fixture
def ray_module(ray_cluster: ModuleType) -> ModuleType:
    return ray_cluster


async def test_ray_runs_the_function_as_a_task_and_returns_its_result(ray_module: ModuleType) -> None:
    executor = rt.ray()
    assert executor.name == "ray"
    assert await executor.run(_submission(add, 2, b=3)) == 5
    assert await executor.run(_submission(os.getpid)) != os.getpid()


async def test_ray_raises_the_remote_exception_with_its_traceback_as_a_note(ray_module: ModuleType) -> None:
    with pytest.raises(ValueError, match=r"^bad input 3\n") as info:
        await rt.ray().run(_submission(fail, 3))
    assert type(info.value) is ValueError
    assert str(info.value) == "bad input 3"
    (note,) = info.value.__notes__
    assert note.startswith("remote traceback (a Ray task, ")
    assert note.endswith("ValueError: bad input 3")


async def test_ray_runs_a_hundred_calls_at_once_without_blocking_the_loop(ray_module: ModuleType) -> None:
    results: dict[int, object] = {}
    ticks = 0

    async def one(i: int) -> None:
        results[i] = await rt.ray().run(_submission(add, i, 1000))

    async def ticker(done: trio.Event) -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await trio.sleep(0.01)

    done = trio.Event()
    async with trio.open_nursery() as outer:
        outer.start_soon(ticker, done)
        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(one, i)
        done.set()
    assert results == {i: i + 1000 for i in range(100)}
    assert ticks > 1  # the loop kept running while the tasks did


async def test_ray_soft_cancel_stops_python_work_long_before_the_grace_period_ends(ray_module: ModuleType) -> None:
    # The soft cancel (KeyboardInterrupt in the worker) is what stops the
    # work: the task ends CANCELLED, not KILLED, well inside the 10 s grace
    # period (usually within a few tens of ms; the bound leaves room for a
    # loaded CI machine without letting a kill pass for a soft cancel).
    executor = rt.ray(grace_period=10.0)
    assert await executor.run(_submission(add, 0)) == 0  # a warm worker
    submission = _submission(spin, 60.0)
    with trio.move_on_after(0.5) as scope:
        await executor.run(submission)
    assert scope.cancelled_caught
    stopped_after = trio.current_time() - scope.deadline
    assert stopped_after < 5.0
    assert submission.ending is rt.Status.CANCELLED


async def test_ray_kills_c_bound_work_after_the_grace_period(ray_module: ModuleType) -> None:
    executor = rt.ray(grace_period=0.5)
    submission = _submission(nap, 60.0)
    with trio.move_on_after(0.5) as scope:
        await executor.run(submission)
    stopped_after = trio.current_time() - scope.deadline
    assert 0.5 <= stopped_after < 3.0
    assert submission.ending is rt.Status.KILLED


async def test_ray_says_orphaned_when_a_kill_is_not_confirmed_in_time(ray_module: ModuleType) -> None:
    submission = _submission(nap, 60.0)
    with trio.move_on_after(0.2):
        await rt.ray(grace_period=0, kill_timeout=0).run(submission)
    assert submission.ending is rt.Status.ORPHANED


async def test_ray_names_the_argument_that_cannot_be_sent(ray_module: ModuleType) -> None:
    with pytest.raises(
        rt.ExecutorError,
        match=r"^Cannot send argument 'b' of node 'add' \(r1\) to a Ray task: pickle refused its lock \(.*\)\. Pass a value that pickle can copy \(plain data, or a path or key to what it stands for\), or run the node on rt\.threads\(\)\.$",
    ) as info:
        await rt.ray().run(_submission(add, 1, b=threading.Lock()))
    assert info.value.parameter == "b"


async def test_ray_a_worker_that_dies_fails_the_request(ray_module: ModuleType) -> None:
    with pytest.raises(
        rt.ExecutorError,
        match=r"^The Ray worker running node 'die' \(r1\) died \(it reports no exit code: .*\) before it returned\.",
    ) as info:
        await rt.ray().run(_submission(die, 3))
    assert info.value.exit_code is None


async def test_ray_not_initialised_is_an_error_that_says_to_call_ray_init(
    ray_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ray_module, "is_initialized", lambda: False)
    message = (
        "node 'add' (r1) runs on rt.ray(), but Ray is not initialised in this process. Call ray.init() "
        "(or ray.init(address='auto') to join a running cluster) before the run; trioflow never starts "
        "Ray by itself."
    )
    with pytest.raises(rt.ExecutorError, match=f"^{re.escape(message)}$"):
        await rt.ray().run(_submission(add, 1))


def test_ray_not_installed_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    message = "rt.ray() needs Ray, which is not installed. Install the extra: pip install 'trioflow[ray]'."
    with pytest.raises(ImportError, match=f"^{re.escape(message)}$"):
        rt.ray()


@pytest.mark.parametrize("name", ["grace_period", "kill_timeout"])
@pytest.mark.parametrize("value", [-1, float("inf"), "2", True])
def test_ray_refuses_a_bad_grace_period_or_kill_timeout(name: str, value: object) -> None:
    message = f"rt.ray({name}={value!r}): {name} is a number of seconds, 0 or more."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        rt.ray(**{name: value})


def test_ray_refuses_an_unknown_option_at_once() -> None:
    with pytest.raises(ValueError, match="num_cpu"):
        rt.ray(num_cpu=1)


def test_ray_repr_shows_its_options() -> None:
    assert repr(rt.ray(num_cpus=1)) == "rt.ray(grace_period=2.0, kill_timeout=5.0, max_retries=0, num_cpus=1)"


# -- in runs -----------------------------------------------------------------------------


@rt.function_node(executor=rt.ray())
def remote_add(a: int, b: int) -> int:
    return a + b


@rt.function_node(executor=rt.ray(grace_period=0.5))
def remote_nap(seconds: float) -> str:
    return nap(seconds)


@rt.function_node
async def hundred() -> list[object]:
    return await rt.call_batch(remote_add, range(100), [1000] * 100)


async def test_a_hundred_remote_calls_in_a_batch_are_recorded_as_local_ones(ray_module: ModuleType) -> None:
    result = await rt.Flow("hundred", entry_point=hundred).arun()
    assert result.unwrap() == [i + 1000 for i in range(100)]
    requests = list(result.state.requests.values())
    assert [(r.node, r.executor, r.status) for r in requests[1:]] == [
        ("remote_add", "ray", rt.Status.COMPLETED)
    ] * 100
    assert requests[0].executor is None


async def test_a_timed_out_run_kills_c_bound_remote_work_after_the_grace_period(
    ray_module: ModuleType,
) -> None:
    start = time.monotonic()
    result = await rt.Flow("nap", entry_point=remote_nap, timeout=0.5).arun(60.0)
    assert 1.0 <= time.monotonic() - start < 4.0
    assert result.status is rt.Status.TIMED_OUT
    (request,) = result.state.requests.values()
    assert (request.executor, request.status) == ("ray", rt.Status.KILLED)
