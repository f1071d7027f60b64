"""Flow definitions as versioned documents: ``serialize()`` and ``deserialize()``.

A flow definition document is JSON data::

    {"format": "trioflow.flow", "version": 1, "_type": "Flow", "flow_id": "etl",
     "entry_id": null, "timeout": null, "max_steps": null, "end_on_error": false,
     "execution_strategy": "actors", "max_workers": 1,
     "error_handler": null | {handler},
     "routines": {"fetch": {routine}, ...},
     "connections": [{"source": "fetch", "event": "out", "target": "parse", "slot": "in",
                      "param_mapping": {}}, ...]}

A routine is written as its class, by import path (``"myapp.routines:Fetch"``),
and the arguments its constructor was called with, then what was done to it
since: the whole ``config``, its own ``error_handler``, the slots and events
defined after construction, and attributes assigned from outside. Loading
calls the constructor again with those arguments and applies the rest, the
way each job makes its own instance (``RoutineProps`` in ``_routine.py``).

Loading never imports or runs code the document names on its own: a class
is used only if the caller allows it, by the class itself or by its module
(``allow=[Fetch]`` or ``allow=["myapp.routines"]``); only an allowed module
is ever imported. ``runtime:Routine`` and the built-in exception classes are
always allowed.

Everything goes through the state documents' cattrs converter
(``_serialize.structure_json``), so a document that does not fit is refused
with the ``$.path`` of the first problem.

Extension points: a new setter a routine records (``Routine._note``) is
written by listing it in :data:`SETTERS` with how to write its arguments; a
new field of :class:`~runtime.ErrorHandler` is written as it is, if its value
is JSON; a new attribute of a connection goes in :class:`ConnectionDoc`.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import re
import types
import typing
from typing import TYPE_CHECKING

import attrs
import cattrs

from ._exceptions import DefinitionDocumentError, UnserializableValueError
from ._routine import ErrorHandler, Routine, RoutineProps
from ._serialize import _converter, _find_non_json, _key_path, describe_structure_error, structure_json

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from ._graph import Graph
    from ._routine import Connection

FLOW_FORMAT = "trioflow.flow"
ROUTINE_FORMAT = "trioflow.routine"
ERROR_HANDLER_FORMAT = "trioflow.error_handler"
CONNECTION_FORMAT = "trioflow.connection"
DEFINITION_VERSION = 1
"""The definition document version this runtime writes and reads."""

#: What ``allow=`` accepts: classes, module names, modules.
Allowed: typing.TypeAlias = "Iterable[type | str | types.ModuleType]"

_ALWAYS = {"runtime:Routine": Routine}

#: The sources of :func:`allow_registered`, asked for their classes at each load.
_SOURCES: list[Callable[[], Iterable[object]]] = []


def allow_registered(source: Callable[[], Iterable[object]]) -> Callable[[], None]:
    """Allow, in every ``deserialize`` of this process, the classes *source* returns: a registry made in code.

    *source* is called each time a document is loaded, so a class registered
    later counts. It must return classes (anything else is ignored); a
    document may then name each by its exact import path, and nothing is
    imported or looked up by a bare name. A Routilux program that registers
    its routines with serilux's ``@register_serializable`` keeps loading
    them without ``allow=``::

        from serilux import SerializableRegistry

        rt.allow_registered(lambda: SerializableRegistry.registry.values())

    The registration is in the program's code, never in the document; but it
    is process-wide, so every ``deserialize`` of the process sees it (and
    every library that registers classes there). Prefer ``allow=[...]``
    where the caller knows the classes.

    Returns:
        A function that removes *source* again.

    Raises:
        TypeError: *source* is not callable.

    .. versionadded:: 0.2
    """
    if not callable(source):
        msg = f"allow_registered({source!r}): give a function returning the allowed classes, e.g. lambda: registry.values()."
        raise TypeError(msg)
    _SOURCES.append(source)

    def remove() -> None:
        if source in _SOURCES:
            _SOURCES.remove(source)

    return remove


# -- the documents ----------------------------------------------------------


@attrs.frozen
class SlotDoc:
    """A slot defined after construction: its name, handler method and merge strategy."""

    name: str
    #: The name of a method of the routine, or None for a slot that only receives.
    handler: str | None
    merge_strategy: str


@attrs.frozen
class EventDoc:
    """An event defined after construction: its name and parameters (None: any)."""

    name: str
    params: list[str] | None


@attrs.frozen
class RoutineDoc:
    """One routine: how to make it, and what was done to it since."""

    class_path: str
    args: list[object]
    kwargs: dict[str, object]
    config: dict[str, object]
    error_handler: dict[str, object] | None
    slots: list[SlotDoc]
    events: list[EventDoc]
    attributes: dict[str, object]


@attrs.frozen
class ConnectionDoc:
    """One connection: an event of one routine to a slot of another."""

    source: str
    event: str
    target: str
    slot: str
    #: Renames applied to each message: event parameter -> slot parameter.
    param_mapping: dict[str, str]


@attrs.frozen
class FlowDoc:
    """A routine-graph flow's definition (without the document's format and version)."""

    flow_id: str
    entry_id: str | None
    timeout: float | None
    max_steps: int | None
    end_on_error: bool
    execution_strategy: str
    max_workers: int
    error_handler: dict[str, object] | None
    routines: dict[str, RoutineDoc]
    connections: list[ConnectionDoc]


for _cls in (SlotDoc, EventDoc, RoutineDoc, ConnectionDoc, FlowDoc):
    attrs.resolve_types(_cls)
del _cls


# -- writing ------------------------------------------------------------------


def class_path(cls: type) -> str:
    """``module:qualname``: how a document names a class."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _json(value: object, path: str, what: str) -> object:
    problem = _find_non_json(value, path)
    if problem is not None:
        where, _, detail = problem.partition(", ")
        msg = (
            f"Cannot serialize {what}: {where.removeprefix('at ')} {detail}. A definition holds JSON values "
            "only (str, int, float, bool, None, lists, dicts with str keys); give the routine such "
            "arguments and settings, or set the rest up in code after loading."
        )
        raise UnserializableValueError(msg, path=where.removeprefix("at "))
    return value


