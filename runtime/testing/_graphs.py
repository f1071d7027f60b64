"""Generated routine graphs, a job driver, and checkers for the invariants of jobs.

:func:`routine_graphs` draws a :class:`GraphSpec`: routines with one or two
slots and events, connected as a DAG or with cycles (self-loops included),
fan-in and fan-out, each routine with its own error strategy, failures to
inject, delays, deferred emissions and pauses from inside a handler.
:meth:`GraphSpec.build` makes a real :class:`~runtime.Flow` of instrumented
routines that record what they receive in the job's own state, so a job
can be checked from its :class:`~runtime.JobState` alone:

- :func:`check_fifo`: per connection, messages are handled in emission order,
  and the history is consistent with causality;
- :func:`check_delivery`: every emission reaches each connected slot exactly
  once, or (if the job did not complete) is listed in ``undelivered``;
- :func:`check_outcome`: the status agrees with what happened (failures,
  step limit, cancel, timeout), and no handler started while paused;
- :func:`check_jobs_isolated`: concurrent jobs of one flow saw only their
  own messages, and each job's instance of a routine kept what it made
  itself (a counter, a list) to that job;
- :func:`check_no_tasks_left`: nothing of the jobs is still running.

:func:`run_graph_jobs` runs several jobs of one flow at once, each driven by a
:class:`JobSchedule` (pauses, a cancel) drawn by :func:`job_schedules`.
Every check raises :class:`AssertionError` in the graph's terms: routine ids,
slots, event names, tokens.
"""

from __future__ import annotations

import collections
import contextlib
import math
from typing import TYPE_CHECKING, final

import attrs
import trio
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from .._exceptions import JobStateError
from .._flow import Flow
from .._routine import ErrorHandler, ErrorStrategy, Routine
from .._state import JobState, Status
from ._faults import InjectedError

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping, Sequence

    from hypothesis.strategies import DrawFn, SearchStrategy

    from .._job import Job
    from .._util import AnyFlow

#: The data every generated event carries.
EVENT_PARAMS = ("token", "ttl", "job", "cause")
#: The token of the message that starts a job.
ENTRY_TOKEN = "entry"

_SLOTS = ("in", "alt")
_EVENTS = ("out", "side")


def _token_number(token: str) -> int:
    """The emitting routine's counter in a token: ``4`` for ``"r1.out#4"`` (its call order)."""
    return int(token.rpartition("#")[2])


def _token_source(token: str) -> tuple[str, str] | None:
    """``("r1", "out")`` for the token ``"r1.out#4"``; ``None`` for the entry token."""
    head, sep, _ = token.rpartition("#")
    if not sep:
        return None
    routine_id, _, event = head.rpartition(".")
    return routine_id, event


# -- the spec -------------------------------------------------------------------


@final
@attrs.frozen
class RoutineSpec:
    """One generated routine: its slots, events and behaviour.

    Attributes:
        routine_id: ``"r0"``, ``"r1"``, ...
        slots: its slots, ``("in",)`` or ``("in", "alt")``.
        events: its events, ``("out",)`` or ``("out", "side")``.
        is_async: whether its handlers are ``async`` (and wait :attr:`delay`).
        delay: seconds an async handler sleeps before emitting.
        fanout: emissions per event for each message it handles (while the
            message's ``ttl`` is above 0).
        strategy: its error strategy.
        max_retries: ``RETRY`` only.
        retry_delay: ``RETRY`` only.
        fail_on: which of its messages (0 for the first it handles in a job)
            raise :class:`~runtime.testing.InjectedError`.
        fail_times: how many calls of such a message fail before one succeeds.
        emit_before_failing: whether a failing call emits before it raises.
        deferred: whether it emits with ``emit_deferred_event``.
        pause_on: which of its messages pause the job from inside the handler.

    .. versionadded:: 0.1
    """

    routine_id: str
    slots: tuple[str, ...] = ("in",)
    events: tuple[str, ...] = ("out",)
    is_async: bool = False
    delay: float = 0.0
    fanout: int = 1
    strategy: ErrorStrategy = ErrorStrategy.STOP
    max_retries: int = 0
    retry_delay: float = 0.0
    fail_on: tuple[int, ...] = ()
    fail_times: int = 1
    emit_before_failing: bool = False
    deferred: bool = False
    pause_on: tuple[int, ...] = ()

    def describe(self) -> str:
        """The routine in one line, for a counterexample."""
        parts = [f"{self.routine_id}: slots {list(self.slots)}, events {list(self.events)}"]
        parts.append(f"{'async, delay ' + format(self.delay, 'g') + ' s' if self.is_async else 'sync'}")
        parts.append(f"fanout {self.fanout}")
        parts.append(f"strategy {self.strategy.value}")
        if self.fail_on:
            parts.append(f"fails on messages {list(self.fail_on)} x{self.fail_times}")
        if self.deferred:
            parts.append("deferred emits")
        if self.pause_on:
            parts.append(f"pauses on messages {list(self.pause_on)}")
        return ", ".join(parts)


