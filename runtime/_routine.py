"""Routines: the nodes of a routine graph (Routilux semantics).

A :class:`Routine` declares input *slots* (each with a handler) and output
*events* (each with the parameters it carries). A :class:`~runtime.Flow`
connects events to slots; in a job, each routine is an actor that handles one
slot message at a time, and ``emit`` sends an event to every connected slot.

What a handler can reach while it runs comes from a context variable set in
its routine's actor task, never from instance attributes, so the same
routine class serves any number of concurrent jobs.
"""

from __future__ import annotations

import abc
import collections.abc
import contextlib
import contextvars
import enum
import inspect
import io
import math
import types
import weakref
from typing import TYPE_CHECKING, NamedTuple, Protocol, Self, TypeAlias, final, overload

import attrs

from ._exceptions import EventDataError, GraphDefinitionError, OutsideRunError
from ._executor import check_executor

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from ._definition import Allowed
    from ._executor import Executor
    from ._state import JobState
    from ._util import AnyFlow

    MergeStrategy = str | Callable[[dict[str, object], dict[str, object]], dict[str, object]]

Handler: TypeAlias = "Callable[..., object]"  # type: ignore[explicit-any]  # called with each message's data


# -- what a handler sees ------------------------------------------------------


class ExecutionContext(NamedTuple):
    """Where a slot handler runs: from :meth:`Routine.get_execution_context`.

    A named tuple, so ``flow, job_state, routine_id = ctx`` works.

    Attributes:
        flow: the :class:`~runtime.Flow` the job belongs to.
        job_state: the job's :class:`~runtime.JobState`; keep execution state
            here (``update_routine_state``, ``update_shared_data``, ...).
        routine_id: this routine's id in the flow.

    .. versionadded:: 0.1
    """

    flow: AnyFlow
    job_state: JobState
    routine_id: str


class _Host(Protocol):
    """The routine actor running a handler: what ``emit`` and friends talk to."""

    routine: Routine
    routine_id: str

    @property
    def context(self) -> ExecutionContext | None: ...

    def emit(self, event: str, data: dict[str, object]) -> None: ...

    def emit_deferred(self, event: str, data: dict[str, object]) -> None: ...

    def send_output(self, output_type: str, data: dict[str, object]) -> None: ...

    async def flush(self) -> None: ...


#: The routine actor whose handler is running in this task. Set once in each
#: routine actor's own task (Trio gives every task its own context), so it
#: is never seen by another job or another routine.
current_host: contextvars.ContextVar[_Host] = contextvars.ContextVar("trioflow_routine")


@final
class _Collector:
    """The host of a handler running on an executor: keeps what it emits, for its job to send.

    A thread or a worker process must not touch the job, so ``emit``,
    ``emit_deferred_event`` and ``send_output`` are noted here, in order, and
    the routine's actor applies them when the handler has returned (or
    raised: what was emitted before is still sent, as on the loop).
    """

    __slots__ = ("emitted", "routine", "routine_id")

    #: No execution context: the job's state lives on the loop.
    context = None

    def __init__(self, routine: Routine, routine_id: str) -> None:
        self.routine = routine
        self.routine_id = routine_id
        self.emitted: list[tuple[str, str, dict[str, object]]] = []

    def emit(self, event: str, data: dict[str, object]) -> None:
        self.emitted.append(("emit", event, data))

    def emit_deferred(self, event: str, data: dict[str, object]) -> None:
        self.emitted.append(("deferred", event, data))

    def send_output(self, output_type: str, data: dict[str, object]) -> None:
        self.emitted.append(("output", output_type, data))

    async def flush(self) -> None:  # pragma: no cover - aemit needs an async handler, which runs on the loop
        msg = f"Routine {self.routine_id!r}: aemit() from a handler on an executor; use emit()."
        raise OutsideRunError(msg)


#: The attribute of an exception raised by a handler on an executor that holds what it emitted first.
EMITTED_ATTR = "_trioflow_emitted"


def call_handler(
    func: Handler, routine: Routine | None, routine_id: str, args: tuple[object, ...], /, **kwargs: object
) -> tuple[object, list[tuple[str, str, dict[str, object]]]]:
    """Call a slot handler on an executor (a thread, a worker process, a Ray task); private.

    *func* is called as ``func(routine, *args, **kwargs)`` for a method of the
    routine, else as ``func(*args, **kwargs)``: the arguments its signature
    takes (see :class:`Routine`). Returns the handler's result and what it emitted
    (see :class:`_Collector`); an exception it raises carries what it emitted
    first under :data:`EMITTED_ATTR`.
    """
    collector = _Collector(routine, routine_id)  # type: ignore[arg-type]  # None: a function handler emits nothing of its routine
    token = current_host.set(collector)
    try:
        result = func(routine, *args, **kwargs) if routine is not None else func(*args, **kwargs)
    except Exception as exc:
        if collector.emitted:
            setattr(exc, EMITTED_ATTR, collector.emitted)
        raise
    finally:
        current_host.reset(token)
    return result, collector.emitted


# -- slots and events ---------------------------------------------------------

_MERGE_NAMES = ("override", "append")


def _check_merge(where: str, merge_strategy: object) -> None:
    """Raise unless *merge_strategy* is ``"override"``, ``"append"`` or a function."""
    if merge_strategy != "override" and not callable(merge_strategy) and merge_strategy not in _MERGE_NAMES:
        msg = f"{where}: choose 'override', 'append', or a function merge(old, new) -> merged."
        raise TypeError(msg)


def _param_order(call: str, sep: str, params: Iterable[str] | None) -> tuple[str, ...] | None:
    """An event's declared parameter names, in order and once each; *call* + *sep* name the API in errors."""
    if params is None:
        return None
    if isinstance(params, str):
        msg = f"{call}{sep}{params!r}): give the parameters as a list of names, e.g. [{params!r}]."
        raise TypeError(msg)
    order = tuple(dict.fromkeys(params))
    bad = [p for p in order if not isinstance(p, str)]
    if bad:
        msg = f"{call}): parameter names are strings, not {bad[0]!r}."
        raise TypeError(msg)
    return order


def _check_owner(where: str, routine: object) -> None:
    if routine is not None and not isinstance(routine, Routine):
        msg = f"{where}: routine={routine!r} is not a Routine; give the routine the {where.split('(')[0]} belongs to, or None."
        raise TypeError(msg)


