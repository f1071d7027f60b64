"""Checkers for the invariants of node runs, over a finished run's state and events.

Each checker raises :class:`AssertionError` with a message in the user's
terms (node names, request paths such as ``plan > write (r3)``, context key
paths such as ``$.context.items``), so a Hypothesis counterexample reads as
a bug report.
"""

from __future__ import annotations

import collections
import contextlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar, final

import trio

from .._context import current_frame
from .._publisher import EventKind
from .._state import ErrorSummary, Status

if TYPE_CHECKING:
    import random

    from .._core import RunResult
    from .._publisher import Event
    from .._state import JobState

T = TypeVar("T")

_TERMINAL = {
    EventKind.REQUEST_SUCCEEDED: Status.COMPLETED,
    EventKind.REQUEST_FAILED: Status.FAILED,
    EventKind.REQUEST_CANCELLED: Status.CANCELLED,
}


def _label(state: JobState, request_id: str | None) -> str:
    """``plan > write (r3)``: a request by its node path, with its id."""
    if request_id is None:
        return "the run"
    try:
        path = " > ".join(state.request_path(request_id))
    except KeyError:
        path = "?"
    return f"{path} ({request_id})"


def _run_name(state: JobState) -> str:
    return f"run {state.run_id} of flow {state.flow_name!r}"


def _fail(state: JobState, problem: str) -> AssertionError:
    return AssertionError(f"{_run_name(state)}: {problem}")


# -- structure -------------------------------------------------------------------


@final
class TaskWatch(trio.abc.Instrument):
    """Every task started while it watches, who started it, and whether it ended.

    From :func:`watch_tasks`. :func:`check_structure` uses it to find the
    tasks of one run (the run's own task and every task started from it, or
    from those, wherever they were started) and to say which are still alive.

    .. versionadded:: 0.1
    """

    def __init__(self) -> None:
        self._spawner: dict[trio.lowlevel.Task, trio.lowlevel.Task | None] = {}
        self._alive: set[trio.lowlevel.Task] = set()
        # The tasks a node run's block started (its top-level requests and
        # publisher), by run id: a node run has no task of its own.
        self._roots: dict[str, list[trio.lowlevel.Task]] = collections.defaultdict(list)

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        try:
            spawner: trio.lowlevel.Task | None = trio.lowlevel.current_task()
        except RuntimeError:  # pragma: no cover - spawned outside any task
            spawner = None
        self._spawner[task] = spawner
        self._alive.add(task)
        # Called in the spawning task: its frame says whether a run's block spawns.
        frame = current_frame.get(None)
        if frame is not None and frame.root is not None:
            self._roots[frame.run.state.job_id].append(task)

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self._alive.discard(task)

    def run_tasks(self, run_id: str) -> list[trio.lowlevel.Task]:
        """The tasks of run *run_id* this watch saw start, its first ones first.

        A node run's first tasks are those its block (in the caller's task)
        started: its top-level requests and its publisher.

        Raises:
            AssertionError: the watch saw no task of the run: it was opened
                after the run started, or closed before.
        """
        name = f"run {run_id}"
        roots = [task for task in self._spawner if task.name == name] + self._roots.get(run_id, [])
        if not roots:
            msg = (
                f"watch_tasks() saw no task of run {run_id}: open it before the run starts "
                "and keep it open until the run ends."
            )
            raise AssertionError(msg)
        found = list(roots)
        members = set(roots)
        for task, spawner in self._spawner.items():  # in spawn order: spawners come first
            if spawner in members and task not in members:
                members.add(task)
                found.append(task)
        return found

    def alive(self, run_id: str) -> list[str]:
        """The names of run *run_id*'s tasks that have not ended."""
        return [task.name for task in self.run_tasks(run_id) if task in self._alive]