@final
@attrs.frozen
class GraphSpec:
    """A generated routine graph and its Flow's settings: from :func:`routine_graphs`.

    Attributes:
        routines: the routines; ``routines[0]`` is the entry.
        connections: ``(source_id, event, target_id, slot)`` tuples.
        ttl: how many hops a message of the entry may travel: it bounds the
            job, cycles included.
        max_steps: the Flow's ``max_steps``.
        timeout: the Flow's ``timeout``.

    .. versionadded:: 0.1
    """

    routines: tuple[RoutineSpec, ...]
    connections: tuple[tuple[str, str, str, str], ...]
    ttl: int = 2
    max_steps: int = 10_000
    timeout: float | None = None

    @property
    def entry(self) -> str:
        """The id of the routine a job starts with."""
        return self.routines[0].routine_id

    @property
    def is_cyclic(self) -> bool:
        """Whether some message can come back to a routine it left."""
        edges: dict[str, set[str]] = {}
        for src, _, dst, _ in self.connections:
            edges.setdefault(src, set()).add(dst)
        state: dict[str, int] = {}

        def visit(node: str) -> bool:
            state[node] = 1
            for nxt in edges.get(node, ()):
                if state.get(nxt) == 1 or (nxt not in state and visit(nxt)):
                    return True
            state[node] = 2
            return False

        return any(node not in state and visit(node) for node in edges)

    def describe(self) -> str:
        """The graph, several lines, for a counterexample."""
        lines = [r.describe() for r in self.routines]
        lines.extend(f"connect{c!r}" for c in self.connections)
        lines.append(f"ttl {self.ttl}, max_steps {self.max_steps}, timeout {self.timeout}")
        return "\n".join(lines)

    def build(self, name: str = "generated") -> AnyFlow:
        """A new :class:`~runtime.Flow` of instrumented routines for this graph."""
        flow: AnyFlow = Flow(flow_id=name, max_steps=self.max_steps, timeout=self.timeout)
        for spec in self.routines:
            flow.add_routine(_AsyncGenerated(spec) if spec.is_async else _SyncGenerated(spec), spec.routine_id)
        for connection in self.connections:
            flow.connect(*connection)
        flow.set_entry(self.entry)
        return flow

    def entry_params(self, tag: str) -> dict[str, object]:
        """The entry slot's arguments for the job tagged *tag*."""
        return {"token": ENTRY_TOKEN, "ttl": self.ttl, "job": tag, "cause": None}


class _Generated(Routine):
    """An instrumented routine: records what it receives in the job's shared log."""

    def __init__(self, spec: RoutineSpec) -> None:
        super().__init__()
        self.spec = spec  # given to the constructor: shared by every job's instance
        # Made here: each job makes its own instance, so these count and keep
        # that job's messages only (checked by check_jobs_isolated).
        self.handled = 0
        self.received: list[str] = []  # the job tag of every call, retries included
        self.emitted = 0
        self.attempts: dict[str, int] = {}
        self.index: dict[str, int] = {}
        for slot in spec.slots:
            self.define_slot(slot, handler=getattr(self, f"on_{slot}"))
        for event in spec.events:
            self.define_event(event, EVENT_PARAMS)
        if spec.strategy is not ErrorStrategy.STOP:
            self.set_error_handler(
                ErrorHandler(
                    strategy=spec.strategy,
                    max_retries=spec.max_retries,
                    retry_delay=spec.retry_delay,
                    retry_backoff=1.0,
                )
            )

    def _begin(self, slot: str, token: str, job: str) -> bool:
        """Record the call; return whether it is to fail."""
        ctx = self.get_execution_context()
        assert ctx is not None
        key = f"{slot}|{token}"
        attempt = self.attempts.get(key, 0)
        self.attempts[key] = attempt + 1
        if attempt == 0:
            self.index[key] = self.handled
            self.handled += 1
        self.received.append(job)
        index = self.index[key]
        state = ctx.job_state
        state.append_to_shared_log(
            {
                "recv": token,
                "at": ctx.routine_id,
                "slot": slot,
                "attempt": attempt,
                "job": job,
                "status": str(state.status),
            }
        )
        state.update_routine_state(
            ctx.routine_id,
            {"handled": self.handled, "received": len(self.received), "received_from": sorted(set(self.received))},
        )
        if index in self.spec.pause_on and attempt == 0 and state.status is Status.RUNNING:
            state.pause(f"{ctx.routine_id} paused at its message {index}")
        return index in self.spec.fail_on and attempt < self.spec.fail_times

    def _finish(self, token: str, ttl: int, job: str, failing: bool) -> None:
        spec = self.spec
        if ttl > 0 and (spec.emit_before_failing or not failing):
            ctx = self.get_execution_context()
            assert ctx is not None
            for event in spec.events:
                for _ in range(spec.fanout):
                    child = f"{spec.routine_id}.{event}#{self.emitted}"
                    self.emitted += 1
                    if spec.deferred:
                        if ctx.job_state.status is Status.PAUSED:
                            ctx.job_state.append_to_shared_log({"deferred": child, "job": job})
                        self.emit_deferred_event(event, token=child, ttl=ttl - 1, job=job, cause=token)
                    else:
                        self.emit(event, token=child, ttl=ttl - 1, job=job, cause=token)
        if failing:
            msg = f"injected failure in routine {spec.routine_id!r} on {token!r}"
            raise InjectedError(msg)


