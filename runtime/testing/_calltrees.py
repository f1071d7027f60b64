"""Generated node call trees: Hypothesis strategies for :class:`~runtime.Flow` runs.

:func:`call_trees` draws a :class:`CallTree`: which node calls which, one
after another (``rt.call``) or all at once (``rt.call_batch``), and what each
call does: sleep, broadcast, catch its children's errors, return a number or
raise a chosen exception. :func:`flows` adds the Flow's settings (timeout,
``end_on_error``, context) to make a :class:`FlowSpec`, which knows the outcome
its runs must have (:attr:`FlowSpec.expected`) and builds a real flow
(:meth:`FlowSpec.build`) whose nodes record what they did: the
:class:`GeneratedFlow` the checkers of :mod:`runtime.testing` read.

Everything here is deterministic under :class:`trio.testing.MockClock`: a
node's delay is its only use of time, so a run's timeline follows from the spec.
"""

from __future__ import annotations

import collections
import contextlib
import math
from typing import TYPE_CHECKING, TypeVar, final

import attrs
import trio
import trio.testing
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from .._call import broadcast, call, call_batch
from .._context import context, current_frame
from .._exceptions import RunTimeoutError
from .._flow import Flow
from .._node import Node
from .._state import Status

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from hypothesis.strategies import DrawFn, SearchStrategy

    from .._core import RunResult
    from .._publisher import Event
    from ._checkers import TaskWatch

#: The context key where generated nodes append their call paths, in place:
#: each run must see only its own appends.
VISITED = "trioflow.testing.visited"

_ORIGIN = "__trioflow_testing_origin__"
_TOLERANCE = 1e-9

ExceptionType = type[Exception]
T = TypeVar("T")


def _fmt_seconds(value: float) -> str:
    return f"{value:g}"


@final
@attrs.frozen
class CallSpec:
    """One call in a generated call tree, and what the called node does in it.

    A node sleeps *delay* seconds, broadcasts its path if *broadcast*, makes
    its calls (*children*), then raises *raises* or returns *value* plus the
    results of its children. Calls batched together are one node called once
    per item.

    Attributes:
        node: the called node's name: ``n0`` for the entry point, then ``n1``,
            ``n2``, ... Batched calls share one node.
        item: the argument of the call: its index in its batch (0 otherwise).
        path: the call's path from the entry point, e.g. ``('n0', 'n2', 'n4[1]')``;
            batched calls carry their item.
        delay: seconds the node sleeps first (``trio.sleep``), 0 or more.
        broadcast: whether the node then streams its path with ``rt.broadcast``.
        batched: whether the children are one ``rt.call_batch`` (all at once)
            rather than ``rt.call`` one after another.
        catch: whether the node catches its children's errors: each
            ``rt.call`` in a ``try``, or ``return_exceptions=True`` for a batch.
        raises: the exception class the node raises last, or ``None`` to return.
        value: the number the node adds to its children's results.
        children: the calls the node makes.

    .. versionadded:: 0.1
    """

    node: str
    item: int
    path: tuple[str, ...]
    delay: float = 0.0
    broadcast: bool = False
    batched: bool = False
    catch: bool = False
    raises: ExceptionType | None = None
    value: int = 1
    children: tuple[CallSpec, ...] = ()

    @property
    def label(self) -> str:
        """The call path as text: ``n0 > n2 > n4[1]``."""
        return " > ".join(self.path)

    @property
    def node_path(self) -> tuple[str, ...]:
        """The node names from the entry point down, as ``rt.Request`` paths give them."""
        return tuple(part.partition("[")[0] for part in self.path)

    def walk(self) -> Iterator[CallSpec]:
        """This call and every call below it, parents first."""
        yield self
        for child in self.children:
            yield from child.walk()

    def describe(self, indent: str = "") -> list[str]:
        """One line per call, children indented under their caller."""
        actions = []
        if self.delay:
            actions.append(f"sleeps {_fmt_seconds(self.delay)}")
        if self.broadcast:
            actions.append("broadcasts")
        if self.children:
            how = "in a batch" if self.batched else "one by one"
            actions.append(f"calls {len(self.children)} {how}" + (" catching errors" if self.catch else ""))
        actions.append(f"raises {self.raises.__name__}" if self.raises is not None else f"returns {self.value}+")
        lines = [f"{indent}{self.path[-1]}: {', '.join(actions)}"]
        for child in self.children:
            lines.extend(child.describe(indent + "  "))
        return lines