@final
class Slot:
    """An input of a routine: a name, a handler, and how messages merge.

    :meth:`Routine.define_slot` makes a slot on its routine. A slot can also
    be made on its own, as in Routilux (``Slot("input", handler=take)``),
    for instance to test a handler.

    In a job, each message for the slot is merged and handed to the handler
    by the job's instance of the routine (its actor); what an ``"append"``
    slot accumulated is that job's own. Outside a job, :meth:`receive` merges
    into the slot's own data and calls the handler in place, synchronously.

    Slots and events can be wired by hand (:meth:`connect`,
    :meth:`RoutineEvent.connect`, ``Connection(event, slot)``). Between
    routines of no flow, an ``emit`` then calls :meth:`receive` of every
    connected slot, in connection order. Once the routines are added to a
    :class:`~runtime.Flow`, such a link is one of the flow's connections,
    exactly as if made with ``flow.connect(...)``: its messages travel
    between the routines' actors inside a job.

    Args:
        name: the slot's name, unique within its routine.
        routine: the routine the slot belongs to (``define_slot`` passes
            it), or ``None``.
        handler: called with each message's data, by its signature (see
            :class:`Routine`), or ``None`` for a slot that only receives.
        merge_strategy: ``"override"`` (the handler gets each message's data),
            ``"append"`` (it gets, per key, the list of every value received
            so far: in the job, or outside one by this slot) or a function
            ``merge(old, new) -> merged``.

    Attributes:
        name: as given.
        routine: as given.
        handler: as given.
        merge_strategy: as given.

    Raises:
        TypeError: *name* is not a string, *routine* is not a routine,
            *handler* is not callable, or *merge_strategy* is none of the
            choices.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       Made on its own, with :meth:`connect`, :meth:`receive` and ``routine``.
    """

    __slots__ = (
        "_data",
        "_func",
        "_is_async",
        "_links",
        "_on_routine",
        "_params",
        "_plan",
        "handler",
        "merge_strategy",
        "name",
        "routine",
    )

    def __init__(
        self,
        name: str = "",
        routine: Routine | None = None,
        handler: Handler | None = None,
        merge_strategy: MergeStrategy = "override",
    ) -> None:
        if not isinstance(name, str):
            msg = f"Slot({name!r}): a slot name is a string."
            raise TypeError(msg)
        if routine is not None and not isinstance(routine, Routine):
            _check_owner(f"Slot({name!r})", routine)
        if handler is not None and not callable(handler):
            msg = f"Slot({name!r}, handler={handler!r}): the handler must be callable."
            raise TypeError(msg)
        if merge_strategy != "override":
            _check_merge(f"Slot({name!r}, merge_strategy={merge_strategy!r})", merge_strategy)
        self.name = name
        self.routine = routine
        self.handler = handler
        self.merge_strategy = merge_strategy
        # A handler that is a method of its own routine is kept unbound and
        # called on the routine the actor holds.
        func: Handler | None = handler
        self._on_routine = False
        if handler is not None and routine is not None and getattr(handler, "__self__", None) is routine:
            func = handler.__func__  # type: ignore[attr-defined]
            self._on_routine = True
        self._func = func
        self._is_async, self._params, self._plan = _handler_facts(handler)
        #: What :meth:`receive` merged so far (outside a job).
        self._data: dict[str, object] = {}
        #: The links made by hand to this slot (the same objects as in each event's).
        self._links: list[Connection] | None = None

    def _arguments(self, data: dict[str, object]) -> tuple[tuple[object, ...], dict[str, object]]:
        """The positional and keyword arguments the handler is called with for *data*.

        The rules are written in :class:`Routine`'s docstring.
        """
        plan = self._plan
        kind = plan.kind
        if kind is _Call.KWARGS:
            return (), data
        if kind is _Call.WHOLE:
            return (data,), {}
        if kind is _Call.ONE:
            name = plan.names[0]
            if name in data:
                return (data[name],), {}
            if not data and plan.optional:
                return (), {}
            return (data,), {}
        matched = {name: data[name] for name in plan.names if name in data}
        if matched or not data or not plan.names:
            return (), matched
        return (data,), {}

    # -- wiring by hand (Routilux's object API) ---------------------------------

    @property
    def connected_events(self) -> list[RoutineEvent]:
        """The events linked to this slot by hand, in the order linked (a new list).

        Connections made with ``flow.connect(...)`` belong to the flow and are
        not listed: see :attr:`Flow.connections <runtime.Flow.connections>`.
        """
        return [link.source_event for link in self._links or () if link.source_event is not None]

    def connect(self, event: RoutineEvent, param_mapping: Mapping[str, str] | None = None) -> Connection:
        """Link *event* to this slot: the same as ``event.connect(slot, param_mapping)``.

        See :meth:`RoutineEvent.connect`.
        """
        if not isinstance(event, RoutineEvent):
            msg = f"{self!r}.connect({event!r}): connect a slot to a RoutineEvent (routine.get_event(name), or what define_event returned)."
            raise TypeError(msg)
        return event.connect(self, param_mapping)

    def disconnect(self, event: RoutineEvent) -> None:
        """Remove the link from *event* to this slot, if there is one: ``event.disconnect(slot)``."""
        if isinstance(event, RoutineEvent):
            event.disconnect(self)

    def receive(self, data: Mapping[str, object], job_state: object = None, flow: object = None) -> None:
        """Merge *data* by the slot's ``merge_strategy``, then call the handler in place, outside a job.

        This is what an ``emit`` does, outside a job, for each slot wired to
        the event by hand; call it directly to test a handler. The handler
        runs synchronously in the calling thread, with the merged data, by
        the rules in :class:`Routine`; what it raises is raised here,
        unchanged (no error strategy applies outside a job). Inside a job,
        messages reach the handler through the job's instance of the
        routine, never through ``receive``.

        Args:
            data: the message's data, parameter names to values.
            job_state: Routilux's job state argument: refused, see below.
            flow: Routilux's flow argument: refused, see below.

        Raises:
            TypeError: *data* is not a mapping, or the handler is ``async``
                (an async handler runs inside a job).
            OutsideRunError: a *job_state* or *flow* was given: a handler
                runs in a job only when the job delivers the message.
            Exception: what the handler raised.

        .. versionadded:: 0.2
        """
        if job_state is not None or flow is not None:
            given = "job_state" if job_state is not None else "flow"
            msg = (
                f"{self!r}.receive(..., {given}=...): receive() calls the handler in place, outside any job, so "
                "it takes no job state or flow. To handle a message in a job, run the flow "
                "(flow.execute(...)) and let a connected event deliver it."
            )
            raise OutsideRunError(msg)
        if not isinstance(data, collections.abc.Mapping):
            msg = f"{self!r}.receive({data!r}): give the message's data as a dict of parameter names to values."
            raise TypeError(msg)
        if self._is_async:
            msg = (
                f"{self!r}.receive(...): the handler is async, and receive() calls it in place, synchronously. "
                "Async handlers run inside a job: add the routine to a flow and run it, or await the handler "
                "yourself."
            )
            raise TypeError(msg)
        merged = self._merge_data(dict(data))
        handler = self.handler
        if handler is not None:
            args, kwargs = self._arguments(merged)
            handler(*args, **kwargs)

    def _merge_data(self, new: dict[str, object]) -> dict[str, object]:
        """Merge *new* into what :meth:`receive` merged so far; return (a copy of) the result."""
        strategy = self.merge_strategy
        if strategy == "append":
            merged = dict(self._data)
            for key, value in new.items():
                if key not in merged:
                    merged[key] = [value]
                else:
                    old = merged[key]
                    merged[key] = [*old, value] if isinstance(old, list) else [old, value]
        elif callable(strategy):
            merged = dict(strategy(dict(self._data), dict(new)))
        else:
            merged = dict(new)
        self._data = merged
        return dict(merged)

    def __repr__(self) -> str:
        handler = getattr(self.handler, "__qualname__", repr(self.handler))
        return f"<Slot {self.name!r} handler={handler}>"


@final
class _Call(enum.Enum):
    """How a handler is called: see the rules in :class:`Routine`'s docstring."""

    KWARGS = "every key as a keyword argument"
    WHOLE = "the whole data dict"
    ONE = "one parameter"
    MATCH = "the keys it names"


class _Plan(NamedTuple):
    kind: _Call
    #: The names the handler takes as keywords (without ``self``), in order;
    #: ONE: its one parameter's name.
    names: tuple[str, ...]
    #: ONE only: whether the parameter has a default (or is ``*args``).
    optional: bool


_KWARGS_PLAN = _Plan(_Call.KWARGS, (), False)

_Facts: TypeAlias = "tuple[bool, frozenset[str] | None, _Plan]"

#: What _handler_facts found per function (for a bound method, per its function):
#: every job makes its routines again, and each define_slot asks.
_PLAIN_FACTS: weakref.WeakKeyDictionary[object, _Facts] = weakref.WeakKeyDictionary()
_METHOD_FACTS: weakref.WeakKeyDictionary[object, _Facts] = weakref.WeakKeyDictionary()


def _handler_facts(handler: Handler | None) -> _Facts:
    """Whether *handler* is async, the keyword names it accepts (see :func:`_accepted_params`), and how to call it.

    Cached per function, so that building a job's routines inspects no
    signature twice.
    """
    if handler is None:
        return False, None, _KWARGS_PLAN
    func = getattr(handler, "__func__", None)
    cache, key = (_PLAIN_FACTS, handler) if func is None else (_METHOD_FACTS, func)
    try:
        return cache[key]
    except (KeyError, TypeError):  # TypeError: not weakly referenceable, or unhashable
        pass
    facts = (inspect.iscoroutinefunction(handler), _accepted_params(handler), _call_plan(handler))
    with contextlib.suppress(TypeError):
        cache[key] = facts
    return facts