@final
class _SyncGenerated(_Generated):
    def on_in(self, token: str, ttl: int, job: str, cause: str | None) -> None:
        self._finish(token, ttl, job, self._begin("in", token, job))

    def on_alt(self, token: str, ttl: int, job: str, cause: str | None) -> None:
        self._finish(token, ttl, job, self._begin("alt", token, job))


@final
class _AsyncGenerated(_Generated):
    async def on_in(self, token: str, ttl: int, job: str, cause: str | None) -> None:
        failing = self._begin("in", token, job)
        await trio.sleep(self.spec.delay)
        self._finish(token, ttl, job, failing)

    async def on_alt(self, token: str, ttl: int, job: str, cause: str | None) -> None:
        failing = self._begin("alt", token, job)
        await trio.sleep(self.spec.delay)
        self._finish(token, ttl, job, failing)


# -- strategies --------------------------------------------------------------------


def _check_strategy(value: object, name: str, api: str) -> None:
    if not isinstance(value, st.SearchStrategy):
        msg = f"{api}: {name}={value!r} must be a strategy, e.g. st.just(...) or st.sampled_from([...])."
        raise InvalidArgument(msg)


def _check_count(value: object, name: str, api: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        msg = f"{api}: {name}={value!r} must be an integer, {minimum} or more."
        raise InvalidArgument(msg)
    return value


_DELAYS = st.sampled_from((0.0, 0.25, 0.5, 1.0))
# Timeouts never tie with delays, retry delays or schedule times (quarter seconds).
_TIMEOUTS: SearchStrategy[float | None] = st.sampled_from((None, None, None, 0.6, 1.1, 2.35))


def routine_graphs(
    *,
    min_routines: int = 1,
    max_routines: int = 5,
    cyclic: SearchStrategy[bool] | None = None,
    strategies: SearchStrategy[ErrorStrategy] | None = None,
    failures: SearchStrategy[bool] | None = None,
    pauses: SearchStrategy[bool] | None = None,
    timeouts: SearchStrategy[float | None] | None = None,
    max_steps: SearchStrategy[int] | None = None,
    fanouts: SearchStrategy[int] | None = None,
) -> SearchStrategy[GraphSpec]:
    """A strategy for :class:`GraphSpec` values: random routine graphs to run as jobs.

    Args:
        min_routines: the fewest routines.
        max_routines: the most routines.
        cyclic: whether a graph may have cycles (default: either). A DAG's
            edges go from lower to higher routine numbers.
        strategies: each routine's error strategy (default: any).
        failures: whether a routine has failures to inject (default: mostly not).
        pauses: whether routines may pause the job from a handler and emit
            deferred events (default: either).
        timeouts: the Flow's timeout (default: mostly ``None``).
        max_steps: the Flow's ``max_steps`` (default: mostly 10,000, sometimes
            small enough to stop a job).
        fanouts: how many messages a routine emits per event for each message
            it handles (default: mostly 1, sometimes 0 or 2). More than one
            puts several messages on one connection at once: what ordering
            properties need.

    Raises:
        hypothesis.errors.InvalidArgument: a count below 1 or out of order, or
            an argument that should be a strategy and is not.

    .. versionadded:: 0.1
    """
    api = "routine_graphs()"
    low = _check_count(min_routines, "min_routines", api, 1)
    high = _check_count(max_routines, "max_routines", api, 1)
    if low > high:
        msg = f"{api}: min_routines={low} is greater than max_routines={high}; no graph can satisfy both."
        raise InvalidArgument(msg)
    cyclic = st.booleans() if cyclic is None else cyclic
    strategies = st.sampled_from(list(ErrorStrategy)) if strategies is None else strategies
    failures = st.sampled_from((False, False, True)) if failures is None else failures
    pauses = st.booleans() if pauses is None else pauses
    timeouts = _TIMEOUTS if timeouts is None else timeouts
    max_steps = st.sampled_from((10_000, 10_000, 10_000, 12)) if max_steps is None else max_steps
    fanouts = st.sampled_from((1, 1, 2, 0)) if fanouts is None else fanouts
    for name, value in (
        ("cyclic", cyclic),
        ("strategies", strategies),
        ("failures", failures),
        ("pauses", pauses),
        ("timeouts", timeouts),
        ("max_steps", max_steps),
        ("fanouts", fanouts),
    ):
        _check_strategy(value, name, api)

    @st.composite
    def graphs(draw: DrawFn) -> GraphSpec:
        n = draw(st.integers(low, high))
        is_cyclic = draw(cyclic)
        may_pause = draw(pauses)
        routines = []
        for i in range(n):
            is_async = draw(st.booleans())
            strategy = draw(strategies)
            if not isinstance(strategy, ErrorStrategy):
                msg = f"{api}: strategies drew {strategy!r}, not an ErrorStrategy."
                raise InvalidArgument(msg)
            fails = draw(failures)
            retries = draw(st.integers(0, 2)) if strategy is ErrorStrategy.RETRY else 0
            routines.append(
                RoutineSpec(
                    routine_id=f"r{i}",
                    slots=_SLOTS[: draw(st.integers(1, 2))],
                    events=_EVENTS[: draw(st.integers(1, 2))],
                    is_async=is_async,
                    delay=draw(_DELAYS) if is_async else 0.0,
                    fanout=draw(fanouts),
                    strategy=strategy,
                    max_retries=retries,
                    retry_delay=draw(st.sampled_from((0.0, 0.25))) if retries else 0.0,
                    fail_on=tuple(sorted(draw(st.sets(st.integers(0, 3), max_size=2)))) if fails else (),
                    fail_times=draw(st.integers(1, 3)) if fails else 1,
                    emit_before_failing=draw(st.booleans()) if fails else False,
                    deferred=draw(st.booleans()) if may_pause else False,
                    pause_on=(draw(st.integers(0, 2)),) if may_pause and draw(st.booleans()) else (),
                )
            )
        # Every routine is reachable from the entry: one edge from an earlier routine each...
        connections: list[tuple[str, str, str, str]] = []
        for b, dst in enumerate(routines[1:], start=1):
            src = routines[draw(st.integers(0, b - 1))]
            connections.append(
                (src.routine_id, draw(st.sampled_from(src.events)), dst.routine_id, draw(st.sampled_from(dst.slots)))
            )
        # ...then more: fan-in, fan-out, and (if cyclic) back edges and self-loops.
        candidates = [
            (src.routine_id, event, dst.routine_id, slot)
            for a, src in enumerate(routines)
            for event in src.events
            for b, dst in enumerate(routines)
            for slot in dst.slots
            if (a < b or (is_cyclic and a >= b)) and (src.routine_id, event, dst.routine_id, slot) not in connections
        ]
        if candidates:
            connections.extend(draw(st.lists(st.sampled_from(candidates), unique=True, max_size=n + 1)))
        if is_cyclic and n > 1 and not any(int(d[1:]) <= int(s[1:]) for s, _, d, _ in connections):
            last = routines[-1]
            back = (last.routine_id, last.events[0], routines[0].routine_id, routines[0].slots[0])
            connections.append(back)
        ttl = draw(st.integers(1, 3 if n <= 2 else 2))
        steps = draw(max_steps)
        _check_count(steps, "max_steps (drawn)", api, 1)
        timeout = draw(timeouts)
        if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0 and math.isfinite(timeout)):
            msg = f"{api}: timeouts drew {timeout!r}; a timeout is a positive number of seconds, or None."
            raise InvalidArgument(msg)
        return GraphSpec(tuple(routines), tuple(connections), ttl, steps, timeout)

    return graphs()