@final
@attrs.frozen(repr=False)
class CallTree:
    """A generated tree of node calls, from :func:`call_trees`.

    Attributes:
        root: the entry point's call.

    .. versionadded:: 0.1
    """

    root: CallSpec

    def __repr__(self) -> str:
        return "CallTree(\n" + "\n".join(self.root.describe("  ")) + "\n)"

    def calls(self) -> list[CallSpec]:
        """Every call, parents first."""
        return list(self.root.walk())

    @property
    def size(self) -> int:
        """How many calls the tree makes, the entry point's included."""
        return len(self.calls())

    @property
    def depth(self) -> int:
        """The longest path's length less one: 0 for a lone entry point."""
        return max(len(call.path) for call in self.root.walk()) - 1

    def nodes(self) -> dict[str, tuple[CallSpec, ...]]:
        """Each node's calls, by node name, in item order."""
        found: dict[str, list[CallSpec]] = collections.defaultdict(list)
        for spec in self.root.walk():
            found[spec.node].append(spec)
        return {name: tuple(sorted(specs, key=lambda s: s.item)) for name, specs in found.items()}


# -- expected outcomes ---------------------------------------------------------


@final
@attrs.frozen
class Expected:
    """How every run of a :class:`FlowSpec` must end, worked out from the spec.

    Where the outcome depends on an order Trio may choose (two calls failing
    at the same instant, or a call ending exactly at the timeout), every
    possibility is allowed.

    Attributes:
        statuses: the statuses the run may end with.
        result: the entry point's return value if the run completes.
        error_origins: the calls (paths as text) whose exception may end the run.
        duration: seconds of Trio time from the start of the run to its end.

    .. versionadded:: 0.1
    """

    statuses: frozenset[Status]
    result: int | None
    error_origins: frozenset[str]
    duration: float


@attrs.frozen
class _Sim:
    end: float
    ok: bool
    value: int
    origins: frozenset[str]
    # The earliest raise in the subtree: (time, calls that may be it).
    first_raise: tuple[float, frozenset[str]] | None


def _earliest(options: Sequence[tuple[float, frozenset[str]]]) -> tuple[float, frozenset[str]] | None:
    if not options:
        return None
    first = min(t for t, _ in options)
    return first, frozenset().union(*(c for t, c in options if abs(t - first) <= _TOLERANCE))


def _simulate(spec: CallSpec, start: float) -> _Sim:
    t = start + spec.delay
    value = spec.value
    first_raise: tuple[float, frozenset[str]] | None = None
    if spec.children and spec.batched:
        sims = [_simulate(child, t) for child in spec.children]
        first_raise = _earliest([s.first_raise for s in sims if s.first_raise is not None])
        failures = [s for s in sims if not s.ok]
        if failures and not spec.catch:
            # The first failure cancels its siblings and is raised at once.
            end = min(s.end for s in failures)
            origins = frozenset().union(*(s.origins for s in failures if abs(s.end - end) <= _TOLERANCE))
            return _Sim(end, False, 0, origins, first_raise)
        t = max(s.end for s in sims)
        value += sum(s.value for s in sims if s.ok)
    else:
        for child in spec.children:
            sim = _simulate(child, t)
            if first_raise is None:
                first_raise = sim.first_raise  # later calls can only raise later
            t = sim.end
            if sim.ok:
                value += sim.value
            elif not spec.catch:
                return _Sim(t, False, 0, sim.origins, first_raise)
    if spec.raises is not None:
        own = frozenset({spec.label})
        return _Sim(t, False, 0, own, first_raise if first_raise is not None else (t, own))
    return _Sim(t, True, value, frozenset(), first_raise)