def _accepted_params(handler: Handler) -> frozenset[str] | None:
    """The keyword names *handler* accepts, or ``None`` if it takes ``**kwargs`` (or cannot tell)."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return None
    names: set[str] = set()
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if param.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            names.add(param.name)
    return frozenset(names)


def _call_plan(handler: Handler) -> _Plan:
    """How to call *handler*, from its signature (Routilux's rules; see :class:`Routine`)."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return _KWARGS_PLAN
    params = list(signature.parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return _KWARGS_PLAN
    names = tuple(
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )
    if len(params) == 1 and params[0].kind is not inspect.Parameter.KEYWORD_ONLY:
        only = params[0]
        if only.name == "data" and only.kind is not inspect.Parameter.VAR_POSITIONAL:
            return _Plan(_Call.WHOLE, (only.name,), False)
        optional = only.default is not inspect.Parameter.empty or only.kind is inspect.Parameter.VAR_POSITIONAL
        return _Plan(_Call.ONE, (only.name,), optional)
    return _Plan(_Call.MATCH, names, False)


@final
class RoutineEvent:
    """An output of a routine: a name and the parameters it carries.

    :meth:`Routine.define_event` makes an event on its routine. An event can
    also be made on its own, as Routilux's ``Event``
    (``RoutineEvent("output", output_params=["value"])``), and wired to slots
    by hand with :meth:`connect` (see :class:`Slot` for what a link means
    inside and outside a flow).

    Args:
        name: the event's name, unique within its routine.
        routine: the routine the event belongs to (``define_event`` passes
            it), or ``None``. An iterable of names in this place, with no
            *output_params*, is read as the parameters (the older
            ``RoutineEvent(name, params)``).
        output_params: the parameter names ``emit`` may pass, in order;
            ``None`` allows any.

    Attributes:
        name: as given.
        routine: as given.
        params: the parameter names as a frozenset, or ``None`` for any.

    Raises:
        TypeError: *name* is not a string, *routine* is not a routine, or
            *output_params* is a string or holds something that is not one.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       Made on its own, with :meth:`connect`, :meth:`emit`, ``routine`` and
       ``output_params``.
    """

    __slots__ = ("_links", "_order", "name", "params", "routine")

    def __init__(
        self,
        name: str = "",
        routine: Routine | Iterable[str] | None = None,
        output_params: Iterable[str] | None = None,
    ) -> None:
        if not isinstance(name, str):
            msg = f"RoutineEvent({name!r}): an event name is a string."
            raise TypeError(msg)
        owner: Routine | None = None
        if isinstance(routine, Routine):
            owner = routine
        elif routine is not None:
            if output_params is not None or isinstance(routine, str) or not isinstance(routine, collections.abc.Iterable):
                _check_owner(f"RoutineEvent({name!r})", routine)
            output_params = routine  # the older RoutineEvent(name, params)
        order = _param_order(f"RoutineEvent({name!r}", ", output_params=", output_params)
        self._setup(name, owner, order)

    def _setup(self, name: str, routine: Routine | None, order: tuple[str, ...] | None) -> None:
        self.name = name
        self.routine = routine
        self._order = order
        self.params = None if order is None else frozenset(order)
        #: The links made by hand from this event, in the order made.
        self._links: list[Connection] | None = None

    @classmethod
    def _declared(cls, name: str, routine: Routine, order: tuple[str, ...] | None) -> RoutineEvent:
        """An event ``define_event`` has checked already (made once per job: no second check)."""
        event = cls.__new__(cls)
        event._setup(name, routine, order)
        return event

    @property
    def output_params(self) -> list[str]:
        """The declared parameter names, in the order declared (a new list; empty if any are allowed).

        .. versionadded:: 0.2
        """
        return list(self._order or ())

    @property
    def connected_slots(self) -> list[Slot]:
        """The slots linked to this event by hand, in the order linked (a new list).

        Connections made with ``flow.connect(...)`` belong to the flow and are
        not listed: see :attr:`Flow.connections <runtime.Flow.connections>`.

        .. versionadded:: 0.2
        """
        return [link.target_slot for link in self._links or () if link.target_slot is not None]

    def _link_to(self, slot: Slot) -> Connection | None:
        for link in self._links or ():
            if link.target_slot is slot:
                return link
        return None

    def connect(self, slot: Slot, param_mapping: Mapping[str, str] | None = None) -> Connection:
        """Link this event to *slot*, renaming parameters by *param_mapping* on the way.

        Between routines of no flow, :meth:`emit` (and ``routine.emit``)
        then calls ``slot.receive(...)`` in place. Between routines of one
        :class:`~runtime.Flow`, the link is one of the flow's connections,
        as if made with ``flow.connect(source_id, event, target_id, slot,
        param_mapping)``; a link to a slot whose routine is not in the flow
        is refused when a job starts. Linking a linked pair again changes
        nothing. Routilux's ``Connection(event, slot, param_mapping)`` does
        the same.

        Args:
            slot: the :class:`Slot` to link to.
            param_mapping: renames, event parameter name to slot parameter
                name, as for ``flow.connect``.

        Returns:
            The link, a :class:`~runtime.Connection`.

        Raises:
            TypeError: *slot* is not a slot, or *param_mapping* is not a
                dict of names.
            GraphDefinitionError: *param_mapping* renames a parameter the
                event does not declare, or to a name the slot's handler
                cannot take; or the pair is linked with another mapping.

        .. versionadded:: 0.2
        """
        if not isinstance(slot, Slot):
            msg = f"{self!r}.connect({slot!r}): connect an event to a Slot (routine.get_slot(name), or what define_slot returned)."
            raise TypeError(msg)
        link = self._link_to(slot)
        if link is not None and (param_mapping is None or dict(link.param_mapping) == param_mapping):
            return link
        return Connection(self, slot, param_mapping)

    def disconnect(self, slot: Slot) -> None:
        """Remove the link from this event to *slot*, if there is one (made by hand, not by ``flow.connect``).

        .. versionadded:: 0.2
        """
        link = self._link_to(slot)
        if link is None:
            return
        self._links.remove(link)  # type: ignore[union-attr]  # link_to found it there
        if slot._links is not None and link in slot._links:
            slot._links.remove(link)

    def emit(self, flow: AnyFlow | None = None, **data: object) -> None:
        """Emit this event with *data*: ``routine.emit(event.name, flow=flow, **data)``.

        For an event defined on a routine, this is exactly
        :meth:`Routine.emit`. An event of no routine sends *data* to the slots
        linked to it by hand, calling each one's :meth:`Slot.receive` in place,
        in the order linked.

        Raises:
            EventDataError: *data* has a parameter the event does not declare.
            OutsideRunError: as for :meth:`Routine.emit`; or *flow* given for
                an event of no routine, which no flow connects.

        .. versionadded:: 0.2
        """
        routine = self.routine
        if routine is not None and routine.__dict__.get("_events", {}).get(self.name) is self:
            routine.emit(self.name, flow, **data)
            return
        if flow is not None:
            msg = (
                f"{self!r}.emit(flow=...): this event belongs to no routine of a flow, so no flow connects it. "
                "Define it on a routine with define_event(...) and add the routine to the flow, or drop flow=."
            )
            raise OutsideRunError(msg)
        if self.params is not None and not self.params.issuperset(data):
            extra = ", ".join(repr(k) for k in data if k not in self.params)
            declared = ", ".join(repr(p) for p in self.output_params) or "no parameters"
            msg = (
                f"{self!r}.emit(...) with undeclared parameter(s) {extra}; the event declares {declared}. "
                "Add them to its output_params or stop sending them."
            )
            raise EventDataError(msg)
        self._deliver(data)

    def _deliver(self, data: dict[str, object]) -> None:
        """Outside a job: *data* to every slot linked by hand, in the order linked."""
        for link in list(self._links or ()):
            link.activate(data)

    def __repr__(self) -> str:
        params = "any" if self.params is None else sorted(self.params)
        return f"<RoutineEvent {self.name!r} params={params}>"


def check_mapping(api: str, event: RoutineEvent, slot: Slot, param_mapping: object) -> dict[str, str]:
    """*param_mapping* as a dict, or an error naming the entry that cannot work from *event* to *slot*."""
    if param_mapping is None:
        return {}
    if not isinstance(param_mapping, collections.abc.Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in param_mapping.items()
    ):
        msg = (
            f"{api}: param_mapping={param_mapping!r} must be a dict of event parameter names to slot "
            "parameter names (str to str), or None."
        )
        raise TypeError(msg)
    mapping = dict(param_mapping)
    declared = event.params
    if declared is not None:
        unknown = [name for name in mapping if name not in declared]
        if unknown:
            carries = ", ".join(repr(p) for p in sorted(declared)) or "no parameters"
            msg = (
                f"{api}: param_mapping renames {', '.join(map(repr, unknown))}, which event {event.name!r} never "
                f"carries; it declares {carries}. Map the event's own parameter names."
            )
            raise GraphDefinitionError(msg)
    accepted = slot._params
    if slot.handler is not None and accepted is not None:
        bad = [name for name in mapping.values() if name not in accepted]
        if bad:
            handler = getattr(slot.handler, "__qualname__", repr(slot.handler))
            takes = ", ".join(repr(p) for p in sorted(accepted)) or "no parameters"
            msg = (
                f"{api}: param_mapping maps to {', '.join(map(repr, bad))}, which the handler of slot "
                f"{slot.name!r} ({handler}) cannot take; it takes {takes}. Map to one of those, or add the "
                "parameter (or **kwargs) to the handler."
            )
            raise GraphDefinitionError(msg)
    return mapping


def apply_mapping(data: dict[str, object], mapping: Mapping[str, str]) -> dict[str, object]:
    """*data* with the keys *mapping* renames under their new names; the others as they are."""
    renamed = {mapping[key]: value for key, value in data.items() if key in mapping}
    for key, value in data.items():
        if key not in mapping and key not in renamed:
            renamed[key] = value
    return renamed


_NO_MAPPING: Mapping[str, str] = types.MappingProxyType({})


@final
class Connection:
    """A connection from an event to a slot, with the renames (``param_mapping``) applied on the way.

    Two forms:

    - ``Connection(source_id, event, target_id, slot, param_mapping=None)``:
      a connection of a flow, by routine ids and names, as
      :meth:`Flow.connect <runtime.Flow.connect>` returns it. It equals the
      ``(source_id, event, target_id, slot)`` tuple that
      :attr:`Flow.connections <runtime.Flow.connections>` lists for it.
    - ``Connection(source_event, target_slot, param_mapping=None)``: a link
      made by hand between a :class:`RoutineEvent` and a :class:`Slot`
      (Routilux's form), made at once as by
      ``source_event.connect(target_slot, param_mapping)``; see
      :class:`Slot` for what it means inside and outside a flow.

    A renamed parameter reaches the slot under its new name only; the others
    pass unchanged.

    Attributes:
        source_id: the routine that emits (``None`` for a link made by hand).
        event: the event's name.
        target_id: the routine that receives (``None`` for a link made by hand).
        slot: the slot's name.
        param_mapping: event parameter name to slot parameter name (read-only;
            empty for none).
        source_event: the :class:`RoutineEvent` (of the flow's routine for a
            flow's connection), or ``None``.
        target_slot: the :class:`Slot`, or ``None``.

    Raises:
        TypeError: arguments of neither form, or a *param_mapping* that is not
            a dict of names.
        GraphDefinitionError: as for :meth:`RoutineEvent.connect`.

    .. versionadded:: 0.2
    """

    __slots__ = ("event", "param_mapping", "slot", "source_event", "source_id", "target_id", "target_slot")

    __hash__ = None  # type: ignore[assignment]  # compared by value, and a link's ends can be set

    @overload
    def __init__(
        self,
        source_id: str,
        event: str,
        target_id: str,
        slot: str,
        param_mapping: Mapping[str, str] | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        source_event: RoutineEvent | None = None,
        target_slot: Slot | None = None,
        param_mapping: Mapping[str, str] | None = None,
    ) -> None: ...

    def __init__(self, *args: object, **kwargs: object) -> None:
        first = args[0] if args else kwargs.get("source_event", kwargs.get("source_id"))
        if "source_id" in kwargs or isinstance(first, str):
            self._by_ids(*args, **kwargs)  # type: ignore[arg-type]
        else:
            self._by_hand(*args, **kwargs)  # type: ignore[arg-type]

    def _by_ids(
        self,
        source_id: str,
        event: str,
        target_id: str,
        slot: str,
        param_mapping: Mapping[str, str] | None = None,
    ) -> None:
        names = (source_id, event, target_id, slot)
        if not all(isinstance(name, str) for name in names):
            msg = f"Connection{names!r}: a flow's connection names its routine ids, event and slot as strings."
            raise TypeError(msg)
        self.source_id: str | None = source_id
        self.event = event
        self.target_id: str | None = target_id
        self.slot = slot
        self.param_mapping = self._mapping(param_mapping)
        self.source_event: RoutineEvent | None = None
        self.target_slot: Slot | None = None

    def _by_hand(
        self,
        source_event: RoutineEvent | None = None,
        target_slot: Slot | None = None,
        param_mapping: Mapping[str, str] | None = None,
    ) -> None:
        if (source_event is not None and not isinstance(source_event, RoutineEvent)) or (
            target_slot is not None and not isinstance(target_slot, Slot)
        ):
            msg = (
                f"Connection({source_event!r}, {target_slot!r}): give a RoutineEvent and a Slot (Routilux's "
                "form), or the ids and names of a flow's connection: Connection(source_id, event, target_id, slot)."
            )
            raise TypeError(msg)
        self.source_id = None
        self.target_id = None
        self.event = "" if source_event is None else source_event.name
        self.slot = "" if target_slot is None else target_slot.name
        self.source_event = source_event
        self.target_slot = target_slot
        if source_event is None or target_slot is None:
            self.param_mapping = self._mapping(param_mapping)
            return
        api = f"Connection({source_event!r}, {target_slot!r})"
        mapping = check_mapping(api, source_event, target_slot, param_mapping)
        self.param_mapping = types.MappingProxyType(mapping) if mapping else _NO_MAPPING
        link = source_event._link_to(target_slot)
        if link is not None:
            if dict(link.param_mapping) != mapping:
                msg = (
                    f"{api}: they are already linked, with param_mapping={dict(link.param_mapping)!r}, not "
                    f"{mapping!r}. Disconnect them first (event.disconnect(slot)) to link them with another mapping."
                )
                raise GraphDefinitionError(msg)
            return
        if source_event._links is None:
            source_event._links = []
        source_event._links.append(self)
        if target_slot._links is None:
            target_slot._links = []
        target_slot._links.append(self)

    @staticmethod
    def _mapping(param_mapping: object) -> Mapping[str, str]:
        if param_mapping is None:
            return _NO_MAPPING
        if not isinstance(param_mapping, collections.abc.Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in param_mapping.items()
        ):
            msg = (
                f"Connection(param_mapping={param_mapping!r}): give a dict of event parameter names to slot "
                "parameter names (str to str), or None."
            )
            raise TypeError(msg)
        return types.MappingProxyType(dict(param_mapping))

    def activate(self, data: Mapping[str, object]) -> None:
        """Send *data*, renamed by :attr:`param_mapping`, to the target slot, in place: ``target_slot.receive(...)``.

        What an ``emit`` outside a job does for each link; see :meth:`Slot.receive`.

        Raises:
            GraphDefinitionError: the connection has no target slot.
            TypeError: as for :meth:`Slot.receive`.
            Exception: what the handler raised.

        .. versionadded:: 0.2
        """
        slot = self.target_slot
        if slot is None:
            msg = f"{self!r}.activate(...): the connection has no target slot; set target_slot, or make it with Connection(event, slot)."
            raise GraphDefinitionError(msg)
        if not isinstance(data, collections.abc.Mapping):
            msg = f"{self!r}.activate({data!r}): give the message's data as a dict of parameter names to values."
            raise TypeError(msg)
        mapping = self.param_mapping
        slot.receive(apply_mapping(dict(data), mapping) if mapping else data)

    def disconnect(self) -> None:
        """Remove the link this connection made by hand; again, or for an unlinked pair, does nothing.

        Raises:
            GraphDefinitionError: a flow's connection (made by ``flow.connect``),
                which belongs to its flow.

        .. versionadded:: 0.2
        """
        if self.source_id is not None:
            msg = (
                f"{self!r}.disconnect(): this connection was made by flow.connect(...) and belongs to the flow, "
                "which has no way to remove a connection. Build the flow without it, or link the routines by "
                "hand (event.connect(slot)) to be able to disconnect them."
            )
            raise GraphDefinitionError(msg)
        if self.source_event is not None and self.target_slot is not None:
            self.source_event.disconnect(self.target_slot)

    def serialize(self) -> dict[str, object]:
        """This connection as a versioned document of JSON values.

        ``{"format": "trioflow.connection", "version": 1, "source": ..., "event": ...,
        "target": ..., "slot": ..., "param_mapping": {...}}``: the routine ids
        (``null`` for a link made by hand, whose objects a document cannot
        hold), the event and slot names and the renames. A flow's document
        holds its connections already (:meth:`Flow.serialize <runtime.Flow.serialize>`).

        .. versionadded:: 0.2
        """
        from . import _definition  # builds on this module

        return _definition.dump_connection_doc(self)

    def deserialize(self, document: object) -> Self:
        """Take the ids, names and renames of a document made by :meth:`serialize`, and return this connection.

        As in Routilux, the ends of a link made by hand are not in the
        document: set ``source_event`` and ``target_slot`` after, or make the
        link with ``Connection(event, slot, param_mapping)``.

        Raises:
            DefinitionDocumentError: another format or version, or a value
                that does not fit; the message gives its ``$.path``.
            GraphDefinitionError: this connection is a live link made by hand
                (disconnect it first).

        .. versionadded:: 0.2
        """
        from . import _definition  # builds on this module

        event = self.source_event
        if event is not None and self in (event._links or ()):
            msg = (
                f"{self!r}.deserialize(...): this connection is a link made by hand, and loading would change it "
                "in place. Disconnect it first, or load into an empty Connection()."
            )
            raise GraphDefinitionError(msg)
        loaded = _definition.load_connection_doc(document)
        self.source_id, self.event, self.target_id, self.slot = loaded.source, loaded.event, loaded.target, loaded.slot
        self.param_mapping = types.MappingProxyType(dict(loaded.param_mapping)) if loaded.param_mapping else _NO_MAPPING
        return self

    def _key(self) -> tuple[object, ...]:
        if self.source_id is not None:
            return (self.source_id, self.event, self.target_id, self.slot, dict(self.param_mapping))
        return (None, id(self.source_event), id(self.target_slot), dict(self.param_mapping))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, tuple):
            return self.source_id is not None and other == (self.source_id, self.event, self.target_id, self.slot)
        if not isinstance(other, Connection):
            return NotImplemented
        return self._key() == other._key()

    def __repr__(self) -> str:
        mapping = dict(self.param_mapping)
        if self.source_id is not None:
            return (
                f"Connection(source_id={self.source_id!r}, event={self.event!r}, target_id={self.target_id!r}, "
                f"slot={self.slot!r}, param_mapping={mapping!r})"
            )
        return f"Connection({self.source_event!r}, {self.target_slot!r}, param_mapping={mapping!r})"


# -- error strategies ---------------------------------------------------------


@final
class ErrorStrategy(enum.StrEnum):
    """What a job does when a routine's handler raises.

    - ``STOP`` (the default): the job fails; the other routines are cancelled
      and undelivered messages are listed in ``job_state.undelivered``.
    - ``CONTINUE``: record the failure and go on with the next message.
    - ``RETRY``: call the handler again with the same message, after a delay
      that grows by ``retry_backoff``; after ``max_retries`` retries, stop.
    - ``SKIP``: drop the message, mark the routine ``skipped`` and go on.

    .. versionadded:: 0.1
    """

    STOP = "stop"
    CONTINUE = "continue"
    RETRY = "retry"
    SKIP = "skip"


def _to_strategy(value: ErrorStrategy | str) -> ErrorStrategy:
    try:
        return ErrorStrategy(value)
    except ValueError:
        choices = ", ".join(repr(s.value) for s in ErrorStrategy)
        msg = f"ErrorHandler(strategy={value!r}): a strategy is one of {choices} (or an ErrorStrategy)."
        raise ValueError(msg) from None


def _check_retries(instance: ErrorHandler, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        msg = f"ErrorHandler(max_retries={value!r}): give a whole number of retries, 0 or more."
        raise ValueError(msg)


def _check_delay(instance: ErrorHandler, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, int | float) or not (value >= 0) or math.isinf(value):
        msg = f"ErrorHandler({attribute.name}={value!r}): give a finite number of seconds, 0 or more."
        raise ValueError(msg)


def _check_backoff(instance: ErrorHandler, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, int | float) or not (value > 0) or math.isinf(value):
        msg = f"ErrorHandler(retry_backoff={value!r}): give a finite factor above 0 (1 keeps the delay constant)."
        raise ValueError(msg)


def _to_exception_types(value: Iterable[type[BaseException]] | None) -> tuple[type[BaseException], ...]:
    if value is None:
        return (Exception,)
    types = tuple(value)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, Exception)):
            msg = f"ErrorHandler(retryable_exceptions=...): {t!r} is not an Exception subclass."
            raise TypeError(msg)
    return types