def dump_error_handler(handler: ErrorHandler, path: str, what: str) -> dict[str, object]:
    """*handler*'s fields as JSON: every init field as it is, exception classes by path."""
    doc: dict[str, object] = {}
    for field in attrs.fields(type(handler)):
        if not field.init:
            continue
        value = getattr(handler, field.name)
        if field.name == "retryable_exceptions":
            value = [class_path(cls) for cls in value]
        elif isinstance(value, str):  # ErrorStrategy is a str enum: write its value
            value = str(value)
        doc[field.name] = _json(value, f"{path}.{field.name}", what)
    return doc


def _dump_routine(routine: Routine, props: RoutineProps | None, path: str, what: str) -> RoutineDoc:
    fields = routine.__dict__
    recipe = fields.get("_recipe")
    make = None if props is None else props._make
    if recipe is None or (make is not None and make is not recipe.cls):
        how = "a factory" if make is not None else "something other than calling its class"
        msg = (
            f"Cannot serialize {what}: {path} was made by {how}, and a definition names a routine by its "
            "class and constructor arguments. Add it as an instance (flow.add_routine(Cls(...), id)) or "
            "as its class."
        )
        raise TypeError(msg)
    slots: list[SlotDoc] = []
    events: list[EventDoc] = []
    for index, (method, args, kwargs) in enumerate(recipe.settings):
        where = f"{path}.settings[{index}]"
        if method == "define_slot":
            name, handler, merge = args
            slots.append(
                SlotDoc(
                    name, _handler_name(routine, name, handler, where, what), _merge_name(merge, where, what)
                )
            )
        elif method == "define_event":
            name, params = args
            events.append(EventDoc(name, None if params is None else sorted(params)))
        elif method not in SETTERS:
            msg = (
                f"Cannot serialize {what}: {path} has the setting {method}(), which a definition cannot hold."
            )
            raise TypeError(msg)
        del kwargs
    attributes = {
        key: _json(value, _key_path(f"{path}.attributes", key), what)
        for key, value in fields.items()
        if key not in _OWN and recipe.fields.get(key, _ABSENT) is not value
    }
    own_handler = fields["_error_handler"]
    return RoutineDoc(
        class_path=class_path(recipe.cls),
        args=typing.cast("list[object]", _json(list(recipe.args), f"{path}.args", what)),
        kwargs=typing.cast("dict[str, object]", _json(dict(recipe.kwargs), f"{path}.kwargs", what)),
        config=typing.cast("dict[str, object]", _json(dict(fields["_config"]), f"{path}.config", what)),
        error_handler=None
        if own_handler is None
        else dump_error_handler(own_handler, f"{path}.error_handler", what),
        slots=slots,
        events=events,
        attributes=attributes,
    )


