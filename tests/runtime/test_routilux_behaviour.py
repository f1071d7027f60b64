"""Routilux 0.10 behaviours of routine graphs, as its documentation and source describe them.

Each test names the behaviour; where trioflow deliberately differs, the test
pins trioflow's behaviour and says why.
"""

from __future__ import annotations

import pathlib
import re
import threading
import warnings

import pytest
import trio

import runtime as rt

# -- helpers -----------------------------------------------------------------------


class Source(rt.Routine):
    """Emits ``out`` once per item of its trigger's ``items``, with the given keys."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger", handler=self.go)
        self.define_event("out")

    def go(self, items: list[dict[str, object]] | None = None, **_: object) -> None:
        for item in items or [{}]:
            self.emit("out", **item)


class Sink(rt.Routine):
    """Calls *handler* for its ``input`` slot: the handler under test."""

    def __init__(self, handler: object) -> None:
        super().__init__()
        self.define_slot("input", handler=handler)  # type: ignore[arg-type]


def source_to(
    handler: object, *items: dict[str, object], **flow_options: object
) -> tuple[rt.Flow[..., object], dict[str, object]]:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="rlx", **flow_options)  # type: ignore[arg-type]
    flow.add_routine(Source(), "source")
    flow.add_routine(Sink(handler), "sink")
    flow.connect("source", "out", "sink", "input")
    return flow, {"items": list(items)}


# -- handlers are called by their signature ------------------------------------------


def _data_other(calls: list[object]) -> object:
    def take(data: object, other: object = "unset") -> None:
        calls.append({"data": data, "other": other})

    return take


HANDLERS = {
    "kwargs": lambda calls: lambda **kw: calls.append(kw),
    "data": lambda calls: lambda data: calls.append(data),
    "value": lambda calls: lambda value: calls.append(value),
    "data_other": _data_other,
}


@pytest.mark.parametrize(
    ("handler_kind", "emitted", "received"),
    [
        # 1. **kwargs: every key.
        ("kwargs", {"data": "test", "n": 1}, {"data": "test", "n": 1}),
        # 2. one parameter named data: the whole dict.
        ("data", {"data": "test"}, {"data": "test"}),
        # 3. one other parameter: its value, else the whole dict.
        ("value", {"value": 3, "other": 4}, 3),
        ("value", {"other": 4}, {"other": 4}),
        # 4. several parameters: the keys they name; the rest is dropped.
        ("data_other", {"data": 1, "extra": 2}, {"data": 1, "other": "unset"}),
        ("data_other", {"data": 1, "other": 5}, {"data": 1, "other": 5}),
        # ... none named: the whole dict, as the first argument.
        ("data_other", {"x": 1}, {"data": {"x": 1}, "other": "unset"}),
    ],
)
async def test_a_handler_gets_what_its_signature_names(
    handler_kind: str, emitted: dict[str, object], received: object
) -> None:
    calls: list[object] = []
    flow, params = source_to(HANDLERS[handler_kind](calls), emitted)
    state = await flow.aexecute("source", params)
    assert state.status is rt.Status.COMPLETED, state.error
    assert calls == [received]


async def test_a_method_handler_follows_the_same_rules() -> None:
    got: list[object] = []

    class Take(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.take)

        def take(self, data: object) -> None:
            got.append(data)

    flow: rt.Flow[..., object] = rt.Flow(flow_id="m")
    flow.add_routine(Source(), "source")
    flow.add_routine(Take(), "take")
    flow.connect("source", "out", "take", "input")
    await flow.aexecute("source", {"items": [{"data": "test"}]})
    assert got == [{"data": "test"}]  # Routilux: the one 'data' parameter gets the whole dict


async def test_an_empty_message_leaves_a_single_parameters_default() -> None:
    got: list[object] = []
    flow, params = source_to(lambda value="default": got.append(value), {})
    await flow.aexecute("source", params)
    # Routilux would pass {}; trioflow lets the default apply (a deliberate difference).
    assert got == ["default"]


async def test_a_builtin_or_star_args_handler_is_one_parameter() -> None:
    seen: list[object] = []
    flow, params = source_to(seen.append, {"item": 1})  # list.append(object, /)
    await flow.aexecute("source", params)
    star: list[tuple[object, ...]] = []
    flow, params = source_to(lambda *args: star.append(args), {"args": 2}, {"x": 3}, {})
    await flow.aexecute("source", params)
    assert seen == [{"item": 1}]
    assert star == [(2,), ({"x": 3},), ()]


async def test_a_handler_with_no_parameters_is_called_with_none() -> None:
    got: list[str] = []
    flow, params = source_to(lambda: got.append("called"), {"x": 1})
    await flow.aexecute("source", params)
    assert got == ["called"]


async def test_a_plain_function_is_a_slot_handler_in_every_job() -> None:
    seen: list[object] = []

    def take(item: object, **_: object) -> None:
        seen.append(item)

    flow, params = source_to(take, {"item": 1}, {"item": 2})
    await flow.aexecute("source", params)
    await flow.aexecute("source", params)
    assert seen == [1, 2, 1, 2]


# -- emit(event, flow=..., **data) ----------------------------------------------------


async def test_emit_accepts_its_own_flow() -> None:
    class Emitter(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)
            self.define_event("out", ["data"])

        def go(self, **_: object) -> None:
            ctx = self.get_execution_context()
            assert ctx is not None
            self.emit("out", flow=ctx.flow, data="x")

    got: list[object] = []
    flow: rt.Flow[..., object] = rt.Flow(flow_id="own")
    flow.add_routine(Emitter(), "emitter")
    flow.add_routine(Sink(lambda **kw: got.append(kw)), "sink")
    flow.connect("emitter", "out", "sink", "input")
    state = await flow.aexecute("emitter")
    assert state.status is rt.Status.COMPLETED
    assert got == [{"data": "x"}]
    assert [h.data for h in state.history] == [{"data": "x"}]


async def test_emit_refuses_another_flow() -> None:
    other: rt.Flow[..., object] = rt.Flow(flow_id="other")

    class Emitter(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)
            self.define_event("out", ["data"])

        def go(self, **_: object) -> None:
            self.emit("out", flow=other, data="x")

    flow: rt.Flow[..., object] = rt.Flow(flow_id="own")
    flow.add_routine(Emitter(), "emitter")
    state = await flow.aexecute("emitter")
    assert state.status is rt.Status.FAILED
    assert state.error is not None
    assert state.error.message.splitlines()[0] == (
        "Routine 'emitter' emitted 'out' with flow=<Flow 'other' routines=0>, but it runs in a job of flow "
        "'own': a routine emits into its own job. Drop flow=... (the job knows its flow)."
    )


async def test_an_event_that_declares_flow_carries_it_as_data() -> None:
    class Emitter(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)
            self.define_event("out", ["flow"])

        def go(self, **_: object) -> None:
            self.emit("out", flow="water")

    flow: rt.Flow[..., object] = rt.Flow(flow_id="own")
    flow.add_routine(Emitter(), "emitter")
    state = await flow.aexecute("emitter")
    assert [h.data for h in state.history] == [{"flow": "water"}]


# -- connect(..., param_mapping=...) ----------------------------------------------


async def test_param_mapping_renames_on_its_connection_only() -> None:
    renamed: list[dict[str, object]] = []
    plain: list[dict[str, object]] = []

    class Out(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)
            self.define_event("out", ["result", "n"])

        def go(self, **_: object) -> None:
            self.emit("out", result="r", n=2)

    flow: rt.Flow[..., object] = rt.Flow(flow_id="map")
    flow.add_routine(Out(), "out")
    flow.add_routine(Sink(lambda **kw: renamed.append(kw)), "renamed")
    flow.add_routine(Sink(lambda **kw: plain.append(kw)), "plain")
    connection = flow.connect("out", "out", "renamed", "input", param_mapping={"result": "text"})
    flow.connect("out", "out", "plain", "input")
    assert (connection.source_id, connection.event, connection.target_id, connection.slot) == (
        "out",
        "out",
        "renamed",
        "input",
    )
    assert connection.param_mapping == {"result": "text"}
    state = await flow.aexecute("out")
    assert state.status is rt.Status.COMPLETED
    assert renamed == [{"text": "r", "n": 2}]
    assert plain == [{"result": "r", "n": 2}]
    assert [h.data for h in state.history] == [{"result": "r", "n": 2}]  # history keeps what was emitted


# -- execution strategies ----------------------------------------------------------


def fan(strategy: str, *, workers: int | None = None) -> tuple[rt.Flow[..., object], list[str]]:
    """source -> a, b (in that connection order); a -> c; b -> d. Handlers log their calls."""
    order: list[str] = []

    class Node(rt.Routine):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name
            self.define_slot("input", handler=self.take)
            self.define_event("out", ["i"])

        async def take(self, i: int) -> None:
            order.append(f"{self.name}{i}")
            # Yield a few times: under "sequential" nobody else may run meanwhile.
            for _ in range(3):
                await trio.lowlevel.checkpoint()
            if self.name in "ab":
                self.emit("out", i=i)

    class Start(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)
            self.define_event("out", ["i"])

        def go(self, **_: object) -> None:
            for i in range(2):
                self.emit("out", i=i)

    options: dict[str, object] = {"execution_strategy": strategy}
    if workers is not None:
        options["max_workers"] = workers
    flow: rt.Flow[..., object] = rt.Flow(flow_id=f"fan-{strategy}", **options)  # type: ignore[arg-type]
    flow.add_routine(Start(), "start")
    for name in "abcd":
        flow.add_routine(Node(name), name)
    flow.connect("start", "out", "a", "input")
    flow.connect("start", "out", "b", "input")
    flow.connect("a", "out", "c", "input")
    flow.connect("b", "out", "d", "input")
    return flow, order


async def test_sequential_runs_handler_calls_one_at_a_time_in_emission_order() -> None:
    flow, order = fan("sequential")
    assert (flow.execution_strategy, flow.max_workers) == ("sequential", 1)
    state = await flow.aexecute("start")
    assert state.status is rt.Status.COMPLETED
    # A job-wide FIFO: start emits i=0 (to a, then b) and i=1 (to a, then b);
    # a0 emits to c, b0 to d, and so on, each after what was emitted before it.
    assert order == ["a0", "b0", "a1", "b1", "c0", "d0", "c1", "d1"]


async def test_actors_run_routines_concurrently() -> None:
    flow, order = fan("actors")
    assert flow.execution_strategy == "actors"  # the default
    state = await flow.aexecute("start")
    assert state.status is rt.Status.COMPLETED
    assert sorted(order) == ["a0", "a1", "b0", "b1", "c0", "c1", "d0", "d1"]
    assert order.index("a0") < order.index("a1") < order.index("c1")  # per connection, in order


def test_concurrent_runs_blocking_sync_handlers_side_by_side() -> None:
    # Both handlers wait at one barrier: they can only pass it together.
    barrier = threading.Barrier(2, timeout=10)
    threads: list[bool] = []

    def meet(**_: object) -> None:
        barrier.wait()
        threads.append(threading.current_thread() is not threading.main_thread())

    flow: rt.Flow[..., object] = rt.Flow(flow_id="side", execution_strategy="concurrent", max_workers=2)
    flow.add_routine(Source(), "source")
    flow.add_routine(Sink(meet), "a")
    flow.add_routine(Sink(meet), "b")
    flow.connect("source", "out", "a", "input")
    flow.connect("source", "out", "b", "input")
    state = flow.execute("source")
    assert state.status is rt.Status.COMPLETED, state.error
    assert threads == [True, True]


def test_concurrent_uses_at_most_max_workers_threads() -> None:
    running = 0
    most = 0
    lock = threading.Lock()
    gate = threading.Event()

    def work(**_: object) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        gate.wait(0.05)  # long enough to overlap if it could
        with lock:
            running -= 1

    flow: rt.Flow[..., object] = rt.Flow(flow_id="few", execution_strategy="concurrent", max_workers=2)
    flow.add_routine(Source(), "source")
    for name in "abcd":
        flow.add_routine(Sink(work), name)
        flow.connect("source", "out", name, "input")
    state = flow.execute("source")
    assert state.status is rt.Status.COMPLETED
    assert most <= 2


def test_a_sync_handler_in_a_worker_thread_emits_and_updates_state_in_order() -> None:
    class Worker(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.take)
            self.define_event("done", ["n"])

        def take(self, **_: object) -> None:
            ctx = self.get_execution_context()
            assert ctx is not None
            ctx.job_state.update_routine_state(ctx.routine_id, {"step": 1})
            self.emit("done", n=1)
            self.send_output("result", n=1)

    seen: list[object] = []
    flow: rt.Flow[..., object] = rt.Flow(
        flow_id="thread", execution_strategy="concurrent", subscribers=[seen.append]
    )
    flow.add_routine(Source(), "source")
    flow.add_routine(Worker(), "worker")
    flow.add_routine(Sink(lambda **kw: None), "sink")
    flow.connect("source", "out", "worker", "input")
    flow.connect("worker", "done", "sink", "input")
    state = flow.execute("source")
    assert state.status is rt.Status.COMPLETED
    assert state.get_routine_state("worker") == {"step": 1}
    assert [h.event_name for h in state.history] == ["out", "done"]
    kinds = [e.kind for e in seen if isinstance(e, rt.Event) and e.node == "worker"]
    assert kinds == [rt.EventKind.ROUTINE_STATE, rt.EventKind.ROUTINE_EVENT, rt.EventKind.STREAM]


def test_set_execution_strategy_applies_to_the_next_jobs() -> None:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="s")
    assert (flow.execution_strategy, flow.max_workers) == ("actors", 1)
    flow.set_execution_strategy("concurrent")
    assert (flow.execution_strategy, flow.max_workers) == ("concurrent", 5)
    flow.set_execution_strategy("concurrent", max_workers=3)
    assert flow.max_workers == 3
    flow.set_execution_strategy("sequential", max_workers=3)
    assert (flow.execution_strategy, flow.max_workers) == ("sequential", 1)


async def test_one_job_may_override_the_strategy() -> None:
    flow, order = fan("actors")
    state = await flow.aexecute("start", execution_strategy="sequential")
    assert state.status is rt.Status.COMPLETED
    assert order == ["a0", "b0", "a1", "b1", "c0", "d0", "c1", "d1"]
    assert flow.execution_strategy == "actors"
    with pytest.raises(
        ValueError,
        match=r"^Flow\('fan-actors'\)\.aexecute\(\.\.\., execution_strategy='fast'\): not an execution strategy; "
        r"choose one of 'actors', 'sequential', 'concurrent'\.$",
    ):
        await flow.aexecute("start", execution_strategy="fast")


def test_an_unknown_strategy_is_refused() -> None:
    with pytest.raises(
        ValueError,
        match=r"^Flow\('f', execution_strategy=\.\.\., max_workers=\.\.\.\): 'parallel' is not an execution "
        r"strategy; choose one of 'actors', 'sequential', 'concurrent'\.$",
    ):
        rt.Flow(flow_id="f", execution_strategy="parallel")
    flow: rt.Flow[..., object] = rt.Flow(flow_id="f")
    with pytest.raises(
        ValueError,
        match=r"^Flow\('f'\)\.set_execution_strategy\('threads', max_workers=None\): 'threads' is not an execution "
        r"strategy; choose one of 'actors', 'sequential', 'concurrent'\.$",
    ):
        flow.set_execution_strategy("threads")


@pytest.mark.parametrize("workers", [0, -1, 2.5, True])
def test_max_workers_below_one_is_refused(workers: object) -> None:
    with pytest.raises(
        ValueError,
        match=rf"^Flow\('f', execution_strategy=\.\.\., max_workers=\.\.\.\): max_workers={workers!r} must be a "
        r"whole number of worker threads, 1 or more\.$",
    ):
        rt.Flow(flow_id="f", execution_strategy="concurrent", max_workers=workers)  # type: ignore[arg-type]
    flow: rt.Flow[..., object] = rt.Flow(flow_id="f")
    with pytest.raises(ValueError, match=r"max_workers=.* must be a whole number of worker threads"):
        flow.set_execution_strategy("concurrent", max_workers=workers)  # type: ignore[arg-type]


def test_shutdown_and_wait_for_completion_have_nothing_to_wait_for_after_execute() -> None:
    flow, params = source_to(lambda **kw: None, {})
    state = flow.execute("source", params)
    with pytest.warns(DeprecationWarning, match=r"JobState\.wait_for_completion\(flow, job_state"):
        assert flow.wait_for_completion(timeout=1.0) is True
    with pytest.warns(DeprecationWarning, match=r"^Flow\('rlx'\)\.wait_for_completion\(\) is deprecated"):
        assert flow.wait_for_completion(job_state=state) is True
    flow.shutdown(wait=True, timeout=1.0)
    flow.shutdown(wait=False)
    assert flow.execute("source", params).status is rt.Status.COMPLETED  # still usable


def test_wait_for_completion_waits_for_a_job_in_another_thread() -> None:
    started, release = threading.Event(), threading.Event()

    def block(**_: object) -> None:
        started.set()
        release.wait(10)

    flow, params = source_to(block, {}, execution_strategy="concurrent")
    states: list[rt.JobState] = []
    runner = threading.Thread(target=lambda: states.append(flow.execute("source", params)))
    runner.start()
    try:
        assert started.wait(10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            assert flow.wait_for_completion(timeout=0.01) is False
        release.set()
        flow.shutdown(wait=True, timeout=10)
    finally:
        release.set()
        runner.join()
    assert states[0].status is rt.Status.COMPLETED


# -- error handling --------------------------------------------------------------------


def failing_flow(fail_times: int) -> tuple[rt.Flow[..., object], list[int]]:
    calls: list[int] = []

    def take(**_: object) -> None:
        calls.append(len(calls))
        if len(calls) <= fail_times:
            raise ConnectionError("down")

    flow: rt.Flow[..., object] = rt.Flow(flow_id="err")
    flow.add_routine(Sink(take), "worker")
    return flow, calls


async def test_a_critical_routine_retries_then_completes(autojump_clock: trio.testing.MockClock) -> None:
    flow, calls = failing_flow(2)
    worker = flow.routines["worker"]
    worker.set_as_critical(max_retries=5, retry_delay=0.1)
    assert worker.is_critical
    handler = worker.get_error_handler()
    assert handler is not None
    assert (handler.strategy, handler.max_retries, handler.retry_delay, handler.is_critical) == (
        rt.ErrorStrategy.RETRY,
        5,
        0.1,
        True,
    )
    state = await flow.aexecute("worker")
    assert state.status is rt.Status.COMPLETED
    assert len(calls) == 3
    routine_state = state.get_routine_state("worker")
    assert routine_state is not None
    # Routilux says "completed"; trioflow says how: recovered after retries.
    assert (routine_state["status"], routine_state["retry_count"]) == ("recovered", 2)
    assert handler.retry_count == 2  # the handler object counts every job's retries
    handler.reset()
    assert handler.retry_count == 0


async def test_a_critical_routine_that_still_fails_fails_the_job(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flow, calls = failing_flow(10)
    flow.routines["worker"].set_as_critical(max_retries=2, retry_delay=0.1)
    async with flow.open_job("worker") as job:
        state = await job.wait()
    assert state.status is rt.Status.FAILED
    assert len(calls) == 3
    assert state.get_routine_state("worker") == {
        "status": "failed",
        "error": "ConnectionError: down",
        "failures": 3,
        "retry_count": 2,
    }
    assert isinstance(job.error, ConnectionError)
    assert job.error.__notes__[-1].endswith(
        "the job stopped (error strategy 'retry', after 2 retries; the routine is critical)."
    )


@pytest.mark.parametrize(
    ("strategy", "status"),
    [(None, "error_continued"), (rt.ErrorStrategy.SKIP, "skipped"), ("skip", "skipped")],
)
async def test_an_optional_routine_fails_without_failing_the_job(
    strategy: rt.ErrorStrategy | str | None, status: str
) -> None:
    flow, _ = failing_flow(1)
    worker = flow.routines["worker"]
    worker.set_as_optional(strategy)
    assert not worker.is_critical
    state = await flow.aexecute("worker")
    assert state.status is rt.Status.COMPLETED
    routine_state = state.get_routine_state("worker")
    assert routine_state is not None
    assert routine_state["status"] == status


def test_set_as_optional_refuses_a_strategy_that_does_not_tolerate_failures() -> None:
    routine = Sink(lambda: None)
    with pytest.raises(
        ValueError,
        match=r"^Sink\.set_as_optional\('retry'\): an optional routine's failures are tolerated, with 'continue' "
        r"or 'skip'\. For another strategy use set_error_handler\(\.\.\.\)\.$",
    ):
        routine.set_as_optional("retry")


def test_an_error_handler_can_be_changed_in_place_and_is_checked() -> None:
    handler = rt.ErrorHandler(strategy="retry", max_retries=1)
    handler.max_retries = 4
    handler.retry_delay = 0.5
    assert (handler.max_retries, handler.retry_delay) == (4, 0.5)
    handler.strategy = "skip"  # type: ignore[assignment]
    assert handler.strategy is rt.ErrorStrategy.SKIP
    with pytest.raises(ValueError, match=r"^ErrorHandler\(max_retries=-1\): give a whole number of retries"):
        handler.max_retries = -1
    assert rt.ErrorHandler(strategy="retry") == rt.ErrorHandler(strategy="retry")
    used = rt.ErrorHandler(strategy="retry")
    used.retry_count = 3
    assert used == rt.ErrorHandler(strategy="retry")  # the count is not part of its settings


def test_a_critical_handler_must_be_able_to_fail_the_job() -> None:
    with pytest.raises(
        ValueError,
        match=r"^ErrorHandler\(strategy='continue', is_critical=True\): a critical routine must succeed, but "
        r"'continue' tolerates its failures\. Use strategy 'retry' \(or routine\.set_as_critical\(\.\.\.\)\), or "
        r"drop is_critical\.$",
    ):
        rt.ErrorHandler(strategy="continue", is_critical=True)


async def test_a_changed_handler_applies_to_the_next_jobs(autojump_clock: trio.testing.MockClock) -> None:
    flow, calls = failing_flow(100)
    handler = rt.ErrorHandler(strategy="retry", max_retries=1, retry_delay=0.1)
    flow.set_error_handler(handler)
    assert flow.error_handler is handler
    await flow.aexecute("worker")
    assert len(calls) == 2
    handler.max_retries = 3
    await flow.aexecute("worker")
    assert len(calls) == 2 + 4
    flow.error_handler = None
    assert flow.error_handler is None


# -- state and configuration -------------------------------------------------------------


def test_jobstate_with_only_a_flow_id_gets_a_new_job_id() -> None:
    a, b = rt.JobState("my_flow"), rt.JobState("my_flow")
    assert (a.flow_id, a.status) == ("my_flow", rt.Status.PENDING)
    assert a.job_id != b.job_id
    assert a.job_id.startswith("job-")
    both = rt.JobState("job-1", "my_flow")
    assert (both.job_id, both.flow_id) == ("job-1", "my_flow")
    keyword = rt.JobState(flow_id="my_flow")
    assert keyword.flow_id == "my_flow"
    assert keyword.job_id.startswith("job-")
    bare = rt.JobState()
    assert bare.flow_id == ""
    assert bare.job_id.startswith("job-")


def test_a_status_set_as_a_string_is_kept_as_a_status() -> None:
    state = rt.JobState(flow_id="f")
    state.status = "running"  # type: ignore[assignment]
    assert state.status is rt.Status.RUNNING
    assert state.status == "running"
    with pytest.raises(ValueError, match=r"^JobState\.status='done': a status is one of 'pending', "):
        state.status = "done"  # type: ignore[assignment]


async def test_the_entry_routine_records_its_own_status() -> None:
    flow, params = source_to(lambda **kw: None, {"x": 1})
    state = await flow.aexecute("source", params)
    assert state.get_routine_state("source") == {"status": "completed"}
    assert state.get_routine_state("sink") is None  # as in Routilux: only the entry routine's


def test_config_returns_a_copy() -> None:
    routine = Sink(lambda: None)
    routine.set_config(name="test", timeout=30)
    config = routine.config()
    assert config == {"name": "test", "timeout": 30}
    config["name"] = "changed"
    assert routine.get_config("name") == "test"


# -- the docs page ------------------------------------------------------------------------


def test_the_execution_strategies_page_runs() -> None:
    """Every Python snippet of docs/execution-strategies.md runs (its asserts are its checks)."""
    page = pathlib.Path(__file__).resolve().parents[2] / "docs" / "execution-strategies.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)
    assert blocks
    for block in blocks:
        exec(compile(block, "execution-strategies.md", "exec"), {"__name__": "docs_page"})


class Controller(rt.Routine):
    """A plain handler that pauses its job on its first message and cancels it on its second."""

    def __init__(self, paused: threading.Event) -> None:
        super().__init__()
        self.paused = paused
        self.define_slot("input", handler=self.take)

    def take(self, **_: object) -> None:
        ctx = self.get_execution_context()
        assert ctx is not None
        if not self.paused.is_set():
            ctx.job_state.pause("from a worker thread")  # applied on the loop before it returns
            self.paused.set()
        else:
            ctx.flow.cancel(ctx.job_state, reason="found it")


async def test_a_sync_handler_in_a_worker_thread_can_pause_and_cancel_its_job() -> None:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="ctl", execution_strategy="concurrent")
    flow.add_routine(Source(), "source")
    paused = threading.Event()
    flow.add_routine(Controller(paused), "ctl")
    flow.connect("source", "out", "ctl", "input")
    async with flow.open_job("source", {"items": [{}, {}]}) as job:
        await trio.to_thread.run_sync(paused.wait)
        assert job.status is rt.Status.PAUSED
        assert job.pause_reason == "from a worker thread"
        job.resume()
        state = await job.wait()
    assert state.status is rt.Status.CANCELLED
    assert job.error is not None
    assert str(job.error).endswith("was cancelled: found it")