@contextlib.contextmanager
def watch_tasks() -> Iterator[TaskWatch]:
    """Watch every task started in the block (a Trio instrument), for :func:`check_structure`.

    Use inside Trio code, around the runs to check::

        with rt.testing.watch_tasks() as tasks:
            result = await flow.arun(...)
        rt.testing.check_structure(result, tasks=tasks)

    .. versionadded:: 0.1
    """
    watch = TaskWatch()
    trio.lowlevel.add_instrument(watch)
    try:
        yield watch
    finally:
        trio.lowlevel.remove_instrument(watch)


def check_structure(
    result: RunResult[T],
    *,
    tasks: TaskWatch | None = None,
    started: Iterable[str] | None = None,
    finalized: Iterable[str] | None = None,
) -> None:
    """Check that nothing of a finished run is still alive.

    - the run ended: a final status and an end time;
    - no request of it is still open;
    - with *tasks*: none of the run's tasks (actors, and tasks its nodes
      started) is still running;
    - with *started* and *finalized*: every call that started ran its
      ``finally`` block (compare the two lists your nodes record; they are
      compared as multisets);
    - if the run timed out, :func:`check_timeout`.

    Raises:
        AssertionError: a violation, naming the requests, tasks or calls.

    .. versionadded:: 0.1
    """
    state = result.state
    if not state.status.is_final:
        raise _fail(state, f"the run has ended, but its status is {state.status.value!r}, not a final status.")
    if state.finished_at is None:
        raise _fail(state, f"the run ended {state.status.value} but has no finished_at time.")
    open_requests = [r for r in state.requests.values() if not r.status.is_final]
    if open_requests:
        names = ", ".join(f"{_label(state, r.id)} is {r.status.value}" for r in open_requests)
        raise _fail(state, f"the run ended {state.status.value}, yet requests are still open: {names}.")
    if tasks is not None:
        alive = tasks.alive(state.run_id)
        if alive:
            raise _fail(state, f"the run ended {state.status.value}, yet these of its tasks are alive: {', '.join(alive)}.")
    if started is not None or finalized is not None:
        missing = collections.Counter(started or ()) - collections.Counter(finalized or ())
        extra = collections.Counter(finalized or ()) - collections.Counter(started or ())
        if missing:
            calls = ", ".join(sorted(missing))
            raise _fail(state, f"these calls started but their finally block never ran: {calls}.")
        if extra:
            calls = ", ".join(sorted(extra))
            raise _fail(state, f"these calls ran their finally block more often than they started: {calls}.")
    if state.status is Status.TIMED_OUT and _timeout_of(result) is not None:
        check_timeout(result)


_TIMED_OUT_AFTER = re.compile(r"timed out after (\S+) s;")


def _timeout_of(result: RunResult[T]) -> float | None:
    """The timeout a timed-out run passed, as its error states it, or ``None``."""
    error = result.error if result.error is not None else result.state.error
    text = error.message if isinstance(error, ErrorSummary) else str(error)
    found = _TIMED_OUT_AFTER.search(text)
    return None if found is None else float(found.group(1))


