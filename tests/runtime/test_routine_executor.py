"""Routine handlers on executors: ``Routine.set_executor`` and ``Flow(executor=...)`` for graph jobs.

The routines are at the top of this module, so a worker process (or a Ray
worker) can import them by name.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import runtime as rt

if TYPE_CHECKING:
    from types import ModuleType


class Where(rt.Routine):
    """Emits where its handler ran (process and thread), then the square of its value."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.handle)
        self.define_event("output", ["value", "pid", "thread"])
        self.seen = 0

    def handle(self, value: int = 0, **kwargs: object) -> None:
        self.seen += 1  # in another process, this stays there
        self.send_output("before", value=value)
        self.emit("output", value=value * value, pid=os.getpid(), thread=threading.get_ident())


class Collect(rt.Routine):
    """Keeps what it receives as outputs; its handler is async, so it stays on the loop."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.got)

    async def got(self, **data: object) -> None:
        self.send_output("got", **data)


class Burn(rt.Routine):
    """Spins for *seconds* of CPU, asking (on a thread) whether it was cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.burn)
        self.define_event("output", ["done"])

    def burn(self, seconds: float = 0.0, check: bool = False, **kwargs: object) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if check:
                trio.from_thread.check_cancelled()
        self.emit("output", done=True)


class Failing(rt.Routine):
    """Emits, then raises."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.handle)
        self.define_event("output", ["value"])

    def handle(self, value: int = 0, **kwargs: object) -> None:
        self.emit("output", value=value)
        raise ValueError(f"bad value {value}")


class Locked(rt.Routine):
    """Holds a lock, which pickle refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.define_slot("input", handler=self.handle)

    def handle(self, **kwargs: object) -> None:
        pass


class Dying(rt.Routine):
    """Ends its process."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.die)

    def die(self, code: int = 3, **kwargs: object) -> None:
        os._exit(code)


def square_outputs(value: int = 0, **kwargs: object) -> None:
    """A function handler: it emits nothing of its routine, and carries none with it."""


def take_value(value: object) -> None:
    """A handler of one named parameter: the message's value comes positionally (see rt.Routine)."""