_OWN = frozenset({"_slots", "_events", "_config", "_error_handler", "_recipe"})
_ABSENT = object()

#: Setters a routine records that a definition writes through other keys
#: (``config``, ``error_handler``) or as slots and events. A new setter that
#: jobs replay must be added here, and written and loaded below, or
#: ``serialize()`` refuses a routine it was called on.
SETTERS = frozenset({"set_config", "set_error_handler", "define_slot", "define_event"})


def _handler_name(routine: Routine, slot: str, handler: object, where: str, what: str) -> str | None:
    if handler is None:
        return None
    if isinstance(handler, types.MethodType) and handler.__self__ is routine:
        return handler.__func__.__name__
    msg = (
        f"Cannot serialize {what}: {where}, slot {slot!r} is handled by {handler!r}, which is not a method "
        "of its routine; a definition names a handler by method name. Define the slot in the routine's "
        "constructor, or with a method of the routine."
    )
    raise TypeError(msg)


def _merge_name(merge: object, where: str, what: str) -> str:
    if isinstance(merge, str):
        return merge
    msg = (
        f"Cannot serialize {what}: {where} merges with the function {merge!r}; a definition holds "
        "'override' or 'append'. Define that slot in the routine's constructor instead."
    )
    raise TypeError(msg)


#: Routilux's ``"_type"`` tag of each top-level document: a constant, checked on load, never looked up.
_TYPE_TAGS = {
    FLOW_FORMAT: "Flow",
    ROUTINE_FORMAT: "Routine",
    ERROR_HANDLER_FORMAT: "ErrorHandler",
    CONNECTION_FORMAT: "Connection",
}


def _header(kind: str) -> dict[str, object]:
    return {"format": kind, "version": DEFINITION_VERSION, "_type": _TYPE_TAGS[kind]}


def dump_routine(routine: Routine) -> dict[str, object]:
    """``Routine.serialize``."""
    what = f"routine {type(routine).__name__}"
    doc = _dump_routine(routine, None, "$", what)
    return {**_header(ROUTINE_FORMAT), **typing.cast("dict[str, object]", _unstructure(doc))}


def dump_flow(graph: Graph, *, timeout: float | None, end_on_error: bool) -> dict[str, object]:
    """``Flow.serialize``: the document of *graph* and the flow settings that belong to a definition."""
    what = f"flow {graph.name!r}"
    routines = {
        routine_id: _dump_routine(
            routine, graph._props[routine_id], _key_path("$.routines", routine_id), what
        )
        for routine_id, routine in graph.routines.items()
    }
    links, mappings = graph.wiring(f"Flow({graph.name!r}).serialize()")
    flow = FlowDoc(
        flow_id=graph.name,
        entry_id=graph.entry_id,
        timeout=timeout,
        max_steps=graph.max_steps,
        end_on_error=end_on_error,
        execution_strategy=graph.execution_strategy,
        max_workers=graph.max_workers,
        error_handler=None
        if graph._error_handler is None
        else dump_error_handler(graph._error_handler, "$.error_handler", what),
        routines=routines,
        connections=[
            ConnectionDoc(source, event, target, slot, dict(mappings.get((source, event, target, slot), {})))
            for (source, event), targets in links.items()
            for target, slot in targets
        ],
    )
    return {**_header(FLOW_FORMAT), **typing.cast("dict[str, object]", _unstructure(flow))}


