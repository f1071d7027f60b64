"""Fuzz your own workflows: Hypothesis strategies, faults, schedules and invariant checkers.

``import runtime.testing`` needs Hypothesis but not pytest. See
``docs/fuzzing.md`` for the pattern.

.. versionadded:: 0.1
"""

from ._calltrees import VISITED as VISITED
from ._calltrees import CallSpec as CallSpec
from ._calltrees import CallTree as CallTree
from ._calltrees import Expected as Expected
from ._calltrees import FlowSpec as FlowSpec
from ._calltrees import GeneratedFlow as GeneratedFlow
from ._calltrees import call_trees as call_trees
from ._calltrees import flows as flows
from ._checkers import TaskWatch as TaskWatch
from ._checkers import check_events as check_events
from ._checkers import check_isolation as check_isolation
from ._checkers import check_request_tree as check_request_tree
from ._checkers import check_structure as check_structure
from ._checkers import check_timeout as check_timeout
from ._checkers import deterministic_scheduling as deterministic_scheduling
from ._checkers import run_history as run_history
from ._checkers import watch_tasks as watch_tasks
from ._faults import CancelPoint as CancelPoint
from ._faults import Fault as Fault
from ._faults import FaultInjectionError as FaultInjectionError
from ._faults import FaultPlan as FaultPlan
from ._faults import HandOff as HandOff
from ._faults import InjectedCancelError as InjectedCancelError
from ._faults import InjectedError as InjectedError
from ._faults import Injection as Injection
from ._faults import caught_exceptions as caught_exceptions
from ._faults import check_cancellation as check_cancellation
from ._faults import discover_nodes as discover_nodes
from ._faults import fault_point as fault_point
from ._faults import faults as faults
from ._faults import flow_targets as flow_targets
from ._faults import inject as inject
from ._graphs import GraphSpec as GraphSpec
from ._graphs import JobSchedule as JobSchedule
from ._graphs import RoutineSpec as RoutineSpec
from ._graphs import check_delivery as check_delivery
from ._graphs import check_fifo as check_fifo
from ._graphs import check_job as check_job
from ._graphs import check_jobs_isolated as check_jobs_isolated
from ._graphs import check_no_tasks_left as check_no_tasks_left
from ._graphs import check_outcome as check_outcome
from ._graphs import current_tasks as current_tasks
from ._graphs import describe_jobs as describe_jobs
from ._graphs import job_schedules as job_schedules
from ._graphs import routine_graphs as routine_graphs
from ._graphs import run_graph_jobs as run_graph_jobs
from ._races import check_races as check_races
from ._schedules import Schedule as Schedule
from ._schedules import check_no_leaks as check_no_leaks
from ._schedules import run_many_with_schedule as run_many_with_schedule
from ._schedules import run_with_schedule as run_with_schedule
from ._schedules import schedules as schedules
from ._stateful import TrioDriver as TrioDriver

__all__ = [
    # generated node flows
    "call_trees",
    "flows",
    "CallTree",
    "CallSpec",
    "FlowSpec",
    "GeneratedFlow",
    "Expected",
    "VISITED",
    # checkers for node runs
    "check_structure",
    "check_timeout",
    "check_request_tree",
    "check_events",
    "check_isolation",
    "check_races",
    "watch_tasks",
    "TaskWatch",
    "run_history",
    "deterministic_scheduling",
    # generated routine graphs and their checkers
    "routine_graphs",
    "job_schedules",
    "GraphSpec",
    "RoutineSpec",
    "JobSchedule",
    "run_graph_jobs",
    "current_tasks",
    "check_job",
    "check_outcome",
    "check_fifo",
    "check_delivery",
    "check_jobs_isolated",
    "check_no_tasks_left",
    "describe_jobs",
    # faults and schedules
    "faults",
    "Fault",
    "FaultInjectionError",
    "FaultPlan",
    "inject",
    "Injection",
    "HandOff",
    "CancelPoint",
    "check_cancellation",
    "InjectedError",
    "InjectedCancelError",
    "fault_point",
    "caught_exceptions",
    "discover_nodes",
    "flow_targets",
    "schedules",
    "Schedule",
    "run_with_schedule",
    "run_many_with_schedule",
    "check_no_leaks",
    # stateful tests
    "TrioDriver",
]

from types import FunctionType as _FunctionType

for _name in __all__:
    _obj = globals()[_name]
    # Show public classes and functions as runtime.testing.X, like trio's fixup_module_metadata.
    if isinstance(_obj, type | _FunctionType) and _obj.__module__.startswith("runtime.testing._"):
        _obj.__module__ = "runtime.testing"
del _name, _obj, _FunctionType