def check_timeout(result: RunResult[T], *, timeout: float | None = None) -> None:
    """Check that a run that timed out really stopped at its deadline.

    When a Flow's ``timeout`` passes, every node of the run is cancelled:
    each request still running at the deadline must end ``cancelled``. One
    that ended ``completed`` or ``failed`` after the deadline caught
    ``trio.Cancelled`` and went on (a bare ``except BaseException``, a
    ``finally`` that awaits unshielded, a retry loop). Under ``MockClock``
    such a request typically ends at the deadline itself: after the
    cancellation, every checkpoint it reaches raises ``Cancelled`` again, so
    it can only return without one. A node whose own work ends exactly at the
    deadline is judged the same way: it raced its timeout, a bug waiting for
    a slower day.
    :func:`check_structure` applies this to every run that timed out; a run
    that did not time out passes.

    Args:
        result: a finished run.
        timeout: the Flow's ``timeout``; read from the run's
            :class:`~runtime.RunTimeoutError` when not given.

    Raises:
        AssertionError: a request went on past the deadline; the message
            names it by path and says how it ended.

    .. versionadded:: 0.2
    """
    state = result.state
    if state.status is not Status.TIMED_OUT:
        return
    if timeout is None:
        timeout = _timeout_of(result)
        if timeout is None:
            raise _fail(state, "the run timed out, but its error does not say after how long; pass timeout=flow.timeout.")
    late = [
        r
        for r in state.requests.values()
        if r.status in (Status.COMPLETED, Status.FAILED)
        and r.created_at < timeout
        and r.finished_at is not None
        and r.finished_at >= timeout - 1e-9
    ]
    if late:
        request = late[0]
        assert request.finished_at is not None
        outcome = "with result " + repr(request.result) if request.status is Status.COMPLETED else "with an error"
        raise _fail(
            state,
            f"the run timed out after {timeout:g} s, but {_label(state, request.id)} was running then and ended "
            f"{request.status.value} ({outcome}) at {request.finished_at:g} s instead of cancelled: it caught "
            "trio.Cancelled and went on. Let trio.Cancelled propagate (catch Exception, not BaseException).",
        )


# -- request tree ------------------------------------------------------------------


def check_request_tree(result: RunResult[T], *, calls: Iterable[Sequence[str]] | None = None) -> None:
    """Check that the run's request tree records every call exactly once, each with a final status.

    - one root request (the entry point); every other request's parent was
      created before it;
    - every request ended: a final status, a finish time no earlier than its
      creation; a completed one has a result and no error, a failed one an error;
    - no request completed before a child of it ended;
    - a completed run's entry point completed with the run's result;
    - with *calls* (the node paths, entry point first, of the calls that
      actually started, e.g. ``("plan", "write")``): each started call has its
      own request, and no path has more finished requests than calls.

    Raises:
        AssertionError: a violation, naming the requests by path and id.
        TypeError: *result* is a routine-graph job's, which has no request tree.

    .. versionadded:: 0.1
    """
    state = result.state
    requests = state.requests
    if not requests:  # a node run records its entry point at once
        msg = (
            f"check_request_tree(): {_run_name(state)} is a routine-graph job, which has no request tree "
            "(its routines handle messages, they are not called). Use check_structure(result), check_no_leaks and "
            "your own invariants; see docs/fuzzing.md, 'Fuzzing your own routine graphs'."
        )
        raise TypeError(msg)
    roots = state.roots()
    if len(roots) != 1:
        found = ", ".join(_label(state, r.id) for r in roots) or "none"
        raise _fail(state, f"the request tree should have one root (the entry point), but has: {found}.")
    seen: set[str] = set()
    for request in requests.values():
        label = _label(state, request.id)
        if request.parent_id is not None and request.parent_id not in seen:
            raise _fail(state, f"{label} names parent {request.parent_id!r}, which was not created before it.")
        seen.add(request.id)
        if not request.status.is_final:
            raise _fail(state, f"{label} never ended: its status is {request.status.value!r}.")
        if request.finished_at is None or request.finished_at < request.created_at:
            raise _fail(state, f"{label} ended {request.status.value} at {request.finished_at!r}, before it was created at {request.created_at!r}.")
        if request.status is Status.COMPLETED and (request.result is None or request.error is not None):
            raise _fail(state, f"{label} completed but records result={request.result!r}, error={request.error!r}.")
        if request.status is Status.FAILED and request.error is None:
            raise _fail(state, f"{label} failed but records no error.")
    for request in requests.values():
        if request.status is not Status.COMPLETED:
            continue
        assert request.finished_at is not None
        for child in state.children_of(request.id):
            if child.finished_at is None or child.finished_at > request.finished_at:
                raise _fail(
                    state,
                    f"{_label(state, request.id)} completed at {request.finished_at:g} s, before its child "
                    f"{_label(state, child.id)} ended ({child.status.value} at {child.finished_at!r}).",
                )
    root = roots[0]
    if state.status is Status.COMPLETED and (root.status is not Status.COMPLETED or root.result != state.result):
        raise _fail(
            state,
            f"the run completed with result {state.result!r}, but its entry point {_label(state, root.id)} "
            f"is {root.status.value} with result {root.result!r}.",
        )
    if calls is not None:
        ran = collections.Counter(tuple(c) for c in calls)
        recorded = collections.Counter(state.request_path(r.id) for r in requests.values())
        finished = collections.Counter(
            state.request_path(r.id) for r in requests.values() if r.status in (Status.COMPLETED, Status.FAILED)
        )
        for path in sorted(set(ran) | set(recorded)):
            name = " > ".join(path)
            if ran[path] > recorded[path]:
                raise _fail(
                    state,
                    f"{name} was called {ran[path]} time(s), but the request tree records {recorded[path]} request(s) for it.",
                )
            if finished[path] > ran[path]:
                raise _fail(
                    state,
                    f"the request tree records {finished[path]} finished request(s) for {name}, but it ran "
                    f"{ran[path]} time(s): a call recorded twice.",
                )


