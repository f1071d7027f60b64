"""Routilux's JobState surface, timeouts and documents, as Routilux 0.10 documents them.

- ``JobState.serialize()`` / ``deserialize(data)`` / ``save(path)`` / ``JobState.load(path)``:
  Routilux's flat ``"_type": "JobState"`` document, with ``current_routine_id`` and
  ``updated_at``; Routilux's own files load too (times without an offset are local).
- ``Flow(execution_timeout=...)``, ``flow.execution_timeout``, ``execute(..., timeout=...)``,
  ``execute(entry_routine_id=...)``.
- serilux's ``@register_serializable`` registry, honoured through ``rt.allow_registered``.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import re
import sys

import pytest
import trio
import trio.testing

import runtime as rt


class Source(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger", handler=self.go)
        self.define_event("output", ["data"])

    def go(self, **_: object) -> None:
        self.emit("output", data="x")


class Sink(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.take)

    def take(self, data: object = None) -> None:
        self.send_output("got", data=data)


class Forever(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger", handler=self.wait)

    async def wait(self, **_: object) -> None:
        await trio.sleep_forever()


def two_routines() -> rt.Flow[..., object]:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="pair")
    flow.add_routine(Source(), "source")
    flow.add_routine(Sink(), "sink")
    flow.connect("source", "output", "sink", "input")
    return flow


# -- execution_timeout ------------------------------------------------------------------


def test_execution_timeout_is_the_flows_timeout() -> None:
    flow = rt.Flow(execution_timeout=60.0)
    assert (flow.execution_timeout, flow.timeout) == (60.0, 60.0)
    flow.execution_timeout = 5
    assert flow.timeout == 5
    assert rt.Flow().execution_timeout is None  # no 300 s default: no limit unless set


def test_execution_timeout_and_timeout_disagreeing_are_refused() -> None:
    with pytest.raises(
        TypeError, match=r"execution_timeout=2\): give one \(execution_timeout is Routilux's spelling"
    ):
        rt.Flow(timeout=1, execution_timeout=2)
    assert rt.Flow(timeout=3, execution_timeout=3).timeout == 3


async def test_execution_timeout_times_the_job_out(autojump_clock: trio.abc.Clock) -> None:
    flow = rt.Flow(execution_timeout=5.0)
    flow.add_routine(Forever(), "forever")
    start = trio.current_time()
    async with flow.open_job("forever") as job:
        await job.wait()
    assert job.state.status == rt.Status.TIMED_OUT
    assert trio.current_time() - start == pytest.approx(5.0)


def test_execute_timeout_overrides_the_flows() -> None:
    flow = rt.Flow(timeout=600)
    flow.add_routine(Forever(), "forever")
    state = flow.execute("forever", timeout=0.01)
    assert state.status == rt.Status.TIMED_OUT
    assert flow.timeout == 600


def test_execute_timeout_holds_for_a_job_that_opens_the_flows_store(tmp_path: pathlib.Path) -> None:
    flow = rt.Flow(timeout=600, store=True, state_dir=tmp_path)
    flow.add_routine(Forever(), "forever")
    state = flow.execute("forever", timeout=0.01)
    assert state.status == rt.Status.TIMED_OUT
    assert flow.store is not None
    assert [(r.run_id, r.status) for r in trio.run(flow.store.runs)] == [(state.run_id, rt.Status.TIMED_OUT)]


@pytest.mark.parametrize(
    ("timeout", "error", "problem"),
    [(0, ValueError, "must be a positive number"), ("1", TypeError, "must be a positive number")],
)
def test_execute_refuses_a_bad_timeout(timeout: object, error: type[Exception], problem: str) -> None:
    flow = two_routines()
    with pytest.raises(error, match=rf"^Flow\('pair'\)\.execute\(\.\.\., timeout=.*\): timeout {problem}"):
        flow.execute("source", timeout=timeout)  # type: ignore[arg-type]


def test_execute_takes_routilux_entry_routine_id() -> None:
    state = two_routines().execute(entry_routine_id="source")
    assert state.status == rt.Status.COMPLETED
    assert state.current_routine_id == "source"


@pytest.mark.parametrize("kwargs", [{}, {"entry_id": "source", "entry_routine_id": "source"}])
def test_execute_needs_the_entry_once(kwargs: dict[str, str]) -> None:
    with pytest.raises(
        TypeError, match=r"give the entry routine's id once \(entry_routine_id is Routilux's name"
    ):
        two_routines().execute(**kwargs)


# -- JobState attributes ----------------------------------------------------------------


def test_updated_at_follows_each_change() -> None:
    state = rt.JobState("flow")
    assert state.updated_at == state.created_at
    seen = [state.updated_at]
    for change in (
        lambda: setattr(state, "status", "running"),
        lambda: state.update_routine_state("r", {"n": 1}),
        lambda: state.record_event("r", "out", {}),
        lambda: state.update_shared_data("k", 1),
        lambda: state.append_to_shared_log({"a": 1}),
    ):
        change()
        assert state.updated_at >= seen[-1]
        seen.append(state.updated_at)
    assert state.updated_at == datetime.datetime.fromisoformat(str(state.shared_log[-1]["timestamp"]))
    assert state.updated_at.tzinfo is not None


def test_a_job_records_the_routine_it_starts_from() -> None:
    state = two_routines().execute("source")
    assert state.current_routine_id == "source"
    handmade = rt.JobState("flow")
    assert handmade.current_routine_id is None
    handmade.current_routine_id = "r1"
    assert handmade.current_routine_id == "r1"


async def test_pending_tasks_are_the_messages_a_cancelled_job_never_handled() -> None:
    class Hold(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.take)

        async def take(self, data: object = None) -> None:
            await trio.sleep_forever()

    class Burst(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)
            self.define_event("output", ["data"])

        def go(self, **_: object) -> None:
            for i in range(3):
                self.emit("output", data=i)

    flow: rt.Flow[..., object] = rt.Flow(flow_id="held")
    flow.add_routine(Burst(), "burst")
    flow.add_routine(Hold(), "hold")
    flow.connect("burst", "output", "hold", "input")
    async with flow.open_job("burst") as job:
        await trio.testing.wait_all_tasks_blocked()
        job.cancel("stop")
        await job.wait()
    tasks = job.state.pending_tasks
    assert [task["data"] for task in tasks] == [{"data": 1}, {"data": 2}]
    assert tasks[0] == {
        "slot_routine_id": "hold",
        "slot_name": "input",
        "data": {"data": 1},
        "connection_source_routine_id": "burst",
        "connection_source_event_name": "output",
    }
    tasks[0]["data"] = "changed"
    assert job.state.pending_tasks[0]["data"] == {"data": 1}  # a copy


# -- flat documents -----------------------------------------------------------------------


def _filled() -> rt.JobState:
    state = two_routines().execute("source")
    state.current_routine_id = "sink"
    state.update_shared_data("n", [1, 2.5, None])
    state.append_to_shared_log({"step": 1})
    return state


def test_serialize_has_routilux_keys() -> None:
    state = _filled()
    doc = state.serialize()
    assert doc["_type"] == "JobState"
    assert (doc["flow_id"], doc["job_id"], doc["status"]) == ("pair", state.job_id, "completed")
    assert doc["current_routine_id"] == "sink"
    assert doc["updated_at"] == state.updated_at.isoformat()
    assert doc["execution_history"] == [
        {
            "_type": "ExecutionRecord",
            "routine_id": "source",
            "event_name": "output",
            "data": {"data": "x"},
            "timestamp": state.history[0].timestamp.isoformat(),
            "offset": state.history[0].offset,
        }
    ]
    assert doc["output_log"] == state.shared_data["output_log"]
    assert (doc["pending_tasks"], doc["pause_points"], doc["deferred_events"]) == ([], [], [])
    assert "job_state" not in two_routines().serialize()


def test_deserialize_round_trips_through_json_in_place() -> None:
    state = _filled()
    target = rt.JobState()
    assert target.deserialize(json.loads(json.dumps(state.serialize()))) is target
    assert target == state
    assert (target.current_routine_id, target.updated_at) == ("sink", state.updated_at)


def test_a_value_that_is_not_json_is_replaced_and_listed_or_refused() -> None:
    state = rt.JobState("flow")
    state.update_shared_data("conn", object())
    doc = state.serialize()
    assert doc["unserializable"] == ["$.shared_data.conn"]
    with pytest.raises(rt.UnserializableValueError, match=r"\$\.shared_data\.conn is a object"):
        state.serialize(strict=True)


def test_routilux_written_documents_load() -> None:
    doc = {
        "_type": "JobState",
        "flow_id": "f",
        "job_id": "0b1c",
        "status": "paused",
        "current_routine_id": "a",
        "routine_states": {"a": {"status": "completed"}},
        "execution_history": [
            {
                "_type": "ExecutionRecord",
                "routine_id": "a",
                "event_name": "output",
                "data": {"x": 1},
                "timestamp": "2025-01-01T10:00:01",
            }
        ],
        "created_at": "2025-01-01T10:00:00",
        "updated_at": "2025-01-01T10:00:02",
        "pause_points": [{"reason": "r"}],
        "pending_tasks": [
            {
                "slot_routine_id": "b",
                "slot_name": "in",
                "data": {"x": 1},
                "connection_source_routine_id": "a",
                "connection_source_event_name": "output",
            }
        ],
        "deferred_events": [],
        "shared_data": {},
        "shared_log": [],
        "output_log": [{"routine_id": "a", "output_type": "t", "data": {}}],
    }
    state = rt.JobState().deserialize(doc)
    local = datetime.datetime(2025, 1, 1, 10).astimezone()
    assert state.created_at == local
    assert state.updated_at == local + datetime.timedelta(seconds=2)
    assert (state.history[0].offset, state.history[0].data) == (1.0, {"x": 1})
    assert state.undelivered == [rt.Delivery("a", "output", "b", "in", {"x": 1})]
    assert state.shared_data["output_log"] == doc["output_log"]
    assert (state.status, state.current_routine_id) == (rt.Status.PAUSED, "a")


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ([], r"it is an array, not an object with \"_type\": \"JobState\""),
        ({"_type": "Flow"}, r"its _type is 'Flow', not 'JobState'"),
        ({"_type": "JobState", "flow_id": "f"}, r"it has no 'job_id', 'status'"),
        (
            {"_type": "JobState", "flow_id": "f", "job_id": "j", "status": "bogus"},
            r"at \$\.status, unknown status 'bogus'",
        ),
        (
            {"_type": "JobState", "flow_id": 1, "job_id": "j", "status": "running"},
            r"at \$\.flow_id, expected a string",
        ),
        (
            {"_type": "JobState", "flow_id": "f", "job_id": "j", "status": "running", "exec": 1},
            r"at \$, unknown key 'exec'",
        ),
        (
            {
                "_type": "JobState",
                "flow_id": "f",
                "job_id": "j",
                "status": "running",
                "current_routine_id": 3,
            },
            r"at \$\.current_routine_id, expected a string or null",
        ),
        (
            {"_type": "JobState", "flow_id": "f", "job_id": "j", "status": "running", "updated_at": "soon"},
            r"at \$\.updated_at, 'soon' is not an ISO-8601 date and time",
        ),
        (
            {
                "_type": "JobState",
                "flow_id": "f",
                "job_id": "j",
                "status": "running",
                "execution_history": [
                    {"_type": "os.system", "routine_id": "r", "event_name": "e", "data": {}}
                ],
            },
            r"at \$\.execution_history\[0\]\._type, 'os\.system' is not 'ExecutionRecord'",
        ),
        (
            {
                "_type": "JobState",
                "flow_id": "f",
                "job_id": "j",
                "status": "running",
                "shared_data": {"x": float("nan")},
            },
            r"at \$\.shared_data\.x, nan is not a JSON number",
        ),
        (
            {
                "_type": "JobState",
                "flow_id": "f",
                "job_id": "j",
                "status": "running",
                "pending_tasks": [{"slot_routine_id": None, "slot_name": "in"}],
            },
            r"at \$\.pending_tasks\[0\]\.slot_routine_id, expected a string, got null",
        ),
        (
            {"_type": "JobState", "flow_id": "f", "job_id": "j", "status": "running", "undelivered": []},
            r"at \$, unknown key 'undelivered'",
        ),
    ],
)
def test_deserialize_refuses_what_does_not_fit_and_changes_nothing(doc: object, problem: str) -> None:
    state = rt.JobState("keep")
    before = state.serialize()
    with pytest.raises(
        rt.StateFileError,
        match=rf"^The document given to JobState\.deserialize\(\) is not a valid JobState document: {problem}.*"
        r"Load a document made by JobState\.serialize\(\) or save\(\)\.$",
    ):
        state.deserialize(doc)
    assert state.serialize() == before


def test_save_writes_exactly_where_told_and_load_reads_it(tmp_path: pathlib.Path) -> None:
    state = _filled()
    state.job_id = "../../escape"  # a name from the state never becomes a path
    target = tmp_path / "deep" / "dir" / "job.json"
    assert state.save(str(target)) == target
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "deep",
        "deep/dir",
        "deep/dir/job.json",
    ]
    assert json.loads(target.read_text(encoding="utf-8"))["_type"] == "JobState"
    loaded = rt.JobState.load(target)
    assert loaded == state
    assert loaded.current_routine_id == "sink"


def test_load_of_hostile_files_is_refused_with_the_file_named(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError):
        rt.JobState.load(tmp_path / "missing.json")
    cases = {
        "text.json": ("not json", r"is not valid JSON: Expecting value at line 1, column 1"),
        "deep.json": ("[" * 100_000 + "]" * 100_000, r"nests its JSON too deeply to read"),
        "flow.json": (json.dumps({"_type": "Flow", "routines": {}}), r"its _type is 'Flow', not 'JobState'"),
        "bytes.json": (b"\xff\xfe", r"is not UTF-8 text"),
    }
    for name, (content, problem) in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        with pytest.raises(rt.StateFileError, match=rf"^State file {path} .*{problem}"):
            rt.JobState.load(path)
    big = tmp_path / "big.json"
    rt.JobState("f").save(big)
    with pytest.raises(rt.StateFileError, match=r"is larger than 10 bytes"):
        rt.JobState.load(big, max_bytes=10)
    with pytest.raises(
        ValueError, match=r"^JobState\.load\(max_bytes=0\): max_bytes must be a positive number"
    ):
        rt.JobState.load(big, max_bytes=0)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_load_refuses_a_fifo_without_blocking(tmp_path: pathlib.Path) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(rt.StateFileError, match=r"is a FIFO \(named pipe\), not a regular file"):
        rt.JobState.load(fifo)


# -- definition documents: a registry made in code, Routilux's tags -------------------------------


class Registered(rt.Routine):
    def __init__(self, n: int = 1) -> None:
        super().__init__()
        self.n = n
        self.define_slot("trigger", handler=self.go)

    def go(self, **_: object) -> None:
        self.send_output("n", n=self.n)


def test_allow_registered_lets_code_registered_classes_load() -> None:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="reg")
    flow.add_routine(Registered(4), "r")
    doc = flow.serialize()
    with pytest.raises(rt.DefinitionDocumentError, match=r"is not allowed, so nothing was imported"):
        rt.Flow().deserialize(doc)
    registry: dict[str, object] = {}
    remove = rt.allow_registered(registry.values)
    try:
        with pytest.raises(rt.DefinitionDocumentError, match=r"is not allowed"):
            rt.Flow().deserialize(doc)  # asked at load time: nothing registered yet
        registry["Registered"] = Registered
        registry["junk"] = "not a class"
        state = rt.Flow().deserialize(doc).execute("r")
        assert state.get_shared_data("output_log")[0]["data"] == {"n": 4}  # type: ignore[index]
    finally:
        remove()
    with pytest.raises(rt.DefinitionDocumentError, match=r"is not allowed"):
        rt.Flow().deserialize(doc)


def test_a_registry_matches_exact_import_paths_and_imports_nothing() -> None:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="reg")
    flow.add_routine(Registered(), "r")
    doc = flow.serialize()
    doc["routines"]["r"]["class_path"] = "trioflow_never_imported_mod:Registered"  # type: ignore[index]
    remove = rt.allow_registered(lambda: [Registered])
    try:
        with pytest.raises(
            rt.DefinitionDocumentError, match=r"'trioflow_never_imported_mod:Registered' is not allowed"
        ):
            rt.Flow().deserialize(doc)
    finally:
        remove()
    assert "trioflow_never_imported_mod" not in sys.modules


def test_allow_registered_needs_a_function() -> None:
    with pytest.raises(TypeError, match=r"give a function returning the allowed classes"):
        rt.allow_registered([Registered])  # type: ignore[arg-type]


def test_documents_carry_routilux_type_tags() -> None:
    assert rt.Flow(flow_id="e").serialize()["_type"] == "Flow"
    assert rt.Routine().serialize()["_type"] == "Routine"
    assert rt.ErrorHandler().serialize()["_type"] == "ErrorHandler"
    doc = rt.Flow(flow_id="e").serialize()
    doc["_type"] = "Routine"
    with pytest.raises(rt.DefinitionDocumentError, match=r"at \$\._type, 'Routine' is not 'Flow'"):
        rt.Flow().deserialize(doc)
    del doc["_type"]
    assert rt.Flow().deserialize(doc).flow_id == "e"  # the tag is optional


def test_a_routilux_serilux_document_is_refused_saying_why() -> None:
    doc = {"_type": "Flow", "flow_id": "f", "routines": {}, "connections": []}
    with pytest.raises(
        rt.DefinitionDocumentError,
        match=r"it is a Routilux \(serilux\) document \(\"_type\": 'Flow', no 'format'\), which trioflow does not read",
    ):
        rt.Flow().deserialize(doc)
    with pytest.raises(
        rt.DefinitionDocumentError, match=r"Build the flow in code once, then save it with serialize\(\)"
    ):
        rt.ErrorHandler().deserialize({"_type": "ErrorHandler", "strategy": "retry"})


def test_the_coming_from_routilux_state_snippet_runs_as_shown(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = pathlib.Path(__file__).resolve().parents[2] / "docs" / "coming-from-routilux.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.DOTALL)
    snippet = next(block for block in blocks if "state.save(" in block)
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "coming-from-routilux.md", "exec"), {"__name__": "__main__"})  # the page's own code
    first, second = capsys.readouterr().out.splitlines()
    assert first == "completed hello JobState"
    assert "at $.status, unknown status 'done'; a status is one of 'pending'," in second
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "runs",
        "runs/hello.json",
    ]


@pytest.mark.parametrize("api", ["pause", "resume", "cancel"])
def test_a_state_of_another_flow_is_refused_by_pause_resume_and_cancel(api: str) -> None:
    flow = two_routines()
    foreign = rt.JobState(flow_id="elsewhere")
    with pytest.raises(
        ValueError,
        match=rf"^Flow\('pair'\)\.{api}\(job_state\): the state's flow_id 'elsewhere' does not match this "
        rf"flow's; call flow\.{api}\(job_state\) on the flow that runs job '{foreign.job_id}'\.$",
    ):
        getattr(flow, api)(foreign)
    ended = flow.execute("source")
    flow.cancel(ended)  # a state of this flow whose job has ended is left as it is
    assert ended.status == rt.Status.COMPLETED
