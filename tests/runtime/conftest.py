"""Fixtures shared by the runtime tests: hand-made run states for the views."""

import datetime

import pytest

import runtime as rt
from runtime._state import Request

T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
SCRIPT = "<script>alert(1)</script>"
ESC = "\x1b[2J"


def _error(message: str = f"bad <b>{ESC}") -> rt.ErrorSummary:
    return rt.ErrorSummary("ValueError", message)


@pytest.fixture
def node_run() -> rt.JobState:
    """A failed node run with every part filled in, a `<script>` node name and an ESC in the error."""
    state = rt.JobState(
        job_id="run-1",
        flow_id="demo",
        status=rt.Status.FAILED,
        created_at=T0,
        started_at=T0,
        finished_at=T0 + datetime.timedelta(seconds=2.5),
        error=rt.ErrorSummary("ValueError", f"bad <b>{ESC}", ("main", SCRIPT)),
    )
    state.requests = {
        "r1": Request("r1", None, "main", rt.Status.FAILED, 0.0, 0.0, 2.5, None, _error()),
        "r2": Request("r2", "r1", "fetch", rt.Status.COMPLETED, 0.1, 0.1, 0.6, "'page'"),
        "r3": Request("r3", "r1", SCRIPT, rt.Status.FAILED, 0.2, 0.2, 2.4, None, _error()),
        "r4": Request("r4", "r2", "parse", rt.Status.CANCELLED, 0.3, 0.3, 0.5),
        "r5": Request("r5", "r1", "slow", rt.Status.COMPLETED, 0.4, 0.4, 2.0, "'x' " * 50),
    }
    state.shared_log = [
        {
            "request": "r2",
            "node": "fetch",
            "message": "got 3 rows\nok",
            "timestamp": "2026-01-02T03:04:05.1+00:00",
        },
        {
            "request": "r3",
            "node": SCRIPT,
            "message": f"about to fail{ESC}",
            "timestamp": "2026-01-02T03:04:05.2+00:00",
        },
    ]
    state.context = {"user": "ann", "limit": 3}
    state.routine_states = {"fetch": {"calls": 1}}
    state.shared_data = {"rows": [1, 2, 3]}
    state.undelivered = [rt.Delivery("a", "out", "b", "in", {"x": 1})]
    return state


@pytest.fixture
def graph_job() -> rt.JobState:
    """A cancelled routine-graph job: history of two routines, one undelivered message."""
    state = rt.JobState(
        job_id="job-1",
        flow_id="pipeline",
        status=rt.Status.CANCELLED,
        created_at=T0,
        started_at=T0,
        finished_at=T0 + datetime.timedelta(seconds=3),
        error=rt.ErrorSummary("runtime._exceptions.RunCancelledError", "Job 'job-1' was cancelled: stop"),
    )
    for offset, routine, event, data in [
        (0.0, "source", "item", {"n": 1}),
        (0.5, "source", "item", {"n": 2}),
        (1.0, SCRIPT, "done", {"n": 1}),
        (2.0, "source", "item", {"n": 3}),
    ]:
        state.history.append(
            rt.HistoryEntry(routine, event, data, T0 + datetime.timedelta(seconds=offset), offset)
        )
    state.undelivered = [rt.Delivery("source", "item", SCRIPT, "input", {"n": 3})]
    state.routine_states = {"source": {"sent": 3}, SCRIPT: {"seen": 1}}
    return state


@pytest.fixture
def graph_connections() -> list[tuple[str, str, str, str]]:
    """The connections of :func:`graph_job`'s flow: a loop through the `<script>` routine."""
    return [("source", "item", SCRIPT, "input"), (SCRIPT, "done", "source", "ack")]