# -- events ----------------------------------------------------------------------


def check_events(events: Iterable[Event], result: RunResult[T]) -> None:
    """Check that a subscriber saw every event of the run once, in causal order.

    Only the events of *result*'s run are checked (a subscriber on a Flow sees
    all its runs).

    - ``seq`` counts 0, 1, 2, ... with no gap or repeat, in the order received;
    - ``run_started`` first, one ``run_finished`` last, carrying the run's status;
    - every request of the state has exactly one ``request_created`` (after its
      parent's) and then exactly one outcome event that matches its status in
      the state; streamed items come between the two;
    - a request that succeeded or failed did so after all its children ended.

    Raises:
        AssertionError: a violation, naming the events by ``seq`` and the
            requests by path and id.

    .. versionadded:: 0.1
    """
    state = result.state
    mine = [e for e in events if e.run_id == state.run_id]
    if not mine:
        raise _fail(state, "no event of this run was received; subscribe before it starts (Flow(..., subscribers=[events.append])).")

    def show(event: Event) -> str:
        return f"event #{event.seq} ({event.kind.value} of {_label(state, event.request_id)})"

    for index, event in enumerate(mine):
        if event.seq != index:
            problem = "repeated" if event.seq < index else f"event #{index} is missing"
            raise _fail(state, f"{show(event)} arrived in position {index}: {problem}.")
    if mine[0].kind is not EventKind.RUN_STARTED:
        raise _fail(state, f"the first event is {show(mine[0])}, not run_started.")
    finished = [e for e in mine if e.kind is EventKind.RUN_FINISHED]
    if len(finished) != 1 or mine[-1].kind is not EventKind.RUN_FINISHED:
        raise _fail(state, f"run_finished must come once, last; got {len(finished)}, and the last event is {show(mine[-1])}.")
    data = mine[-1].data
    if not isinstance(data, Mapping) or data.get("status") != state.status.value:
        raise _fail(state, f"run_finished reports {data!r}, but the run's status is {state.status.value!r}.")
    created: dict[str, int] = {}
    ended: dict[str, tuple[int, Status]] = {}
    for event in mine:
        rid = event.request_id
        if event.kind is EventKind.REQUEST_CREATED:
            assert rid is not None
            if rid in created:
                raise _fail(state, f"{show(event)}: the request was already created by event #{created[rid]}.")
            if event.parent_id is not None and event.parent_id not in created:
                raise _fail(state, f"{show(event)} came before its parent {_label(state, event.parent_id)} was created.")
            created[rid] = event.seq
        elif event.kind in _TERMINAL:
            assert rid is not None
            if rid not in created:
                raise _fail(state, f"{show(event)} came before the request was created.")
            if rid in ended:
                raise _fail(state, f"{show(event)}: the request already ended with event #{ended[rid][0]}.")
            # A cancel's data names how an executor ended the work, if not plainly (killed, orphaned).
            ended[rid] = (event.seq, event.data if isinstance(event.data, Status) else _TERMINAL[event.kind])
        elif event.kind is EventKind.STREAM and (rid not in created or rid in ended):
            raise _fail(state, f"{show(event)} streamed outside its request's life (created #{created.get(rid or '')}, ended #{ended.get(rid or '', (None,))[0]}).")
    for rid, request in state.requests.items():
        if rid not in created:
            raise _fail(state, f"{_label(state, rid)} is in the request tree, but no request_created event was received.")
        if rid not in ended:
            raise _fail(state, f"{_label(state, rid)} was created (event #{created[rid]}) but no event says how it ended.")
        if ended[rid][1] is not request.status:
            raise _fail(
                state,
                f"event #{ended[rid][0]} says {_label(state, rid)} ended {ended[rid][1].value}, "
                f"but the state says {request.status.value}.",
            )
    unknown = set(created) - set(state.requests)
    if unknown:
        raise _fail(state, f"events created requests the state does not record: {', '.join(sorted(unknown))}.")
    for rid, request in state.requests.items():
        if request.status not in (Status.COMPLETED, Status.FAILED):
            continue  # a cancelled parent reports before its children finish being cancelled
        for child in state.children_of(rid):
            if ended[child.id][0] > ended[rid][0]:
                raise _fail(
                    state,
                    f"{_label(state, rid)} {request.status.value} (event #{ended[rid][0]}) before its child "
                    f"{_label(state, child.id)} ended (event #{ended[child.id][0]}).",
                )