@final
@attrs.define
class ErrorHandler:
    """How a routine's handler failures are handled: a strategy and its retry settings.

    Give it to :meth:`Routine.set_error_handler` (or to
    :meth:`Flow.set_error_handler <runtime.Flow.set_error_handler>` as the
    default for every routine without its own). With
    ``Flow(end_on_error=True)`` every failure stops the job, whatever the
    strategy.

    Each failure is recorded: a history entry ``error`` of the routine, with
    data ``slot``, ``error_type``, ``error``, ``action`` (what the job did:
    ``stop``, ``continue``, ``retry`` or ``skip``) and ``attempt``; and in the
    routine's state, ``status`` (``failed``, ``error_continued``,
    ``retrying``, then ``recovered`` if a retry succeeds, or ``skipped``),
    ``error`` and ``failures`` (the count so far in the job).

    Args:
        strategy: an :class:`ErrorStrategy`, or its value (``"retry"``).
        max_retries: ``RETRY`` only: retries after the first failure of a
            message before the job stops.
        retry_delay: ``RETRY`` only: seconds before the first retry, on
            Trio's clock (so ``MockClock`` tests take no real time).
        retry_backoff: ``RETRY`` only: each retry waits this many times
            longer than the one before.
        retryable_exceptions: ``RETRY`` only: exception classes worth a retry;
            any other failure stops the job at once. Default: every
            :class:`Exception`.
        is_critical: the routine must succeed (see
            :meth:`Routine.set_as_critical`): a failure it does not recover
            from (``STOP``, or ``RETRY`` after its retries) fails the job, as
            it does for any routine, and the error's note calls the routine
            critical. ``CONTINUE`` and ``SKIP`` cannot be critical: they
            tolerate failures by design.

    The handler can be changed after it is made (``handler.max_retries = 5``;
    the new values are checked as in the constructor): a routine or flow
    holds it by reference, so the change applies to the jobs started after it.

    Attributes:
        retry_count: how many retries this handler has made, in every job
            that used it, since it was made or :meth:`reset`. A job's own
            count is in its routine state (``retry_count``).

    Raises:
        ValueError: an unknown strategy, a negative count or delay, a
            backoff that is not above 0, or a critical ``CONTINUE`` or
            ``SKIP`` handler.
        TypeError: *retryable_exceptions* holds something that is not an
            exception class, or *is_critical* is not a bool.

    .. versionadded:: 0.1
    """

    strategy: ErrorStrategy = attrs.field(default=ErrorStrategy.STOP, converter=_to_strategy)
    max_retries: int = attrs.field(default=3, validator=_check_retries)
    retry_delay: float = attrs.field(default=1.0, validator=_check_delay)
    retry_backoff: float = attrs.field(default=2.0, validator=_check_backoff)
    retryable_exceptions: tuple[type[BaseException], ...] = attrs.field(
        default=None, converter=_to_exception_types
    )
    is_critical: bool = attrs.field(default=False, kw_only=True)
    retry_count: int = attrs.field(default=0, init=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.is_critical, bool):
            msg = f"ErrorHandler(is_critical={self.is_critical!r}): give True or False."
            raise TypeError(msg)
        if self.is_critical and self.strategy in (ErrorStrategy.CONTINUE, ErrorStrategy.SKIP):
            msg = (
                f"ErrorHandler(strategy={self.strategy.value!r}, is_critical=True): a critical routine must "
                f"succeed, but {self.strategy.value!r} tolerates its failures. Use strategy 'retry' (or "
                "routine.set_as_critical(...)), or drop is_critical."
            )
            raise ValueError(msg)

    def reset(self) -> None:
        """Set :attr:`retry_count` back to 0."""
        self.retry_count = 0

    def delay_before(self, retry: int) -> float:
        """Seconds to wait before retry number *retry* (1 for the first)."""
        return float(self.retry_delay * self.retry_backoff ** (retry - 1))

    def serialize(self) -> dict[str, object]:
        """These settings as a versioned document of JSON values.

        ``{"format": "trioflow.error_handler", "version": 1, "_type": "ErrorHandler",
        "strategy": "retry", "max_retries": 3, ..., "retryable_exceptions": ["builtins:ValueError"]}``:
        every setting by its name, exception classes by import path.

        .. versionadded:: 0.1
        """
        from . import _definition  # builds on this module

        return _definition.dump_error_handler_doc(self)

    def deserialize(self, document: object, *, allow: Allowed = ()) -> Self:
        """Take the settings of a document made by :meth:`serialize`, and return this handler.

        Every setting is checked before any is changed; ``retry_count`` is
        reset, as after :meth:`reset`.

        Args:
            document: an error handler document.
            allow: exception classes, or module names, that
                ``retryable_exceptions`` may name besides the built-in ones;
                only an allowed module is imported.

        Raises:
            DefinitionDocumentError: another format or version, an unknown
                setting, a class not allowed, or a value the handler refuses.

        .. versionadded:: 0.1
        """
        from . import _definition  # builds on this module

        loaded = _definition.load_error_handler_doc(document, allow)
        for field in attrs.fields(type(self)):
            if field.init:
                object.__setattr__(self, field.name, getattr(loaded, field.name))
        self.reset()
        return self


