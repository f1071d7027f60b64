"""Sessions: ``SessionManager``, leases, per-user workflows, limits, metrics. (Being built.)"""

from __future__ import annotations

from typing import final


@final
class SessionManager:
    """Serves a shared workflow, or one per user. (Being built.)"""


@final
class Session:
    """One lease on a workflow. (Being built.)"""


@final
class WorkflowMetrics:
    """A snapshot of a workflow's metrics. (Being built.)"""
