"""Session metrics: the live counters of a manager and its users, and their frozen snapshot.

Every run a session asks for is counted in the manager's totals and, when the
session has a user, in that user's counters too. Counters are plain attributes,
changed synchronously (no change awaits), so counting takes no lock.
"""

from __future__ import annotations

from typing import Literal, final

import attrs

from ._state import Status

#: How a session's run ended, as the counters count it.
Outcome = Literal["ok", "error", "cancelled", "timed_out"]
#: The outcome a run's final status counts as.
OUTCOMES: dict[Status, Outcome] = {
    Status.COMPLETED: "ok",
    Status.FAILED: "error",
    Status.CANCELLED: "cancelled",
    Status.TIMED_OUT: "timed_out",
}


@final
@attrs.frozen
class WorkflowMetrics:
    """A snapshot of the runs of one user, or of the whole manager.

    From :meth:`SessionManager.metrics`. Counters start when the manager opens
    and survive the eviction (and rebuild) of a per-user workflow. Every request
    ends in exactly one outcome, counted in a ``finally`` that also sees
    cancellation, so ``requests == ok + error + cancelled + timed_out +
    rejected + in_flight`` always holds.

    Attributes:
        user_id: the user, or ``None`` for the manager as a whole.
        requests: runs asked for (``session.run`` and ``session.stream``).
        ok: runs that returned a result.
        error: runs that raised (a node's error, or a failed run).
        cancelled: runs cancelled while queued or running: the caller was
            cancelled or left its stream early, or the manager shut down.
        timed_out: runs that passed their flow's ``timeout``.
        rejected: runs refused with :class:`~runtime.BusyError` (``fail_fast``).
        queued: runs waiting for a concurrency slot now.
        running: runs holding their slots now.
        started: runs that got their slots and began, in all.
        active_leases: sessions open now.
        queue_time: seconds spent waiting for slots, summed over runs.
        run_time: seconds spent running, summed over runs.
        max_queue_time: the longest wait for slots.
        max_run_time: the longest run.
        builds: per-user workflows built successfully.
        build_failures: builds that failed (the builder raised, or gave
            something that cannot run).
        evictions: per-user workflows closed after ``idle_timeout``.
        loaded: per-user workflows built and held now.

    .. versionadded:: 0.1
    """

    user_id: str | None
    requests: int = 0
    ok: int = 0
    error: int = 0
    cancelled: int = 0
    timed_out: int = 0
    rejected: int = 0
    queued: int = 0
    running: int = 0
    started: int = 0
    active_leases: int = 0
    queue_time: float = 0.0
    run_time: float = 0.0
    max_queue_time: float = 0.0
    max_run_time: float = 0.0
    builds: int = 0
    build_failures: int = 0
    evictions: int = 0
    loaded: int = 0

    @property
    def in_flight(self) -> int:
        """Runs queued or running now."""
        return self.queued + self.running

    @property
    def finished(self) -> int:
        """Runs that ended, whatever the outcome (rejections included)."""
        return self.ok + self.error + self.cancelled + self.timed_out + self.rejected

    @property
    def mean_queue_time(self) -> float:
        """The mean wait for slots over the runs that left the queue (0 if none)."""
        left = self.requests - self.rejected - self.queued
        return self.queue_time / left if left else 0.0

    @property
    def mean_run_time(self) -> float:
        """The mean run time over the runs that started and ended (0 if none)."""
        ended = self.started - self.running
        return self.run_time / ended if ended else 0.0


@final
class Counters:
    """The live, mutable counters behind a :class:`WorkflowMetrics`."""

    __slots__ = (
        "active_leases",
        "build_failures",
        "builds",
        "cancelled",
        "error",
        "evictions",
        "loaded",
        "max_queue_time",
        "max_run_time",
        "ok",
        "queue_time",
        "queued",
        "rejected",
        "requests",
        "run_time",
        "running",
        "started",
        "timed_out",
        "user_id",
    )

    def __init__(self, user_id: str | None) -> None:
        self.user_id = user_id
        self.requests = self.ok = self.error = self.cancelled = self.timed_out = self.rejected = 0
        self.queued = self.running = self.started = self.active_leases = 0
        self.builds = self.build_failures = self.evictions = self.loaded = 0
        self.queue_time = self.run_time = self.max_queue_time = self.max_run_time = 0.0

    def snapshot(self) -> WorkflowMetrics:
        return WorkflowMetrics(
            self.user_id,
            self.requests,
            self.ok,
            self.error,
            self.cancelled,
            self.timed_out,
            self.rejected,
            self.queued,
            self.running,
            self.started,
            self.active_leases,
            self.queue_time,
            self.run_time,
            self.max_queue_time,
            self.max_run_time,
            self.builds,
            self.build_failures,
            self.evictions,
            self.loaded,
        )

    def count(self, outcome: Outcome) -> None:
        if outcome == "ok":
            self.ok += 1
        elif outcome == "error":
            self.error += 1
        elif outcome == "cancelled":
            self.cancelled += 1
        else:
            self.timed_out += 1

    def waited(self, seconds: float) -> None:
        self.queued -= 1
        self.queue_time += seconds
        if seconds > self.max_queue_time:
            self.max_queue_time = seconds
