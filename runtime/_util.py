"""Small helpers shared by the runtime's modules."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias, TypeVar

if TYPE_CHECKING:
    from ._flow import Flow

T = TypeVar("T")

#: A Flow of any signature: what routine graphs, sessions and the CLI hand around
#: without calling its entry point with typed arguments.
AnyFlow: TypeAlias = "Flow[..., object]"  # type: ignore[explicit-any]


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