def _unstructure(doc: object) -> object:
    # The state documents' converter writes attrs classes as dicts; free-form values were checked above.
    return _converter.unstructure(doc)


# -- reading ------------------------------------------------------------------


class _Allowed:
    """The classes a document may name: the caller's allow-list, resolved without importing."""

    def __init__(self, allow: Allowed) -> None:
        self.classes: dict[str, type] = dict(_ALWAYS)
        self.modules: set[str] = set()
        if isinstance(allow, str | type | types.ModuleType):
            allow = [allow]
        for item in allow:
            if isinstance(item, type):
                self.classes[class_path(item)] = item
            elif isinstance(item, types.ModuleType):
                self.modules.add(item.__name__)
            elif isinstance(item, str) and item:
                self.modules.add(item)
            else:
                msg = (
                    f"deserialize(allow=[..., {item!r}, ...]): allow holds classes, module names or modules."
                )
                raise TypeError(msg)
        for source in list(_SOURCES):
            for cls in source():
                if isinstance(cls, type):
                    self.classes.setdefault(class_path(cls), cls)

    def resolve(self, path: str, base: type, where: str, what: str) -> type:
        """The class at *path*, if allowed and a subclass of *base*; imports only an allowed module."""
        found = self.classes.get(path)
        module_name, _, qualname = path.partition(":")
        if found is None and base is BaseException and module_name == "builtins":
            found = getattr(builtins, qualname, None)
        if found is None and module_name in self.modules and qualname and "<" not in qualname:
            value: object = importlib.import_module(module_name)
            for part in qualname.split("."):
                value = getattr(value, part, None)
            found = value if isinstance(value, type) else None
        if found is None:
            if module_name in self.modules or path in self.classes:
                problem = f"module {module_name!r} has no class {qualname!r}"
            else:
                problem = (
                    f"the class {path!r} is not allowed, so nothing was imported. Allow it with "
                    f"deserialize(..., allow=[{qualname.rpartition('.')[2] or path}]) or allow its module "
                    f"with allow=[{module_name!r}]"
                )
            msg = f"Cannot load {what}: at {where}, {problem}."
            raise DefinitionDocumentError(msg)
        if not (isinstance(found, type) and issubclass(found, base)):
            msg = f"Cannot load {what}: at {where}, {path!r} is not a {base.__name__} subclass."
            raise DefinitionDocumentError(msg)
        return found


def _check_header(doc: object, kind: str, what: str) -> dict[str, object]:
    if not isinstance(doc, dict):
        msg = f"Cannot load {what}: it is a {type(doc).__name__}, not a {kind} document (a dict with 'format' and 'version')."
        raise DefinitionDocumentError(msg)
    if "format" not in doc and "_type" in doc:
        msg = (
            f"Cannot load {what}: it is a Routilux (serilux) document (\"_type\": {doc['_type']!r}, no "
            f"'format'), which trioflow does not read: such a document sets attributes and names "
            "handlers that serilux resolves itself. Build the flow in code once, then save it with "
            "serialize()."
        )
        raise DefinitionDocumentError(msg)
    if doc.get("format") != kind:
        msg = f"Cannot load {what}: its format is {doc.get('format')!r}, not {kind!r}. Load a document made by serialize()."
        raise DefinitionDocumentError(msg)
    if "_type" in doc and doc["_type"] != _TYPE_TAGS[kind]:
        msg = f"Cannot load {what}: at $._type, {doc['_type']!r} is not {_TYPE_TAGS[kind]!r}, the tag of a {kind} document."
        raise DefinitionDocumentError(msg)
    version = doc.get("version")
    if version != DEFINITION_VERSION or type(version) is not int:
        newer = type(version) is int and version > DEFINITION_VERSION
        fix = (
            "Upgrade trioflow to read it."
            if newer
            else "No trioflow writes that version; the document is corrupt."
        )
        msg = f"Cannot load {what}: it has version {version!r}, but this trioflow reads version {DEFINITION_VERSION}. {fix}"
        raise DefinitionDocumentError(msg)
    problem = _find_non_json(doc, "$")
    if problem is not None:
        msg = f"Cannot load {what}: {problem}."
        raise DefinitionDocumentError(msg)
    return {key: value for key, value in doc.items() if key not in ("format", "version", "_type")}


