"""The versioned JSON state document, and atomic state files.

A state document is ``{"format": "trioflow.state", "version": 1, "state": {...}}``.
It round-trips a :class:`~runtime._state.JobState` losslessly when every
free-form value in it (context, shared data and log, routine states, event
data) is a JSON value. Anything else is reported by its path, never dropped.

(Un)structuring uses this module's own :class:`cattrs.Converter`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import math
import os
import pathlib
import re
import stat
import tempfile
import typing
from typing import TYPE_CHECKING

import attrs
import cattrs
import cattrs.cols

from . import _state
from ._exceptions import StateFileError, UnserializableValueError
from ._state import JobState, Request, Status

if TYPE_CHECKING:
    from collections.abc import Callable

    _Hook = Callable[[object, object], object]

STATE_FORMAT = "trioflow.state"
"""The ``format`` of every state document."""

STATE_VERSION = 1
"""The document version this runtime writes and reads."""

_logger = logging.getLogger("runtime.state")

_JSON_SCALARS = (str, int, float, bool, type(None))
_REPR_LIMIT = 200
_FIX = (
    "Keep only JSON values (str, int, float, bool, None, lists, dicts with str keys) "
    "in context and state, or leave save_state off."
)


# -- the converter ---------------------------------------------------------


class _BadValueError(ValueError):
    """A value that is well-typed but wrong; its message is shown as is."""


_JSON_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _wrong_type(expected: type, value: object) -> TypeError:
    got = _JSON_NAMES.get(type(value), f"a {type(value).__name__}")
    return TypeError(f"expected {_JSON_NAMES[expected]}, got {got}")


def _exact(cls: type) -> _Hook:
    """A structure hook that accepts only *cls* itself, never coercing."""

    def hook(value: object, _: object) -> object:
        if type(value) is not cls:
            raise _wrong_type(cls, value)
        return value

    return hook


def _structure_float(value: object, _: object) -> float:
    if type(value) is not float and type(value) is not int:
        raise _wrong_type(float, value)
    return float(value)


def _structure_status(value: object, _: object) -> Status:
    if type(value) is not str:
        raise _wrong_type(str, value)
    if value not in Status._value2member_map_:
        choices = ", ".join(repr(status.value) for status in Status)
        msg = f"unknown status {value!r}; a status is one of {choices}"
        raise _BadValueError(msg)
    return Status(value)


def _structure_datetime(value: object, _: object) -> datetime.datetime:
    if type(value) is not str:
        raise _wrong_type(str, value)
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        msg = f"{value!r} is not an ISO-8601 date and time"
        raise _BadValueError(msg) from None
    if moment.utcoffset() is None:
        msg = f"{value!r} has no UTC offset; trioflow writes times with one, e.g. '2024-01-01T12:00:00+00:00'"
        raise _BadValueError(msg)
    return moment


def _is_container(type_: object) -> bool:
    origin = typing.get_origin(type_)
    return origin is list or origin is tuple or origin is dict


def _structure_container(type_: type, converter: cattrs.Converter) -> _Hook:
    """A hook factory for lists, tuples and dicts that first checks the JSON type.

    cattrs alone would structure ``tuple[str, ...]`` from ``"abc"``.
    """
    origin = typing.get_origin(type_)
    expected: type = dict if origin is dict else list
    inner: _Hook
    if origin is dict:
        inner = typing.cast("_Hook", cattrs.cols.mapping_structure_factory(type_, converter))
    elif origin is tuple and typing.get_args(type_)[1:] != (Ellipsis,):
        inner = _fixed_tuple_structure(typing.get_args(type_), converter)
    elif origin is tuple:
        inner = cattrs.cols.homogenous_tuple_structure_factory(type_, converter)
    else:
        inner = cattrs.cols.list_structure_factory(type_, converter)

    def hook(value: object, t: object) -> object:
        if type(value) is not expected:
            raise _wrong_type(expected, value)
        return inner(value, t)

    return hook


def _fixed_tuple_structure(items: tuple[object, ...], converter: cattrs.Converter) -> _Hook:
    """A hook for ``tuple[int, str]``: exactly that many items, each of its type."""

    def hook(value: object, _: object) -> object:
        values = typing.cast("list[object]", value)
        if len(values) != len(items):
            msg = f"expected an array of {len(items)} items, got {len(values)}"
            raise _BadValueError(msg)
        return tuple(
            converter.structure(item, typing.cast("type[object]", item_type))
            for item, item_type in zip(values, items, strict=True)
        )

    return hook


def _structure_attrs(cls: type, converter: cattrs.Converter) -> _Hook:
    """A hook factory for the attrs classes that first checks for a JSON object.

    Every field is required, defaults or not: :func:`dump_state` writes them
    all, so a missing one means the document was cut or edited.
    """
    inner = typing.cast("_Hook", converter.gen_structure_attrs_fromdict(cls))
    fields = [field for field in attrs.fields(cls) if field.init]

    def hook(value: object, t: object) -> object:
        if type(value) is not dict:
            raise _wrong_type(dict, value)
        missing = []
        for field in fields:
            if field.name not in value:
                error = KeyError(field.name)
                note = f"Structuring class {cls.__qualname__} @ attribute {field.name}"
                error.add_note(cattrs.AttributeValidationNote(note, field.name, field.type))
                missing.append(error)
        if missing:
            msg = f"While structuring {cls.__qualname__}"
            raise cattrs.ClassValidationError(msg, missing, cls)
        return inner(value, t)

    return hook


def _is_request_tree(type_: object) -> bool:
    return type_ == dict[str, Request]


def _unstructure_requests(requests: dict[str, Request]) -> list[object]:
    return [_converter.unstructure(request, Request) for request in requests.values()]


def _structure_requests(value: object, _: object) -> dict[str, Request]:
    """Rebuild the request tree from its list form, checking it is a tree."""
    requests: dict[str, Request] = {}
    for index, request in enumerate(_converter.structure(value, list[Request])):
        if request.id in requests:
            msg = f"request [{index}] repeats the id {request.id!r}"
            raise _BadValueError(msg)
        if request.parent_id is not None and request.parent_id not in requests:
            msg = (
                f"request [{index}] ({request.id!r}) names the parent {request.parent_id!r}, "
                "which is not an earlier request"
            )
            raise _BadValueError(msg)
        requests[request.id] = request
    return requests


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_unstructure_hook(datetime.datetime, datetime.datetime.isoformat)
    converter.register_structure_hook(datetime.datetime, _structure_datetime)
    converter.register_unstructure_hook(Status, lambda status: status.value)
    converter.register_structure_hook(Status, _structure_status)
    converter.register_structure_hook(str, _exact(str))
    converter.register_structure_hook(int, _exact(int))
    converter.register_structure_hook(bool, _exact(bool))
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook_factory(_is_container, _structure_container)
    converter.register_structure_hook_factory(attrs.has, _structure_attrs)
    # Free-form values are JSON values, checked when dumped; pass them through.
    converter.register_structure_hook_func(lambda t: t is object, lambda value, _: value)
    # The request tree is a list in the document: ids are not repeated as keys.
    converter.register_unstructure_hook_func(_is_request_tree, _unstructure_requests)
    converter.register_structure_hook_func(_is_request_tree, _structure_requests)
    return converter


# Resolve the models' string annotations now, while their __module__ is still
# runtime._state: the package re-exports them as runtime.JobState etc.
for _cls in (_state.ErrorSummary, _state.Request, _state.HistoryEntry, _state.Delivery, JobState):
    attrs.resolve_types(_cls)
del _cls

_converter = _make_converter()


# -- dumping ---------------------------------------------------------------


def _key_path(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key)}]"


def _qualname(value: object) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


@attrs.define
class _Walker:
    """Checks free-form values are JSON values; returns cleaned copies."""

    run_id: str
    strict: bool
    bad_paths: list[str] = attrs.field(factory=list)
    _stack: set[int] = attrs.field(factory=set)

    def report(self, value: object, path: str, problem: str) -> object:
        if self.strict:
            msg = f"Cannot save the state of run {self.run_id!r}: {path} {problem}. {_FIX}"
            raise UnserializableValueError(msg, path=path)
        self.bad_paths.append(path)
        return {"$unserializable": repr(value)[:_REPR_LIMIT], "type": _qualname(value)}

    def walk(self, value: object, path: str) -> object:
        cls = type(value)
        if isinstance(value, float) and not math.isfinite(value):
            return self.report(value, path, f"is the float {value!r}, which JSON cannot hold")
        if cls in _JSON_SCALARS:
            return value
        if cls is not dict and cls is not list:
            what = f"a {cls.__name__} ({_qualname(value)})"
            return self.report(value, path, f"is {what}, which JSON cannot hold")
        if id(value) in self._stack:
            return self.report(value, path, "is a reference cycle, which JSON cannot hold")
        self._stack.add(id(value))
        try:
            if isinstance(value, list):
                return [self.walk(v, f"{path}[{i}]") for i, v in enumerate(value)]
            assert isinstance(value, dict)
            bad_key = next((k for k in value if type(k) is not str), None)
            if bad_key is not None:
                problem = (
                    f"has the key {bad_key!r} ({_qualname(bad_key)}), which JSON cannot hold as an object key"
                )
                return self.report(value, path, problem)
            return {k: self.walk(v, _key_path(path, k)) for k, v in value.items()}
        finally:
            self._stack.discard(id(value))

    def walk_dict(self, value: dict[str, object], path: str) -> dict[str, object]:
        cleaned = self.walk(value, path)
        assert isinstance(cleaned, dict)
        return cleaned


def dump_state(state: JobState, *, strict: bool = True) -> dict[str, object]:
    """Return *state* as a versioned state document of JSON values.

    Every free-form value (context, shared data, shared log, routine states,
    history and undelivered data) must be a JSON value: ``str``, ``int``,
    finite ``float``, ``bool``, ``None``, a ``list`` or a ``dict`` with
    ``str`` keys (exactly these types; a tuple would come back as a list).

    Args:
        state: the state to dump; it is not changed.
        strict: if true, raise on the first value that is not JSON. If false,
            replace each such value by ``{"$unserializable": repr, "type": name}``
            and list the paths of all of them under the document's
            ``"unserializable"`` key.

    Returns:
        ``{"format": "trioflow.state", "version": 1, "state": {...}}``, plus
        ``"unserializable"`` when values were replaced.

    Raises:
        UnserializableValueError: *strict* is true and a value is not JSON;
            its ``path`` says where, e.g. ``$.context.conn``.

    .. versionadded:: 0.1.0
    """
    walker = _Walker(run_id=state.job_id, strict=strict)
    cleaned = attrs.evolve(
        state,
        context=walker.walk_dict(state.context, "$.context"),
        shared_data=walker.walk_dict(state.shared_data, "$.shared_data"),
        shared_log=typing.cast("list[dict[str, object]]", walker.walk(state.shared_log, "$.shared_log")),
        routine_states=typing.cast(
            "dict[str, dict[str, object]]", walker.walk(state.routine_states, "$.routine_states")
        ),
        history=[
            attrs.evolve(e, data=walker.walk_dict(e.data, f"$.history[{i}].data"))
            for i, e in enumerate(state.history)
        ],
        undelivered=[
            attrs.evolve(d, data=walker.walk_dict(d.data, f"$.undelivered[{i}].data"))
            for i, d in enumerate(state.undelivered)
        ],
    )
    doc: dict[str, object] = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "state": _converter.unstructure(cleaned, JobState),
    }
    if walker.bad_paths:
        doc["unserializable"] = walker.bad_paths
    return doc


# -- loading ---------------------------------------------------------------


def _format_cattrs_error(exc: BaseException, type_: type | None) -> str:
    if isinstance(exc, _BadValueError | TypeError):
        return str(exc)
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        keys = ", ".join(repr(key) for key in sorted(exc.extra_fields))
        return f"unknown {'key' if len(exc.extra_fields) == 1 else 'keys'} {keys}"
    if type_ is None:  # the message already names the type: "'x' is not a valid Color"
        return str(exc)
    name = getattr(type_, "__name__", repr(type_))
    return f"invalid value for {name}: {exc}"


_DOCUMENT_KEYS = ("format", "version", "state", "unserializable")
_DAMAGED = "It was edited or damaged; restore it, or delete it and run again."


def _is_list_of_str(value: object) -> bool:
    return type(value) is list and all(type(item) is str for item in value)


def _find_non_json(value: object, path: str) -> str | None:
    """The first value in *value* that JSON cannot hold, as ``at $.path, problem``; else None.

    Walks with a stack, not recursion, so nesting depth is no problem here.
    ``json.loads`` reads ``NaN``, ``Infinity`` and ``1e999`` as floats that a
    state document must not hold; a document built in Python may hold anything.
    """
    stack: list[tuple[object, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        cls = type(item)
        if cls is float and not math.isfinite(typing.cast("float", item)):
            return f"at {where}, {item!r} is not a JSON number (NaN and infinities are not JSON)"
        if cls is list:
            items = typing.cast("list[object]", item)
            stack.extend((child, f"{where}[{index}]") for index, child in reversed(list(enumerate(items))))
        elif cls is dict:
            entries = typing.cast("dict[object, object]", item)
            for key in entries:
                if type(key) is not str:
                    return f"at {where}, the key {key!r} is not a string (JSON object keys are strings)"
            stack.extend(
                (child, _key_path(where, typing.cast("str", key))) for key, child in reversed(entries.items())
            )
        elif cls not in _JSON_SCALARS:
            return f"at {where}, a {cls.__name__} is not a JSON value"
    return None


def _load(doc: object, what: str) -> JobState:
    if not isinstance(doc, dict):
        msg = (
            f"{what} is a {type(doc).__name__}, not a trioflow state document: expected "
            f"an object with keys 'format', 'version' and 'state'."
        )
        raise StateFileError(msg)
    missing = [key for key in ("format", "version", "state") if key not in doc]
    if missing:
        msg = (
            f"{what} has no {', '.join(map(repr, missing))} key; a trioflow state document "
            f"has 'format', 'version' and 'state'. Write it with write_state_file()."
        )
        raise StateFileError(msg)
    if doc["format"] != STATE_FORMAT:
        msg = (
            f"{what} has format {doc['format']!r}, but trioflow reads {STATE_FORMAT!r}. "
            "It is not a trioflow state document."
        )
        raise StateFileError(msg)
    version = doc["version"]
    if type(version) is not int:
        msg = f"{what} has version {version!r}; a version is an integer, e.g. {STATE_VERSION}."
        raise StateFileError(msg)
    if version > STATE_VERSION:
        msg = (
            f"{what} has version {version}, but this trioflow reads version "
            f"{STATE_VERSION}. Upgrade trioflow to read it."
        )
        raise StateFileError(msg)
    if version != STATE_VERSION:
        msg = (
            f"{what} has version {version}, but this trioflow reads version "
            f"{STATE_VERSION}; no trioflow writes version {version}, so the document is corrupt."
        )
        raise StateFileError(msg)
    extra = sorted(key for key in doc if key not in _DOCUMENT_KEYS)
    problem = None
    if extra:
        problem = f"at $, unknown {'key' if len(extra) == 1 else 'keys'} {', '.join(map(repr, extra))}"
    elif "unserializable" in doc and not _is_list_of_str(doc["unserializable"]):
        problem = "at $.unserializable, expected an array of strings (the paths of values not saved)"
    else:
        problem = _find_non_json(doc["state"], "$.state")
    if problem is not None:
        msg = f"{what} is not a valid trioflow state: {problem}. {_DAMAGED}"
        raise StateFileError(msg)
    try:
        return _converter.structure(doc["state"], JobState)
    except (cattrs.BaseValidationError, ValueError, TypeError, AttributeError) as exc:
        msg = f"{what} is not a valid trioflow state: {describe_structure_error(exc, '$.state')}. {_DAMAGED}"
        raise StateFileError(msg) from exc


def describe_structure_error(exc: BaseException, path: str = "$") -> str:
    """What :func:`structure_json` (or loading) found wrong, as ``at $.path, problem``.

    A problem at *path* itself is given without its path when *path* is ``$``.
    """
    errors = cattrs.transform_error(exc, path=path, format_exception=_format_cattrs_error)
    # transform_error gives "problem @ path"; say the path first.
    return "; ".join(
        problem if where == "$" else f"at {where}, {problem}"
        for problem, _, where in (e.rpartition(" @ ") for e in errors)
    )


def structure_json(value: object, type_: object) -> object:
    """*value*, a JSON value, as an instance of *type_*, with the state documents' converter.

    No coercion: ``"3"`` is not an ``int``, ``1`` is not a ``bool``; an
    ``int`` is a ``float``; lists and tuples come from arrays, dicts and attrs
    classes from objects, times from ISO-8601 strings with a UTC offset.

    Raises:
        cattrs.StructureHandlerNotFoundError: the converter cannot build *type_*.
        cattrs.errors.CattrsError, ValueError, TypeError: *value* does not fit
            *type_*; :func:`describe_structure_error` says how.
    """
    return _converter.structure(value, typing.cast("type[object]", type_))


def load_state(doc: object) -> JobState:
    """Rebuild a :class:`~runtime._state.JobState` from a state document.

    Args:
        doc: a document made by :func:`dump_state` (possibly through JSON).

    Raises:
        StateFileError: *doc* is not a state document, is of another format
            version, or a field is missing, unknown or of the wrong type, or a
            value is not JSON (``NaN``, infinities, a tuple, a time without a
            UTC offset); the message names the place by its path, e.g.
            ``$.state.status``.

    .. versionadded:: 0.1.0
    """
    return _load(doc, "State document")


# -- files -------------------------------------------------------------------


# A flow name that is already a safe, portable file name is used as is:
# lower case (so two names never meet on a case-insensitive file system),
# starting with a letter or digit (no hidden files, no "..", no "-option").
_PLAIN_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")
_PREFIX_LIMIT = 64
# Device names Windows reserves whatever their extension (CON.json is the console).
_WINDOWS_RESERVED = frozenset(
    ["con", "prn", "aux", "nul", "conin$", "conout$"]
    + [f"{kind}{n}" for kind in ("com", "lpt") for n in "0123456789"]
)


def state_file_name(flow_name: str) -> str:
    """The file name, inside the state directory, of flow *flow_name*'s state file.

    A plain name (lower-case letters, digits, ``.``, ``_`` and ``-``,
    starting with a letter or digit, at most 100 characters, not a Windows
    device name) is kept: ``greet-all`` gives ``greet-all.json``. Any other
    name gives a readable prefix (each run of other characters replaced by
    ``_``, cut to 64 characters) then ``~`` and 16 hex digits of the
    SHA-256 of the whole name: ``assistant-x/../../escape`` gives
    ``assistant-x_.._.._escape~<hash>.json``.

    The result is always one file name of at most 105 ASCII characters: no
    separator, no ``..``, no NUL or control character, whatever the name
    holds. Distinct names give distinct file names, even on a file system
    that ignores case: plain names have no ``~`` and no upper case, and
    every other name carries the hash of its exact text.

    .. versionadded:: 0.1.0
    """
    if _PLAIN_NAME.fullmatch(flow_name) and flow_name.partition(".")[0] not in _WINDOWS_RESERVED:
        return f"{flow_name}.json"
    digest = hashlib.sha256(flow_name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    prefix = _UNSAFE_RUN.sub("_", flow_name)[:_PREFIX_LIMIT].lstrip(".-") or "flow"
    return f"{prefix}~{digest}.json"


def write_state_file(state: JobState, path: os.PathLike[str] | str, *, strict: bool = False) -> pathlib.Path:
    """Write *state*'s document to *path* as JSON, atomically.

    Creates the parent directory, writes a temporary file beside *path*,
    syncs it to disk and renames it over *path*: a crash leaves the old file
    or the new one, never a truncated one. Overwriting an existing file logs
    a warning on the ``runtime.state`` logger. This blocks on disk I/O; from
    Trio code call it through :func:`trio.to_thread.run_sync`.

    Args:
        state: the state to write.
        path: where to write it.
        strict: passed to :func:`dump_state`. The default replaces values that
            are not JSON, lists their paths in the document and logs a
            warning naming them.

    Returns:
        *path*, as a :class:`pathlib.Path`.

    Raises:
        UnserializableValueError: *strict* is true and a value is not JSON;
            nothing is written.

    .. versionadded:: 0.1.0
    """
    target = pathlib.Path(path)
    document = dump_state(state, strict=strict)
    text = json.dumps(document, indent=2, allow_nan=False)
    unsaved = document.get("unserializable")
    if isinstance(unsaved, list) and unsaved:
        _logger.warning(
            "Run %s of flow %r: %s cannot be saved as JSON; the state file %s keeps their repr instead "
            '(listed under its "unserializable" key).',
            state.job_id,
            state.flow_id,
            ", ".join(map(str, unsaved)),
            os.fspath(path),
        )
    _write_atomic(target, text)
    return target


def _write_atomic(target: pathlib.Path, text: str) -> None:
    """Write *text* to *target* through a synced temporary file beside it, renamed over it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        _logger.warning("State file %s already exists, overwriting.", os.fspath(target))
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            tmp.write(text)
            tmp.write("\n")
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        pathlib.Path(tmp_name).unlink(missing_ok=True)
        raise
    if os.name == "posix":
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


