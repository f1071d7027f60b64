import datetime

import attrs
import pytest
import trio

from runtime._state import (
    Delivery,
    ErrorSummary,
    HistoryEntry,
    JobState,
    Request,
    Status,
    summarize,
)


def test_status_prints_its_value() -> None:
    state = JobState("r-1", "jobstate_flow", status=Status.COMPLETED)
    assert f"Status: {state.status}" == "Status: completed"
    assert str(Status.TIMED_OUT) == "timed_out"
    assert Status("paused") is Status.PAUSED


def test_status_is_final() -> None:
    final = {s for s in Status if s.is_final}
    assert final == {Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT, Status.KILLED, Status.ORPHANED}


def test_classes_are_slotted() -> None:
    for cls in (ErrorSummary, Request, HistoryEntry, Delivery, JobState):
        assert "__slots__" in cls.__dict__, cls


def test_defaults() -> None:
    state = JobState("r-1", "flow")
    assert state.status is Status.PENDING
    assert state.created_at.tzinfo is datetime.UTC
    assert (state.started_at, state.finished_at, state.result, state.error) == (None,) * 4
    assert state.requests == {}
    assert state.history == []
    assert state.run_id == "r-1"
    assert state.flow_name == "flow"


def test_states_do_not_share_defaults() -> None:
    a, b = JobState("a", "f"), JobState("b", "f")
    a.update_shared_data("k", 1)
    a.history.append(HistoryEntry("x", "e", {}, a.created_at, 0.0))
    assert b.shared_data == {}
    assert b.history == []


def test_error_summary_from_exception() -> None:
    builtin = ErrorSummary.from_exception(ValueError("bad input"), ("root", "child"))
    assert builtin == ErrorSummary("ValueError", "bad input", ("root", "child"))

    class Custom(Exception):
        pass

    custom = ErrorSummary.from_exception(Custom("x"))
    assert custom.type == f"{__name__}.test_error_summary_from_exception.<locals>.Custom"
    assert custom.path == ()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        custom.message = "y"  # type: ignore[misc]


def test_summarize_truncates_to_200_chars() -> None:
    assert summarize("abc") == "'abc'"
    long = summarize("x" * 500)
    assert len(long) == 200
    assert long.endswith("xxx...")


def test_request_duration() -> None:
    request = Request("1", None, "root", created_at=0.5)
    assert request.duration is None
    request.started_at = 1.0
    assert request.duration is None
    request.finished_at = 3.5
    assert request.duration == 2.5


def test_routine_state_merges_and_copies() -> None:
    state = JobState("r-1", "f")
    assert state.get_routine_state("processor") is None
    state.update_routine_state("processor", {"last_processed": "test", "processed": True})
    state.update_routine_state("processor", {"processed_count": 2, "processed": False})
    assert state.get_routine_state("processor") == {
        "last_processed": "test",
        "processed": False,
        "processed_count": 2,
    }
    got = state.get_routine_state("processor")
    assert got is not None
    got["processed"] = "changed"
    assert state.routine_states["processor"]["processed"] is False


def test_routine_state_does_not_alias_the_callers_value() -> None:
    items = [1, {"a": [2]}]
    a, b = JobState("a", "f"), JobState("b", "f")
    a.update_routine_state("p", {"items": items})
    b.update_routine_state("p", {"items": items})
    items[1]["a"].append(3)  # type: ignore[index]
    assert a.routine_states["p"]["items"] == [1, {"a": [2]}]
    assert a.routine_states["p"]["items"] is not b.routine_states["p"]["items"]


def test_get_shared_data_returns_a_copy() -> None:
    # Seed 003, step 3: read, mutate the copy, store it back.
    state = JobState("r-1", "shared_data_flow")
    for item in "abc":
        collected = state.get_shared_data("collected_items", [])
        assert isinstance(collected, list)
        collected.append(item)
        assert state.get_shared_data("collected_items", []) != collected
        state.update_shared_data("collected_items", collected)
    assert state.get_shared_data("collected_items") == ["a", "b", "c"]
    assert state.get_shared_data("missing") is None
    assert state.get_shared_data("missing", 7) == 7


def test_update_shared_data_copies_nested_containers_but_not_opaque_objects() -> None:
    class Client:
        pass

    client = Client()
    value = {"client": client, "pair": (1, [2]), "tags": {"x"}}
    state = JobState("r-1", "f")
    state.update_shared_data("v", value)
    stored = state.shared_data["v"]
    assert stored == value
    assert stored is not value
    assert stored["client"] is client
    assert stored["pair"][1] is not value["pair"][1]  # type: ignore[index]


