"""trioflow's workflow runtime: ``import runtime as rt``.

Runs of nodes (``@rt.function_node``, ``rt.call``, ``rt.Flow``), routine graphs
(``rt.Routine``, ``Flow.connect``, ``Flow.execute``), sessions
(``rt.SessionManager``), all built from :mod:`actors` under structured
concurrency, with each run's state isolated in a :class:`JobState`.

.. versionadded:: 0.1
"""

from ._call import broadcast as broadcast
from ._call import call as call
from ._call import call_batch as call_batch
from ._call import idempotency_key as idempotency_key
from ._call import interrupt as interrupt
from ._call import log as log
from ._context import RequestMetadata as RequestMetadata
from ._context import Shared as Shared
from ._context import context as context
from ._context import request as request
from ._core import RunResult as RunResult
from ._definition import allow_registered as allow_registered
from ._deprecate import DeprecatedAttribute as _DeprecatedAttribute
from ._deprecate import TrioflowDeprecationWarning as TrioflowDeprecationWarning
from ._deprecate import deprecate_attributes as _deprecate_attributes
from ._deprecate import session as session
from ._exceptions import (
    BusyError as BusyError,
)
from ._exceptions import (
    DefinitionDocumentError as DefinitionDocumentError,
)
from ._exceptions import (
    DirectNodeCallWarning as DirectNodeCallWarning,
)
from ._exceptions import (
    DivergenceError as DivergenceError,
)
from ._exceptions import (
    EventDataError as EventDataError,
)
from ._exceptions import (
    ExecutorError as ExecutorError,
)
from ._exceptions import (
    FlowConnectionError as FlowConnectionError,
)
from ._exceptions import (
    GraphDefinitionError as GraphDefinitionError,
)
from ._exceptions import (
    InvokeInsideTrioError as InvokeInsideTrioError,
)
from ._exceptions import (
    JobStateError as JobStateError,
)
from ._exceptions import (
    NestedRunError as NestedRunError,
)
from ._exceptions import (
    NodeArgumentError as NodeArgumentError,
)
from ._exceptions import (
    NotANodeError as NotANodeError,
)
from ._exceptions import (
    OutsideRunError as OutsideRunError,
)
from ._exceptions import (
    OutsideTrioError as OutsideTrioError,
)
from ._exceptions import (
    RemoteError as RemoteError,
)
from ._exceptions import (
    ResumeError as ResumeError,
)
from ._exceptions import (
    RoutineCallError as RoutineCallError,
)
from ._exceptions import (
    RunCancelledError as RunCancelledError,
)
from ._exceptions import (
    RunPausedError as RunPausedError,
)
from ._exceptions import (
    RunTimeoutError as RunTimeoutError,
)
from ._exceptions import (
    SessionClosedError as SessionClosedError,
)
from ._exceptions import (
    StateFileError as StateFileError,
)
from ._exceptions import (
    StepLimitError as StepLimitError,
)
from ._exceptions import (
    StoreError as StoreError,
)
from ._exceptions import (
    SubscriberOverflowError as SubscriberOverflowError,
)
from ._exceptions import (
    TrioflowError as TrioflowError,
)
from ._exceptions import (
    UnknownRunError as UnknownRunError,
)
from ._exceptions import (
    UnserializableValueError as UnserializableValueError,
)
from ._exceptions import (
    WorkflowBuildError as WorkflowBuildError,
)
from ._executor import Executor as Executor
from ._executor import Submission as Submission
from ._executor import processes as processes
from ._executor import threads as threads
from ._flow import ExecutionInfo as ExecutionInfo
from ._flow import Flow as Flow
from ._flow import FlowConnection as FlowConnection
from ._flow import RequestForest as RequestForest
from ._flow import RunContextView as RunContextView
from ._flow import SessionConfig as SessionConfig
from ._flow import SessionView as SessionView
from ._flow import Stamp as Stamp
from ._flow import set_config as set_config
from ._graph import Connection as Connection
from ._job import Job as Job
from ._metrics import WorkflowMetrics as WorkflowMetrics
from ._node import Node as Node
from ._node import function_node as function_node
from ._otel import TraceExporter as TraceExporter
from ._progress import Progress as Progress
from ._publisher import Event as Event
from ._publisher import EventKind as EventKind
from ._publisher import Recorder as Recorder
from ._publisher import Subscription as Subscription
from ._ray import ray as ray
from ._routine import ErrorHandler as ErrorHandler
from ._routine import ErrorStrategy as ErrorStrategy
from ._routine import ExecutionContext as ExecutionContext
from ._routine import Routine as Routine
from ._routine import RoutineEvent as RoutineEvent
from ._routine import Slot as Slot
from ._serialize import (
    dump_state as dump_state,
)
from ._serialize import (
    load_state as load_state,
)
from ._serialize import (
    read_state_file as read_state_file,
)
from ._serialize import (
    state_file_name as state_file_name,
)
from ._serialize import (
    write_state_file as write_state_file,
)
from ._session import Session as Session
from ._session import SessionManager as SessionManager
from ._state import (
    Delivery as Delivery,
)
from ._state import (
    ErrorSummary as ErrorSummary,
)
from ._state import (
    HistoryEntry as HistoryEntry,
)
from ._state import (
    JobState as JobState,
)
from ._state import (
    Request as Request,
)
from ._state import (
    Status as Status,
)
from .store import SQLiteStore as SQLiteStore
from .store import Store as Store