class LockedWithFunction(rt.Routine):
    """Holds a lock, but its handler is a function at the top level of this module."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.define_slot("input", handler=square_outputs)


def _graph(
    first: rt.Routine, *, executor: rt.Executor | None = None, timeout: float | None = None
) -> rt.Flow:
    flow = rt.Flow("exec-graph", executor=executor, timeout=timeout)
    flow.add_routine(first, "first")
    flow.add_routine(Collect(), "sink")
    flow.connect("first", "output", "sink", "input")
    return flow


def _outputs(state: rt.JobState) -> list[tuple[str, str, dict[str, object]]]:
    log = state.get_shared_data("output_log")
    assert isinstance(log, list)
    return [(o["routine_id"], o["output_type"], o["data"]) for o in log]


async def test_a_routine_on_threads_runs_its_handler_in_a_worker_thread_and_its_emits_arrive() -> None:
    where = Where()
    where.set_executor(rt.threads())
    state = await _graph(where).aexecute("first", entry_params={"value": 3})
    assert state.status is rt.Status.COMPLETED
    (before, got) = _outputs(state)
    assert before == ("first", "before", {"value": 3})
    assert got[:2] == ("sink", "got")
    assert got[2]["value"] == 9
    assert got[2]["pid"] == os.getpid()
    assert got[2]["thread"] != threading.get_ident()
    assert state.routine_states["first"] == {"executor": "threads", "status": "completed"}
    assert "sink" not in state.routine_states  # its handler is async: on the loop


async def test_a_routine_on_processes_runs_its_handler_on_a_copy_in_a_worker_process() -> None:
    where = Where()
    where.set_executor(rt.processes())
    async with _graph(where).open_job("first", entry_params={"value": 4}) as job:
        state = await job.wait()
    assert state.status is rt.Status.COMPLETED
    got = _outputs(state)[1][2]
    assert got["value"] == 16
    assert got["pid"] != os.getpid()
    assert state.routine_states["first"] == {"executor": "processes", "status": "completed"}
    assert [e.event_name for e in state.history] == ["output"]


async def test_the_flows_executor_applies_to_plain_handlers_only() -> None:
    state = await _graph(Where(), executor=rt.processes()).aexecute("first", entry_params={"value": 2})
    assert state.status is rt.Status.COMPLETED
    assert _outputs(state)[1][2]["pid"] != os.getpid()
    assert state.routine_states == {"first": {"executor": "processes", "status": "completed"}}  # the sink's handler is async


async def test_a_routines_own_executor_wins_over_the_flows() -> None:
    where = Where()
    where.set_executor(rt.threads())
    state = await _graph(where, executor=rt.processes()).aexecute("first", entry_params={"value": 2})
    assert _outputs(state)[1][2]["pid"] == os.getpid()
    assert state.routine_states["first"] == {"executor": "threads", "status": "completed"}


@pytest.mark.parametrize("executor", [rt.threads(), rt.processes()], ids=["threads", "processes"])
async def test_a_handler_that_raises_on_an_executor_still_sends_what_it_emitted_first(
    executor: rt.Executor,
) -> None:
    failing = Failing()
    failing.set_executor(executor)
    failing.set_error_handler("continue")
    state = await _graph(failing).aexecute("first", entry_params={"value": 5})
    assert state.status is rt.Status.COMPLETED
    assert _outputs(state) == [("sink", "got", {"value": 5})]
    assert state.routine_states["first"]["status"] == "error_continued"
    assert state.routine_states["first"]["error"] == "ValueError: bad value 5"


async def test_a_handler_error_from_a_worker_process_carries_the_remote_traceback() -> None:
    failing = Failing()
    failing.set_executor(rt.processes())
    job_error = None
    async with _graph(failing).open_job("first", entry_params={"value": 1}) as job:
        await job.wait()
        job_error = job.error
    assert isinstance(job_error, ValueError)
    assert any(note.startswith("remote traceback (a worker process") for note in job_error.__notes__)


async def test_a_timeout_waits_for_a_handler_thread_which_can_stop_early() -> None:
    burn = Burn()
    burn.set_executor(rt.threads())
    start = time.monotonic()
    state = await _graph(burn, timeout=0.2).aexecute("first", entry_params={"seconds": 30.0, "check": True})
    assert time.monotonic() - start < 5.0
    assert state.status is rt.Status.TIMED_OUT
    assert state.routine_states["first"] == {"executor": "threads", "status": "cancelled"}


async def test_a_timeout_kills_a_handlers_worker_process_within_a_second() -> None:
    burn = Burn()
    burn.set_executor(rt.processes(limit=1))
    await _graph(burn).aexecute("first", entry_params={"seconds": 0.0})  # a warm worker
    start = time.monotonic()
    state = await _graph(burn, timeout=0.3).aexecute("first", entry_params={"seconds": 60.0})
    assert time.monotonic() - start < 1.5
    assert state.status is rt.Status.TIMED_OUT
    assert state.routine_states["first"] == {"executor": "processes", "status": "killed"}
    assert [d.slot for d in state.undelivered] == []


async def test_a_worker_that_dies_under_a_handler_fails_it_with_the_exit_code_and_the_job_goes_on() -> None:
    dying = Dying()
    dying.set_executor(rt.processes())
    dying.set_error_handler("continue")
    flow = rt.Flow("dying")
    flow.add_routine(dying, "first")
    state = await flow.aexecute("first", entry_params={"code": 3})
    assert state.status is rt.Status.COMPLETED  # per its error strategy: continue
    assert state.routine_states["first"]["status"] == "error_continued"
    error = str(state.routine_states["first"]["error"])
    assert error.startswith(
        "ExecutorError: The worker process running routine 'first' (slot 'input') died with exit code 3 "
        "before it returned. The handler failed; the run goes on per its error rules."
    )


async def test_a_routine_that_cannot_be_pickled_is_named_with_the_fix() -> None:
    locked = Locked()
    locked.set_executor(rt.processes())
    flow = rt.Flow("locked")
    flow.add_routine(locked, "first")
    async with flow.open_job("first") as job:
        await job.wait()
    error = job.error
    assert isinstance(error, rt.ExecutorError)
    assert error.parameter == "lock"
    assert str(error).startswith(
        "Cannot send routine 'first' (slot 'input') to a worker process: the handler is a method, so the "
        "routine goes with it, and its attribute 'lock' (a lock) cannot be pickled"
    )
    assert "make the handler a function at the top level of a module" in str(error)
    assert "or run the routine on rt.threads()." in str(error)


async def test_a_handler_that_cannot_be_pickled_is_named_with_the_fix() -> None:
    def local(**kwargs: object) -> None:
        pass

    routine = rt.Routine()
    routine.define_slot("input", handler=local)
    routine.set_executor(rt.processes())
    flow = rt.Flow("local-handler")
    flow.add_routine(routine, "first")
    async with flow.open_job("first") as job:
        await job.wait()
    assert isinstance(job.error, rt.ExecutorError)
    assert str(job.error).startswith(
        "Cannot send routine 'first' (slot 'input') to a worker process: its handler "
        "test_a_handler_that_cannot_be_pickled_is_named_with_the_fix.<locals>.local cannot be pickled"
    )
    assert "or run the routine on rt.threads()." in str(job.error)


async def test_a_message_value_that_cannot_be_pickled_is_named() -> None:
    routine = rt.Routine()
    routine.define_slot("input", handler=square_outputs)
    routine.set_executor(rt.processes())
    flow = rt.Flow("bad-message")
    flow.add_routine(routine, "first")
    async with flow.open_job("first", entry_params={"value": threading.Lock()}) as job:
        await job.wait()
    assert isinstance(job.error, rt.ExecutorError)
    assert job.error.parameter == "value"
    assert "pickle refused the message's 'value', a lock" in str(job.error)


async def test_a_message_value_passed_positionally_that_cannot_be_pickled_is_named() -> None:
    routine = rt.Routine()
    routine.define_slot("input", handler=take_value)
    routine.set_executor(rt.processes())
    flow = rt.Flow("bad-positional-message")
    flow.add_routine(routine, "first")
    async with flow.open_job("first", entry_params={"value": threading.Lock()}) as job:
        await job.wait()
    assert isinstance(job.error, rt.ExecutorError)
    assert job.error.parameter == "value"
    assert "pickle refused the message's 'value', a lock" in str(job.error)


async def test_a_function_handler_on_processes_carries_no_routine() -> None:
    routine = LockedWithFunction()  # unpicklable, but a function handler does not take it along
    routine.set_executor(rt.processes())
    flow = rt.Flow("function-handler")
    flow.add_routine(routine, "first")
    state = await flow.aexecute("first", entry_params={"value": 1})
    assert state.status is rt.Status.COMPLETED


def test_an_executor_on_a_routine_with_an_async_handler_is_an_error() -> None:
    expected = (
        "Collect: slot 'input' has an async handler, and the routine runs on executor 'threads'. Async "
        "handlers run on the event loop; only plain handlers run on an executor. Make the handler a plain "
        "def, or give the routine no executor."
    )
    with pytest.raises(TypeError, match=f"^{expected}$"):
        Collect().set_executor(rt.threads())
    where = Where()
    where.set_executor(rt.threads())

    async def later(**kwargs: object) -> None:
        pass

    with pytest.raises(TypeError, match="slot 'late' has an async handler"):
        where.define_slot("late", handler=later)
    with pytest.raises(
        TypeError, match=r"Where.set_executor\('threads'\): executor='threads' is not an executor"
    ):
        where.set_executor("threads")  # type: ignore[arg-type]


async def test_set_executor_is_replayed_on_every_jobs_instance_and_none_undoes_it() -> None:
    where = Where()
    where.set_executor(rt.threads())
    assert repr(where.get_executor()) == "rt.threads(limit=None)"
    flow = _graph(where)
    for _ in range(2):
        state = await flow.aexecute("first", entry_params={"value": 1})
        assert state.routine_states["first"] == {"executor": "threads", "status": "completed"}
    where.set_executor(None)
    assert where.get_executor() is None
    state = await flow.aexecute("first", entry_params={"value": 1})
    assert "executor" not in state.routine_states["first"]
    assert _outputs(state)[1][2]["thread"] == threading.get_ident()


async def test_a_routine_on_ray_runs_its_handler_as_a_task(ray_cluster: ModuleType) -> None:
    where = Where()
    where.set_executor(rt.ray())
    state = await _graph(where).aexecute("first", entry_params={"value": 7})
    assert state.status is rt.Status.COMPLETED
    got = _outputs(state)[1][2]
    assert got["value"] == 49
    assert got["pid"] != os.getpid()
    assert state.routine_states["first"] == {"executor": "ray", "status": "completed"}


async def test_a_timeout_cancels_a_routines_ray_task(ray_cluster: ModuleType) -> None:
    burn = Burn()
    burn.set_executor(rt.ray(grace_period=0.5))
    start = time.monotonic()
    state = await _graph(burn, timeout=0.3).aexecute("first", entry_params={"seconds": 30.0})
    assert time.monotonic() - start < 4.0
    assert state.status is rt.Status.TIMED_OUT
    assert state.routine_states["first"]["status"] in ("cancelled", "killed")


# -- mixed executors give the same job as the loop ----------------------------------------------


class Step(rt.Routine):
    """Sends out what it got, then passes ``value * factor + 1`` on."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.define_slot("input", handler=self.step)
        self.define_event("out", ["value"])

    def step(self, value: int = 0, **kwargs: object) -> None:
        self.send_output("seen", value=value)
        self.emit("out", value=value * self.factor + 1)


