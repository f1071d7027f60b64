"""The public face of ``runtime`` (and ``runtime.testing``), checked as trio's test_exports does."""

from __future__ import annotations

import enum
import importlib
import inspect
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import runtime

if TYPE_CHECKING:
    from types import ModuleType

PACKAGES = ["runtime", "runtime.testing"]


def _public_names(module: ModuleType) -> set[str]:
    return {name for name in dir(module) if not name.startswith("_")}


def _is_submodule(module: ModuleType, name: str) -> bool:
    return inspect.ismodule(getattr(module, name)) and getattr(module, name).__name__.startswith(
        f"{module.__name__}."
    )


@pytest.fixture(params=PACKAGES)
def package(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(request.param)


def test_all_equals_the_public_dir(package: ModuleType) -> None:
    # public subpackages (runtime.testing) are reached by import, not by name
    public = {name for name in _public_names(package) if not _is_submodule(package, name)}
    assert sorted(package.__all__) == sorted(public)


def test_each_public_name_is_exported_once(package: ModuleType) -> None:
    assert len(package.__all__) == len(set(package.__all__))
    seen: dict[int, str] = {}
    for name in package.__all__:
        obj = getattr(package, name)
        assert id(obj) not in seen, f"{name} and {seen[id(obj)]} are the same object"
        seen[id(obj)] = name


def test_public_classes_and_functions_carry_the_public_module(package: ModuleType) -> None:
    wrong = {}
    for name in package.__all__:
        obj = getattr(package, name)
        is_def = inspect.isclass(obj) or inspect.isfunction(obj)
        if is_def and (obj.__module__ != package.__name__ or obj.__name__ != name):
            wrong[name] = f"{obj.__module__}.{obj.__name__}"
    assert wrong == {}


def test_public_classes_are_final_unless_meant_to_be_subclassed() -> None:
    meant_to_be_subclassed = {"TrioflowError", "TrioflowDeprecationWarning", "Routine", "StoreError"}
    open_classes = set()
    for name in runtime.__all__:
        obj = getattr(runtime, name)
        if not inspect.isclass(obj) or issubclass(obj, enum.Enum | tuple):
            continue  # enums with members and named tuples are values, not bases
        if getattr(obj, "_is_protocol", False):
            continue  # a protocol is implemented, not subclassed (rt.Recorder, rt.Executor)
        if not getattr(obj, "__final__", False):
            open_classes.add(name)
    assert open_classes <= meant_to_be_subclassed


def test_errors_descend_from_one_root() -> None:
    errors = [
        getattr(runtime, name)
        for name in runtime.__all__
        if inspect.isclass(getattr(runtime, name))
        and issubclass(getattr(runtime, name), Exception)
        and not issubclass(getattr(runtime, name), Warning)
    ]
    assert errors
    assert all(issubclass(cls, runtime.TrioflowError) for cls in errors)


def test_the_run_api_is_exported() -> None:
    names = {
        "function_node", "Node", "call", "call_batch", "broadcast", "context", "request", "Flow",
        "RunResult", "session", "Event", "EventKind", "Subscription", "JobState", "Request", "Status",
        "ErrorSummary", "read_state_file", "state_file_name", "write_state_file", "TrioflowError", "OutsideRunError",
        "NotANodeError", "NodeArgumentError", "InvokeInsideTrioError", "RunTimeoutError",
        "RunCancelledError", "StateFileError", "UnserializableValueError", "SubscriberOverflowError",
        "FlowConnection", "RunContextView", "FlowConnectionError", "set_config",
    }  # fmt: skip
    assert names <= set(runtime.__all__)


def test_the_testing_kit_is_exported() -> None:
    import runtime.testing as rtt

    names = {
        "call_trees", "flows", "CallTree", "CallSpec", "FlowSpec", "GeneratedFlow", "Expected",
        "check_structure", "check_request_tree", "check_events", "check_isolation", "watch_tasks",
        "TaskWatch", "run_history", "deterministic_scheduling",
    }  # fmt: skip
    assert names <= set(rtt.__all__)


def test_package_ships_py_typed() -> None:
    assert runtime.__file__ is not None
    assert (Path(runtime.__file__).parent / "py.typed").is_file()


def test_one_public_name_per_concept() -> None:
    """Renamed or folded names stay out of the public face (``rt.Busy`` only warns, see test_deprecate)."""
    assert "Busy" not in runtime.__all__
    assert "BusyError" in runtime.__all__
    public_flow = {name for name in dir(runtime.Flow) if not name.startswith("_")}
    assert "stream" in public_flow
    assert "open_stream" not in public_flow