@final
@attrs.frozen
class JobSchedule:
    """What the driver does to one job while it runs: from :func:`job_schedules`.

    Attributes:
        tag: the job's tag: every message of the job carries it.
        pauses: ``(at, duration)`` pairs: at ``at`` seconds after the start,
            pause the job (if it runs) for ``duration`` seconds.
        cancel_at: seconds after the start to cancel the job, or ``None``.
        resume_after: seconds after which the driver resumes a job that a
            handler paused.

    .. versionadded:: 0.1
    """

    tag: str = "job"
    pauses: tuple[tuple[float, float], ...] = ()
    cancel_at: float | None = None
    resume_after: float = 0.5

    def describe(self) -> str:
        """The schedule in one line, for a counterexample."""
        parts = [f"job {self.tag!r}"]
        parts.extend(f"pause at {at:g} s for {d:g} s" for at, d in self.pauses)
        if self.cancel_at is not None:
            parts.append(f"cancel at {self.cancel_at:g} s")
        return ", ".join(parts)


def job_schedules(
    *, tag: str = "job", max_pauses: int = 2, cancels: SearchStrategy[bool] | None = None
) -> SearchStrategy[JobSchedule]:
    """A strategy for :class:`JobSchedule` values: pauses and cancels at random times.

    Times are quarter seconds plus a tenth, so they never tie with the
    generated graphs' delays.

    Args:
        tag: the job's tag.
        max_pauses: the most pauses.
        cancels: whether the job is cancelled (default: sometimes).

    Raises:
        hypothesis.errors.InvalidArgument: a negative *max_pauses*, or
            *cancels* is not a strategy.

    .. versionadded:: 0.1
    """
    api = "job_schedules()"
    most = _check_count(max_pauses, "max_pauses", api, 0)
    cancels = st.sampled_from((False, False, True)) if cancels is None else cancels
    _check_strategy(cancels, "cancels", api)
    times = st.integers(0, 12).map(lambda k: k * 0.25 + 0.1)
    durations = st.integers(1, 8).map(lambda k: k * 0.25)

    @st.composite
    def schedules(draw: DrawFn) -> JobSchedule:
        pauses = tuple(sorted(draw(st.lists(st.tuples(times, durations), max_size=most))))
        cancel_at = draw(times) if draw(cancels) else None
        return JobSchedule(tag, pauses, cancel_at)

    return schedules()