DEFAULT_MAX_STATE_BYTES = 64 * 1024 * 1024
"""The largest state file :func:`read_state_file` reads unless told otherwise (64 MiB)."""

_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _check_regular(name: str, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((kind for test, kind in _FILE_KINDS if test(mode)), "not a regular file")
    msg = f"State file {name} is {kind}, not a regular file; give the path of a file written by save_state=True."
    raise StateFileError(msg)


def _too_large(name: str, max_bytes: int) -> StateFileError:
    msg = (
        f"State file {name} is larger than {max_bytes} bytes, the most this reads. If it is a "
        "state file, raise the limit: read_state_file(path, max_bytes=N), or show --max-bytes N."
    )
    return StateFileError(msg)


def _read_bounded(path: os.PathLike[str] | str, max_bytes: int) -> bytes:
    """Read the regular file at *path*, refusing anything else and anything over *max_bytes*.

    A FIFO, a device or a directory is refused after a ``stat``, before it is
    opened (opening a FIFO would wait for a writer); the file is then opened
    non-blocking, checked again and read at most ``max_bytes + 1`` bytes, so
    a file swapped in between, or one that grows, cannot block or fill memory.
    """
    name = os.fspath(path)
    _check_regular(name, os.stat(path).st_mode)
    flags = (
        os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    )
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb", buffering=0) as file:
        info = os.fstat(file.fileno())
        _check_regular(name, info.st_mode)
        if info.st_size > max_bytes:
            raise _too_large(name, max_bytes)
        chunks: list[bytes] = []
        size = 0
        while chunk := file.read(min(1 << 20, max_bytes + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(name, max_bytes)
    return b"".join(chunks)


def read_state_file(path: os.PathLike[str] | str, *, max_bytes: int = DEFAULT_MAX_STATE_BYTES) -> JobState:
    """Read a state file written by :func:`write_state_file`.

    Only a regular file (or a symlink to one) is read, and at most
    *max_bytes* of it: a FIFO, a device such as ``/dev/zero`` or a directory
    is refused without blocking, and so is a larger file.

    Args:
        path: the state file.
        max_bytes: the largest file to read; default 64 MiB.

    Raises:
        ValueError: *max_bytes* is not a positive integer.
        OSError: the file cannot be read (e.g. ``FileNotFoundError``).
        StateFileError: the file is not a regular file, is larger than
            *max_bytes*, is not valid JSON (the message gives the line), nests
            too deeply, or is not a valid state document of this version.

    .. versionadded:: 0.1.0
    """
    if type(max_bytes) is not int or max_bytes < 1:
        msg = f"read_state_file(max_bytes={max_bytes!r}): max_bytes must be a positive number of bytes."
        raise ValueError(msg)
    name = os.fspath(path)
    return _load(_parse_file(name, _read_bounded(path, max_bytes)), f"State file {name}")


def _parse_file(name: str, data: bytes) -> object:
    """The JSON value in the bytes of state file *name*; a :class:`StateFileError` saying why not."""
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        msg = (
            f"State file {name} is not UTF-8 text (byte {exc.start}); it is damaged or "
            "not a state file. Restore it, or delete it and run again."
        )
        raise StateFileError(msg) from exc
    except json.JSONDecodeError as exc:
        msg = (
            f"State file {name} is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}. It may be truncated or edited; restore it, or delete it "
            "and run again."
        )
        raise StateFileError(msg) from exc
    except RecursionError as exc:
        msg = (
            f"State file {name} nests its JSON too deeply to read; trioflow never writes such a "
            "file. Restore it, or delete it and run again."
        )
        raise StateFileError(msg) from exc


# -- Routilux's flat JobState documents ---------------------------------------------
#
# JobState.serialize() / deserialize() / save() / load(): Routilux's shape, one flat object
# with "_type": "JobState", over the same converter and the same checks as the versioned
# document. A flat document names no class to import: "_type" is checked, never looked up.

_FLAT_TYPE = "JobState"
#: Routilux's keys that trioflow's state has under another name, derives, or has no use for.
_FLAT_ONLY = (
    "_type",
    "current_routine_id",
    "updated_at",
    "execution_history",
    "pause_points",
    "pending_tasks",
    "deferred_events",
    "output_log",
    "unserializable",
)
_FLAT_REQUIRED = ("flow_id", "job_id", "status")
_FLAT_FIX = "Load a document made by JobState.serialize() or save()."


#: A Delivery's fields as Routilux's pending task names them (the flat form keeps only pending_tasks).
_TASK_KEYS = {
    "target": "slot_routine_id",
    "slot": "slot_name",
    "data": "data",
    "source": "connection_source_routine_id",
    "event": "connection_source_event_name",
}


def _flat_path(path: str) -> str:
    """The paths of trioflow's state in *path* (``$.history[0]``, ``$.undelivered[1].data``) as the flat form names them."""
    path = re.sub(r"\$\.history\b", "$.execution_history", path)
    return re.sub(
        r"\$\.undelivered\[(\d+)\](?:\.(\w+))?",
        lambda m: f"$.pending_tasks[{m[1]}]" + (f".{_TASK_KEYS.get(m[2], m[2])}" if m[2] else ""),
        path,
    )


def _dump_flat(state: JobState, *, strict: bool) -> dict[str, object]:
    doc = dump_state(state, strict=strict)
    inner = typing.cast("dict[str, object]", doc["state"])
    history = typing.cast("list[dict[str, object]]", inner.pop("history"))
    shared = typing.cast("dict[str, object]", inner["shared_data"])
    undelivered = typing.cast("list[dict[str, object]]", inner.pop("undelivered"))
    walker = _Walker(run_id=state.job_id, strict=strict)
    flat: dict[str, object] = {
        "_type": _FLAT_TYPE,
        "flow_id": inner.pop("flow_id"),
        "job_id": inner.pop("job_id"),
        "status": inner.pop("status"),
        "current_routine_id": walker.walk(state.current_routine_id, "$.current_routine_id"),
        "routine_states": inner.pop("routine_states"),
        "execution_history": [{"_type": "ExecutionRecord", **entry} for entry in history],
        "created_at": inner.pop("created_at"),
        "updated_at": state.updated_at.isoformat(),
        "pause_points": [],
        "pending_tasks": [{_TASK_KEYS[key]: d[key] for key in _TASK_KEYS} for d in undelivered],
        "deferred_events": [],
        "shared_data": inner.pop("shared_data"),
        "shared_log": inner.pop("shared_log"),
        "output_log": shared.get(_state.OUTPUT_KEY, []),
        **inner,
    }
    unsaved = [_flat_path(p) for p in typing.cast("list[str]", doc.get("unserializable", []))]
    unsaved += walker.bad_paths
    if unsaved:
        flat["unserializable"] = unsaved
    return flat


def _local_time(value: object) -> object:
    """An ISO time without a UTC offset (Routilux writes local times) with the local offset; else *value*."""
    if type(value) is not str:
        return value
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return value  # the converter names it
    return moment.astimezone().isoformat() if moment.utcoffset() is None else value


def _flat_error(what: str, problem: str) -> StateFileError:
    return StateFileError(f"{what} is not a valid JobState document: {problem}. {_FLAT_FIX}")


def _flat_history(doc: dict[str, object], created: object, what: str) -> list[object]:
    records = doc.get("execution_history", [])
    if type(records) is not list:
        raise _flat_error(what, "at $.execution_history, expected an array")
    history: list[object] = []
    for index, record in enumerate(records):
        if type(record) is not dict:
            history.append(record)  # the converter names it
            continue
        entry = dict(record)
        kind = entry.pop("_type", "ExecutionRecord")
        if kind != "ExecutionRecord":
            raise _flat_error(what, f"at $.execution_history[{index}]._type, {kind!r} is not 'ExecutionRecord'")
        entry["timestamp"] = _local_time(entry.get("timestamp"))
        if "offset" not in entry and type(created) is str and type(entry["timestamp"]) is str:
            try:
                start = datetime.datetime.fromisoformat(created)
                moment = datetime.datetime.fromisoformat(entry["timestamp"])
                entry["offset"] = (moment - start).total_seconds()
            except (ValueError, TypeError):
                entry["offset"] = 0.0  # the converter names the bad time
        history.append(entry)
    return history


def _load_flat(doc: object, what: str) -> JobState:
    if type(doc) is not dict:
        got = _JSON_NAMES.get(type(doc), f"a {type(doc).__name__}")
        raise _flat_error(what, f"it is {got}, not an object with \"_type\": \"JobState\"")
    if doc.get("_type") != _FLAT_TYPE:
        raise _flat_error(what, f"its _type is {doc.get('_type')!r}, not 'JobState'")
    problem = _find_non_json(doc, "$")
    missing = [key for key in _FLAT_REQUIRED if key not in doc]
    template = typing.cast("dict[str, object]", _converter.unstructure(JobState("", ""), JobState))
    known = (set(template) - {"history", "undelivered"}) | set(_FLAT_ONLY)
    extra = sorted(key for key in doc if key not in known)
    if problem is None and missing:
        problem = f"it has no {', '.join(map(repr, missing))}"
    if problem is None and extra:
        problem = f"at $, unknown {'key' if len(extra) == 1 else 'keys'} {', '.join(map(repr, extra))}"
    current = doc.get("current_routine_id")
    if problem is None and current is not None and type(current) is not str:
        problem = "at $.current_routine_id, expected a string or null"
    if problem is not None:
        raise _flat_error(what, problem)
    fields = {key: doc[key] for key in template if key in doc}
    fields["created_at"] = created = _local_time(doc.get("created_at", template["created_at"]))
    fields["history"] = _flat_history(doc, created, what)
    tasks = doc.get("pending_tasks", [])
    if type(tasks) is not list:
        raise _flat_error(what, "at $.pending_tasks, expected an array")
    # Routilux writes more keys per task (priority, retries, ...): a job is not rebuilt from them.
    fields["undelivered"] = [
        {
            "source": task.get("connection_source_routine_id") or "",
            "event": task.get("connection_source_event_name") or "",
            "target": task.get("slot_routine_id"),
            "slot": task.get("slot_name"),
            "data": task.get("data", {}),
        }
        if type(task) is dict
        else task
        for task in tasks
    ]
    shared = fields.get("shared_data")
    outputs = doc.get("output_log")
    if type(shared) is dict and outputs and _state.OUTPUT_KEY not in shared:
        fields["shared_data"] = {**shared, _state.OUTPUT_KEY: outputs}
    errors = (cattrs.BaseValidationError, ValueError, TypeError, AttributeError)
    try:
        state = _converter.structure({**template, **fields}, JobState)
    except errors as exc:
        raise _flat_error(what, _flat_path(describe_structure_error(exc))) from exc
    try:
        updated = _converter.structure(_local_time(doc.get("updated_at", created)), datetime.datetime)
    except errors as exc:
        raise _flat_error(what, describe_structure_error(exc, "$.updated_at")) from exc
    state.current_routine_id = typing.cast("str | None", current)
    state.updated_at = updated
    return state


@attrs.frozen
class _FlatCodec:
    """The flat documents' functions, handed to the state model (:data:`runtime._state.flat_codec`)."""

    def dump(self, state: JobState, *, strict: bool) -> dict[str, object]:
        return _dump_flat(state, strict=strict)

    def load(self, doc: object, what: str) -> JobState:
        return _load_flat(doc, what)

    def save(self, state: JobState, path: str | os.PathLike[str]) -> pathlib.Path:
        target = pathlib.Path(path)
        flat = _dump_flat(state, strict=False)
        unsaved = flat.get("unserializable")
        if isinstance(unsaved, list) and unsaved:
            _logger.warning(
                "Run %s of flow %r: %s cannot be saved as JSON; the file %s keeps their repr instead.",
                state.job_id,
                state.flow_id,
                ", ".join(map(str, unsaved)),
                os.fspath(path),
            )
        _write_atomic(target, json.dumps(flat, indent=2, ensure_ascii=False, allow_nan=False))
        return target

    def read(self, path: str | os.PathLike[str], max_bytes: int) -> JobState:
        if type(max_bytes) is not int or max_bytes < 1:
            msg = f"JobState.load(max_bytes={max_bytes!r}): max_bytes must be a positive number of bytes."
            raise ValueError(msg)
        name = os.fspath(path)
        return _load_flat(_parse_file(name, _read_bounded(path, max_bytes)), f"State file {name}")


_state.flat_codec.append(_FlatCodec())
