"""How the shim maps Routilux names onto trioflow (the harness's only logic).

Three kinds of name:

- a Routilux name with a trioflow counterpart maps onto it (``Flow`` is
  ``runtime.Flow``, ``Event`` is ``runtime.RoutineEvent``);
- a Routilux attribute spelled differently in trioflow is aliased on the
  trioflow class, in this process only (``JobState.execution_history`` is
  ``history``);
- a name with no counterpart is a stand-in that fails when used, naming
  why: Routilux-private machinery (its task queue, its event loop), or a
  public Routilux name trioflow does not have (yet).

A stand-in fails when it is *used*, not imported, so one missing name
does not fail a whole test module at collection.
"""

from __future__ import annotations

import runtime


class RoutiluxPrivateError(NotImplementedError):
    """A test used Routilux-private machinery, which trioflow does not copy."""


class NotInTrioflowError(NotImplementedError):
    """A test used a public Routilux name that trioflow has no counterpart for."""


#: The stand-ins used since the harness's plugin last cleared it (once per test): a stand-in used
#: inside a handler fails the job, not the test, and the test then fails on what the job did.
USED: list[str] = []


class _StandIn:
    def __init__(self, name: str, error: type[Exception], why: str) -> None:
        self._name = name
        self._error = error
        self._why = why

    def _fail(self) -> None:
        USED.append(f"{self._error.__name__}: {self._name}")
        raise self._error(f"{self._name}: {self._why}")

    def __call__(self, *args: object, **kwargs: object) -> object:
        self._fail()
        return None

    def __getattr__(self, attribute: str) -> object:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        self._fail()
        return None


def private(name: str) -> object:
    """A stand-in for Routilux-private machinery."""
    return _StandIn(name, RoutiluxPrivateError, "Routilux-private machinery, no trioflow counterpart")


def missing(name: str) -> object:
    """A stand-in for a public Routilux name trioflow lacks."""
    return _StandIn(name, NotInTrioflowError, "public Routilux name with no trioflow counterpart")


def private_module(module: str):  # type: ignore[no-untyped-def]
    """A module ``__getattr__`` serving a private stand-in for every name of *module*."""

    def __getattr__(name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        return private(f"{module}.{name}")

    return __getattr__


def trioflow(name: str, routilux_name: str | None = None) -> object:
    """``runtime.<name>`` if this trioflow has it, else a stand-in naming it."""
    value = getattr(runtime, name, None)
    return value if value is not None else missing(f"routilux.{routilux_name or name}")


# Attributes Routilux spells differently, aliased on the trioflow classes.
_ALIASES: dict[type, dict[str, str]] = {
    runtime.JobState: {"execution_history": "history", "record_execution": "record_event"},
}


def _alias(cls: type, old: str, new: str) -> None:
    if hasattr(cls, old):
        return
    target = getattr(cls, new, None)
    if callable(target):
        setattr(cls, old, target)
    else:
        setattr(cls, old, property(lambda self: getattr(self, new), lambda self, v: setattr(self, new, v)))


# Routilux methods that are another spelling of a trioflow accessor.
_ACCESSORS: dict[type, dict[str, object]] = {
    runtime.Routine: {
        "get_slot": lambda self, name: self.slots.get(name),
        "get_event": lambda self, name: self.events.get(name),
    },
}
for _cls, _methods in _ACCESSORS.items():
    for _old, _method in _methods.items():
        if not hasattr(_cls, _old):
            setattr(_cls, _old, _method)

for _cls, _names in _ALIASES.items():
    for _old, _new in _names.items():
        _alias(_cls, _old, _new)

# Routilux's deserialize builds the classes registered with serilux's @register_serializable (a
# registration in code, never in the document): trioflow's counterpart is rt.allow_registered.
if hasattr(runtime, "allow_registered"):
    try:
        from serilux import SerializableRegistry as _SeriluxRegistry
    except ImportError:  # serilux is what the suite imports; without it there is nothing to honour
        pass
    else:
        runtime.allow_registered(lambda: _SeriluxRegistry.registry.values())