_STOP = ErrorHandler()


# -- the routine --------------------------------------------------------------


class _RoutineMeta(abc.ABCMeta):
    """Routine's metaclass: notes how each routine was made, once its constructor has returned.

    A job makes its own instance of each routine from that note (see
    :class:`RoutineProps`). Based on :class:`abc.ABCMeta`, so a routine may
    also be an abstract base class.
    """

    def __call__(cls, *args: object, **kwargs: object) -> Routine:
        routine: Routine = super().__call__(*args, **kwargs)
        fields = routine.__dict__
        fields["_recipe"] = _Recipe(cls, args, kwargs, dict(fields))
        return routine


@final
class _Recipe:
    """How a routine was made: its constructor call, and the settings made on it since."""

    __slots__ = ("args", "cls", "fields", "flow", "kwargs", "settings")

    def __init__(
        self, cls: type, args: tuple[object, ...], kwargs: dict[str, object], fields: dict[str, object]
    ) -> None:
        self.cls = cls
        self.args = args
        self.kwargs = kwargs
        #: The routine's attributes when its constructor returned.
        self.fields = fields
        #: Calls of the public setters since: (method name, arguments, keyword arguments).
        self.settings: list[tuple[str, tuple[object, ...], dict[str, object]]] = []
        #: The flow the routine was added to (a template), or whose job made it; None: no flow.
        self.flow: str | None = None


