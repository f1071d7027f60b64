"""Small helpers shared by the kernel's modules."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


class NoPublicConstructor(type):
    """A metaclass whose classes cannot be built by calling them; the kernel
    builds them with ``cls._create(...)`` (as trio does)."""

    def __call__(cls, *args: object, **kwargs: object) -> None:
        msg = f"{cls.__module__}.{cls.__qualname__} has no public constructor."
        raise TypeError(msg)

    def _create(cls: type[T], *args: object, **kwargs: object) -> T:
        return type.__call__(cls, *args, **kwargs)  # type: ignore[no-any-return]
