import copy
import datetime
import json
import logging
import os
import pathlib
import re
import socket

import pytest

from runtime._exceptions import StateFileError, UnserializableValueError
from runtime._serialize import (
    STATE_FORMAT,
    STATE_VERSION,
    dump_state,
    load_state,
    read_state_file,
    write_state_file,
)
from runtime._state import Delivery, ErrorSummary, JobState, Request, Status

_T0 = datetime.datetime(2024, 1, 1, 12, tzinfo=datetime.UTC)


def _populated() -> JobState:
    state = JobState(
        "r-1",
        "my-flow",
        status=Status.FAILED,
        created_at=_T0,
        started_at=_T0 + datetime.timedelta(seconds=1),
        finished_at=_T0 + datetime.timedelta(seconds=9.5),
        context={"user": "ada", "limits": {"max": 3, "ratio": 0.5}},
        result=None,
        error=ErrorSummary("ValueError", "bad input", ("plan", "write")),
        metrics={"steps": 4.0},
    )
    state.requests["1"] = Request("1", None, "plan", Status.FAILED, 0.0, 0.0, 8.5, None, state.error)
    state.requests["2"] = Request("2", "1", "write", Status.COMPLETED, 1.0, 1.25, 2.0, "'ok'")
    state.record_event("source", "output", {"data": "a", "n": [1, 2.5, None, True]})
    state.record_event("processor", "output", {"result": {"nested": {}}})
    state.update_routine_state("processor", {"processed_count": 2, "last": "b"})
    state.update_shared_data("collected_items", ["a", "b"])
    state.append_to_shared_log({"action": "collected", "data": "a"})
    state.undelivered.append(Delivery("source", "output", "sink", "input", {"data": "c"}))
    return state


def test_document_shape() -> None:
    doc = dump_state(_populated())
    assert list(doc) == ["format", "version", "state"]
    assert doc["format"] == STATE_FORMAT == "trioflow.state"
    assert doc["version"] == STATE_VERSION == 1
    body = doc["state"]
    assert isinstance(body, dict)
    assert body["status"] == "failed"
    assert body["created_at"] == "2024-01-01T12:00:00+00:00"
    assert [r["id"] for r in body["requests"]] == ["1", "2"]
    assert body["error"] == {
        "type": "ValueError",
        "message": "bad input",
        "path": ["plan", "write"],
    }
    assert "_clock" not in body
    assert "clock" not in body


def test_round_trip_through_json() -> None:
    state = _populated()
    text = json.dumps(dump_state(state), allow_nan=False)
    loaded = load_state(json.loads(text))
    assert loaded == state
    assert list(loaded.requests) == ["1", "2"]
    assert loaded.requests["1"].error == state.error
    assert loaded.status is Status.FAILED


def test_round_trip_of_a_fresh_state() -> None:
    state = JobState("r-2", "f")
    assert load_state(json.loads(json.dumps(dump_state(state)))) == state


def test_dump_does_not_change_the_state() -> None:
    state = _populated()
    before = copy.deepcopy(state)
    dump_state(state)
    assert state == before


@pytest.mark.parametrize(
    ("where", "path", "problem"),
    [
        ("context", "$.context.conn", "is a socket (socket.socket)"),
        ("shared", "$.shared_data.items[2]", "is a socket (socket.socket)"),
        ("routine", "$.routine_states.proc.last", "is a socket (socket.socket)"),
        ("history", "$.history[2].data.x", "is a socket (socket.socket)"),
        ("log", "$.shared_log[1].conn", "is a socket (socket.socket)"),
        ("undelivered", "$.undelivered[1].data.conn", "is a socket (socket.socket)"),
    ],
)
def test_strict_dump_names_the_path(where: str, path: str, problem: str) -> None:
    state = _populated()
    with socket.socket() as conn:
        if where == "context":
            state.context["conn"] = conn
        elif where == "shared":
            state.update_shared_data("items", [1, 2, conn])
        elif where == "routine":
            state.update_routine_state("proc", {"last": conn})
        elif where == "history":
            state.record_event("source", "output", {"x": conn})
        elif where == "log":
            state.append_to_shared_log({"conn": conn})
        else:
            state.undelivered.append(Delivery("a", "e", "b", "s", {"conn": conn}))
        expected = (
            f"Cannot save the state of run 'r-1': {path} {problem}, which JSON cannot hold. "
            "Keep only JSON values (str, int, float, bool, None, lists, dicts with str keys) "
            "in context and state, or leave save_state off."
        )
        with pytest.raises(UnserializableValueError) as info:
            dump_state(state)
    assert str(info.value) == expected
    assert info.value.path == path