# -- the driver ----------------------------------------------------------------------


def current_tasks() -> frozenset[trio.lowlevel.Task]:
    """Every task of the running Trio program, for :func:`check_no_tasks_left`.

    .. versionadded:: 0.1
    """
    found: set[trio.lowlevel.Task] = set()
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        if task is None:  # pragma: no cover - outside a run
            continue
        found.add(task)
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return frozenset(found)


def check_no_tasks_left(before: Collection[trio.lowlevel.Task]) -> None:
    """Check that every task now running was already running at *before*.

    Take *before* with :func:`current_tasks` before the jobs start.

    Raises:
        AssertionError: names the tasks (routine actors are named
            ``routine 'r1'``) still running.

    .. versionadded:: 0.1
    """
    left = sorted(task.name for task in current_tasks() - set(before))
    if left:
        msg = f"These tasks are still running after the jobs ended: {', '.join(left)}."
        raise AssertionError(msg)


async def _drive(flow: AnyFlow, graph: GraphSpec, schedule: JobSchedule) -> JobState:
    async with flow.open_job(graph.entry, graph.entry_params(schedule.tag)) as job, trio.open_nursery() as nursery:
        nursery.start_soon(_apply_schedule, job, schedule)
        await job.wait()
        nursery.cancel_scope.cancel()
    return job.state


async def _apply_schedule(job: Job, schedule: JobSchedule) -> None:
    start = trio.current_time()
    events: list[tuple[float, str, float]] = [(at, "pause", d) for at, d in schedule.pauses]
    if schedule.cancel_at is not None:
        events.append((schedule.cancel_at, "cancel", 0.0))
    events.sort()
    driver_paused_until = -math.inf
    resume_at: float | None = None
    while True:
        now = trio.current_time() - start
        if job.status is Status.PAUSED and now >= driver_paused_until:
            # Paused by a handler (or our pause is over): resume it soon.
            if resume_at is None:
                resume_at = now + schedule.resume_after
            if now >= resume_at:
                resume_at = None
                with contextlib.suppress(JobStateError):  # it may have ended just now
                    job.resume()
        while events and events[0][0] <= now:
            _, what, duration = events.pop(0)
            if job.status.is_final:
                continue
            if what == "cancel":
                job.cancel("cancelled by the schedule")
            elif job.status is Status.RUNNING:
                with contextlib.suppress(JobStateError):  # it may have ended just now
                    job.pause("paused by the schedule")
                    driver_paused_until = now + duration
                    resume_at = driver_paused_until
        await trio.sleep(0.05)


