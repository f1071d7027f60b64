"""Small helpers shared by the runtime's modules."""

from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING, TypeAlias, TypeVar

import trio

from ._exceptions import InvokeInsideTrioError, OutsideTrioError

if TYPE_CHECKING:
    from ._flow import Flow

T = TypeVar("T")

#: A Flow of any signature: what routine graphs, sessions and the CLI hand around
#: without calling its entry point with typed arguments.
AnyFlow: TypeAlias = "Flow[..., object]"  # type: ignore[explicit-any]


def check_not_in_trio(call: str, *, instead: str) -> None:
    """Raise :class:`InvokeInsideTrioError` for *call* if a Trio or asyncio loop runs in this thread.

    Args:
        call: the synchronous call, as the user wrote it (``Flow('etl').invoke(...)``).
        instead: what to do in Trio code (``await Flow('etl').ainvoke(...)``).
    """
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        pass
    else:
        msg = f"{call} was called inside a running Trio program, where it would block the loop. Use {instead}."
        raise InvokeInsideTrioError(msg)
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no asyncio loop running in this thread
        return
    msg = (
        f"{call} was called inside a running asyncio event loop, where it would block that loop until the "
        "run ends; trioflow runs on Trio, not asyncio. From asyncio code, run it in a worker thread (which "
        "starts its own Trio loop): await asyncio.to_thread(flow.invoke, ...); or host Trio in the asyncio "
        "loop with trio-asyncio: await trio_asyncio.trio_as_aio(flow.ainvoke)(...)."
    )
    raise InvokeInsideTrioError(msg)


def check_in_trio(call: str, *, how: str = "awaited") -> None:
    """Raise :class:`OutsideTrioError` for *call* unless this task runs in a Trio run.

    Awaited from asyncio, an async entry point would otherwise fail inside
    Trio with an unrelated ``AttributeError``.

    Args:
        call: the async call, as the user wrote it (``Flow('etl').ainvoke(...)``).
        how: ``"awaited"``, or ``"entered"`` for an async context manager.
    """
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        pass
    else:
        return
    where = "outside a Trio run"
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None:
        try:
            if asyncio.current_task() is not None:
                where = "in asyncio"
        except RuntimeError:  # no asyncio loop running in this thread
            pass
    msg = (
        f"{call} was {how} {where}, but trioflow runs on Trio. From asyncio code, run it in a worker "
        "thread with await asyncio.to_thread(flow.invoke, ...), or through trio-asyncio with "
        "await trio_asyncio.trio_as_aio(flow.ainvoke)(...); from synchronous code, call flow.invoke(...)."
    )
    raise OutsideTrioError(msg)


class NoPublicConstructor(type):
    """A metaclass whose classes users get from the runtime but never build.

    Calling such a class raises :class:`TypeError`; the runtime builds it with
    ``cls._create(...)`` (trio's ``NoPublicConstructor``). A class may set
    ``_use_instead`` to what users should call, for the error to name it.
    """

    def __call__(cls, *args: object, **kwargs: object) -> None:
        instead: str | None = getattr(cls, "_use_instead", None)
        hint = "" if instead is None else f"; use {instead}"
        msg = f"{cls.__module__}.{cls.__qualname__} has no public constructor{hint}."
        raise TypeError(msg)

    def _create(cls: type[T], *args: object, **kwargs: object) -> T:
        return super().__call__(*args, **kwargs)  # type: ignore[misc, no-any-return]


class TrioflowDeprecationWarning(DeprecationWarning):
    """A trioflow API is deprecated; the message names its replacement.

    .. versionadded:: 0.1
    """


def warn_deprecated(
    thing: str, *, version: str, instead: str, issue: int | None = None, stacklevel: int = 3
) -> None:
    """Warn that *thing* is deprecated since *version*; use *instead*."""
    msg = f"{thing} is deprecated since trioflow {version}; use {instead} instead."
    if issue is not None:
        msg += f" (https://github.com/trioflow/trioflow/issues/{issue})"
    warnings.warn(msg, TrioflowDeprecationWarning, stacklevel=stacklevel)
