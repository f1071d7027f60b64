"""trioflow's workflow runtime: ``import runtime as rt``.

Runs of nodes (``@rt.function_node``, ``rt.call``, ``rt.Flow``), routine graphs
(``rt.Routine``, ``Flow.connect``, ``Flow.execute``), sessions
(``rt.SessionManager``), all built from :mod:`actors` under structured
concurrency, with each run's state isolated in a :class:`JobState`.

.. versionadded:: 0.1
"""

from ._call import broadcast as broadcast, call as call, call_batch as call_batch
from ._context import RequestMetadata as RequestMetadata, context as context, request as request
from ._deprecate import TrioflowDeprecationWarning as TrioflowDeprecationWarning, session as session
from ._exceptions import (
    Busy as Busy,
    EventDataError as EventDataError,
    FaultInjectionError as FaultInjectionError,
    GraphDefinitionError as GraphDefinitionError,
    InvokeInsideTrioError as InvokeInsideTrioError,
    JobStateError as JobStateError,
    NodeArgumentError as NodeArgumentError,
    NotANodeError as NotANodeError,
    OutsideRunError as OutsideRunError,
    RunCancelledError as RunCancelledError,
    RunTimeoutError as RunTimeoutError,
    SessionClosedError as SessionClosedError,
    StateFileError as StateFileError,
    StepLimitError as StepLimitError,
    SubscriberOverflowError as SubscriberOverflowError,
    TrioflowError as TrioflowError,
    UnserializableValueError as UnserializableValueError,
    WorkflowBuildError as WorkflowBuildError,
)
from ._flow import Flow as Flow
from ._node import Node as Node, function_node as function_node
from ._publisher import Event as Event, EventKind as EventKind, Subscription as Subscription
from ._run import RunResult as RunResult
from ._serialize import (
    dump_state as dump_state,
    load_state as load_state,
    read_state_file as read_state_file,
    write_state_file as write_state_file,
)
from ._state import (
    Delivery as Delivery,
    ErrorSummary as ErrorSummary,
    HistoryEntry as HistoryEntry,
    JobState as JobState,
    Request as Request,
    Status as Status,
)

__all__ = [
    # nodes and runs
    "function_node",
    "Node",
    "call",
    "call_batch",
    "broadcast",
    "context",
    "request",
    "RequestMetadata",
    "Flow",
    "RunResult",
    "session",
    # events
    "Event",
    "EventKind",
    "Subscription",
    # state
    "JobState",
    "Request",
    "HistoryEntry",
    "Delivery",
    "ErrorSummary",
    "Status",
    "dump_state",
    "load_state",
    "read_state_file",
    "write_state_file",
    # errors and warnings
    "TrioflowError",
    "Busy",
    "EventDataError",
    "FaultInjectionError",
    "GraphDefinitionError",
    "InvokeInsideTrioError",
    "JobStateError",
    "NodeArgumentError",
    "NotANodeError",
    "OutsideRunError",
    "RunCancelledError",
    "RunTimeoutError",
    "SessionClosedError",
    "StateFileError",
    "StepLimitError",
    "SubscriberOverflowError",
    "UnserializableValueError",
    "WorkflowBuildError",
    "TrioflowDeprecationWarning",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("runtime._"):
        try:
            _obj.__module__ = "runtime"
        except (AttributeError, TypeError):  # pragma: no cover - builtins-like objects
            pass
del _name, _obj