@pytest.mark.parametrize(
    ("value", "path", "problem"),
    [
        ((1, 2), "$.context.v", "is a tuple (builtins.tuple)"),
        ({"a"}, "$.context.v", "is a set (builtins.set)"),
        (float("nan"), "$.context.v", "is the float nan"),
        (float("inf"), "$.context.v", "is the float inf"),
        ({1: "x"}, "$.context.v", "has the key 1 (builtins.int)"),
        (Status.PAUSED, "$.context.v", "is a Status (runtime.Status)"),
        ({"a b": object()}, '$.context.v["a b"]', "is a object (builtins.object)"),
    ],
)
def test_what_is_not_json(value: object, path: str, problem: str) -> None:
    state = JobState("r-1", "f", context={"v": value})
    with pytest.raises(UnserializableValueError, match=r"^Cannot save the state of run") as info:
        dump_state(state)
    assert info.value.path == path
    assert f": {path} {problem}, which JSON cannot hold" in str(info.value)


def test_cycles_are_reported() -> None:
    loop: list[object] = []
    loop.append(loop)
    state = JobState("r-1", "f", context={"loop": loop})
    with pytest.raises(UnserializableValueError, match=r"reference cycle") as info:
        dump_state(state)
    assert info.value.path == "$.context.loop[0]"


def test_lenient_dump_replaces_and_lists_values() -> None:
    state = _populated()
    with socket.socket() as conn:
        state.context["conn"] = conn
        state.update_routine_state("proc", {"pair": (1, 2)})
        doc = dump_state(state, strict=False)
    assert doc["unserializable"] == ["$.context.conn", "$.routine_states.proc.pair"]
    body = doc["state"]
    assert isinstance(body, dict)
    marker = body["context"]["conn"]
    assert marker["type"] == "socket.socket"
    assert marker["$unserializable"].startswith("<socket.socket")
    assert body["routine_states"]["proc"]["pair"] == {
        "$unserializable": "(1, 2)",
        "type": "builtins.tuple",
    }
    assert body["context"]["user"] == "ada"
    loaded = load_state(json.loads(json.dumps(doc)))
    assert loaded.context["conn"] == marker


def test_lenient_dump_truncates_the_repr() -> None:
    class Big:
        def __repr__(self) -> str:
            return "B" * 1000

    doc = dump_state(JobState("r-1", "f", context={"big": Big()}), strict=False)
    body = doc["state"]
    assert isinstance(body, dict)
    assert body["context"]["big"]["$unserializable"] == "B" * 200


def test_lenient_dump_of_clean_state_lists_nothing() -> None:
    assert "unserializable" not in dump_state(_populated(), strict=False)


def _doc() -> dict[str, object]:
    return json.loads(json.dumps(dump_state(_populated())))  # type: ignore[no-any-return]


def test_wrong_version() -> None:
    doc = _doc()
    doc["version"] = 2
    with pytest.raises(
        StateFileError,
        match=r"^State document has version 2, but this trioflow reads version 1\. "
        r"Upgrade trioflow to read it\.$",
    ):
        load_state(doc)


def test_older_unknown_version() -> None:
    doc = _doc()
    doc["version"] = 0
    with pytest.raises(
        StateFileError,
        match=r"^State document has version 0, but this trioflow reads version 1; "
        r"no trioflow writes version 0, so the document is corrupt\.$",
    ):
        load_state(doc)


def test_version_of_wrong_type() -> None:
    doc = _doc()
    doc["version"] = "1"
    with pytest.raises(
        StateFileError,
        match=r"^State document has version '1'; a version is an integer, e\.g\. 1\.$",
    ):
        load_state(doc)