class Routine(metaclass=_RoutineMeta):
    """A node of a routine graph: input slots with handlers, output events.

    Subclass it, call ``super().__init__()``, then declare slots and events::

        class Doubler(rt.Routine):
            def __init__(self):
                super().__init__()
                self.define_slot("input", handler=self.double)
                self.define_event("output", ["value"])

            def double(self, value=0, **kwargs):
                self.emit("output", value=2 * value)

    Handlers may be plain or ``async`` functions, methods of the routine, or
    any other callable (a plain function, a lambda). In a job, every routine
    is an actor: it handles one message at a time, in order per connection;
    how it runs beside the other routines is the flow's
    ``execution_strategy`` (see :class:`~runtime.Flow`).

    How a handler is called. A message's data is a dict (what ``emit``
    sent, renamed by the connection's ``param_mapping``, merged by the
    slot's ``merge_strategy``). The handler's signature (without ``self``)
    decides what it gets, as in Routilux:

    1. It takes ``**kwargs``: every key, as keyword arguments.
    2. Its one parameter is named ``data``: the whole dict, as that argument
       (``def take(self, data)`` after ``emit("out", data="x")`` gets
       ``{"data": "x"}``).
    3. It has one other parameter (positional, or ``*args``): the value
       under that name, if the data has it; else the whole dict; and
       nothing (its default applies) if the data is empty and the parameter
       has a default or is ``*args``.
    4. Otherwise: the keys it names, as keyword arguments; other keys are
       dropped (``def take(self, data, other=None)`` after
       ``emit("out", data=1, extra=2)`` gets ``data=1``). If it names none
       of the keys of a non-empty message, the whole dict, as its first
       argument. No parameters: it is called with none.

    Slots and events can also be wired by hand, as in Routilux
    (``self.output.connect(other.input)``, ``Connection(event, slot)``):
    outside any flow, ``emit`` then calls the linked slots' handlers in
    place (:meth:`Slot.receive`), which is how a handler is unit-tested;
    between routines of a flow, such a link is one of the flow's
    connections, exactly as ``flow.connect(...)`` makes (see :class:`Slot`).

    Each job runs on its own instance of every routine, made by calling the
    constructor again with the same arguments (or the factory given to
    :meth:`Flow.add_routine <runtime.Flow.add_routine>`), then applying the
    settings made on the routine since (``define_slot``, ``set_config``,
    ``set_error_handler``, ``set_executor``, attributes assigned from
    outside): what a handler writes on ``self``, and anything the routine creates itself, is that
    job's own. What the routine was given (a constructor argument such as a
    channel, a connection or a collector list, a config value, an attribute
    set from outside) is shared, not copied, by every job, concurrent jobs
    included: give it only objects that are safe to share, and use a factory
    (``flow.add_routine(lambda: Writer(open_connection()), "writer")``) for
    one object per job.

    .. versionadded:: 0.1
    """

    def __init__(self) -> None:
        self._slots: dict[str, Slot] = {}
        self._events: dict[str, RoutineEvent] = {}
        self._config: dict[str, object] = {}
        self._error_handler: ErrorHandler | None = None
        self._executor: Executor | None = None

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} slots={list(self._defs('_slots'))} events={list(self._defs('_events'))}>"
        )

    def _defs(self, kind: str) -> dict[str, Slot] | dict[str, RoutineEvent]:
        try:
            return self.__dict__[kind]  # type: ignore[no-any-return]
        except KeyError:
            msg = (
                f"{type(self).__name__} was not initialised as a Routine: call "
                "super().__init__() at the start of its __init__."
            )
            raise TypeError(msg) from None

    def _note(self, method: str, args: tuple[object, ...], kwargs: dict[str, object] | None = None) -> None:
        """Remember a setting made after construction, for the instances jobs make (see RoutineProps).

        A setting made while the constructor runs has no recipe yet: the
        constructor makes it again for each job.
        """
        recipe: _Recipe | None = self.__dict__.get("_recipe")
        if recipe is not None:
            recipe.settings.append((method, args, kwargs or {}))

    # -- declarations ---------------------------------------------------------

    def _check_new_name(self, article: str, kind: str, name: object, taken: Mapping[str, object]) -> None:
        """Raise unless *name* is a non-empty string this routine has no *kind* (slot or event) of yet."""
        where = f"{type(self).__name__}.define_{kind}({name!r})"
        if not isinstance(name, str) or not name:
            msg = f"{where}: {article} {kind} name is a non-empty string."
            raise TypeError(msg)
        if name in taken:
            msg = (
                f"{where}: the routine already has {article} {kind} {name!r}; give each {kind} its own name."
            )
            raise GraphDefinitionError(msg)

    def define_slot(
        self,
        name: str,
        handler: Handler | None = None,
        merge_strategy: MergeStrategy = "override",
    ) -> Slot:
        """Declare an input slot named *name*, handled by *handler*.

        Args:
            name: unique within this routine.
            handler: called with each message's data, by its signature (the
                rules are in :class:`Routine`); plain or async, a method, a
                function or a lambda. ``None`` makes a slot that only receives.
            merge_strategy: ``"override"``, ``"append"`` or a function; see
                :class:`Slot`.

        Returns:
            The :class:`Slot`.

        Raises:
            GraphDefinitionError: the routine already has a slot *name*.
            TypeError: *handler* is not callable, or *merge_strategy* is not
                one of the choices.
        """
        fields = self.__dict__
        slots: dict[str, Slot] = fields["_slots"] if "_slots" in fields else self._defs("_slots")  # type: ignore[assignment]
        if not isinstance(name, str) or not name or name in slots:
            self._check_new_name("a", "slot", name, slots)
        if handler is not None and not callable(handler):
            msg = f"{type(self).__name__}.define_slot({name!r}, handler={handler!r}): the handler must be callable."
            raise TypeError(msg)
        if (
            merge_strategy != "override"
            and not callable(merge_strategy)
            and merge_strategy not in _MERGE_NAMES
        ):
            msg = (
                f"{type(self).__name__}.define_slot({name!r}, merge_strategy={merge_strategy!r}): "
                "choose 'override', 'append', or a function merge(old, new) -> merged."
            )
            raise TypeError(msg)
        slot = Slot(name, self, handler, merge_strategy)
        executor = fields.get("_executor")
        if executor is not None and slot._is_async:
            self._async_on_executor(name, executor)
        slots[name] = slot
        if "_recipe" in fields:
            self._note("define_slot", (name, handler, merge_strategy))
        return slot

    def define_event(self, name: str, params: Iterable[str] | None = None) -> RoutineEvent:
        """Declare an output event named *name*, carrying *params*.

        Args:
            name: unique within this routine.
            params: the parameter names ``emit`` may pass; ``None`` allows any.

        Returns:
            The :class:`RoutineEvent`.

        Raises:
            GraphDefinitionError: the routine already has an event *name*.
            TypeError: *params* is a string, or holds something that is not one.
        """
        fields = self.__dict__
        events: dict[str, RoutineEvent] = fields["_events"] if "_events" in fields else self._defs("_events")  # type: ignore[assignment]
        if not isinstance(name, str) or not name or name in events:
            self._check_new_name("an", "event", name, events)
        declared = _param_order(f"{type(self).__name__}.define_event({name!r}", ", ", params)
        event = events[name] = RoutineEvent._declared(name, self, declared)
        if "_recipe" in fields:
            self._note("define_event", (name, declared))
        return event

    def get_slot(self, name: str) -> Slot | None:
        """The slot named *name*, or ``None`` (Routilux's accessor; see :attr:`slots`).

        .. versionadded:: 0.2
        """
        return self._defs("_slots").get(name)  # type: ignore[return-value]

    def get_event(self, name: str) -> RoutineEvent | None:
        """The event named *name*, or ``None`` (Routilux's accessor; see :attr:`events`).

        .. versionadded:: 0.2
        """
        return self._defs("_events").get(name)  # type: ignore[return-value]

    @property
    def slots(self) -> Mapping[str, Slot]:
        """The routine's slots by name, in definition order (a read-only view)."""
        return dict(self._defs("_slots"))  # type: ignore[arg-type]

    @property
    def events(self) -> Mapping[str, RoutineEvent]:
        """The routine's events by name, in definition order (a read-only view)."""
        return dict(self._defs("_events"))  # type: ignore[arg-type]

    # -- configuration and error handling ---------------------------------------

    def set_config(self, **values: object) -> None:
        """Store configuration values on the routine (shared by every job's instance, not copied)."""
        self._config.update(values)
        self._note("set_config", (), values)

    def get_config(self, key: str, default: object = None) -> object:
        """Return the configuration value under *key*, or *default*."""
        return self._config.get(key, default)

    def config(self) -> dict[str, object]:
        """Return a copy of the configuration (a new dict; the values themselves are shared).

        .. versionadded:: 0.2
        """
        return dict(self._config)

    def set_error_handler(self, handler: ErrorHandler | ErrorStrategy | str) -> None:
        """Choose how this routine's handler failures are handled.

        Args:
            handler: an :class:`ErrorHandler`, or a strategy (``ErrorStrategy.SKIP``
                or ``"skip"``) with default settings.

        Raises:
            ValueError: an unknown strategy name.
        """
        if not isinstance(handler, ErrorHandler):
            handler = ErrorHandler(strategy=handler)
        self._error_handler = handler
        self._note("set_error_handler", (handler,))

    def get_error_handler(self) -> ErrorHandler | None:
        """The routine's own :class:`ErrorHandler`, or ``None`` (the flow's default applies)."""
        return self._error_handler

    # -- definition documents -----------------------------------------------------

    def serialize(self) -> dict[str, object]:
        """This routine's definition as a versioned document of JSON values.

        The document names the routine's class by import path and holds the
        arguments its constructor was called with, its whole config, its own
        error handler, the slots and events defined after construction (a
        handler by method name) and attributes assigned from outside: the
        routine part of :meth:`Flow.serialize <runtime.Flow.serialize>`, with
        ``"format": "trioflow.routine"`` and ``"version"``.

        Raises:
            UnserializableValueError: a constructor argument, config value or
                attribute is not a JSON value; its ``path`` says which.
            TypeError: the routine was not made by calling its class, or a
                slot defined after construction is handled by something other
                than one of its methods, or merges with a function.

        .. versionadded:: 0.1
        """
        from . import _definition  # builds on this module

        return _definition.dump_routine(self)

    def deserialize(self, document: object, *, allow: Allowed = ()) -> Self:
        """Apply a routine document made by :meth:`serialize` to this routine, and return it.

        The document must be of this routine's class and constructor
        arguments: its config, error handler, slots, events and attributes
        are applied as if set on this routine. To build routines from
        documents, load the whole flow with :meth:`Flow.deserialize
        <runtime.Flow.deserialize>`.

        Args:
            document: a routine document.
            allow: exception classes (or their modules) the error handler's
                ``retryable_exceptions`` may name, besides the built-in ones.

        Raises:
            DefinitionDocumentError: the document is of another format or
                version, of another class or constructor arguments, names a
                class not allowed, or a value does not fit; the message gives
                its ``$.path``.

        .. versionadded:: 0.1
        """
        from . import _definition  # builds on this module

        _definition.load_routine_into(self, document, allow)
        return self

    def set_as_optional(self, strategy: ErrorStrategy | str | None = None) -> None:
        """Mark the routine optional: its failures are recorded and the job goes on.

        Sets ``ErrorHandler(strategy=strategy)``.

        Args:
            strategy: ``CONTINUE`` (``None``, the default) or ``SKIP``.

        Raises:
            ValueError: another strategy.

        .. versionadded:: 0.2
        """
        chosen = _to_strategy(ErrorStrategy.CONTINUE if strategy is None else strategy)
        if chosen not in (ErrorStrategy.CONTINUE, ErrorStrategy.SKIP):
            msg = (
                f"{type(self).__name__}.set_as_optional({chosen.value!r}): an optional routine's failures are "
                "tolerated, with 'continue' or 'skip'. For another strategy use set_error_handler(...)."
            )
            raise ValueError(msg)
        self.set_error_handler(ErrorHandler(strategy=chosen))

    def set_as_critical(self, max_retries: int = 3, retry_delay: float = 1.0, retry_backoff: float = 2.0) -> None:
        """Mark the routine critical: retry a failing message, and fail the job if it still fails.

        Sets ``ErrorHandler(strategy="retry", max_retries=..., retry_delay=...,
        retry_backoff=..., is_critical=True)``.

        Raises:
            ValueError: as for :class:`ErrorHandler`.

        .. versionadded:: 0.2
        """
        self.set_error_handler(
            ErrorHandler(
                strategy=ErrorStrategy.RETRY,
                max_retries=max_retries,
                retry_delay=retry_delay,
                retry_backoff=retry_backoff,
                is_critical=True,
            )
        )

    @property
    def is_critical(self) -> bool:
        """Whether the routine's own error handler marks it critical (:meth:`set_as_critical`).

        .. versionadded:: 0.2
        """
        handler = self._error_handler
        return handler is not None and handler.is_critical
    def set_executor(self, executor: Executor | None) -> None:
        """Run this routine's plain (synchronous) handlers on *executor*.

        ``rt.threads()`` keeps the loop free while a handler runs;
        ``rt.processes()`` and ``rt.ray()`` run CPU-bound handlers in other
        processes, on a copy of the routine (a handler that is a method
        carries its routine with it, pickled; a function handler at the top
        level of a module carries nothing). ``None`` undoes it: the flow's
        executor applies (``Flow(..., executor=...)``), and without one the
        handlers run on the loop.

        A handler on an executor may ``emit``, ``emit_deferred_event`` and
        ``send_output``: what it emits is sent, in order, when it returns.
        It gets no execution context (``get_execution_context()`` is
        ``None``), since the job's state lives on the loop, and what it
        writes on ``self`` in another process stays there. A cancel or a
        timeout waits for a thread and kills a worker process, as for nodes;
        the routine's state then says ``cancelled`` or ``killed``.

        Raises:
            TypeError: *executor* is not an executor, or the routine has an
                async handler (async handlers run on the loop).
        """
        where = f"{type(self).__name__}.set_executor({executor!r})"
        if executor is not None:
            executor = check_executor(executor, where=where)
            for name, slot in self._defs("_slots").items():
                if slot._is_async:  # type: ignore[union-attr]
                    self._async_on_executor(name, executor)
        self._executor = executor
        self._note("set_executor", (executor,))

    def get_executor(self) -> Executor | None:
        """The routine's own executor, or ``None`` (the flow's applies to plain handlers)."""
        return self.__dict__.get("_executor")

    def _async_on_executor(self, slot: str, executor: Executor) -> None:
        msg = (
            f"{type(self).__name__}: slot {slot!r} has an async handler, and the routine runs on "
            f"executor {executor.name!r}. Async handlers run on the event loop; only plain handlers run "
            "on an executor. Make the handler a plain def, or give the routine no executor."
        )
        raise TypeError(msg)

    # -- inside a job -----------------------------------------------------------

    def _host(self, api: str, arg: str) -> _Host:
        host = current_host.get(None)
        if host is None or host.routine is not self:
            msg = (
                f"{type(self).__name__}.{api}({arg!r}) was called outside a job. A routine emits from its "
                "slot handlers while a job runs: flow.execute(...), await flow.aexecute(...), "
                "or async with flow.open_job(...)."
            )
            raise OutsideRunError(msg)
        return host

    def get_execution_context(self) -> ExecutionContext | None:
        """The flow, job state and routine id of the running job; ``None`` outside a job.

        Only a handler of this routine, running in a job on the loop, gets a
        context (a handler on an executor gets ``None``: see :meth:`set_executor`).
        """
        host = current_host.get(None)
        if host is None or host.routine is not self:
            return None
        return host.context

    def emit(self, event: str, flow: AnyFlow | None = None, **data: object) -> None:
        """Emit *event* with *data* to every slot connected to it.

        *flow* is accepted for Routilux's signature (``emit(event, flow=...,
        **data)``): the job already knows its flow, so it may be omitted; if
        given it must be the job's flow. (An event that declares a parameter
        named ``flow`` gets it as data instead.)

        Does not block: the emission is recorded in the job's history at once
        (one entry per emission, in causal order) and the messages are sent
        when the handler returns, waiting for room in each receiver's mailbox.
        An event emitted before the handler raises is still delivered, unless
        the failure stops the job. From an async handler, :meth:`aemit` sends
        at once.

        Outside a job, a routine of no flow sends *data* to the slots linked
        to the event by hand (:meth:`RoutineEvent.connect`), calling each
        one's :meth:`Slot.receive` in place, in the order linked; with none,
        nothing happens (Routilux's emit without a flow). A routine of a flow
        (or a job's instance of one) emits only inside a job.

        Raises:
            EventDataError: the routine never defined *event*, *data* has a
                parameter the event does not declare, or *flow* is not the
                job's flow.
            OutsideRunError: called outside a job by a routine of a flow (or
                with *flow*), or not from this routine's handler.
        """
        host = current_host.get(None)
        if host is None or host.routine is not self:
            self._emit_by_hand(event, flow, data)
            return
        spec = self.__dict__["_events"].get(event)
        if flow is not None:
            self._take_flow(host, event, spec, flow, data)
        if spec is None or (spec.params is not None and not spec.params.issuperset(data)):
            self._check_event(event, data, host.routine_id)
        host.emit(event, data)

    def _emit_by_hand(self, event: str, flow: object, data: dict[str, object]) -> None:
        """``emit`` outside a job: a routine of no flow sends *data* to the slots linked by hand."""
        recipe: _Recipe | None = self.__dict__.get("_recipe")
        spec: RoutineEvent | None = self._defs("_events").get(event)  # type: ignore[assignment]
        if flow is not None and spec is not None and spec.params is not None and "flow" in spec.params:
            data["flow"] = flow
        elif flow is not None or (recipe is not None and recipe.flow is not None) or "_job_of" in self.__dict__:
            self._host("emit", event)  # raises OutsideRunError: a flow's routine emits in a job
        if spec is None or (spec.params is not None and not spec.params.issuperset(data)):
            self._check_event(event, data, type(self).__name__)
        assert spec is not None  # _check_event raised otherwise
        if spec._links:
            spec._deliver(data)

    async def aemit(self, event: str, **data: object) -> None:
        """Like :meth:`emit`, then send every message queued so far, waiting for mailbox room.

        If cancelled while waiting, the unsent messages are listed in
        ``job_state.undelivered`` when the job ends.

        Raises:
            EventDataError: as for :meth:`emit`.
            OutsideRunError: as for :meth:`emit`.
        """
        host = self._host("aemit", event)
        self._check_event(event, data, host.routine_id)
        host.emit(event, data)
        await host.flush()

    def emit_deferred_event(self, event: str, **data: object) -> None:
        """Emit *event* when the job is resumed; at once if it is not paused.

        Use it from a handler that pauses the job (or runs while it is
        paused): the event is recorded and delivered on ``resume()``.

        Raises:
            EventDataError: as for :meth:`emit`.
            OutsideRunError: as for :meth:`emit`.
        """
        host = self._host("emit_deferred_event", event)
        self._check_event(event, data, host.routine_id)
        host.emit_deferred(event, data)

    def send_output(self, output_type: str, **data: object) -> None:
        """Add an output of the job, not sent to any slot.

        The job's outputs are kept in order in its shared data, as a list
        under ``"output_log"`` (``job_state.get_shared_data("output_log")``),
        each ``{"routine_id", "output_type", "data", "timestamp"}``; a graph
        flow run through ``flow.arun(...)`` (or a session) returns that list
        as its result.

        Raises:
            OutsideRunError: called outside a job.
        """
        host = self._host("send_output", output_type)
        host.send_output(output_type, data)

    def _take_flow(
        self, host: _Host, event: str, spec: RoutineEvent | None, flow: object, data: dict[str, object]
    ) -> None:
        """Check ``emit(..., flow=...)``: the job's own flow is dropped; a declared ``flow`` parameter is data."""
        if spec is not None and spec.params is not None and "flow" in spec.params:
            data["flow"] = flow
            return
        context = host.context
        if context is None:  # a handler on an executor: what it emits goes to its own job anyway
            return
        if flow is not context.flow:
            msg = (
                f"Routine {host.routine_id!r} emitted {event!r} with flow={flow!r}, but it runs in a job of "
                f"flow {context.flow.name!r}: a routine emits into its own job. Drop flow=... (the job "
                "knows its flow)."
            )
            raise EventDataError(msg)

    def _check_event(self, event: str, data: Mapping[str, object], routine_id: str) -> None:
        events: dict[str, RoutineEvent] = self.__dict__["_events"]
        spec = events.get(event)
        if spec is None:
            known = ", ".join(repr(e) for e in events) or "none"
            msg = (
                f"Routine {routine_id!r} ({type(self).__name__}) emitted {event!r}, which it never "
                f"defined; its events are {known}. Define it with define_event({event!r}, [...])."
            )
            raise EventDataError(msg)
        params = spec.params
        if params is not None and not params.issuperset(data):
            extra = ", ".join(repr(k) for k in data if k not in params)
            declared = ", ".join(repr(p) for p in sorted(params)) or "no parameters"
            msg = (
                f"Routine {routine_id!r} emitted {event!r} with undeclared parameter(s) {extra}; "
                f"the event declares {declared}. Add them to define_event({event!r}, [...]) or stop sending them."
            )
            raise EventDataError(msg)