async def run_graph_jobs(
    graph: GraphSpec,
    schedules: Sequence[JobSchedule],
    *,
    flow: AnyFlow | None = None,
) -> list[JobState]:
    """Run one job per schedule, all at once, on one flow built from *graph*; return their states.

    Each job is started with ``flow.open_job`` and driven by its schedule:
    paused and resumed at its times, cancelled at its ``cancel_at``; a job
    paused by one of its handlers is resumed after ``resume_after`` seconds.
    Use it under ``MockClock`` (the driver polls the job every 0.05 s of
    Trio's clock). Checks :func:`check_no_tasks_left` when the jobs end.

    Raises:
        hypothesis.errors.InvalidArgument: two schedules share a tag.
        AssertionError: a task of the jobs is still running after them.

    .. versionadded:: 0.1
    """
    tags = [s.tag for s in schedules]
    if len(set(tags)) != len(tags):
        msg = f"run_graph_jobs(): every schedule needs its own tag; got {tags}."
        raise InvalidArgument(msg)
    flow = graph.build() if flow is None else flow
    states: dict[str, JobState] = {}
    before = current_tasks()

    async def one(schedule: JobSchedule) -> None:
        states[schedule.tag] = await _drive(flow, graph, schedule)

    async with trio.open_nursery() as nursery:
        for schedule in schedules:
            nursery.start_soon(one, schedule)
    check_no_tasks_left(before)
    return [states[tag] for tag in tags]


# -- checkers -----------------------------------------------------------------------


def _fail(state: JobState, problem: str) -> AssertionError:
    return AssertionError(f"Job {state.job_id} ({state.status}): {problem}")


def _receipts(state: JobState) -> list[dict[str, object]]:
    """The first call of every message a generated routine handled, in the order handled."""
    return [e for e in state.shared_log if "recv" in e and e.get("attempt") == 0]


def _emissions(state: JobState) -> list[tuple[int, str, str, dict[str, object]]]:
    """Every emission of a generated event, with its index in the history."""
    return [
        (i, h.routine_id, h.event_name, h.data)
        for i, h in enumerate(state.history)
        if h.event_name in _EVENTS and "token" in h.data
    ]


def _generated(graph: object, api: str) -> None:
    """Refuse a graph that is not a generated :class:`GraphSpec`, saying what to use instead."""
    if isinstance(graph, GraphSpec):
        return
    what = f"Flow {graph.name!r}, a routine graph of your own" if isinstance(graph, Flow) else f"{graph!r}"
    msg = (
        f"{api}(graph, ...): graph is {what}. {api} checks a generated graph (rtt.routine_graphs()) through "
        "the book-keeping its routines write; for your own graph run it with rtt.run_with_schedule or "
        "rtt.run_many_with_schedule (tasks and hangs are checked there), and use rtt.check_structure(result), "
        "rtt.check_no_leaks(results, markers) and your own invariants. See docs/fuzzing.md, "
        "'Fuzzing your own routine graphs'."
    )
    raise TypeError(msg)


def check_fifo(graph: GraphSpec, state: JobState) -> None:
    """Check per-connection FIFO order and that the history is consistent with causality.

    For each connection, the messages its slot handled are the first ones
    emitted on it, in emission order: the order the emitting handler called
    ``emit`` (or ``emit_deferred_event``) in, as the handler itself numbers
    its messages, not the engine's record; the history must agree. Each
    emission comes after the emission of the message whose handler made it.

    Raises:
        AssertionError: names the connection and the tokens out of order.

    .. versionadded:: 0.1
    """
    _generated(graph, "check_fifo")
    emitted: dict[tuple[str, str], list[str]] = {}
    position: dict[str, int] = {}
    for i, src, event, data in _emissions(state):
        token = str(data["token"])
        emitted.setdefault((src, event), []).append(token)
        position[token] = i
        cause = data.get("cause")
        if cause is not None and cause != ENTRY_TOKEN and cause not in position:
            raise _fail(state, f"{src!r} emitted {token!r} ({event!r}) because of {cause!r}, which the history has later or never.")
    received: dict[tuple[str, str, str, str], list[str]] = {}
    for receipt in _receipts(state):
        token = str(receipt["recv"])
        origin = _token_source(token)
        if origin is None:
            continue
        received.setdefault((*origin, str(receipt["at"]), str(receipt["slot"])), []).append(token)
    for src, event, dst, slot in graph.connections:
        got = received.get((src, event, dst, slot), [])
        recorded = emitted.get((src, event), [])
        # The order the emitting handler called emit in, from the handler
        # itself (its per-routine counter in each token), not from the engine's
        # record: an engine that reorders both its record and its delivery
        # (e.g. deferred events on resume) is still caught.
        sent = sorted(recorded, key=_token_number)
        if got != sent[: len(got)]:
            raise _fail(
                state,
                f"connection {src}.{event} -> {dst}.{slot} handled {got}, but {src!r} emitted {sent} in that "
                "order: messages of one connection must be handled in emission order.",
            )
        if recorded != sent:
            raise _fail(
                state,
                f"the history records {src!r} emitting {recorded} on {event!r}, but its handler emitted {sent} in "
                "that order: the engine reordered its emissions.",
            )