def test_wrong_format() -> None:
    doc = _doc()
    doc["format"] = "routilux.job"
    with pytest.raises(
        StateFileError,
        match=r"^State document has format 'routilux\.job', but trioflow reads "
        r"'trioflow\.state'\. It is not a trioflow state document\.$",
    ):
        load_state(doc)


def test_missing_keys() -> None:
    with pytest.raises(
        StateFileError,
        match=r"^State document has no 'version', 'state' key; a trioflow state document "
        r"has 'format', 'version' and 'state'\. Write it with write_state_file\(\)\.$",
    ):
        load_state({"format": STATE_FORMAT})


def test_not_an_object() -> None:
    with pytest.raises(
        StateFileError,
        match=r"^State document is a list, not a trioflow state document: expected an "
        r"object with keys 'format', 'version' and 'state'\.$",
    ):
        load_state([1, 2])


_DAMAGED = r" It was edited or damaged; restore it, or delete it and run again\.$"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda s: s.update(status="weird"),
            r"at \$\.state\.status, unknown status 'weird'; a status is one of 'pending', "
            r"'running', 'paused', 'completed', 'failed', 'cancelled', 'timed_out', 'killed', 'orphaned'\.",
        ),
        (
            lambda s: s.update(job_id=5),
            r"at \$\.state\.job_id, expected a string, got an integer\.",
        ),
        (lambda s: s.pop("flow_id"), r"at \$\.state\.flow_id, required field missing\."),
        (lambda s: s.update(extra=1), r"at \$\.state, unknown key 'extra'\."),
        (
            lambda s: s["requests"][0]["error"].update(path="abc"),
            r"at \$\.state\.requests\[0\]\.error\.path, expected an array, got a string\.",
        ),
        (
            lambda s: s["requests"][1].update(parent_id="zz"),
            r"at \$\.state\.requests, request \[1\] \('2'\) names the parent 'zz', "
            r"which is not an earlier request\.",
        ),
        (
            lambda s: s["requests"].append(s["requests"][0]),
            r"at \$\.state\.requests, request \[2\] repeats the id '1'\.",
        ),
        (
            lambda s: s["history"][0].update(offset="1"),
            r"at \$\.state\.history\[0\]\.offset, expected a number, got a string\.",
        ),
        (
            lambda s: s.update(created_at="yesterday"),
            r"at \$\.state\.created_at, 'yesterday' is not an ISO-8601 date and time\.",
        ),
        (
            lambda s: s.update(context=[]),
            r"at \$\.state\.context, expected an object, got an array\.",
        ),
        (
            lambda s: s.update(history=[1]),
            r"at \$\.state\.history\[0\], expected an object, got an integer\.",
        ),
    ],
)
def test_damaged_state_names_the_field(damage: object, message: str) -> None:
    doc = _doc()
    damage(doc["state"])  # type: ignore[operator]
    with pytest.raises(
        StateFileError,
        match=r"^State document is not a valid trioflow state: " + message + _DAMAGED,
    ):
        load_state(doc)


def test_state_not_an_object() -> None:
    doc = _doc()
    doc["state"] = []
    with pytest.raises(
        StateFileError,
        match=r"^State document is not a valid trioflow state: at \$\.state, expected an "
        r"object, got an array\." + _DAMAGED,
    ):
        load_state(doc)


def test_write_and_read_file(tmp_path: pathlib.Path) -> None:
    state = _populated()
    target = tmp_path / "states" / "my-flow.json"
    assert write_state_file(state, target) == target
    assert read_state_file(target) == state
    assert json.loads(target.read_text())["version"] == 1
    assert target.read_text().startswith('{\n  "format": "trioflow.state",\n')
    assert [p.name for p in target.parent.iterdir()] == ["my-flow.json"]


def test_overwrite_warns(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = pathlib.Path(".trioflow/my-flow.json")
    with caplog.at_level(logging.WARNING, logger="runtime.state"):
        write_state_file(JobState("r-1", "my-flow"), path)
        assert caplog.records == []
        write_state_file(JobState("r-2", "my-flow"), path)
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            "runtime.state",
            logging.WARNING,
            "State file .trioflow/my-flow.json already exists, overwriting.",
        )
    ]
    assert read_state_file(path).job_id == "r-2"
    assert sorted(p.name for p in (tmp_path / ".trioflow").iterdir()) == ["my-flow.json"]