def _expect(tree: CallTree, timeout: float | None, end_on_error: bool) -> Expected:
    sim = _simulate(tree.root, 0.0)
    if end_on_error and sim.first_raise is not None:
        end, origins = sim.first_raise
        status, result = Status.FAILED, None
    elif sim.ok:
        end, origins, status, result = sim.end, frozenset(), Status.COMPLETED, sim.value
    else:
        end, origins, status, result = sim.end, sim.origins, Status.FAILED, None
    if timeout is None or end < timeout - _TOLERANCE:
        return Expected(frozenset({status}), result, origins, end)
    if end > timeout + _TOLERANCE:
        return Expected(frozenset({Status.TIMED_OUT}), None, frozenset(), timeout)
    return Expected(frozenset({status, Status.TIMED_OUT}), result, origins, end)


# -- flow specs ----------------------------------------------------------------


def _copy_context(value: Mapping[str, object]) -> dict[str, object]:
    return dict(value)


@final
@attrs.frozen(repr=False, eq=True, hash=False)
class FlowSpec:
    """A generated flow: a :class:`CallTree` and the Flow's settings, from :func:`flows`.

    Attributes:
        tree: what the nodes do.
        timeout: the Flow's ``timeout``.
        end_on_error: the Flow's ``end_on_error``.
        context: the Flow's ``context``, besides the list under
            :data:`VISITED` every generated flow adds.
        name: the Flow's name.

    .. versionadded:: 0.1
    """

    tree: CallTree
    timeout: float | None = None
    end_on_error: bool = False
    context: Mapping[str, object] = attrs.field(factory=dict, converter=_copy_context)
    name: str = "generated"

    def __repr__(self) -> str:
        settings = f"timeout={self.timeout!r}, end_on_error={self.end_on_error!r}, context={dict(self.context)!r}"
        return f"FlowSpec({settings},\n" + "\n".join(self.tree.root.describe("  ")) + "\n)"

    @property
    def expected(self) -> Expected:
        """The outcome every run of this spec must have."""
        return _expect(self.tree, self.timeout, self.end_on_error)

    @property
    def flow_context(self) -> dict[str, object]:
        """The context the built Flow starts each run from."""
        return {**self.context, VISITED: []}

    def build(self) -> GeneratedFlow:
        """Build a real :class:`~runtime.Flow` whose nodes do what the spec says and record it."""
        return GeneratedFlow(self)

    def check_outcome(self, result: RunResult[T]) -> None:
        """Check that *result* ended as :attr:`expected` says.

        Raises:
            AssertionError: the status, result, error or timing differs; the
                message names the calls involved.
        """
        expected = self.expected
        state = result.state
        where = f"run {state.run_id} of flow {state.flow_name!r}"
        statuses = " or ".join(sorted(s.value for s in expected.statuses))
        if state.status not in expected.statuses:
            got = f"{state.status.value}"
            if result.error is not None:
                got += f" with {_describe_error(result.error)}"
            want = statuses
            if Status.COMPLETED in expected.statuses:
                want += f" (result {expected.result})"
            elif expected.error_origins:
                want += f" (an error raised at {' or '.join(sorted(expected.error_origins))})"
            msg = f"{where} should have ended {want}, but it ended {got}."
            raise AssertionError(msg)
        if state.status is Status.COMPLETED and result.result != expected.result:
            msg = f"{where} completed with result {result.result!r}, but its calls add up to {expected.result}."
            raise AssertionError(msg)
        if state.status is Status.FAILED:
            origin = getattr(result.error, _ORIGIN, None)
            if origin not in expected.error_origins:
                msg = (
                    f"{where} failed with {_describe_error(result.error)}, but the error that ends it must be "
                    f"the one raised at {' or '.join(sorted(expected.error_origins))}."
                )
                raise AssertionError(msg)
        if state.status is Status.TIMED_OUT and not isinstance(result.error, RunTimeoutError):
            msg = f"{where} timed out, but its error is {_describe_error(result.error)}, not RunTimeoutError."
            raise AssertionError(msg)
        roots = state.roots()
        if roots and roots[0].finished_at is not None:
            took = roots[0].finished_at - roots[0].created_at
            if abs(took - expected.duration) > 1e-6:
                msg = (
                    f"{where}: the entry point {roots[0].node} ended after {took:g} s of Trio time, "
                    f"but its calls take {expected.duration:g} s."
                )
                raise AssertionError(msg)