_EXECUTORS = {"loop": None, "threads": rt.threads(), "processes": rt.processes(limit=2)}


@st.composite
def _mixed_graphs(draw: st.DrawFn) -> tuple[list[int], list[tuple[int, int]], list[str]]:
    n = draw(st.integers(2, 5))
    factors = draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))
    edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=6))
    dag = sorted({(a, b) for a, b in edges if a < b})
    places = draw(st.lists(st.sampled_from(sorted(_EXECUTORS)), min_size=n, max_size=n))
    return factors, dag, places


def _job_of(factors: list[int], dag: list[tuple[int, int]], places: list[str] | None) -> object:
    flow = rt.Flow("mixed")
    for i, factor in enumerate(factors):
        step = Step(factor)
        if places is not None:
            step.set_executor(_EXECUTORS[places[i]])
        flow.add_routine(step, f"s{i}")
    for a, b in dag:
        flow.connect(f"s{a}", "out", f"s{b}", "input")
    state = flow.execute("s0", entry_params={"value": 1})
    assert state.status is rt.Status.COMPLETED
    outputs = sorted((o["routine_id"], o["data"]["value"]) for o in _outputs_of(state))
    history = sorted((e.routine_id, e.event_name, e.data["value"]) for e in state.history)
    return outputs, history


def _outputs_of(state: rt.JobState) -> list[dict[str, object]]:
    log = state.get_shared_data("output_log")
    assert isinstance(log, list)
    return log


@settings(max_examples=15)
@given(graph=_mixed_graphs())
def test_routines_on_mixed_executors_give_the_same_outputs_and_history_as_on_the_loop(
    graph: tuple[list[int], list[tuple[int, int]], list[str]],
) -> None:
    """Invariant: where a routine's plain handler runs (loop, thread, process) changes nothing a job records."""
    factors, dag, places = graph
    assert _job_of(factors, dag, places) == _job_of(factors, dag, None)