def test_strict_write_leaves_the_old_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "s.json"
    write_state_file(JobState("r-1", "f"), path)
    before = path.read_bytes()
    with socket.socket() as conn, pytest.raises(UnserializableValueError):
        write_state_file(JobState("r-2", "f", context={"conn": conn}), path, strict=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_lenient_write_is_the_default(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "s.json"
    with socket.socket() as conn:
        write_state_file(JobState("r-1", "f", context={"conn": conn}), path)
    assert json.loads(path.read_text())["unserializable"] == ["$.context.conn"]


def test_failed_write_removes_the_temp_file(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.json"
    write_state_file(JobState("r-1", "f"), path)
    before = path.read_bytes()

    def crash(src: object, dst: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr("os.replace", crash)
    with pytest.raises(OSError, match=r"^disk on fire$"):
        write_state_file(JobState("r-2", "f"), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_truncated_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "s.json"
    write_state_file(_populated(), path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(
        StateFileError,
        match=rf"^State file {re.escape(str(tmp_path))}/s\.json is not valid JSON: "
        r".+ at line \d+, column \d+\. "
        r"It may be truncated or edited; restore it, or delete it and run again\.$",
    ):
        read_state_file(path)


def test_corrupt_json_names_the_line(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{\n  "format": "trioflow.state",\n  oops\n}\n')
    with pytest.raises(
        StateFileError,
        match=r"^State file .+/s\.json is not valid JSON: Expecting property name enclosed "
        r"in double quotes at line 3, column 3\.",
    ):
        read_state_file(path)


def test_not_utf8(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "s.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(
        StateFileError,
        match=r"^State file .+/s\.json is not UTF-8 text \(byte 0\); it is damaged or not "
        r"a state file\. Restore it, or delete it and run again\.$",
    ):
        read_state_file(path)


def test_file_of_another_version_names_the_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "s.json"
    doc = _doc()
    doc["version"] = 3
    path.write_text(json.dumps(doc))
    with pytest.raises(
        StateFileError,
        match=r"^State file .+/s\.json has version 3, but this trioflow reads version 1\. "
        r"Upgrade trioflow to read it\.$",
    ):
        read_state_file(path)


def test_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_state_file(tmp_path / "nope.json")


# -- strict loading -----------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d["state"].pop("status"), r"at \$\.state\.status, required field missing\."),
        (lambda d: d["state"].pop("requests"), r"at \$\.state\.requests, required field missing\."),
        (
            lambda d: (d["state"].pop("status"), d["state"].pop("requests")),
            r"at \$\.state\.status, required field missing; at \$\.state\.requests, required field missing\.",
        ),
        (
            lambda d: d["state"]["requests"][0].pop("node"),
            r"at \$\.state\.requests\[0\]\.node, required field missing\.",
        ),
        (lambda d: d.update(extra=1), r"at \$, unknown key 'extra'\."),
        (lambda d: d.update(b=1, a=2), r"at \$, unknown keys 'a', 'b'\."),
        (
            lambda d: d.update(unserializable=[1]),
            r"at \$\.unserializable, expected an array of strings \(the paths of values not saved\)\.",
        ),
        (
            lambda d: d["state"]["context"].update(limits=[1, {"ratio": float("nan")}]),
            r"at \$\.state\.context\.limits\[1\]\.ratio, nan is not a JSON number \(NaN and infinities are not JSON\)\.",
        ),
        (
            lambda d: d["state"]["metrics"].update(steps=float("-inf")),
            r"at \$\.state\.metrics\.steps, -inf is not a JSON number \(NaN and infinities are not JSON\)\.",
        ),
        (
            lambda d: d["state"]["context"].update({"a b": (1, 2)}),
            r'at \$\.state\.context\["a b"\], a tuple is not a JSON value\.',
        ),
        (
            lambda d: d["state"]["shared_data"].update(x={1: 2}),
            r"at \$\.state\.shared_data\.x, the key 1 is not a string \(JSON object keys are strings\)\.",
        ),
        (
            lambda d: d["state"].update(started_at="2024-01-01T12:00:00"),
            r"at \$\.state\.started_at, '2024-01-01T12:00:00' has no UTC offset; trioflow writes times with one, "
            r"e\.g\. '2024-01-01T12:00:00\+00:00'\.",
        ),
    ],
)
def test_load_state_refuses_what_dump_state_never_writes(damage: object, message: str) -> None:
    doc = _doc()
    damage(doc)  # type: ignore[operator]
    with pytest.raises(
        StateFileError, match=r"^State document is not a valid trioflow state: " + message + _DAMAGED
    ):
        load_state(doc)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_state_file_holding_nan_or_infinity_is_refused(tmp_path: pathlib.Path, constant: str) -> None:
    path = tmp_path / "s.json"
    write_state_file(_populated(), path)
    path.write_text(path.read_text().replace('"steps": 4.0', f'"steps": {constant}'))
    with pytest.raises(
        StateFileError,
        match=r"^State file .+/s\.json is not a valid trioflow state: at \$\.state\.metrics\.steps, -?(nan|inf) is not "
        r"a JSON number \(NaN and infinities are not JSON\)\." + _DAMAGED,
    ):
        read_state_file(path)


# -- bounded reading ------------------------------------------------------------


def test_a_state_file_over_max_bytes_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "s.json"
    write_state_file(_populated(), path)
    size = path.stat().st_size
    assert read_state_file(path, max_bytes=size) == read_state_file(path)
    with pytest.raises(
        StateFileError,
        match=rf"^State file .+/s\.json is larger than {size - 1} bytes, the most this reads\. If it is a state file, "
        r"raise the limit: read_state_file\(path, max_bytes=N\), or show --max-bytes N\.$",
    ):
        read_state_file(path, max_bytes=size - 1)


@pytest.mark.parametrize("max_bytes", [0, -1, 1.5, "10"])
def test_max_bytes_must_be_a_positive_integer(tmp_path: pathlib.Path, max_bytes: object) -> None:
    with pytest.raises(
        ValueError, match=r"^read_state_file\(max_bytes=.+\): max_bytes must be a positive number of bytes\.$"
    ):
        read_state_file(tmp_path / "s.json", max_bytes=max_bytes)  # type: ignore[arg-type]


def test_a_state_file_that_is_a_fifo_is_refused_without_blocking(tmp_path: pathlib.Path) -> None:
    fifo = tmp_path / "s.json"
    os.mkfifo(fifo)  # no writer: opening it for reading would block
    with pytest.raises(
        StateFileError,
        match=r"^State file .+/s\.json is a FIFO \(named pipe\), not a regular file; give the path of a file "
        r"written by save_state=True\.$",
    ):
        read_state_file(fifo)


@pytest.mark.parametrize(
    ("target", "kind"), [("/dev/zero", "a character device"), ("/dev/null", "a character device")]
)
def test_a_state_file_that_is_a_symlink_to_a_device_is_refused(
    tmp_path: pathlib.Path, target: str, kind: str
) -> None:
    link = tmp_path / "s.json"
    link.symlink_to(target)
    with pytest.raises(StateFileError, match=rf"^State file .+/s\.json is {kind}, not a regular file; "):
        read_state_file(link)


def test_a_state_file_that_is_a_directory_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(StateFileError, match=r"^State file .+ is a directory, not a regular file; "):
        read_state_file(tmp_path)


def test_a_state_file_nested_3000_deep_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"format": "trioflow.state", "version": 1, "state": ' + "[" * 3000 + "]" * 3000 + "}")
    with pytest.raises(
        StateFileError,
        match=r"^State file .+/s\.json nests its JSON too deeply to read; trioflow never writes such a file\. "
        r"Restore it, or delete it and run again\.$",
    ):
        read_state_file(path)


def test_a_symlink_to_a_state_file_is_read(tmp_path: pathlib.Path) -> None:
    state = _populated()
    write_state_file(state, tmp_path / "real.json")
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    assert read_state_file(tmp_path / "link.json") == state