def check_delivery(graph: GraphSpec, state: JobState) -> None:
    """Check that every emission reached each connected slot exactly once, or is listed undelivered.

    A completed job delivered everything. A job that ended otherwise
    delivered each message at most once, and lists each one it did not in
    ``state.undelivered`` (also events deferred and never emitted).

    Raises:
        AssertionError: names the message (token, source event, target slot)
            delivered twice, never, or both delivered and listed.

    .. versionadded:: 0.1
    """
    _generated(graph, "check_delivery")
    targets: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for src, event, dst, slot in graph.connections:
        targets.setdefault((src, event), []).append((dst, slot))
    entry_slot = graph.routines[0].slots[0]
    expected: dict[tuple[str, str, str], str] = {(graph.entry, entry_slot, ENTRY_TOKEN): "the job's start"}
    emitted_tokens: set[str] = set()
    for _, src, event, data in _emissions(state):
        token = str(data["token"])
        emitted_tokens.add(token)
        for dst, slot in targets.get((src, event), ()):
            expected[(dst, slot, token)] = f"{src}.{event}"
    for entry in state.shared_log:
        token = str(entry.get("deferred", ""))
        origin = _token_source(token)
        if origin is not None and token not in emitted_tokens:
            for dst, slot in targets.get(origin, ()):
                expected[(dst, slot, token)] = f"{origin[0]}.{origin[1]} (deferred, never emitted)"
    delivered: dict[tuple[str, str, str], int] = {}
    for receipt in _receipts(state):
        key = (str(receipt["at"]), str(receipt["slot"]), str(receipt["recv"]))
        if key not in expected:
            raise _fail(state, f"{key[0]}.{key[1]} handled {key[2]!r}, which was never sent to it.")
        delivered[key] = delivered.get(key, 0) + 1
    listed: dict[tuple[str, str, str], int] = {}
    for d in state.undelivered:
        key = (d.target, d.slot, str(d.data.get("token")))
        if key not in expected:
            raise _fail(state, f"undelivered lists {key[2]!r} for {key[0]}.{key[1]}, which was never sent to it.")
        listed[key] = listed.get(key, 0) + 1
    for key, source in expected.items():
        dst, slot, token = key
        got, missing = delivered.get(key, 0), listed.get(key, 0)
        where = f"{token!r} from {source} to {dst}.{slot}"
        if got > 1:
            raise _fail(state, f"{where} was delivered {got} times; each message is delivered once.")
        if state.status is Status.COMPLETED and got != 1:
            raise _fail(state, f"{where} was never delivered, yet the job completed.")
        if got + missing != 1:
            what = "both delivered and listed as undelivered" if got else "neither delivered nor listed as undelivered"
            raise _fail(state, f"{where} was {what}.")


