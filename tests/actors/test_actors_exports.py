"""The public face of each package, checked as trio's ``_tests/test_exports.py`` does.

- each public object is exported exactly once, under one name;
- ``__all__`` equals the public ``dir()``;
- public classes are final unless they are meant to be subclassed;
- every public object carries the package's own ``__module__``;
- the private modules leave nothing public behind that the package forgot.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from types import ModuleType

# Public classes that users subclass: everything else public is final. A
# package is checked once it is listed here (runtime: add it when its face is
# settled, with its open classes such as its error root).
OPEN_CLASSES = {
    "actors": {"Actor", "ActorError"},
}
PACKAGES = sorted(OPEN_CLASSES)


def public_names(module: ModuleType) -> set[str]:
    return {name for name in dir(module) if not name.startswith("_")}


def private_modules(package: ModuleType) -> list[ModuleType]:
    return [
        importlib.import_module(f"{package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
        if info.name.startswith("_")
    ]


@pytest.fixture(params=PACKAGES)
def package(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(request.param)


def test_all_equals_the_public_dir(package: ModuleType) -> None:
    assert sorted(package.__all__) == sorted(public_names(package))


def test_each_public_object_is_exported_once(package: ModuleType) -> None:
    assert len(package.__all__) == len(set(package.__all__))
    objects = [id(getattr(package, name)) for name in package.__all__]
    assert len(objects) == len(set(objects)), "one object exported under two names"


def test_public_objects_carry_the_package_module(package: ModuleType) -> None:
    for name in package.__all__:
        obj = getattr(package, name)
        assert obj.__module__ == package.__name__, name
        assert obj.__name__ == name


def test_public_classes_are_final_unless_meant_to_be_subclassed(package: ModuleType) -> None:
    classes = {name for name in package.__all__ if inspect.isclass(getattr(package, name))}
    open_classes = {name for name in classes if not getattr(getattr(package, name), "__final__", False)}
    assert open_classes == OPEN_CLASSES[package.__name__]


def test_exceptions_share_one_root_and_end_in_error(package: ModuleType) -> None:
    errors = [
        getattr(package, name)
        for name in package.__all__
        if inspect.isclass(getattr(package, name)) and issubclass(getattr(package, name), BaseException)
    ]
    roots = [cls for cls in errors if not any(issubclass(cls, other) for other in errors if other is not cls)]
    assert len(roots) == 1
    assert all(cls.__name__.endswith("Error") for cls in errors)


def test_private_modules_define_nothing_public_that_is_not_exported(package: ModuleType) -> None:
    """A public class or function defined in a private module is either exported or
    a kernel-internal helper listed here (so a new public API cannot be forgotten)."""
    internal = {
        "actors": {
            "Cell",
            "NoPublicConstructor",
            "State",
            "check_mailbox_size",
            "deliver",
            "deliver_nowait",
            "Mailbox",
        },
    }[package.__name__]
    exported = {id(getattr(package, name)) for name in package.__all__}
    forgotten = set()
    for module in private_modules(package):
        for name, obj in vars(module).items():
            if name.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if obj.__module__ not in (module.__name__, package.__name__):
                continue  # imported from elsewhere
            if id(obj) not in exported and name not in internal:
                forgotten.add(f"{module.__name__}.{name}")
    assert forgotten == set()


def test_public_methods_take_no_private_parameters(package: ModuleType) -> None:
    """No public function or method of an exported class shows a ``_name`` parameter:
    the kernel's own plumbing (a spawn's parent cell) goes through private methods."""
    leaked = set()
    for name in package.__all__:
        obj = getattr(package, name)
        members = vars(obj).items() if inspect.isclass(obj) else [(name, obj)]
        for attr, member in members:
            function = inspect.unwrap(member) if inspect.isfunction(member) else None
            if function is None or (attr.startswith("_") and attr != "__init__"):
                continue
            params = [p for p in inspect.signature(function).parameters if p.startswith("_")]
            if params:
                where = f"{name}.{attr}" if inspect.isclass(obj) else name
                leaked.add(f"{where}({', '.join(params)})")
    assert leaked == set()


def test_package_ships_py_typed(package: ModuleType) -> None:
    assert package.__file__ is not None
    assert (Path(package.__file__).parent / "py.typed").is_file()