# -- isolation ----------------------------------------------------------------------


def _containers(value: object, path: str, found: dict[int, str], keep: list[object]) -> None:
    if isinstance(value, dict | list | set | bytearray):
        if id(value) in found:
            return
        found[id(value)] = path
        keep.append(value)
        if isinstance(value, dict):
            for key, item in value.items():
                _containers(item, f"{path}.{key}" if isinstance(key, str) and key.isidentifier() else f"{path}[{key!r}]", found, keep)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                _containers(item, f"{path}[{index}]", found, keep)


def _diff(expected: object, actual: object, path: str) -> str | None:
    """The first path where *actual* differs from *expected*, described."""
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        for key in list(expected) + [k for k in actual if k not in expected]:
            sub = f"{path}.{key}" if isinstance(key, str) and re.fullmatch(r"[A-Za-z_]\w*", key) else f"{path}[{key!r}]"
            if key not in actual:
                return f"{sub} is missing (expected {expected[key]!r})"
            if key not in expected:
                return f"{sub} is {actual[key]!r}, which it should not have"
            found = _diff(expected[key], actual[key], sub)
            if found is not None:
                return found
        return None
    if expected != actual:
        return f"{path} is {actual!r}, expected {expected!r}"
    return None


def check_isolation(
    results: Iterable[RunResult[T]],
    *,
    flow_context: Mapping[str, object] | None = None,
    initial_context: Mapping[str, object] | None = None,
    expected_contexts: Mapping[str, Mapping[str, object]] | None = None,
) -> None:
    """Check that runs (concurrent or not) never shared their context.

    - every run has its own id;
    - no dict, list or set is shared between two runs' contexts, or between a
      run's context and *flow_context* (the Flow's own dict), so an in-place
      change in one could be seen by another;
    - with *initial_context*: *flow_context* still equals it (no run changed
      the Flow's context);
    - with *expected_contexts* (run id to the context that run must end
      with): each run ended with exactly its own writes.

    Raises:
        AssertionError: a violation, naming the runs and the key path, e.g.
            ``$.context.items``.

    .. versionadded:: 0.1
    """
    runs = list(results)
    ids = collections.Counter(r.state.run_id for r in runs)
    repeated = sorted(run_id for run_id, n in ids.items() if n > 1)
    if repeated:
        msg = f"several runs share the run id {', '.join(repeated)}; every run must have its own."
        raise AssertionError(msg)
    owners: dict[int, tuple[str, str]] = {}
    keep: list[object] = []  # holds every container while ids are compared
    if flow_context is not None:
        found: dict[int, str] = {}
        _containers(flow_context, "$.context", found, keep)
        for key, path in found.items():
            owners[key] = ("the Flow's context", path)
    for run in runs:
        found = {}
        _containers(run.state.context, "$.context", found, keep)
        for key, path in found.items():
            if key in owners:
                other, other_path = owners[key]
                msg = (
                    f"run {run.state.run_id} and {other} share one object: {path} in the run is {other_path} "
                    f"there, so a change in one is seen by the other."
                )
                raise AssertionError(msg)
            owners[key] = (f"run {run.state.run_id}", path)
    if flow_context is not None and initial_context is not None:
        change = _diff(dict(initial_context), dict(flow_context), "$.context")
        if change is not None:
            msg = f"the Flow's own context changed after its runs: {change}."
            raise AssertionError(msg)
    if expected_contexts is not None:
        for run in runs:
            expected = expected_contexts.get(run.state.run_id)
            if expected is None:
                continue
            change = _diff(dict(expected), run.state.context, "$.context")
            if change is not None:
                msg = f"run {run.state.run_id} ended with a context it did not write itself: {change}."
                raise AssertionError(msg)