def test_isolation_copes_with_cycles() -> None:
    loop: list[object] = [1]
    loop.append(loop)
    state = JobState("r-1", "f")
    state.update_shared_data("loop", loop)
    stored = state.get_shared_data("loop")
    assert isinstance(stored, list)
    assert stored is not loop
    assert stored[1] is stored


def test_shared_log_adds_timestamps_and_copies() -> None:
    state = JobState("r-1", "f")
    entry: dict[str, object] = {"action": "collected", "data": ["a"]}
    state.append_to_shared_log(entry)
    state.append_to_shared_log({"action": "processed", "timestamp": "mine"})
    assert entry == {"action": "collected", "data": ["a"]}
    log = state.get_shared_log()
    assert [e["action"] for e in log] == ["collected", "processed"]
    for e in log:
        stamp = datetime.datetime.fromisoformat(e["timestamp"])  # type: ignore[arg-type]
        assert stamp.tzinfo is not None
    log[0]["data"].append("b")  # type: ignore[attr-defined]
    assert state.shared_log[0]["data"] == ["a"]


def test_execution_history_is_filtered_and_copied() -> None:
    state = JobState("r-1", "f")
    state.record_event("source", "output", {"data": "a"})
    state.record_event("processor", "output", {"result": "A"})
    state.record_event("processor", "output", {"result": "B"})
    history = state.get_execution_history()
    assert [(e.routine_id, e.data) for e in history] == [
        ("source", {"data": "a"}),
        ("processor", {"result": "A"}),
        ("processor", {"result": "B"}),
    ]
    assert len(state.get_execution_history("processor")) == 2
    assert state.get_execution_history("nobody") == []
    history.clear()
    assert len(state.history) == 3


def test_record_event_copies_data() -> None:
    state = JobState("r-1", "f")
    data: dict[str, object] = {"items": [1]}
    entry = state.record_event("source", "output", data)
    data["items"].append(2)  # type: ignore[attr-defined]
    assert entry.data == {"items": [1]}
    assert state.history == [entry]


async def test_timestamps_follow_trios_clock(autojump_clock: trio.testing.MockClock) -> None:
    state = JobState("r-1", "f")
    state._start_clock()
    assert state.status is Status.RUNNING
    assert state.started_at is not None
    first = state.record_event("source", "output", {})
    await trio.sleep(5)
    assert state._now_offset() == 5.0
    second = state.record_event("source", "output", {})
    state.append_to_shared_log({"n": 1})
    assert first.offset == 0.0
    assert second.offset == 5.0
    assert first.timestamp == state.started_at
    assert second.timestamp == state.started_at + datetime.timedelta(seconds=5)
    assert state.shared_log[0]["timestamp"] == second.timestamp.isoformat()


def test_clock_works_outside_trio() -> None:
    state = JobState("r-1", "f")
    first = state._now_offset()
    second = state._now_offset()
    assert 0.0 <= first <= second
    entry = state.record_event("x", "e", {})
    assert entry.timestamp >= state.created_at


def test_clock_is_not_compared_or_shown() -> None:
    created = datetime.datetime(2024, 1, 1, 12, tzinfo=datetime.UTC)
    a = JobState("r-1", "f", created_at=created)
    b = JobState("r-1", "f", created_at=created)
    a._now_offset()
    assert a == b
    assert "clock" not in repr(a)


def _tree() -> JobState:
    state = JobState("r-1", "f")
    for request in (
        Request("1", None, "plan"),
        Request("2", "1", "search"),
        Request("3", "1", "write"),
        Request("4", "3", "spell_check"),
    ):
        state.requests[request.id] = request
    return state


def test_request_tree_helpers() -> None:
    state = _tree()
    assert [r.id for r in state.roots()] == ["1"]
    assert [r.id for r in state.children_of("1")] == ["2", "3"]
    assert state.children_of("4") == []
    assert state.request_path("4") == ("plan", "write", "spell_check")
    assert state.request_path("1") == ("plan",)


def test_request_path_of_unknown_request() -> None:
    with pytest.raises(KeyError, match=r"^\"Run 'r-1' has no request '9'.\"$"):
        _tree().request_path("9")
