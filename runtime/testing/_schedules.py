"""Schedules: interleavings explored by drawn delays at message hand-offs.

A hand-off is the moment a message reaches user code: a node invocation (its
caller hands it arguments) or a routine slot handler (an event's data reaches
the slot). A :class:`Schedule` gives the *k*-th hand-off of a block a delay;
under :class:`trio.testing.MockClock` the delays cost no real time but reorder
what runs first. Hypothesis draws them (:func:`schedules`), so a failing
interleaving shrinks to the fewest, shortest delays and replays exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, TypeVar, final

import attrs
import trio
import trio.testing
from hypothesis import Verbosity, currently_in_test_context, note, settings
from hypothesis import strategies as st
from hypothesis.control import _current_build_context
from hypothesis.errors import InvalidArgument

from ._checkers import deterministic_scheduling
from ._faults import FaultPlan, Injection, _check_strategy, _is_delay, check_sizes, inject
from ._watchdog import DEFAULT_WATCHDOG, RunTasks, check_watchdog, run_guarded

if TYPE_CHECKING:
    from collections.abc import Sequence

    from hypothesis.strategies import SearchStrategy

    from .._core import RunResult
    from ._faults import AnyFlow, Fault, FaultKey

T = TypeVar("T")


def _check_delays(delays: Sequence[object]) -> tuple[float, ...]:
    checked: list[float] = []
    for i, value in enumerate(delays):
        if not _is_delay(value):
            msg = f"Schedule delay #{i} is {value!r}; a delay is a finite number of seconds, 0 or more."
            raise InvalidArgument(msg)
        checked.append(float(value))
    return tuple(checked)


@final
@attrs.frozen
class Schedule:
    """Delays at hand-offs: the *k*-th invocation of a block waits ``delays[k]`` seconds.

    Hand-offs are counted across every run of an :func:`~runtime.testing.inject`
    block in the order they reach the hook, from 0; those past the end of
    :attr:`delays` do not wait. Under ``MockClock`` and Trio's deterministic
    scheduling (on whenever Hypothesis is imported), a schedule fixes the
    interleaving, so a run replays exactly.

    Attributes:
        delays: seconds, one per hand-off, 0 or more.

    Raises:
        hypothesis.errors.InvalidArgument: a negative, NaN or infinite delay.

    .. versionadded:: 0.1
    """

    delays: tuple[float, ...] = attrs.field(default=(), converter=_check_delays)

    def delay_at(self, index: int) -> float:
        """The delay of hand-off *index* (0 past the end)."""
        delays = self.delays
        return delays[index] if index < len(delays) else 0.0


_DEFAULT_DELAYS: SearchStrategy[float] = st.integers(min_value=0, max_value=10).map(lambda n: n / 10)


def schedules(
    *,
    delays: SearchStrategy[float] = _DEFAULT_DELAYS,
    min_size: int = 0,
    max_size: int = 20,
) -> SearchStrategy[Schedule]:
    """A strategy for :class:`Schedule` values.

    Draws *min_size* to *max_size* delays; the default delays are tenths of a
    second from 0 to 1. Schedules shrink towards fewer hand-offs with a delay,
    and shorter delays.

    Args:
        delays: seconds for one hand-off (finite, 0 or more).
        min_size: the fewest delays.
        max_size: the most delays.

    Raises:
        hypothesis.errors.InvalidArgument: *delays* is not a strategy,
            ``min_size > max_size``, a negative size, or (when drawn) a delay
            that is negative, NaN or infinite.

    .. versionadded:: 0.1
    """
    check_sizes(min_size, max_size, "schedules()")
    _check_strategy(delays, "delays")
    return st.builds(Schedule, st.lists(delays, min_size=min_size, max_size=max_size).map(tuple))


def run_with_schedule(
    flow: AnyFlow,
    *args: object,
    schedule: Schedule | None = None,
    faults: FaultPlan | Mapping[FaultKey, Fault] | None = None,
    nodes: Iterable[str] | None = None,
    injection: Injection | None = None,
    seed: int | None = 0,
    check_tasks: bool = True,
    watchdog: float | None = DEFAULT_WATCHDOG,
    **kwargs: object,
) -> RunResult[object]:
    """Run *flow* once under ``MockClock``, with *schedule* and *faults*, and return its result.

    Synchronous: runs Trio on the calling thread with
    ``MockClock(autojump_threshold=0)``, so sleeps and timeouts take no real
    time, and returns the finished run's :class:`~runtime.RunResult` (a
    node's error is in it, not raised). Targets in *faults* are checked
    against *flow* (or *nodes*) as :func:`inject` does.

    Besides running, it checks what only the runner can see:

    - with *check_tasks* (the default), no task the run started is still
      running once it has ended, wherever it was started: a system task
      (``trio.lowlevel.spawn_system_task``), or a nursery that outlives the
      node (kept in a global, or taken from another run);
    - with *watchdog* (the default: a few seconds of real time), the run
      ends: a run still going when the time is up (a node waits for
      something that never comes, or swallows ``trio.Cancelled`` in a loop)
      is cancelled, abandoned if it ignores that, and fails with the
      requests still running, by path, instead of hanging the test.

    Inside a Hypothesis test, the hand-offs that waited or faulted
    (:meth:`Injection.describe`) are added to the failing example's report
    with :func:`hypothesis.note`. To read the :class:`Injection` afterwards
    (for :func:`~runtime.testing.check_cancellation`), build it yourself
    with :func:`inject` and pass it as *injection*::

        injection = rtt.inject(plan, schedule=schedule, flow=flow)
        result = rtt.run_with_schedule(flow, order, injection=injection)
        rtt.check_cancellation(result, injection)

    Args:
        flow: the workflow.
        args: positional arguments for its entry point (or a routine graph's entry).
        schedule: delays at hand-offs.
        faults: a fault plan.
        nodes: every node name the workflow has, when some are not reachable
            from its entry point's code (see :func:`inject`).
        injection: an :func:`inject` block to run in, instead of *schedule*,
            *faults* and *nodes*.
        seed: seeds Trio's scheduler (:func:`~runtime.testing.deterministic_scheduling`)
            so that the run replays exactly; ``None`` leaves the scheduler alone.
        check_tasks: fail if a task of the run outlives it.
        watchdog: real seconds the run may take; ``None`` turns the watchdog off.
        kwargs: keyword arguments for the entry point.

    Raises:
        AssertionError: a task of the run outlived it, or the watchdog fired;
            the message names the tasks (and who started them) or the requests.
        FaultInjectionError: *faults* names a node or routine *flow* does not have.
        InvokeInsideTrioError: called inside a running Trio program; use
            ``with inject(...): await flow.arun(...)`` there.
        ValueError: *injection* given with *schedule*, *faults* or *nodes*;
            a *watchdog* that is not a positive number.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
        Watches tasks and runs a watchdog by default; *nodes*, *injection*,
        *check_tasks* and *watchdog*.
    """
    results = run_many_with_schedule(
        flow,
        [args],
        [kwargs],
        schedule=schedule,
        faults=faults,
        nodes=nodes,
        injection=injection,
        seed=seed,
        check_tasks=check_tasks,
        watchdog=watchdog,
    )
    return results[0]


def run_many_with_schedule(
    flow: AnyFlow,
    args: Sequence[Sequence[object]],
    kwargs: Sequence[Mapping[str, object]] | None = None,
    *,
    schedule: Schedule | None = None,
    faults: FaultPlan | Mapping[FaultKey, Fault] | None = None,
    nodes: Iterable[str] | None = None,
    injection: Injection | None = None,
    seed: int | None = 0,
    check_tasks: bool = True,
    watchdog: float | None = DEFAULT_WATCHDOG,
) -> list[RunResult[object]]:
    """Start one run of *flow* per argument set, all at once, under ``MockClock``.

    The runs are concurrent in one Trio run, in one :func:`inject` block, so
    *schedule* interleaves their hand-offs: the way to fuzz isolation between
    runs (or jobs) of one flow. Tasks are watched and the watchdog runs as
    for :func:`run_with_schedule` (the watchdog's time is for all the runs).

    Args:
        flow: the workflow.
        args: one sequence of positional arguments per run.
        kwargs: one mapping of keyword arguments per run (default: none).
        schedule: delays at hand-offs, counted across all the runs.
        faults: a fault plan, applied to every run (call indexes count per run).
        nodes: as for :func:`run_with_schedule`.
        injection: as for :func:`run_with_schedule`.
        seed: as for :func:`run_with_schedule`.
        check_tasks: as for :func:`run_with_schedule`.
        watchdog: as for :func:`run_with_schedule`.

    Returns:
        One :class:`~runtime.RunResult` per argument set, in the same order.

    Raises:
        AssertionError: as for :func:`run_with_schedule`.
        ValueError: *kwargs* is not as long as *args*, or as for :func:`run_with_schedule`.
        FaultInjectionError: *faults* names a node or routine *flow* does not have.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
        Watches tasks and runs a watchdog by default; *nodes*, *injection*,
        *check_tasks* and *watchdog*.
    """
    api = "run_with_schedule()" if len(args) == 1 else "run_many_with_schedule()"
    arg_sets = [tuple(a) for a in args]
    kwarg_sets = [dict(k) for k in kwargs] if kwargs is not None else [{} for _ in arg_sets]
    if len(kwarg_sets) != len(arg_sets):
        msg = f"run_many_with_schedule(): {len(arg_sets)} argument sets but {len(kwarg_sets)} keyword sets; give one of each per run."
        raise ValueError(msg)
    budget = check_watchdog(watchdog, api)
    from .._util import check_not_in_trio

    check_not_in_trio(
        "run_with_schedule(flow, ...)",
        instead="`with rtt.inject(faults, schedule=schedule, flow=flow): await flow.arun(...)` in Trio code",
    )
    if injection is None:
        injection = inject(faults, schedule=schedule, flow=flow, nodes=nodes)
    elif schedule is not None or faults is not None or nodes is not None:
        msg = (
            f"{api}: injection= already holds the faults, schedule and node list; "
            "give those to inject() instead of passing them here too."
        )
        raise ValueError(msg)
    block = injection
    tasks = RunTasks() if check_tasks else None

    async def main() -> list[RunResult[object]]:
        results: list[RunResult[object] | None] = [None] * len(arg_sets)
        errors: list[Exception] = []

        leaks: list[str] = []

        async def one(i: int) -> None:
            if tasks is not None:
                tasks.add_root(i)
            try:
                results[i] = result = await flow._arun(arg_sets[i], kwarg_sets[i])
            except Exception as exc:
                errors.append(exc)
                return
            alive = [] if tasks is None else tasks.alive(i)
            if alive:  # at the run's end, while the other runs go on
                state = result.state
                leaks.append(
                    f"run {state.job_id} of flow {state.flow_name!r} ended {state.status.value}, yet tasks it "
                    f"started are still running: {', '.join(alive)}. Every task a node (or handler) starts must "
                    "end before it returns: start it in a nursery the node opens (async with trio.open_nursery()), "
                    "not with spawn_system_task or in a nursery kept from elsewhere."
                )

        with block:
            async with trio.open_nursery() as nursery:
                for i in range(len(arg_sets)):
                    nursery.start_soon(one, i, name=f"{api} run #{i}")
        if errors:
            if len(errors) == 1:
                raise errors[0]  # a single run raises its own error, not a group
            msg = f"{api}: {len(errors)} runs raised"
            raise ExceptionGroup(msg, errors)
        if leaks:
            raise AssertionError(leaks[0])
        done = [r for r in results if r is not None]
        return done

    what = f"{api} of flow {flow.name!r}"
    try:
        if seed is None:
            return run_guarded(
                main,
                clock=_clock(),
                watchdog=budget,
                running=block.running,
                what=what,
                instruments=_instruments(tasks),
            )
        with deterministic_scheduling(seed):
            return run_guarded(
                main,
                clock=_clock(),
                watchdog=budget,
                running=block.running,
                what=what,
                instruments=_instruments(tasks),
            )
    finally:
        note_injection(block, what)


def _clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def _instruments(tasks: RunTasks | None) -> tuple[trio.abc.Instrument, ...]:
    return () if tasks is None else (tasks,)


def note_injection(injection: Injection, what: str) -> None:
    """Add what *injection* did to the report of a failing Hypothesis example (a no-op elsewhere)."""
    if not currently_in_test_context() or not any(h.delay or h.fault is not None for h in injection.trace):
        return
    context = _current_build_context.value
    default = settings.default
    verbose = default is not None and default.verbosity >= Verbosity.verbose
    if context is None or not (context.is_final or verbose):
        return  # only the failing example's report shows notes: skip describing the others
    note(f"{what}: the hand-offs that waited or faulted:\n{injection.describe()}")


# -- isolation between concurrent runs -------------------------------------------------


def _where(path: str, key: object) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{key!r}]"


def _mentions(value: object, path: str, found: list[tuple[str, str]], depth: int = 0) -> None:
    """Every string in *value*, with its path: ``($.history[2].data.item, "job-1:a")``."""
    if depth > 50:
        return
    if isinstance(value, str):
        found.append((path, value))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                found.append((f"{path} (a key)", key))
            _mentions(item, _where(path, key), found, depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _mentions(item, f"{path}[{index}]", found, depth + 1)
    elif isinstance(value, set | frozenset):
        for item in sorted(value, key=repr):
            _mentions(item, f"{path}{{...}}", found, depth + 1)
    elif attrs.has(type(value)):
        for field in attrs.fields(type(value)):  # type: ignore[arg-type]  # attrs.has() said it is one
            if not field.name.startswith("_"):
                _mentions(getattr(value, field.name), f"{path}.{field.name}", found, depth + 1)


def check_no_leaks(results: Sequence[RunResult[T]], markers: Sequence[str]) -> None:
    """Check that concurrent runs (or jobs) never saw each other's data, by marker.

    Give each run a marker of its own in its input (``"job-0"``, ``"job-1"``,
    ...), e.g. inside every item it processes. After the runs, no run's
    result or state (context, history, routine states, shared data and log,
    request results and errors, undelivered messages) may mention another
    run's marker: if one does, data crossed from one run into another,
    through a module global, a shared object or a class attribute.

    Args:
        results: the finished runs, e.g. from :func:`run_many_with_schedule`.
        markers: one marker per run, in the same order.

    Raises:
        AssertionError: a run mentions another's marker; the message gives
            both runs, the marker and where it was found (``$.history[3].data.items[0]``).
        ValueError: not one marker per run, an empty or repeated marker, or a
            marker that contains another (it could not be told apart).

    .. versionadded:: 0.1
    """
    if len(results) != len(markers):
        msg = f"check_no_leaks(): {len(results)} runs but {len(markers)} markers; give one marker per run."
        raise ValueError(msg)
    if any(not isinstance(m, str) or not m for m in markers) or len(set(markers)) != len(markers):
        msg = f"check_no_leaks(): markers must be distinct non-empty strings, got {list(markers)!r}."
        raise ValueError(msg)
    for a in markers:
        for b in markers:
            if a != b and a in b:
                msg = f"check_no_leaks(): marker {a!r} is part of marker {b!r}, so the two cannot be told apart; use e.g. 'job-0:', 'job-1:'."
                raise ValueError(msg)
    owner = dict(zip(markers, results, strict=True))
    for result, marker in zip(results, markers, strict=True):
        found: list[tuple[str, str]] = []
        _mentions(result.result, "$.result", found)
        _mentions(result.state, "$", found)
        for path, text in found:
            for other in markers:
                if other != marker and other in text:
                    state = result.state
                    msg = (
                        f"run {state.run_id} of flow {state.flow_name!r} (marker {marker!r}) holds data of run "
                        f"{owner[other].state.run_id} (marker {other!r}): {path} is {text!r}. Concurrent runs "
                        "must never see each other's data; look for a module global, a class attribute or an "
                        "object shared between runs."
                    )
                    raise AssertionError(msg)