def _structure(value: object, type_: object, path: str, what: str) -> object:
    try:
        return structure_json(value, type_)
    except (cattrs.BaseValidationError, ValueError, TypeError, AttributeError) as exc:
        # cattrs writes a key as ['name']; write a plain one as .name, like the rest of this module
        problem = re.sub(r"\['([A-Za-z_][A-Za-z0-9_]*)'\]", r".\1", describe_structure_error(exc, path))
        msg = f"Cannot load {what}: {problem}."
        raise DefinitionDocumentError(msg) from None


def load_error_handler(doc: Mapping[str, object], allowed: _Allowed, path: str, what: str) -> ErrorHandler:
    """An :class:`ErrorHandler` from its fields (no header)."""
    fields = {field.name: field for field in attrs.fields(ErrorHandler) if field.init}
    kwargs: dict[str, object] = {}
    for key, value in doc.items():
        where = _key_path(path, key)
        if key not in fields:
            known = ", ".join(repr(name) for name in fields)
            msg = f"Cannot load {what}: at {where}, ErrorHandler has no setting {key!r}; its settings are {known}."
            raise DefinitionDocumentError(msg)
        if key == "retryable_exceptions":
            paths = typing.cast("list[str]", _structure(value, list[str], where, what))
            kwargs[key] = [
                allowed.resolve(p, BaseException, f"{where}[{i}]", what) for i, p in enumerate(paths)
            ]
        else:
            kwargs[key] = value
    try:
        return ErrorHandler(**kwargs)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        msg = f"Cannot load {what}: at {path}, {exc}"
        raise DefinitionDocumentError(msg) from None


def _apply(routine: Routine, doc: RoutineDoc, allowed: _Allowed, path: str, what: str) -> None:
    """Apply what was done to a routine after construction, as the document says."""
    for index, slot in enumerate(doc.slots):
        where = f"{path}.slots[{index}]"
        handler = None
        if slot.handler is not None:
            static = inspect.getattr_static(type(routine), slot.handler, None)
            if slot.handler.startswith("__") or not inspect.isfunction(static):
                msg = f"Cannot load {what}: at {where}.handler, {type(routine).__name__} has no method {slot.handler!r}."
                raise DefinitionDocumentError(msg)
            handler = getattr(routine, slot.handler)
        try:
            routine.define_slot(slot.name, handler, slot.merge_strategy)
        except (TypeError, ValueError) as exc:
            msg = f"Cannot load {what}: at {where}, {exc}"
            raise DefinitionDocumentError(msg) from None
    for index, event in enumerate(doc.events):
        try:
            routine.define_event(event.name, event.params)
        except (TypeError, ValueError) as exc:
            msg = f"Cannot load {what}: at {path}.events[{index}], {exc}"
            raise DefinitionDocumentError(msg) from None
    for key, value in doc.attributes.items():
        if not key.isidentifier() or key.startswith("__") or key in _OWN:
            msg = f"Cannot load {what}: at {_key_path(f'{path}.attributes', key)}, {key!r} is not an attribute a definition may set."
            raise DefinitionDocumentError(msg)
        setattr(routine, key, value)
    if doc.config:
        routine.set_config(**doc.config)
    if doc.error_handler is not None:
        routine.set_error_handler(
            load_error_handler(doc.error_handler, allowed, f"{path}.error_handler", what)
        )