def _describe_error(error: BaseException | None) -> str:
    if error is None:
        return "no error"
    origin = getattr(error, _ORIGIN, None)
    text = f"{type(error).__name__}({str(error)!r})"
    return text if origin is None else f"{text} raised at {origin}"


@final
class GeneratedFlow:
    """A built :class:`FlowSpec`: a real Flow whose nodes record what they did.

    The nodes record, per run, each call as it starts and as its ``finally``
    block runs, and the Flow subscribes a callback that keeps every event of
    every run, so the checkers can compare what happened with what should have.

    Attributes:
        spec: what was built.
        flow: the :class:`~runtime.Flow`; its entry point takes one argument, 0.

    .. versionadded:: 0.1
    """

    __slots__ = ("_events", "_finalized", "_started", "flow", "spec")

    def __init__(self, spec: FlowSpec) -> None:
        self.spec = spec
        self._started: dict[str, list[CallSpec]] = collections.defaultdict(list)
        self._finalized: dict[str, list[CallSpec]] = collections.defaultdict(list)
        self._events: dict[str, list[Event]] = collections.defaultdict(list)
        nodes: dict[str, Node[[int], int]] = {}
        for name, specs in reversed(spec.tree.nodes().items()):  # children before their callers
            nodes[name] = self._make_node(name, specs, nodes)
        self.flow: Flow[[int], int] = Flow(
            spec.name,
            entry_point=nodes[spec.tree.root.node],
            timeout=spec.timeout,
            end_on_error=spec.end_on_error,
            context=spec.flow_context,
            subscribers=[self._record_event],
        )

    def __repr__(self) -> str:
        return f"<GeneratedFlow {self.spec.name!r}: {self.spec.tree.size} calls>"

    def _record_event(self, event: Event) -> None:
        self._events[event.run_id].append(event)

    def _make_node(self, name: str, specs: Sequence[CallSpec], nodes: Mapping[str, Node[[int], int]]) -> Node[[int], int]:
        started, finalized = self._started, self._finalized

        async def body(item: int) -> int:
            spec = specs[item]
            run_id = current_frame.get().run.state.job_id
            started[run_id].append(spec)
            visited = context.get(VISITED, None)
            if isinstance(visited, list):
                visited.append(spec.label)  # in place: only this run may see it
            try:
                if spec.delay:
                    await trio.sleep(spec.delay)
                if spec.broadcast:
                    await broadcast(spec.label)
                total = spec.value
                if spec.children and spec.batched:
                    child = nodes[spec.children[0].node]
                    results = await call_batch(child, range(len(spec.children)), return_exceptions=spec.catch)
                    total += sum(r for r in results if isinstance(r, int))
                else:
                    for child_spec in spec.children:
                        child = nodes[child_spec.node]
                        if spec.catch:
                            with contextlib.suppress(Exception):  # the spec says: catch
                                total += await call(child, child_spec.item)
                        else:
                            total += await call(child, child_spec.item)
                if spec.raises is not None:
                    exc = spec.raises(f"injected in {spec.label}")
                    setattr(exc, _ORIGIN, spec.label)
                    raise exc
                return total
            finally:
                finalized[run_id].append(spec)

        body.__name__ = body.__qualname__ = name
        return Node(body, name=name)

    def started(self, run_id: str) -> list[CallSpec]:
        """The calls of run *run_id* that started, in the order they started."""
        return list(self._started.get(run_id, ()))

    def finalized(self, run_id: str) -> list[CallSpec]:
        """The calls of run *run_id* whose ``finally`` block ran, in that order."""
        return list(self._finalized.get(run_id, ()))

    def events(self, run_id: str) -> list[Event]:
        """Every event of run *run_id*, as the Flow's subscriber received them."""
        return list(self._events.get(run_id, ()))

    def expected_context(self, result: RunResult[T]) -> dict[str, object]:
        """The context *result*'s run must end with: the spec's, plus its own visits only."""
        visited = [spec.label for spec in self.started(result.state.run_id)]
        return {**self.spec.context, VISITED: visited}

    async def arun(self) -> RunResult[int]:
        """Run the flow once (``await flow.arun(0)``)."""
        return await self.flow.arun(0)

    def run(self) -> RunResult[int]:
        """Run the flow once under ``MockClock(autojump_threshold=0)``, with :func:`run_with_schedule`.

        So its task watch and real-time watchdog apply; Trio's scheduler is left alone.
        """
        from ._schedules import run_with_schedule

        return run_with_schedule(self.flow, 0, seed=None)  # type: ignore[return-value]

    def check(self, result: RunResult[int], *, tasks: TaskWatch | None = None) -> None:
        """Run every checker on *result*, and :meth:`FlowSpec.check_outcome`.

        Args:
            result: a finished run of this flow.
            tasks: a :func:`~runtime.testing.watch_tasks` watch that saw the run.

        Raises:
            AssertionError: a violation; the message says which, in terms of
                call paths and node names.
        """
        from ._checkers import check_events, check_request_tree, check_structure

        run_id = result.state.run_id
        check_structure(
            result,
            tasks=tasks,
            started=[s.label for s in self.started(run_id)],
            finalized=[s.label for s in self.finalized(run_id)],
        )
        check_request_tree(result, calls=[s.node_path for s in self.started(run_id)])
        check_events(self.events(run_id), result)
        self.spec.check_outcome(result)