# -- determinism ------------------------------------------------------------------


def _scrub(value: object, run_id: str) -> object:
    if isinstance(value, str):
        return value.replace(run_id, "<run>")
    if isinstance(value, Mapping):
        return {k: _scrub(v, run_id) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, run_id) for v in value]
    return value


def run_history(result: RunResult[T], events: Iterable[Event] = ()) -> list[tuple[object, ...]]:
    """A run's history with what must differ between replays taken out.

    The request tree (ids, parents, nodes, statuses, Trio-clock times, results
    and errors), the run's status, result and error, and the run's *events*
    (all but their run id), with the run id replaced by ``<run>`` and wall
    times left out. Under :class:`trio.testing.MockClock` and
    :func:`deterministic_scheduling`, two runs of one flow give equal histories.

    .. versionadded:: 0.1
    """
    state = result.state
    run_id = state.run_id
    history: list[tuple[object, ...]] = [
        ("run", state.flow_name, state.status.value, state.result, _scrub(repr(state.error), run_id)),
    ]
    history.extend(
        (
            "request",
            r.id,
            r.parent_id,
            r.node,
            r.status.value,
            r.created_at,
            r.finished_at,
            r.result,
            _scrub(repr(r.error), run_id),
        )
        for r in state.requests.values()
    )
    history.extend(
        ("event", e.seq, e.kind.value, e.offset, e.request_id, e.parent_id, e.node, _scrub(e.data, run_id))
        for e in events
        if e.run_id == run_id
    )
    return history


@contextlib.contextmanager
def deterministic_scheduling(seed: int = 0) -> Iterator[None]:
    """Make Trio's scheduler pick the same order every time in the block.

    Trio shuffles the tasks it runs with a module-level random source, which
    Hypothesis seeds for each example. This seeds it with *seed* (and turns on
    Trio's deterministic mode, as importing Hypothesis does), so that two
    ``trio.run`` calls in one example, each under a fresh ``MockClock``, run
    the same way. The source's previous state is restored afterwards.

    .. versionadded:: 0.1
    """
    core = trio._core._run
    rng: random.Random = core._r
    saved_state = rng.getstate()
    saved_flag = core._ALLOW_DETERMINISTIC_SCHEDULING
    core._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    rng.seed(seed)
    try:
        yield
    finally:
        rng.setstate(saved_state)
        core._ALLOW_DETERMINISTIC_SCHEDULING = saved_flag  # type: ignore[misc]
