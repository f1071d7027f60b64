"""Placeholders for Railtracks names that trioflow has no counterpart for.

The shim maps names only. A test module that imports a name trioflow lacks
(``railtracks.state.request.Failure``, a whole ``railtracks.llm`` package)
still loads, so that only the tests which *use* that name fail, each with a
:class:`CompatGap` naming it: the harness groups failures by that message.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any


class CompatGap(Exception):
    """A Railtracks name with no trioflow counterpart was used."""


def _gap(qualname: str) -> CompatGap:
    return CompatGap(f"{qualname} has no trioflow counterpart (the shim maps names only)")


class _PlaceholderType(type):
    """A placeholder class: usable in ``except``, ``isinstance``, ``import``, as a base class and
    for its attributes (more placeholders); making an instance raises :class:`CompatGap`."""

    def __getattr__(cls, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        return placeholder(f"{cls.__qualname__}.{name}")


class Placeholder(Exception, metaclass=_PlaceholderType):
    """The base of every placeholder: calling one raises :class:`CompatGap` naming it."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise _gap(type(self).__qualname__)


def placeholder(qualname: str) -> type[Placeholder]:
    """A placeholder class for the Railtracks name *qualname*."""
    cls = _PlaceholderType(qualname.rsplit(".", 1)[-1], (Placeholder,), {"__module__": "railtracks._gap"})
    cls.__qualname__ = qualname
    return cls


def mapped(owner: object, name: str, qualname: str) -> Any:
    """``owner.name`` (a trioflow name), or a placeholder for *qualname* if trioflow has none."""
    try:
        return getattr(owner, name)
    except AttributeError:
        return placeholder(qualname)


def module_getattr(module: str):  # type: ignore[no-untyped-def]
    """A module ``__getattr__`` giving a placeholder for every name the shim does not map."""

    def __getattr__(name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        return placeholder(f"{module}.{name}")

    return __getattr__


class _GapFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports any ``railtracks.*`` module the shim lacks as a module of placeholders."""

    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if not fullname.startswith("railtracks."):
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            if find is not None and find(fullname, path, target) is not None:
                return None  # a real shim module
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = module_getattr(spec.name)  # type: ignore[method-assign]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def install() -> None:
    """Put the finder last on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _GapFinder) for f in sys.meta_path):
        sys.meta_path.append(_GapFinder())