# -- strategies ------------------------------------------------------------------


def _check_strategy(value: object, name: str, api: str) -> None:
    if not isinstance(value, st.SearchStrategy):
        msg = f"{api}: {name}={value!r} must be a strategy, e.g. {name}=st.just(...) or st.sampled_from([...])."
        raise InvalidArgument(msg)


def _check_int(value: object, name: str, api: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        msg = f"{api}: {name}={value!r} must be an integer, {minimum} or more."
        raise InvalidArgument(msg)
    return value


def _capacity(max_depth: int, max_children: int) -> float:
    """The most calls a tree of this depth and fan-out can hold."""
    if max_children <= 1:
        return max_depth + 1 if max_children == 1 else 1
    total = (max_children ** (max_depth + 1) - 1) // (max_children - 1)
    return math.inf if total > 10**9 else total


def _draw_delay(draw: DrawFn, delays: SearchStrategy[float]) -> float:
    delay = draw(delays)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay) or delay < 0:
        msg = f"call_trees(delays=...) drew {delay!r}; a delay is a finite number of seconds, 0 or more."
        raise InvalidArgument(msg)
    return float(delay)


def _draw_exception(draw: DrawFn, exceptions: SearchStrategy[ExceptionType | None]) -> ExceptionType | None:
    exc_type = draw(exceptions)
    if exc_type is None:
        return None
    if not (isinstance(exc_type, type) and issubclass(exc_type, Exception)):
        msg = (
            f"call_trees(exceptions=...) drew {exc_type!r}; draw an Exception subclass to raise "
            "(e.g. ValueError), or None for a call that returns."
        )
        raise InvalidArgument(msg)
    try:
        exc_type("injected")
    except Exception as exc:
        msg = f"call_trees(exceptions=...) drew {exc_type.__name__}, which cannot be built from one message: {exc!r}."
        raise InvalidArgument(msg) from exc
    return exc_type


_DEFAULT_DELAYS: SearchStrategy[float] = st.sampled_from((0.0, 0.0, 1.0, 2.0, 3.0))
_ANOTHER: SearchStrategy[bool] = st.sampled_from((False, True, True))
_DEFAULT_EXCEPTIONS: SearchStrategy[ExceptionType | None] = st.sampled_from(
    (None, None, None, ValueError, KeyError, RuntimeError)
)


