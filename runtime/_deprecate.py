"""Deprecation helpers, and the legacy ``@rt.session`` decorator."""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from typing import TYPE_CHECKING, ParamSpec, TypeVar, final

import attrs

# Written in _util, so that every layer can warn; kept importable from here.
from ._util import TrioflowDeprecationWarning as TrioflowDeprecationWarning
from ._util import warn_deprecated as warn_deprecated

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from ._flow import SessionView

P = ParamSpec("P")
T = TypeVar("T")


@final
@attrs.frozen
class DeprecatedAttribute:
    """A module attribute kept under an old name for one release; see :func:`deprecate_attributes`.

    Attributes:
        value: what the old name still gives (``None`` for a moved attribute).
        version: the trioflow version that deprecated it.
        instead: the replacement, as users write it (``runtime.BusyError``).
        issue: the issue that explains the change.
        moved_to: for an attribute that moved, its new dotted path, imported on access.
    """

    value: object
    version: str
    instead: str
    issue: int | None = None
    moved_to: str | None = None

    @classmethod
    def moved(cls, path: str, *, version: str, issue: int | None = None) -> DeprecatedAttribute:
        """An attribute moved to *path* (``package.module.Name``), imported only when accessed.

        For a name that moved to a package the old one must not import, such as
        the fuzz kit: the old name resolves *path* on each access.
        """
        return cls(None, version=version, instead=path, issue=issue, moved_to=path)

    def resolve(self) -> object:
        """What the old name gives: :attr:`value`, or the object at :attr:`moved_to`."""
        if self.moved_to is None:
            return self.value
        module, _, name = self.moved_to.rpartition(".")
        return getattr(importlib.import_module(module), name)


def deprecate_attributes(
    module: str, attributes: Mapping[str, DeprecatedAttribute]
) -> Callable[[str], object]:
    """A module ``__getattr__`` that serves *attributes* under their old names, with a warning.

    Assign it as ``__getattr__`` in *module*: each access to an old name warns
    with :class:`TrioflowDeprecationWarning`, naming the thing, the version,
    the replacement and the issue (as trio's ``deprecate_attributes`` does).
    The old names stay out of ``dir()`` and ``__all__``.
    """

    def __getattr__(name: str) -> object:
        attribute = attributes.get(name)
        if attribute is None:
            msg = f"module {module!r} has no attribute {name!r}"
            raise AttributeError(msg, name=name, obj=sys.modules.get(module))
        warn_deprecated(
            f"{module}.{name}", version=attribute.version, instead=attribute.instead, issue=attribute.issue
        )
        return attribute.resolve()

    return __getattr__


def session(
    fn: Callable[P, Awaitable[T]] | None = None,
    /,
    *,
    name: str | None = None,
    timeout: float | None = None,
    context: dict[str, object] | None = None,
    save_state: bool | None = None,
    end_on_error: bool | None = None,
    broadcast_callback: Callable[[object], object] | None = None,
) -> (
    Callable[P, Awaitable[tuple[T, SessionView]]]
    | Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[tuple[T, SessionView]]]]
):
    """Run each call of an async function in its own isolated run (deprecated).

    The older form of :class:`~runtime.Flow`: ``@rt.session(timeout=30)`` on an
    ``async def`` makes every call a fresh run with these settings, in which
    ``rt.call`` and ``rt.context`` work. Calls must be awaited from Trio code.

    As in Railtracks 1.7, a call returns two values, ``(result, session)``:
    the function's result, and the run seen as an ``rt.Session`` (a
    :class:`~runtime.SessionView`: ``isinstance(session, rt.Session)`` holds;
    its ``session_id``, ``name``, ``context``, ``state``, ``result`` and ``info``).
    Settings left ``None`` fall back on :func:`~runtime.set_config`.

    Raises:
        TypeError: the function is not ``async def``.

    .. deprecated:: 0.1
        Use ``rt.Flow(name, entry_point=rt.function_node(fn), ...)``.
    .. versionchanged:: 0.2
        A call returns ``(result, session)``, as in Railtracks 1.7; the
        session is an ``rt.Session`` (a :class:`~runtime.SessionView`).
    """

    def decorate(
        f: Callable[P, Awaitable[T]], stacklevel: int = 3
    ) -> Callable[P, Awaitable[tuple[T, SessionView]]]:
        if not inspect.iscoroutinefunction(f):
            msg = (
                f"@rt.session: the @session decorator can only be applied to async functions, and "
                f"{getattr(f, '__qualname__', f)!r} is not one. "
                "Make it `async def`, or use rt.Flow(name, entry_point=rt.function_node(fn))."
            )
            raise TypeError(msg)
        warn_deprecated(
            "@rt.session",
            version="0.1",
            instead="rt.Flow(name, entry_point=node, ...)",
            stacklevel=stacklevel,
        )
        from ._flow import Flow
        from ._node import Node

        flow: Flow[P, T] = Flow(
            name or f.__name__,
            entry_point=Node(f),
            timeout=timeout,
            context=context,
            save_state=save_state,
            end_on_error=end_on_error,
            broadcast_callback=broadcast_callback,
        )

        @functools.wraps(f)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> tuple[T, SessionView]:
            connection = flow.connect()
            result = await connection.ainvoke(*args, **kwargs)
            return result, connection.session

        return wrapper

    if fn is None:
        return decorate
    return decorate(fn, stacklevel=4)  # bare @rt.session: one frame deeper