# -- per-job instances ----------------------------------------------------------

#: A routine's own attributes: made by Routine.__init__ and the setters, never carried over.
_OWN_FIELDS = frozenset({"_slots", "_events", "_config", "_error_handler", "_executor", "_recipe", "_job_of"})
_ABSENT = object()

RoutineMaker: TypeAlias = "Callable[[], Routine]"


def _describe_call(cls: type, args: tuple[object, ...], kwargs: Mapping[str, object]) -> str:
    return f"{cls.__name__}({'...' if args or kwargs else ''})"


@final
class RoutineProps:
    """How a job makes its own instance of one routine of a flow (Akka's ``Props``).

    From a routine instance, a job calls its class with the constructor's
    arguments again; from a factory (a ``Routine`` subclass or a function
    with no arguments), it calls the factory. Then it applies what was done
    to the flow's routine (the *template*) since: the public setters it was
    called with, replayed in order (a handler that is a method of the
    template is bound to the new instance), and attributes assigned from
    outside, carried over as they are.
    """

    __slots__ = ("_fields", "_make", "_settings_from", "_what", "template")

    def __init__(self, template: Routine, make: RoutineMaker | None, what: str) -> None:
        self.template = template
        #: The factory, or None to call the template's class again.
        self._make = make
        self._what = what
        recipe: _Recipe | None = template.__dict__.get("_recipe")
        if make is None and recipe is not None:
            self._settings_from = 0
            self._fields = recipe.fields
        else:
            # A factory's routine: what is done to it counts from now on.
            self._settings_from = 0 if recipe is None else len(recipe.settings)
            self._fields = dict(template.__dict__)

    @classmethod
    def of(cls, value: object, where: str) -> RoutineProps:
        """The props of what ``add_routine`` was given: a routine, a Routine subclass or a factory.

        Calls a factory once, for the template.

        Raises:
            TypeError: *value* is none of those, a factory returned something
                else, or a routine was given an iterator, which only its first
                job could use.
        """
        if isinstance(value, Routine):
            value._defs("_slots")
            recipe: _Recipe | None = value.__dict__.get("_recipe")
            if recipe is None:
                msg = f"{where}: {type(value).__name__} was not made by calling its class; pass a factory that makes it."
                raise TypeError(msg)
            what = _describe_call(recipe.cls, recipe.args, recipe.kwargs)
            given = [(f"argument {i + 1}", a) for i, a in enumerate(recipe.args)]
            given.extend((f"argument {k!r}", v) for k, v in recipe.kwargs.items())
            for name, arg in given:
                if isinstance(arg, collections.abc.Iterator) and not isinstance(arg, io.IOBase):
                    msg = (
                        f"{where}: {what} was given an iterator ({type(arg).__name__}) as its {name}. Each job "
                        "makes its own instance by calling the constructor again with the same arguments, and "
                        "an iterator is used up by the first job. Pass a list, or a factory that makes a fresh "
                        f"routine for each job: add_routine(lambda: {what}, ...)."
                    )
                    raise TypeError(msg)
            return cls(value, None, what)
        if not callable(value):
            msg = (
                f"{where} got {type(value).__name__} {value!r}, not a Routine. Pass a routine instance, a "
                "Routine subclass, or a function with no arguments that returns a routine."
            )
            raise TypeError(msg)
        what = f"the factory {getattr(value, '__qualname__', repr(value))}"
        try:
            template = value()
        except Exception as exc:
            exc.add_note(
                f"{where} called {what} with no arguments, as it does once now and once for every job."
            )
            raise
        if not isinstance(template, Routine):
            msg = f"{where}: {what} returned {type(template).__name__} {template!r}, not a Routine instance."
            raise TypeError(msg)
        template._defs("_slots")
        return cls(template, value, what)

    def build(self, routine_id: str, flow_name: str) -> Routine:
        """A new instance of the routine for one job.

        Raises:
            GraphDefinitionError: the new instance's slots or events differ
                from the template's.
            Exception: what the constructor or factory raised, with a note
                naming the routine and the fix.
        """
        template = self.template
        source = template.__dict__
        recipe: _Recipe | None = source.get("_recipe")
        try:
            if self._make is None:
                assert recipe is not None  # an instance's props always have one
                routine: Routine = type.__call__(recipe.cls, *recipe.args, **recipe.kwargs)
            else:
                made: object = self._make()
                if not isinstance(made, Routine):
                    msg = f"returned {type(made).__name__} {made!r}, not a Routine instance"
                    raise TypeError(msg)  # noted below, like any failure of the factory
                routine = made
            if recipe is not None and len(recipe.settings) > self._settings_from:
                self._replay(routine, recipe.settings[self._settings_from :])
        except Exception as exc:
            fix = (
                "Make it safe to call once per job."
                if self._make is not None
                else "Make that safe to call once per job, or give add_routine() a factory that makes a fresh "
                f"routine each time: flow.add_routine(lambda: {type(template).__name__}(...), {routine_id!r})."
            )
            exc.add_note(
                f"Building routine {routine_id!r} for a job of flow {flow_name!r}: each job makes its own "
                f"instance by calling {self._what} again. {fix}"
            )
            raise
        target = routine.__dict__
        target["_job_of"] = flow_name  # a job's routine emits only inside its job
        fields = self._fields
        for key, value in source.items():
            if fields.get(key, _ABSENT) is not value and key not in _OWN_FIELDS:
                target[key] = value  # assigned from outside after construction: shared as given
        slots, events = target.get("_slots"), target.get("_events")
        if (
            slots is None
            or events is None
            or slots.keys() != source["_slots"].keys()
            or events.keys() != source["_events"].keys()
        ):
            self._unlike(routine, routine_id, flow_name)
        return routine

    def _replay(
        self, routine: Routine, settings: list[tuple[str, tuple[object, ...], dict[str, object]]]
    ) -> None:
        """Apply *settings*, made on the template, to *routine*, rebinding the template's own methods."""
        template = self.template
        for method, args, kwargs in settings:
            if method == "define_slot":
                name, handler, merge = args
                if isinstance(handler, types.MethodType) and handler.__self__ is template:
                    handler = types.MethodType(handler.__func__, routine)
                routine.define_slot(name, handler, merge)  # type: ignore[arg-type]
            else:
                getattr(routine, method)(*args, **kwargs)

    def _unlike(self, routine: Routine, routine_id: str, flow_name: str) -> None:
        routine._defs("_slots")  # raises if it was not initialised as a Routine
        for kind in ("_slots", "_events"):
            have, want = routine.__dict__[kind], self.template.__dict__[kind]
            if have.keys() != want.keys():
                names = ", ".join(repr(n) for n in have) or "none"
                wanted = ", ".join(repr(n) for n in want) or "none"
                msg = (
                    f"Routine {routine_id!r} of flow {flow_name!r}: the instance made for a job by calling "
                    f"{self._what} again has {kind[1:]} {names}, but the flow's routine has {wanted}. Each job "
                    "makes its own instance; make the constructor define the same slots and events every time."
                )
                raise GraphDefinitionError(msg)


def default_error_handler() -> ErrorHandler:
    """The handler used when neither the routine nor the flow sets one: stop."""
    return _STOP