def _build(doc: RoutineDoc, allowed: _Allowed, path: str, what: str) -> Routine:
    cls = allowed.resolve(doc.class_path, Routine, f"{path}.class_path", what)
    routine: Routine = cls(*doc.args, **doc.kwargs)
    _apply(routine, doc, allowed, path, what)
    return routine


def load_routine_into(routine: Routine, doc: object, allow: Allowed) -> None:
    """``Routine.deserialize``: apply a routine document to *routine*, made the same way."""
    what = f"a routine document into {type(routine).__name__}"
    body = _check_header(doc, ROUTINE_FORMAT, what)
    routine_doc = typing.cast("RoutineDoc", _structure(body, RoutineDoc, "$", what))
    recipe = routine.__dict__.get("_recipe")
    made = None if recipe is None else (class_path(recipe.cls), list(recipe.args), dict(recipe.kwargs))
    if made != (routine_doc.class_path, routine_doc.args, routine_doc.kwargs):
        msg = (
            f"Cannot load {what}: the document is of {routine_doc.class_path}"
            f"(*{routine_doc.args!r}, **{routine_doc.kwargs!r}), and this routine was made "
            f"{'otherwise' if made is None else f'as {made[0]}(*{made[1]!r}, **{made[2]!r})'}. Load a "
            "routine's document into a routine made the same way, or load the whole flow with Flow.deserialize()."
        )
        raise DefinitionDocumentError(msg)
    _apply(routine, routine_doc, _Allowed(allow), "$", what)


def load_flow(
    doc: object, allow: Allowed, what: str
) -> tuple[FlowDoc, dict[str, Routine], ErrorHandler | None]:
    """The checked document of a flow, its routines (built) and its error handler."""
    body = _check_header(doc, FLOW_FORMAT, what)
    flow = typing.cast("FlowDoc", _structure(body, FlowDoc, "$", what))
    allowed = _Allowed(allow)
    routines = {
        routine_id: _build(routine_doc, allowed, _key_path("$.routines", routine_id), what)
        for routine_id, routine_doc in flow.routines.items()
    }
    handler = None
    if flow.error_handler is not None:
        handler = load_error_handler(flow.error_handler, allowed, "$.error_handler", what)
    return flow, routines, handler


def load_error_handler_doc(doc: object, allow: Allowed) -> ErrorHandler:
    """``ErrorHandler.deserialize``."""
    what = "an error handler document"
    body = _check_header(doc, ERROR_HANDLER_FORMAT, what)
    return load_error_handler(body, _Allowed(allow), "$", what)


def dump_error_handler_doc(handler: ErrorHandler) -> dict[str, object]:
    """``ErrorHandler.serialize``."""
    return {**_header(ERROR_HANDLER_FORMAT), **dump_error_handler(handler, "$", "an error handler")}


# -- a connection on its own (Routilux's Connection.serialize) ---------------------


@attrs.frozen
class LinkDoc:
    """A connection on its own: a flow's (by ids) or a link made by hand (``source``/``target`` null)."""

    source: str | None
    event: str
    target: str | None
    slot: str
    #: Renames applied to each message: event parameter -> slot parameter.
    param_mapping: dict[str, str]


def dump_connection_doc(connection: Connection) -> dict[str, object]:
    """``Connection.serialize``."""
    doc = LinkDoc(
        connection.source_id, connection.event, connection.target_id, connection.slot, dict(connection.param_mapping)
    )
    return {**_header(CONNECTION_FORMAT), **typing.cast("dict[str, object]", _unstructure(doc))}


def load_connection_doc(doc: object) -> LinkDoc:
    """``Connection.deserialize``: the document's fields, checked."""
    what = "a connection document"
    body = _check_header(doc, CONNECTION_FORMAT, what)
    return typing.cast("LinkDoc", _structure(body, LinkDoc, "$", what))