def call_trees(
    *,
    min_nodes: int = 1,
    max_nodes: int = 12,
    max_depth: int = 3,
    max_children: int = 4,
    batched: SearchStrategy[bool] | None = None,
    delays: SearchStrategy[float] | None = None,
    exceptions: SearchStrategy[ExceptionType | None] | None = None,
    catches: SearchStrategy[bool] | None = None,
    broadcasts: SearchStrategy[bool] | None = None,
) -> SearchStrategy[CallTree]:
    """A strategy for :class:`CallTree` values: trees of node calls with drawn behaviour.

    A tree has *min_nodes* to *max_nodes* calls (the entry point counts), no
    path longer than *max_depth* calls below the entry point, and no call
    making more than *max_children* calls. Trees shrink towards fewer calls,
    sequential children, no delays and no errors.

    Args:
        min_nodes: the fewest calls, 1 or more.
        max_nodes: the most calls.
        max_depth: the deepest call below the entry point, 0 or more.
        max_children: the most calls one node makes, 0 or more.
        batched: whether a node's calls are one ``rt.call_batch`` (default: either).
        delays: seconds a node sleeps first (default: mostly 0, else 1 to 3).
        exceptions: the ``Exception`` class a node raises, or ``None`` to return
            (default: mostly ``None``, else ``ValueError``, ``KeyError`` or
            ``RuntimeError``).
        catches: whether a node catches its children's errors (default: either).
        broadcasts: whether a node broadcasts (default: either).

    Raises:
        hypothesis.errors.InvalidArgument: a bound that is not an integer or
            is too small, ``min_nodes > max_nodes``, more *min_nodes* than
            *max_depth* and *max_children* allow, an argument that is not a
            strategy, or (when drawn) a negative delay or a non-exception.

    .. versionadded:: 0.1
    """
    api = "call_trees()"
    _check_int(min_nodes, "min_nodes", api, minimum=1)
    _check_int(max_nodes, "max_nodes", api, minimum=1)
    _check_int(max_depth, "max_depth", api, minimum=0)
    _check_int(max_children, "max_children", api, minimum=0)
    if min_nodes > max_nodes:
        msg = f"{api}: min_nodes={min_nodes} is greater than max_nodes={max_nodes}; no tree can have both."
        raise InvalidArgument(msg)
    capacity = _capacity(max_depth, max_children)
    if min_nodes > capacity:
        msg = (
            f"{api}: min_nodes={min_nodes}, but a tree with max_depth={max_depth} and "
            f"max_children={max_children} holds at most {capacity} calls."
        )
        raise InvalidArgument(msg)
    batched = st.booleans() if batched is None else batched
    delays = _DEFAULT_DELAYS if delays is None else delays
    exceptions = _DEFAULT_EXCEPTIONS if exceptions is None else exceptions
    catches = st.booleans() if catches is None else catches
    broadcasts = st.booleans() if broadcasts is None else broadcasts
    for name, value in (
        ("batched", batched),
        ("delays", delays),
        ("exceptions", exceptions),
        ("catches", catches),
        ("broadcasts", broadcasts),
    ):
        _check_strategy(value, name, api)
    upper = int(min(max_nodes, capacity))

    @st.composite
    def trees(draw: DrawFn) -> CallTree:
        # Each call's draws sit together, its children's right after, so that
        # Hypothesis shrinks a subtree by dropping its block of draws. A call's
        # children are counted (reserved) before any is drawn: the fewest calls
        # then follow from forcing enough children while too few are reserved.
        reserved = 1
        numbers = iter(range(upper))

        def build(node: str, item: int, path: tuple[str, ...], depth: int) -> CallSpec:
            nonlocal reserved
            delay = _draw_delay(draw, delays)
            does_broadcast = draw(broadcasts)
            raises = _draw_exception(draw, exceptions)
            n_children = 0
            if depth < max_depth:
                most = min(max_children, upper - reserved)
                least = min(most, max(0, min_nodes - reserved))
                # one "another?" draw per child past the least, as st.lists
                # does: a child's block of draws then shrinks away with it
                n_children = least
                while n_children < most and draw(_ANOTHER):
                    n_children += 1
            reserved += n_children
            is_batched = n_children > 0 and draw(batched)
            catch = n_children > 0 and draw(catches)
            children: list[CallSpec] = []
            if is_batched:
                name = f"n{next(numbers)}"
                for i in range(n_children):
                    children.append(build(name, i, (*path, f"{name}[{i}]"), depth + 1))
            else:
                for _ in range(n_children):
                    name = f"n{next(numbers)}"
                    children.append(build(name, 0, (*path, name), depth + 1))
            return CallSpec(
                node=node,
                item=item,
                path=path,
                delay=delay,
                broadcast=does_broadcast,
                batched=is_batched,
                catch=catch,
                raises=raises,
                value=int(node[1:]) + 1,
                children=tuple(children),
            )

        root = f"n{next(numbers)}"
        return CallTree(build(root, 0, (root,), 0))

    return trees()