__all__ = [
    # nodes and runs
    "function_node",
    "Node",
    "call",
    "call_batch",
    "broadcast",
    "log",
    "interrupt",
    "idempotency_key",
    "context",
    "Shared",
    "request",
    "RequestMetadata",
    "Flow",
    "FlowConnection",
    "RunContextView",
    "ExecutionInfo",
    "RequestForest",
    "SessionConfig",
    "SessionView",
    "Stamp",
    "set_config",
    "RunResult",
    "Recorder",
    "Store",
    "SQLiteStore",
    "session",
    # executors
    "Executor",
    "Submission",
    "threads",
    "processes",
    "ray",
    # routine graphs
    "Routine",
    "Slot",
    "RoutineEvent",
    "ExecutionContext",
    "ErrorStrategy",
    "ErrorHandler",
    "Connection",
    "Job",
    "allow_registered",
    # sessions
    "SessionManager",
    "Session",
    "WorkflowMetrics",
    # events
    "Event",
    "EventKind",
    "Subscription",
    # seeing runs
    "Progress",
    "TraceExporter",
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
    "state_file_name",
    "write_state_file",
    # errors and warnings
    "TrioflowError",
    "BusyError",
    "EventDataError",
    "ExecutorError",
    "DefinitionDocumentError",
    "FlowConnectionError",
    "GraphDefinitionError",
    "InvokeInsideTrioError",
    "JobStateError",
    "NodeArgumentError",
    "NotANodeError",
    "NestedRunError",
    "OutsideRunError",
    "OutsideTrioError",
    "RoutineCallError",
    "RemoteError",
    "RunCancelledError",
    "RunTimeoutError",
    "SessionClosedError",
    "StateFileError",
    "StepLimitError",
    "StoreError",
    "ResumeError",
    "DivergenceError",
    "RunPausedError",
    "SubscriberOverflowError",
    "UnknownRunError",
    "UnserializableValueError",
    "WorkflowBuildError",
    "TrioflowDeprecationWarning",
    "DirectNodeCallWarning",
]

from types import FunctionType as _FunctionType

for _name in __all__:
    _obj = globals()[_name]
    # Show public classes and functions as runtime.X, like trio's fixup_module_metadata.
    if isinstance(_obj, type | _FunctionType) and _obj.__module__.startswith(
        ("runtime._", "runtime.store._")
    ):
        _obj.__module__ = "runtime"
del _name, _obj, _FunctionType

# Old names, kept one release with a TrioflowDeprecationWarning on each access.
__getattr__ = _deprecate_attributes(
    __name__,
    {
        "Busy": _DeprecatedAttribute(BusyError, version="0.1", instead="runtime.BusyError", issue=13),
        # Moved to the fuzz kit, which runtime never imports: resolved on access.
        "FaultInjectionError": _DeprecatedAttribute.moved(
            "runtime.testing.FaultInjectionError", version="0.1", issue=13
        ),
    },
)
del _deprecate_attributes, _DeprecatedAttribute