def check_outcome(graph: GraphSpec, state: JobState, schedule: JobSchedule | None = None) -> None:
    """Check that the job's status and error agree with what happened in it.

    No handler started while the job was paused; a job that completed has no
    error and nothing undelivered; a job stopped by a failure failed with
    that failure; a job with no failure to stop it, no step limit, timeout
    or cancel completed.

    Raises:
        AssertionError: says which fact disagrees with the status.

    .. versionadded:: 0.1
    """
    _generated(graph, "check_outcome")
    for receipt in _receipts(state):  # a retry of a message being handled may run while paused
        if receipt.get("status") == "paused":
            raise _fail(state, f"{receipt['at']}.{receipt['slot']} started handling {receipt['recv']!r} while the job was paused.")
    stops = [h for h in state.history if h.event_name == "error" and h.data.get("action") == "stop"]
    error = state.error
    if state.status is Status.COMPLETED:
        if error is not None or state.undelivered:
            raise _fail(state, f"it completed with error {error} and {len(state.undelivered)} undelivered messages.")
        if stops:
            raise _fail(state, f"it completed, yet {stops[0].routine_id!r} stopped it ({stops[0].data}).")
    elif state.status is Status.FAILED:
        if error is None:
            raise _fail(state, "it failed without an error.")
        if error.type.endswith("StepLimitError"):
            handled = len(_receipts(state))
            if handled != graph.max_steps:
                raise _fail(state, f"it hit the step limit ({graph.max_steps}) after handling {handled} messages.")
        elif not stops:
            raise _fail(state, f"it failed with {error}, but no routine stopped it and no step limit was hit.")
        elif not error.type.endswith("InjectedError") or error.path != (stops[0].routine_id,):
            raise _fail(state, f"{stops[0].routine_id!r} stopped it first, but its error is {error}.")
    elif state.status is Status.TIMED_OUT:
        if graph.timeout is None:
            raise _fail(state, "it timed out without a timeout.")
    elif state.status is Status.CANCELLED:
        if schedule is None or schedule.cancel_at is None:
            raise _fail(state, "it was cancelled, but nothing cancelled it.")
    else:
        raise _fail(state, "it ended without a final status.")


def check_jobs_isolated(graph: GraphSpec, states: Mapping[str, JobState]) -> None:
    """Check that concurrent jobs (by tag) saw only their own messages and routine instances.

    Every message a job handled or emitted carries its own tag; each
    routine's counter and list made in its ``__init__`` (kept on ``self``)
    counted and kept that job's messages only; each routine's emission tokens
    are numbered from 0 without gaps. What a routine was given (its spec) is
    shared by design and not checked.

    Raises:
        AssertionError: names the job, routine and the foreign message or count.

    .. versionadded:: 0.1
    """
    _generated(graph, "check_jobs_isolated")
    for tag, state in states.items():
        for receipt in _receipts(state):
            if receipt["job"] != tag:
                raise _fail(state, f"job {tag!r}: {receipt['at']}.{receipt['slot']} handled {receipt['recv']!r} of job {receipt['job']!r}.")
        numbers: dict[str, list[int]] = {}
        for _, src, event, data in _emissions(state):
            if data.get("job") != tag:
                raise _fail(state, f"job {tag!r}: {src!r} emitted {event!r} for job {data.get('job')!r}.")
            numbers.setdefault(src, []).append(int(str(data["token"]).rpartition("#")[2]))
        for entry in state.shared_log:
            if "deferred" in entry:
                token = str(entry["deferred"])
                numbers.setdefault(token.partition(".")[0], []).append(int(token.rpartition("#")[2]))
        for src, seen in numbers.items():
            if sorted(set(seen)) != list(range(len(set(seen)))):
                raise _fail(state, f"job {tag!r}: {src!r} numbered its emissions {sorted(seen)}: its instance was shared with another job.")
        handled: dict[str, int] = {}
        for receipt in _receipts(state):
            handled[str(receipt["at"])] = handled.get(str(receipt["at"]), 0) + 1
        calls = collections.Counter(str(e["at"]) for e in state.shared_log if "recv" in e)  # retries included
        for spec in graph.routines:
            rid = spec.routine_id
            own = state.routine_states.get(rid) or {}
            counted, kept, kept_from = own.get("handled", 0), own.get("received", 0), own.get("received_from", [])
            if counted != handled.get(rid, 0):
                raise _fail(
                    state,
                    f"job {tag!r}: {rid!r} counted {counted} messages on self, but handled {handled.get(rid, 0)}: its instance was shared with another job.",
                )
            if kept != calls[rid] or not isinstance(kept_from, list) or any(other != tag for other in kept_from):
                raise _fail(
                    state,
                    f"job {tag!r}: {rid!r} kept {kept} calls of jobs {kept_from} in the list its __init__ made, but was called {calls[rid]} times in this job: the list was shared with another job.",
                )


def check_job(graph: GraphSpec, state: JobState, schedule: JobSchedule | None = None) -> None:
    """Run every per-job check: :func:`check_outcome`, :func:`check_fifo`, :func:`check_delivery`.

    .. versionadded:: 0.1
    """
    _generated(graph, "check_job")
    check_outcome(graph, state, schedule)
    check_fifo(graph, state)
    check_delivery(graph, state)


def describe_jobs(graph: GraphSpec, schedules: Iterable[JobSchedule]) -> str:
    """The graph and schedules, several lines, for a counterexample (``hypothesis.note``).

    .. versionadded:: 0.1
    """
    return "\n".join([graph.describe(), *(s.describe() for s in schedules)])
