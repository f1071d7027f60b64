"""Faults for a user's existing workflow, injected without editing its code.

A :class:`FaultPlan` maps node names (or routine ids) to a :class:`Fault`:
raise an exception, delay, or cancel the run. :func:`inject` applies a plan
(and a :class:`~runtime.testing.Schedule`) to every run started inside its
block, through the runtime's invocation hook: a context variable the runtime
awaits in the invoking task just before each node (or routine slot handler)
runs. :func:`faults` draws plans from Hypothesis, so a failing plan shrinks.
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import copy
import dis
import math
import types
import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeGuard, TypeVar, final

import attrs
import trio
import trio.testing
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from .._context import AfterHook, Frame, Invocation, current_frame, invocation_hook
from .._exceptions import TrioflowError
from .._node import Node
from .._routine import current_host
from .._run import Run
from .._state import Status, current_job
from ._checkers import _label, _run_name
from ._races import record_context_writes

if TYPE_CHECKING:
    import contextvars
    from collections.abc import Awaitable, Callable

    from hypothesis.strategies import SearchStrategy

    from .._core import RunResult
    from .._flow import Flow
    from .._state import JobState, Request
    from ._schedules import Schedule

AnyFlow: TypeAlias = "Flow[..., Any]"  # type: ignore[explicit-any]  # a flow of any signature

FaultKind: TypeAlias = Literal["raise", "delay", "cancel", "raise_after"]
"""What a :class:`Fault` does: ``"raise"``, ``"delay"``, ``"cancel"`` or ``"raise_after"``."""

FaultKey: TypeAlias = "str | tuple[str, int]"
"""A :class:`FaultPlan` key: a target (node name or routine id), or ``(target, call)``."""

_KINDS: tuple[FaultKind, ...] = ("raise", "delay", "cancel", "raise_after")

T = TypeVar("T")


@final
class FaultInjectionError(TrioflowError, ValueError):
    """A fault names a node or routine the workflow does not have.

    .. versionchanged:: 0.1
        Moved here from ``runtime.FaultInjectionError``, which still works, with
        a deprecation warning, for one release.
    """


@final
class InjectedError(TrioflowError):
    """The default exception a ``"raise"`` fault raises in place of the user's code.

    .. versionadded:: 0.1
    """


@final
class InjectedCancelError(TrioflowError):
    """Why a node run ended after a ``"cancel"`` fault: the error of that run's result.

    Every node of the run got a real ``trio.Cancelled`` first; see :class:`Fault`.
    (A cancelled routine job's error is a :class:`~runtime.RunCancelledError`.)

    .. versionadded:: 0.1
    """


def _is_delay(value: object) -> TypeGuard[int | float]:
    """Whether *value* is a delay: a finite number of seconds, 0 or more (not a bool)."""
    return (
        not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value) and value >= 0
    )


def _check_delay(seconds: object, where: str) -> float:
    if not _is_delay(seconds):
        msg = f"{where}: a delay must be a finite number of seconds, 0 or more, not {seconds!r}."
        raise InvalidArgument(msg)
    return float(seconds)


@final
@attrs.frozen(repr=False)
class Fault:
    """One fault: what happens when an invocation it targets is about to run.

    Build one with :meth:`raising`, :meth:`raising_after`, :meth:`delaying`
    or :meth:`cancelling`.

    - ``"raise"``: a fresh copy of :attr:`exception` is raised in the invoking
      task instead of running the node or handler, exactly as if the user's code
      had raised it: it reaches the caller (or the routine's error strategy).
    - ``"raise_after"``: the target runs to its end (its side effects happen),
      then a fresh copy of :attr:`exception` is raised in its place, as if
      the reply was lost on the way back: the caller (or the routine's error
      strategy, e.g. a retry) sees a failure of work that was done. The
      fault behind double charges and duplicate messages.
    - ``"delay"``: the invocation waits :attr:`seconds` (``trio.sleep``, so under
      ``MockClock`` it costs no real time), then runs normally.
    - ``"cancel"``: the whole run is cancelled at this invocation. Trio forbids
      raising ``trio.Cancelled`` by hand, so the fault does what a timeout or
      ``end_on_error`` does: it cancels the run's own cancel scope, so that every
      node of the run (the targeted one first, before its code starts) gets a
      real ``trio.Cancelled`` at its next checkpoint and its ``finally`` blocks
      and cancel handlers run. The run then ends ``failed`` with an
      :class:`InjectedCancelError` saying where it was cancelled. Just before,
      the fault lets every other task run until it blocks (no time passes), so
      every node then running is parked at a checkpoint and must end
      ``cancelled``: :func:`check_cancellation` checks that. In a routine
      graph the fault cancels the job as ``job.cancel()`` does: status
      ``cancelled``, running handlers cancelled, undelivered messages listed.

    Attributes:
        kind: ``"raise"``, ``"delay"``, ``"cancel"`` or ``"raise_after"``.
        exception: the exception a ``"raise"`` or ``"raise_after"`` fault raises (a template: each
            firing raises a copy, so notes and tracebacks never pile up on it).
        seconds: how long a ``"delay"`` fault waits.

    .. versionadded:: 0.1
    """

    kind: FaultKind
    exception: Exception | None = None
    seconds: float = 0.0

    def __attrs_post_init__(self) -> None:
        if self.kind not in _KINDS:
            msg = f"Fault(kind={self.kind!r}): the kinds are 'raise', 'delay', 'cancel' and 'raise_after'."
            raise InvalidArgument(msg)
        if self.kind in ("raise", "raise_after"):
            if not isinstance(self.exception, Exception):
                msg = (
                    f"Fault.raising({self.exception!r}): give an exception instance, e.g. ValueError('boom'). "
                    "To cancel a run, use Fault.cancelling() (trio.Cancelled cannot be raised by hand)."
                )
                raise InvalidArgument(msg)
        elif self.exception is not None:
            msg = f"Fault(kind={self.kind!r}) takes no exception; only a 'raise' or 'raise_after' fault does."
            raise InvalidArgument(msg)
        _check_delay(self.seconds, f"Fault(kind={self.kind!r}, seconds={self.seconds!r})")
        if self.kind != "delay" and self.seconds:
            msg = f"Fault(kind={self.kind!r}) takes no seconds; only a 'delay' fault does."
            raise InvalidArgument(msg)

    @classmethod
    def raising(cls, exception: Exception) -> Fault:
        """A fault that raises (a copy of) *exception* instead of running the target.

        Raises:
            hypothesis.errors.InvalidArgument: *exception* is not an ``Exception`` instance.
        """
        return cls("raise", exception=exception)

    @classmethod
    def raising_after(cls, exception: Exception) -> Fault:
        """A fault that lets the target run, then raises (a copy of) *exception* in place of its result.

        Raises:
            hypothesis.errors.InvalidArgument: *exception* is not an ``Exception`` instance.

        .. versionadded:: 0.2
        """
        return cls("raise_after", exception=exception)

    @classmethod
    def delaying(cls, seconds: float) -> Fault:
        """A fault that makes the target wait *seconds* before it runs.

        Raises:
            hypothesis.errors.InvalidArgument: *seconds* is negative, NaN or infinite.
        """
        return cls("delay", seconds=seconds)

    @classmethod
    def cancelling(cls) -> Fault:
        """A fault that cancels the whole run when the target is about to run."""
        return cls("cancel")

    def __repr__(self) -> str:
        if self.kind == "raise":
            return f"Fault.raising({self.exception!r})"
        if self.kind == "raise_after":
            return f"Fault.raising_after({self.exception!r})"
        if self.kind == "delay":
            return f"Fault.delaying({self.seconds!r})"
        return "Fault.cancelling()"

    def describe(self) -> str:
        """The fault in words: ``raise ValueError('boom')``, ``delay 0.5 s``, ``cancel the run``."""
        if self.kind == "raise":
            return f"raise {self.exception!r}"
        if self.kind == "raise_after":
            return f"run, then raise {self.exception!r} (its result is lost)"
        if self.kind == "delay":
            return f"delay {self.seconds:g} s"
        return "cancel the run"

    async def apply(
        self, invocation: Invocation, *, on_cancel: Callable[[CancelPoint], None] | None = None
    ) -> None:
        """Do the fault in the invoking task, just before *invocation* runs.

        A ``"raise_after"`` fault does nothing here: see :meth:`after`.

        Args:
            invocation: what is about to run.
            on_cancel: called with the :class:`CancelPoint` when a ``"cancel"``
                fault cancels a run (:class:`Injection` records it there).

        Raises:
            Exception: a copy of :attr:`exception` (``"raise"``), or
                :class:`InjectedCancelError` (``"cancel"`` outside any run or job).
        """
        if self.kind == "delay":
            await trio.sleep(self.seconds)
        elif self.kind == "raise":
            assert self.exception is not None
            raise _fresh_copy(self.exception)
        elif self.kind == "cancel":
            await _cancel_run(invocation, on_cancel)

    def after(self) -> None:
        """Do the fault once the target has returned: a ``"raise_after"`` fault raises here.

        Raises:
            Exception: a copy of :attr:`exception` (``"raise_after"``).

        .. versionadded:: 0.2
        """
        if self.kind == "raise_after":
            assert self.exception is not None
            raise _fresh_copy(self.exception)


async def _cancel_run(invocation: Invocation, on_cancel: Callable[[CancelPoint], None] | None) -> None:
    """Cancel the run or job *invocation* belongs to, and never return.

    First every other task is let run until it blocks, and the run's records
    reach its state: at the moment of the cancel each node of the run is
    parked at a checkpoint, so each one that was running must end
    ``cancelled``; the requests open then are recorded in a :class:`CancelPoint`.
    """
    where = " > ".join(invocation.path) or invocation.name
    reason = f"a cancel fault cancelled it when {invocation.kind} {invocation.name!r} was about to run (at {where})"
    frame = current_frame.get(None)
    run = frame.run if frame is not None and isinstance(frame.run, Run) else None
    job = current_job.get(None) if frame is not None else None
    if frame is None or ((run is None or run.nodes_scope is None) and job is None):
        msg = f"A cancel fault found no run to cancel when {invocation.kind} {invocation.name!r} was about to run (at {where})."
        raise InjectedCancelError(msg)
    await trio.testing.wait_all_tasks_blocked()  # every change of the run is in its state
    if on_cancel is not None:
        state = frame.run.state
        requests = state.requests
        on_cancel(
            CancelPoint(
                run_id=state.job_id,
                offset=state._now_offset(),
                path=invocation.path,
                running=frozenset(rid for rid, r in requests.items() if not r.status.is_final),
                ended=frozenset(rid for rid, r in requests.items() if r.status.is_final),
            )
        )
    if job is not None:
        job.cancel(reason)
    elif run is not None:
        run.abort(
            InjectedCancelError(
                f"A cancel fault cancelled the run when {invocation.kind} {invocation.name!r} was about to run (at {where})."
            )
        )
    # This task is cancelled with every other one of the run or job, before
    # the target's code starts.
    await trio.sleep_forever()


@final
@attrs.frozen
class CancelPoint:
    """Where a ``"cancel"`` fault cancelled a run, and what was running then.

    Attributes:
        run_id: the run.
        offset: seconds since the run started, on Trio's clock.
        path: the invocation the fault targeted (node names, entry point first).
        running: the ids of the requests that were running: each must end ``cancelled``.
        ended: the ids of the requests that had already ended.

    .. versionadded:: 0.1
    """

    run_id: str
    offset: float
    path: tuple[str, ...]
    running: frozenset[str]
    ended: frozenset[str]


def _fresh_copy(template: Exception) -> Exception:
    """A copy of *template* without the notes, traceback or marks of earlier raises."""
    exc = copy.copy(template)
    exc.__dict__.pop("__notes__", None)
    exc.__dict__.pop("__trioflow_request_path__", None)
    exc.__traceback__ = None
    exc.__cause__ = exc.__context__ = None
    return exc


def _check_key(key: object) -> tuple[str, int | None]:
    if isinstance(key, str) and key:
        return key, None
    if (
        isinstance(key, tuple)
        and len(key) == 2
        and isinstance(key[0], str)
        and key[0]
        and isinstance(key[1], int)
        and not isinstance(key[1], bool)
    ):
        if key[1] < 0:
            msg = f"FaultPlan key {key!r}: the call index counts invocations of {key[0]!r} in a run from 0; it cannot be negative."
            raise InvalidArgument(msg)
        return key[0], key[1]
    msg = (
        f"FaultPlan key {key!r}: a key is a node name or routine id, e.g. 'fetch', "
        "or a (name, call index) pair, e.g. ('fetch', 1) for its second invocation in a run."
    )
    raise InvalidArgument(msg)


@final
class FaultPlan(Mapping[FaultKey, Fault]):
    """A frozen mapping from targets to the :class:`Fault` injected there.

    A key is a node name or a routine id (``"fetch"``: every invocation of it),
    ``"routine_id.slot"`` (a routine's handler for one slot only), or a
    ``(target, call)`` pair: only the invocation with that index, counted from
    0 per run in the order invocations reach the hook. For one invocation the
    most specific key wins: ``(target, call)`` over ``target``, and a slot
    over its routine.

    ``FaultPlan({"fetch": Fault.raising(ValueError("down")), ("parse", 1): Fault.cancelling()})``

    Raises:
        hypothesis.errors.InvalidArgument: a key or value of the wrong shape.

    .. versionadded:: 0.1
    """

    __slots__ = ("_faults", "_targets")

    def __init__(self, faults: Mapping[FaultKey, Fault] | Iterable[tuple[FaultKey, Fault]] = ()) -> None:
        items = faults.items() if isinstance(faults, Mapping) else faults
        table: dict[tuple[str, int | None], Fault] = {}
        for key, fault in items:
            parsed = _check_key(key)
            if not isinstance(fault, Fault):
                msg = f"FaultPlan[{key!r}] = {fault!r}: a value must be a Fault, e.g. Fault.raising(ValueError('boom'))."
                raise InvalidArgument(msg)
            table[parsed] = fault
        self._faults = table
        self._targets = frozenset(target for target, _ in table)

    @property
    def targets(self) -> frozenset[str]:
        """The node names, routine ids and ``routine.slot`` names the plan targets."""
        return self._targets

    def fault_for(self, name: str, call: int, slot: str | None = None) -> Fault | None:
        """The fault for the *call*-th invocation of *name* (and its *slot*), or ``None``."""
        faults = self._faults
        if not faults:
            return None
        candidates: list[tuple[str, int | None]] = []
        if slot is not None:
            candidates += [(f"{name}.{slot}", call), (f"{name}.{slot}", None)]
        candidates += [(name, call), (name, None)]
        for candidate in candidates:
            fault = faults.get(candidate)
            if fault is not None:
                return fault
        return None

    def __getitem__(self, key: FaultKey) -> Fault:
        return self._faults[_check_key(key)]

    def __iter__(self) -> Iterator[FaultKey]:
        for target, call in self._faults:
            yield target if call is None else (target, call)

    def __len__(self) -> int:
        return len(self._faults)

    def __hash__(self) -> int:
        return hash(frozenset(self._faults.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FaultPlan):
            return self._faults == other._faults
        return NotImplemented

    def __repr__(self) -> str:
        inner = ", ".join(f"{key!r}: {fault!r}" for key, fault in self.items())
        return f"FaultPlan({{{inner}}})"


# -- what a flow has ---------------------------------------------------------


def _referenced_objects(fn: object) -> Iterator[object]:
    """The objects a function's code can reach by name: globals, closure cells, defaults.

    Names are read from the code object and every code object nested in it
    (lambdas, inner functions, comprehensions); a module global is followed
    one attribute deep (``steps.fetch``), and containers (lists, dicts, ...)
    one level deep (``HANDLERS["a"]``).
    """
    fn = getattr(fn, "__func__", fn)
    while True:
        wrapped = getattr(fn, "__wrapped__", None)
        if wrapped is None or wrapped is fn:
            break
        fn = wrapped
    if isinstance(fn, Node):
        fn = fn.fn
    code = getattr(fn, "__code__", None)
    if not isinstance(code, types.CodeType):
        return
    fn_globals: Mapping[str, object] = getattr(fn, "__globals__", {})
    names: dict[str, None] = {}  # an ordered set: discovery order is the code's order
    stack = [code]
    while stack:
        current = stack.pop(0)
        names.update(dict.fromkeys(current.co_names))
        names.update(dict.fromkeys(current.co_freevars))
        stack.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    values: list[object] = []
    for name in names:
        if name in fn_globals:
            value = fn_globals[name]
            values.append(value)
            if isinstance(value, types.ModuleType):
                values.extend(getattr(value, attr, None) for attr in names)
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    values.extend(getattr(fn, "__defaults__", None) or ())
    values.extend((getattr(fn, "__kwdefaults__", None) or {}).values())
    for value in values:
        yield value
        if isinstance(value, list | tuple | set | frozenset):
            yield from value
        elif isinstance(value, dict):
            yield from value.values()


def discover_nodes(entry: Node[..., object]) -> tuple[str, ...]:  # type: ignore[explicit-any]  # any signature
    """The names of the nodes reachable from *entry* by reading code, *entry* first.

    Follows every node a node's function refers to by name (module globals,
    ``module.attribute``, closure variables, default values, and containers
    of those), recursively, and the entry point of every flow it refers to
    the same way (a sub-flow run from a node). A node reached only through a value computed at
    run time (passed in as an argument, looked up by a string) is not found:
    see :func:`inject` for how such targets are checked.

    .. versionadded:: 0.1
    """
    found: list[str] = []
    for node in _reachable_nodes(entry):
        if node.name not in found:
            found.append(node.name)
    return tuple(found)


def _reachable_nodes(entry: object) -> list[Node[..., object]]:  # type: ignore[explicit-any]  # any signature
    """The nodes reachable from *entry* by reading code, *entry* first, through sub-flows too.

    A node that runs another flow (``await checkout_flow.ainvoke(...)``, the
    flow a module global or closure variable) reaches that flow's entry point.
    """
    from .._flow import Flow

    found: list[Node[..., object]] = []  # type: ignore[explicit-any]  # any signature
    seen: set[int] = set()
    stack: list[object] = [entry]
    while stack:
        node = stack.pop()
        if isinstance(node, Flow):
            node = node.entry_point
        if not isinstance(node, Node) or id(node) in seen:
            continue
        seen.add(id(node))
        found.append(node)
        stack.extend(reversed([obj for obj in _referenced_objects(node.fn) if isinstance(obj, Node | Flow)]))
    return found


def _routine_targets(flow: AnyFlow) -> tuple[str, ...] | None:
    """The routine ids of a routine-graph flow, and ``routine.slot`` for each slot; ``None`` if none."""
    routines = flow.routines
    if not routines:
        return None
    targets: list[str] = []
    for routine_id, routine in routines.items():
        targets.append(routine_id)
        targets.extend(f"{routine_id}.{slot}" for slot in routine.slots)
    return tuple(targets)


def _functions(flow: AnyFlow) -> list[object]:
    """The user functions of *flow*: its nodes' (reachable from the entry point) or its routines' handlers."""
    routines = flow.routines
    if routines:
        return [
            slot._func
            for routine in routines.values()
            for slot in routine.slots.values()
            if slot._func is not None
        ]
    if flow.entry_point is None:
        return []
    return [node.fn for node in _reachable_nodes(flow.entry_point)]


def _code_of(fn: object) -> tuple[types.CodeType | None, Mapping[str, object], dict[str, object]]:
    """*fn*'s code, globals and closure values (by free variable name)."""
    fn = getattr(fn, "__func__", fn)
    while (wrapped := getattr(fn, "__wrapped__", None)) is not None and wrapped is not fn:
        fn = wrapped
    code = getattr(fn, "__code__", None)
    if not isinstance(code, types.CodeType):
        return None, {}, {}
    cells: dict[str, object] = {}
    for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or (), strict=False):
        try:
            cells[name] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    return code, getattr(fn, "__globals__", {}), cells


def _all_code(code: types.CodeType) -> Iterator[types.CodeType]:
    stack = [code]
    while stack:
        current = stack.pop(0)
        yield current
        stack.extend(c for c in current.co_consts if isinstance(c, types.CodeType))


def _scan(flow: AnyFlow) -> tuple[list[type[Exception]], list[str]]:
    """The exception classes *flow*'s functions catch by name, and the fault points they declare."""
    caught: dict[type[Exception], None] = {}
    points: dict[str, None] = {}
    for routine in flow.routines.values():  # what a retry strategy retries counts as caught
        handler = routine.get_error_handler()
        for retryable in () if handler is None else handler.retryable_exceptions:
            if issubclass(retryable, Exception) and retryable is not Exception:
                caught[retryable] = None
    for fn in _functions(flow):
        fn_caught, fn_points = _scan_function(fn)
        caught.update(dict.fromkeys(fn_caught))
        points.update(dict.fromkeys(fn_points))
    return list(caught), list(points)


_SCANNED: weakref.WeakKeyDictionary[object, tuple[tuple[type[Exception], ...], tuple[str, ...]]] = (
    weakref.WeakKeyDictionary()
)


def _scan_function(fn: object) -> tuple[tuple[type[Exception], ...], tuple[str, ...]]:
    """What one function catches by name and the fault points it declares (read once per function)."""
    try:
        return _SCANNED[fn]
    except (KeyError, TypeError):
        pass
    caught: dict[type[Exception], None] = {}
    points: dict[str, None] = {}
    code, fn_globals, cells = _code_of(fn)
    for current in () if code is None else _all_code(code):
        loaded: list[object] = []
        point_next = False
        for ins in dis.get_instructions(current):
            op, arg = ins.opname, ins.argval
            if op in ("LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "LOAD_CLOSURE"):
                name = str(arg)
                loaded.append(cells.get(name, fn_globals.get(name, getattr(builtins, name, None))))
                point_next = point_next or name == "fault_point"
            elif op in ("LOAD_ATTR", "LOAD_METHOD") and loaded:
                loaded[-1] = getattr(loaded[-1], str(arg), None)
                point_next = point_next or arg == "fault_point"
            elif op == "LOAD_CONST" and point_next and isinstance(arg, str):
                points[arg] = None
                point_next = False
            elif op == "CHECK_EXC_MATCH":
                for value in loaded:
                    if isinstance(value, type) and issubclass(value, Exception) and value is not Exception:
                        caught[value] = None
                loaded = []
            elif op == "PUSH_EXC_INFO":
                loaded = []
    found = (tuple(caught), tuple(points))
    with contextlib.suppress(TypeError):  # not weak-referenceable: read again next time
        _SCANNED[fn] = found
    return found


def caught_exceptions(flow: AnyFlow) -> tuple[type[Exception], ...]:
    """The exception classes *flow*'s code catches by name (``except GatewayTimeout:``), in code order.

    Reads the code of the nodes reachable from the entry point (as
    :func:`discover_nodes` does), or of a routine graph's handlers, whose
    ``ErrorHandler(retryable_exceptions=...)`` count first;
    ``except Exception`` is left out (every fault's exception is one). What
    :func:`faults` draws exceptions from by default.

    .. versionadded:: 0.2
    """
    return tuple(_scan(flow)[0])


def flow_targets(flow: AnyFlow) -> tuple[str, ...]:
    """What faults can target in *flow*: routine ids (and ``routine.slot``), or node names.

    For a routine graph these are exact. For a node flow they are the nodes
    :func:`discover_nodes` finds from the entry point. Either way, then the
    fault points the code declares (``await rtt.fault_point("gateway.confirm")``)
    with a literal name.

    .. versionadded:: 0.1
    """
    routine_targets = _routine_targets(flow)
    points = tuple(_scan(flow)[1])
    if routine_targets is not None:
        return routine_targets + points
    if flow.entry_point is None:
        return points
    return discover_nodes(flow.entry_point) + points


def _quote_all(names: Iterable[str]) -> str:
    listed = sorted(set(names))
    return ", ".join(repr(n) for n in listed) if listed else "none"


# -- the hook ----------------------------------------------------------------


@final
@attrs.frozen
class HandOff:
    """One invocation that passed through an :class:`Injection`'s hook.

    Attributes:
        index: its position among every invocation of the injection block, from 0.
        kind: ``"node"`` or ``"routine"``.
        name: the node name, or the routine id.
        path: the request path (node names, entry point first), or ``(routine_id, slot)``.
        run_id: the run (or job) it belongs to, when known.
        call: its index among the invocations of *name* in its run, from 0.
        delay: the seconds the schedule made it wait first.
        fault: the fault injected there, if any.

    .. versionadded:: 0.1
    """

    index: int
    kind: str
    name: str
    path: tuple[str, ...]
    run_id: str | None
    call: int
    delay: float
    fault: Fault | None

    def describe(self) -> str:
        """One line for a counterexample: ``#3 node 'fetch' at main > fetch[1]: held back 0.5 s before it ran``.

        The path ends with the invocation's index among those of its target in
        its run (``[1]``: the second), which tells ``call_batch`` siblings apart.
        """
        if self.kind == "routine" and len(self.path) == 2:
            where = f"{self.path[0]}.{self.path[1]}[{self.call}]"
        else:
            where = f"{' > '.join(self.path)}[{self.call}]"
        what = []
        if self.delay:
            what.append(f"held back {self.delay:g} s before it ran")
        if self.fault is not None:
            what.append(self.fault.describe())
        tail = f": {', then '.join(what)}" if what else ""
        return f"#{self.index} {self.kind} {self.name!r} at {where}{tail}"


Hook: TypeAlias = "Callable[[Invocation], Awaitable[AfterHook | None]]"


@final
class Injection:
    """An :func:`inject` block: applies a plan and a schedule, and records what it did.

    Use it with ``with`` (it is a plain context manager, so it works the same
    in synchronous and in Trio code). Runs started inside the block, and only
    those, go through its hook. Blocks nest: an inner block's hook calls the
    outer one's first.

    Attributes:
        plan: the faults.
        schedule: the delays at hand-offs, or ``None``.
        trace: every invocation seen, in the order it reached the hook.
        run_ids: the ids of the runs seen, in order.
        cancels: by run id, where a ``"cancel"`` fault cancelled that run
            (read by :func:`check_cancellation`).

    .. versionadded:: 0.1
    """

    __slots__ = (
        "_calls",
        "_deferred",
        "_known",
        "_open",
        "_previous",
        "_runs",
        "_states",
        "_token",
        "_where",
        "cancels",
        "plan",
        "run_ids",
        "schedule",
        "trace",
    )

    def __init__(
        self,
        plan: FaultPlan,
        schedule: Schedule | None,
        known: frozenset[str] | None,
        deferred: frozenset[str],
        where: str,
    ) -> None:
        self.plan = plan
        self.schedule = schedule
        self.trace: list[HandOff] = []
        self.run_ids: list[str] = []
        self.cancels: dict[str, CancelPoint] = {}
        self._known = known
        self._deferred = deferred
        self._where = where
        self._runs: set[str] = set()
        self._states: dict[str, JobState] = {}
        # What was invoked, to say what is still running: by invoker, (run id, label, still running?).
        self._open: dict[int, tuple[str, tuple[str, ...], str, Callable[[], bool]]] = {}
        self._calls: collections.Counter[tuple[str | None, str]] = collections.Counter()
        self._previous: Hook | None = None
        self._token: contextvars.Token[Hook | None] | None = None

    @property
    def fired(self) -> list[HandOff]:
        """The hand-offs where a fault was injected, in order."""
        return [h for h in self.trace if h.fault is not None]

    @property
    def seen(self) -> frozenset[str]:
        """The node names and routine ids invoked inside the block."""
        return frozenset(h.name for h in self.trace)

    def describe(self) -> str:
        """The trace, one line per hand-off that waited or faulted, for a readable counterexample."""
        lines = [h.describe() for h in self.trace if h.delay or h.fault is not None]
        return "\n".join(lines) if lines else "(no delays or faults fired)"

    def __enter__(self) -> Injection:
        if self._token is not None:
            msg = "This inject() block is already active; call inject() again for a new block."
            raise RuntimeError(msg)
        self._previous = invocation_hook.get(None)
        self._token = invocation_hook.set(self._hook)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        if token is not None:
            invocation_hook.reset(token)
        if exc_type is None and self._deferred:
            unknown = self._deferred - self.seen
            if unknown:
                known = set(self._known or ()) | self.seen
                msg = (
                    f"inject(): {self._where} has no node {_quote_all(unknown)}: it is not reachable from the "
                    f"entry point's code, and no run in the block invoked it. The known nodes are {_quote_all(known)}. "
                    "Fix the name, or pass nodes=[...] to inject() to name the nodes yourself."
                )
                raise FaultInjectionError(msg)

    async def _hook(self, invocation: Invocation) -> AfterHook | None:
        # Book-keeping first, before any checkpoint, so that call indexes and
        # hand-off indexes follow the order in which the runtime invokes, in
        # this block and in any it is nested in.
        frame = current_frame.get(None)
        run_id = None if frame is None else frame.run.state.job_id
        if run_id is not None and run_id not in self._runs:
            assert frame is not None
            self._runs.add(run_id)
            self.run_ids.append(run_id)
            self._states[run_id] = frame.run.state
            if frame.run.state.requests or frame.actor is not None:  # a node run: record its context writes
                record_context_writes(frame.run.state)
        if run_id is not None:
            self._track(run_id, invocation, frame)
        name = invocation.name
        key = (run_id, name)
        call = self._calls[key]
        self._calls[key] = call + 1
        slot = invocation.path[1] if invocation.kind == "routine" and len(invocation.path) > 1 else None
        fault = self.plan.fault_for(name, call, slot)
        schedule = self.schedule
        index = len(self.trace)
        delay = 0.0 if schedule is None else schedule.delay_at(index)
        self.trace.append(HandOff(index, invocation.kind, name, invocation.path, run_id, call, delay, fault))
        previous = self._previous
        outer_after = None if previous is None else await previous(invocation)
        if delay:
            await trio.sleep(delay)
        if fault is not None:
            await fault.apply(invocation, on_cancel=self._record_cancel)
        if outer_after is None and (fault is None or fault.kind != "raise_after"):
            return None

        async def after(result: object) -> None:
            if outer_after is not None:
                await outer_after(result)
            if fault is not None:
                fault.after()

        return after

    def _track(self, run_id: str, invocation: Invocation, frame: Frame | None) -> None:
        actor = None if frame is None else frame.actor
        if invocation.kind == "node" and actor is not None:
            ref = actor.ref
            label = f"{' > '.join(actor.path)} ({actor.request_id})"
            self._open[id(actor)] = (run_id, actor.path, label, lambda: ref.is_alive)
            return
        host = current_host.get(None)
        if host is not None:
            label = f"routine {invocation.name!r} (slot {invocation.path[-1]!r})"
            self._open[id(host)] = (
                run_id,
                invocation.path,
                label,
                lambda: bool(getattr(host, "busy", False)),
            )

    def running(self) -> list[str]:
        """What the block's runs are still doing: one line per run (or job) that has not ended.

        Names the deepest node requests still running by path (``pay >
        charge (r2)``; not the callers waiting for them) and the routines busy
        in a handler (``routine 'charge' (slot 'input')``).
        The runners' watchdog reports it.
        """
        lines = []
        for run_id in self.run_ids:
            state = self._states[run_id]
            if state.status.is_final:
                continue
            live = [
                (path, label)
                for rid, path, label, is_running in self._open.values()
                if rid == run_id and is_running()
            ]
            # A caller waiting for its callee is not news: name the deepest.
            names = [
                label
                for path, label in live
                if not any(p[: len(path)] == path and p != path for p, _ in live)
            ]
            doing = ", ".join(names) if names else "no node or handler is running (it waits outside them)"
            lines.append(f"{run_id} of flow {state.flow_name!r}: {doing}")
        return lines

    def _record_cancel(self, point: CancelPoint) -> None:
        self.cancels.setdefault(point.run_id, point)


def _ending(request: Request) -> str:
    if request.error is not None:
        return (
            f"{request.status.value} with {request.error.type.rsplit('.', 1)[-1]}({request.error.message!r})"
        )
    if request.result is not None:
        return f"{request.status.value} with result {request.result}"
    return request.status.value


def check_cancellation(result: RunResult[T], injection: Injection) -> None:
    """Check that a run cancelled by a ``"cancel"`` fault really stopped.

    When the fault fired, every node of the run that was running was parked
    at a checkpoint (see :class:`Fault`), so each one must end ``cancelled``:

    a request that was running then and ended ``completed`` (or ``failed``)
    caught ``trio.Cancelled`` and went on: it swallowed the cancellation.
    (Requests started after the cancel, e.g. a shielded clean-up call in a
    cancel handler, are not judged: their caller is.)

    A run the injection did not cancel passes.

    Args:
        result: a finished run, from inside the ``inject()`` block.
        injection: the block's :class:`Injection`.

    Raises:
        AssertionError: the run has not finished, or a node swallowed the
            cancellation; the message names the requests by path.

    .. versionadded:: 0.1
    """
    state = result.state
    where = _run_name(state)
    if not state.status.is_final or state.finished_at is None:
        msg = (
            f"{where} has not finished (its status is {state.status.value!r}); check a run once it has ended."
        )
        raise AssertionError(msg)
    point = injection.cancels.get(state.run_id)
    if point is None:
        return
    when = f"a cancel fault cancelled the run at {point.offset:g} s (at {' > '.join(point.path)})"
    for request_id, request in state.requests.items():
        if request_id in point.running and request.status is not Status.CANCELLED:
            msg = (
                f"{where}: {_label(state, request_id)} was running when {when}, but it ended {_ending(request)}: "
                "it caught trio.Cancelled and went on instead of letting the cancellation propagate."
            )
            raise AssertionError(msg)


def inject(
    plan: FaultPlan | Mapping[FaultKey, Fault] | None = None,
    *,
    schedule: Schedule | None = None,
    flow: AnyFlow | None = None,
    nodes: Iterable[str] | None = None,
) -> Injection:
    """Apply *plan* (and *schedule*) to every run started inside the block.

    ``with rt.testing.inject(plan, flow=flow): flow.run(...)``: the workflow's
    code is not edited; the runtime awaits the block's hook in the invoking
    task just before each node or routine handler runs, and the hook waits
    the schedule's delay for that hand-off, then applies the fault (see
    :class:`Fault`). Runs started inside the block, in this task or tasks it
    starts, are affected; runs elsewhere are not.

    How targets are checked against the workflow:

    - ``nodes=[...]``: the plan may only name these; checked on entry.
    - a routine graph ``flow``: routine ids (and ``routine.slot``) are exact;
      checked on entry.
    - a node ``flow``: node names cannot all be known before running (a node
      may be called through a value computed at run time), so a target found
      by reading the code reachable from the entry point
      (:func:`discover_nodes`) passes at once, and any other target passes only
      if a run in the block invoked it; if none did, leaving the block raises.
    - neither: targets are not checked.

    Args:
        plan: the faults, a :class:`FaultPlan` or a mapping to build one.
        schedule: delays at hand-offs (:func:`~runtime.testing.schedules`).
        flow: the workflow the plan is meant for.
        nodes: every node name the workflow has.

    Returns:
        The :class:`Injection`, to use with ``with``; it records a trace.

    Raises:
        FaultInjectionError: the plan names a node or routine the workflow does
            not have; the message names the ones it has.

    .. versionadded:: 0.1
    """
    if plan is None:
        plan = FaultPlan()
    elif not isinstance(plan, FaultPlan):
        plan = FaultPlan(plan)
    targets = plan.targets
    known: frozenset[str] | None = None
    deferred: frozenset[str] = frozenset()
    where = "the workflow"
    if nodes is not None:
        known = frozenset(nodes)
        where = "the node list given to inject()"
        unknown = targets - known
        if unknown:
            msg = f"inject(): {where} has no node {_quote_all(unknown)}; its nodes are {_quote_all(known)}."
            raise FaultInjectionError(msg)
    elif flow is not None and targets:
        where = f"Flow {flow.name!r}"
        routine_targets = _routine_targets(flow)
        if routine_targets is not None:
            known = frozenset(flow_targets(flow))
            # A dotted name that is no routine's may be a fault point reached through a helper.
            deferred = frozenset(
                t for t in targets - known if "." in t and t.split(".", 1)[0] not in flow.routines
            )
            unknown = targets - known - deferred
            if unknown:
                ids = [t for t in routine_targets if "." not in t or t.split(".", 1)[0] not in known]
                msg = (
                    f"inject(): {where} has no routine {_quote_all(unknown)}; its routine ids are {_quote_all(ids)}"
                    + (
                        f" (a slot is targeted as 'routine.slot': {_quote_all(t for t in routine_targets if t not in ids)})."
                        if len(ids) < len(routine_targets)
                        else "."
                    )
                )
                raise FaultInjectionError(msg)
        else:
            known = frozenset(flow_targets(flow))
            deferred = targets - known
    return Injection(plan, schedule, known, deferred, where)


# -- fault points ------------------------------------------------------------


async def fault_point(name: str) -> None:
    """A point in your own code where the kit may inject a fault: ``await rtt.fault_point("gateway.confirm")``.

    Outside an :func:`inject` block (in production, in ordinary tests) it
    does nothing at all, not even a checkpoint. Inside one it is a hand-off
    like a node call: a :class:`FaultPlan` targets it by *name* (a
    ``"raise"`` fault raises here, a ``"delay"`` waits, a ``"cancel"``
    cancels the run; ``"raise_after"`` raises here too), a schedule delays
    it, and :func:`faults` draws it from :func:`flow_targets` when *name* is
    a literal in a node or handler's code. Name points ``area.step``; a name
    must not be a node name or routine id.

    Args:
        name: the point, e.g. ``"gateway.confirm"``.

    Raises:
        Exception: the fault's exception, in a block whose plan targets *name*.
        ValueError: *name* is empty.

    .. versionadded:: 0.2
    """
    if not isinstance(name, str) or not name:
        msg = f"fault_point({name!r}): a fault point needs a non-empty name, e.g. 'gateway.confirm'."
        raise ValueError(msg)
    hook = invocation_hook.get(None)
    if hook is None:
        return
    frame = current_frame.get(None)
    actor = None if frame is None else frame.actor
    host = current_host.get(None)
    if actor is not None:
        path = (*actor.path, name)
    elif host is not None:
        path = (host.routine_id, name)
    else:
        path = (name,)
    after = await hook(Invocation("point", name, path, (), {}))
    if after is not None:
        await after(None)


# -- strategies --------------------------------------------------------------


def _check_strategy(value: object, name: str) -> None:
    if not isinstance(value, st.SearchStrategy):
        msg = f"{name}={value!r} must be a strategy, e.g. {name}=st.sampled_from([...]) or st.just(value)."
        raise InvalidArgument(msg)


def check_sizes(min_size: object, max_size: object, api: str) -> None:
    """Raise :class:`InvalidArgument` unless ``0 <= min_size <= max_size`` (integers)."""
    for name, value in (("min_size", min_size), ("max_size", max_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            msg = f"{api}: {name}={value!r} must be an integer, 0 or more."
            raise InvalidArgument(msg)
    assert isinstance(min_size, int)
    assert isinstance(max_size, int)
    if min_size > max_size:
        msg = f"{api}: min_size={min_size} is greater than max_size={max_size}; no value can satisfy both."
        raise InvalidArgument(msg)


_DEFAULT_EXCEPTIONS: SearchStrategy[Exception] = st.just(InjectedError("injected fault"))


def _exceptions_for(flow: AnyFlow) -> SearchStrategy[Exception]:
    """:class:`InjectedError`, then an instance of each class *flow* catches that can be built from a message."""
    instances: list[Exception] = [InjectedError("injected fault")]
    for cls in caught_exceptions(flow):
        try:
            instances.append(cls("injected fault"))
        except Exception:  # a class that needs other arguments: give it yourself with exceptions=
            continue
    return st.sampled_from(instances)


_DEFAULT_DELAYS: SearchStrategy[float] = st.integers(min_value=0, max_value=10).map(lambda n: n / 10)
_DEFAULT_KINDS: SearchStrategy[FaultKind] = st.sampled_from(_KINDS)
_DEFAULT_CALLS: SearchStrategy[int | None] = st.none() | st.integers(min_value=0, max_value=3)


def faults(
    *,
    targets: SearchStrategy[str] | None = None,
    flow: AnyFlow | None = None,
    kinds: SearchStrategy[FaultKind] = _DEFAULT_KINDS,
    exceptions: SearchStrategy[Exception] | None = None,
    delays: SearchStrategy[float] = _DEFAULT_DELAYS,
    calls: SearchStrategy[int | None] = _DEFAULT_CALLS,
    min_size: int = 0,
    max_size: int = 3,
) -> SearchStrategy[FaultPlan]:
    """A strategy for :class:`FaultPlan` values: faults at targets of a workflow.

    Each plan holds *min_size* to *max_size* faults at distinct keys. A key is a
    target drawn from *targets* (or, if only *flow* is given, from
    :func:`flow_targets`), with a call index drawn from *calls* (``None``: every
    invocation). Plans shrink towards fewer faults, earlier kinds (``"raise"``
    first with the default *kinds*), the first exception, shorter delays and
    ``call=None``.

    Args:
        targets: node names or routine ids to put faults at.
        flow: the workflow; its targets are used when *targets* is not given.
        kinds: which faults: ``"raise"``, ``"delay"``, ``"cancel"``, ``"raise_after"``.
        exceptions: exception instances for ``"raise"`` and ``"raise_after"``
            faults. By default, with *flow*: :class:`InjectedError`, then one
            instance of each exception class the workflow's code catches by
            name (:func:`caught_exceptions`), so a fault reaches an
            ``except GatewayTimeout:``; without *flow*, :class:`InjectedError` only.
        delays: seconds for ``"delay"`` faults.
        calls: call indexes (from 0), or ``None`` for every invocation.
        min_size: the fewest faults in a plan.
        max_size: the most faults in a plan.

    Raises:
        hypothesis.errors.InvalidArgument: an argument that is not a strategy,
            ``min_size > max_size``, a negative size, neither *targets* nor a
            *flow* with targets, or (when drawn) a kind, exception or delay
            that cannot be a fault.

    .. versionadded:: 0.1
    """
    check_sizes(min_size, max_size, "faults()")
    if exceptions is None:
        exceptions = _DEFAULT_EXCEPTIONS if flow is None else _exceptions_for(flow)
    for name, value in (("kinds", kinds), ("exceptions", exceptions), ("delays", delays), ("calls", calls)):
        _check_strategy(value, name)
    if targets is None:
        if flow is None:
            msg = "faults() needs targets=st.sampled_from([...node names or routine ids...]), or flow=your_flow."
            raise InvalidArgument(msg)
        names = flow_targets(flow)
        if not names:
            msg = f"faults(flow={flow!r}): the flow has no node or routine to put a fault at."
            raise InvalidArgument(msg)
        targets = st.sampled_from(names)
    else:
        _check_strategy(targets, "targets")

    @st.composite
    def entries(draw: st.DrawFn) -> tuple[FaultKey, Fault]:
        # One key and its fault are drawn together, so that shrinking can
        # drop a whole entry without shifting the draws of the others.
        target = draw(targets)
        if not isinstance(target, str) or not target:
            msg = f"faults(): targets drew {target!r}; a target is a non-empty node name or routine id."
            raise InvalidArgument(msg)
        call = draw(calls)
        kind = draw(kinds)
        if kind == "raise":
            fault = Fault.raising(draw(exceptions))
        elif kind == "raise_after":
            fault = Fault.raising_after(draw(exceptions))
        elif kind == "delay":
            fault = Fault.delaying(_check_delay(draw(delays), "faults(): delays drew a bad value"))
        elif kind == "cancel":
            fault = Fault.cancelling()
        else:
            msg = (
                f"faults(): kinds drew {kind!r}; the kinds are 'raise', 'delay', 'cancel' and 'raise_after'."
            )
            raise InvalidArgument(msg)
        return (target if call is None else (target, call)), fault

    plans = st.lists(entries(), min_size=min_size, max_size=max_size, unique_by=lambda entry: entry[0])
    return plans.map(FaultPlan)