_DEFAULT_TIMEOUTS: SearchStrategy[float | None] = st.none() | st.sampled_from((0.5, 1.5, 2.5, 4.5))
_DEFAULT_CONTEXTS: SearchStrategy[dict[str, object]] = st.dictionaries(
    st.sampled_from(("user_id", "region", "limits")),
    st.one_of(st.integers(0, 9), st.text(max_size=3), st.lists(st.integers(0, 9), max_size=3)),
    max_size=3,
)


def flows(
    *,
    trees: SearchStrategy[CallTree] | None = None,
    timeouts: SearchStrategy[float | None] | None = None,
    end_on_error: SearchStrategy[bool] | None = None,
    contexts: SearchStrategy[Mapping[str, object]] | None = None,
) -> SearchStrategy[FlowSpec]:
    """A strategy for :class:`FlowSpec` values: a call tree and the Flow's settings.

    Build the drawn spec with :meth:`FlowSpec.build`, run it, and check the run
    with the checkers of :mod:`runtime.testing` (or :meth:`GeneratedFlow.check`).

    Args:
        trees: the call trees (default: :func:`call_trees` with its defaults).
        timeouts: the Flow's timeout, or ``None`` for none (default: ``None``
            or a few half seconds, which never tie with the default delays).
        end_on_error: the Flow's ``end_on_error`` (default: either).
        contexts: the Flow's context, a dict with ``str`` keys (default: small
            dicts of numbers, strings and lists).

    Raises:
        hypothesis.errors.InvalidArgument: an argument that is not a strategy,
            or (when drawn) a timeout that is not a positive number or a
            context that is not a dict with ``str`` keys.

    .. versionadded:: 0.1
    """
    api = "flows()"
    trees = call_trees() if trees is None else trees
    timeouts = _DEFAULT_TIMEOUTS if timeouts is None else timeouts
    end_on_error = st.booleans() if end_on_error is None else end_on_error
    contexts = _DEFAULT_CONTEXTS if contexts is None else contexts
    for name, value in (("trees", trees), ("timeouts", timeouts), ("end_on_error", end_on_error), ("contexts", contexts)):
        _check_strategy(value, name, api)

    @st.composite
    def specs(draw: DrawFn) -> FlowSpec:
        tree = draw(trees)
        if not isinstance(tree, CallTree):
            msg = f"{api}: trees=... drew {tree!r}; draw CallTree values, e.g. trees=call_trees(max_nodes=5)."
            raise InvalidArgument(msg)
        timeout = draw(timeouts)
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            msg = f"{api}: timeouts=... drew {timeout!r}; a timeout is a positive number of seconds, or None."
            raise InvalidArgument(msg)
        ctx = draw(contexts)
        if not isinstance(ctx, dict) or not all(isinstance(k, str) for k in ctx):
            msg = f"{api}: contexts=... drew {ctx!r}; a context is a dict with str keys."
            raise InvalidArgument(msg)
        if VISITED in ctx:
            msg = f"{api}: contexts=... drew the key {VISITED!r}, which generated flows keep for themselves."
            raise InvalidArgument(msg)
        return FlowSpec(tree, timeout=timeout, end_on_error=bool(draw(end_on_error)), context=ctx)

    return specs()
