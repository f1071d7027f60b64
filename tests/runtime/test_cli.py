"""``python -m runtime run|show``."""

import datetime
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
import unicodedata

import pytest

import runtime as rt
from runtime._cli import main, parse_arg, render_run

REPO = pathlib.Path(__file__).resolve().parents[2]

_FLOWS = """
import runtime as rt

@rt.function_node
async def greet(name: str) -> str:
    return f"Hello, {name}!"

@rt.function_node
async def greet_all(names: list[str], excited: bool = False) -> list[str]:
    results = [await rt.call(greet, n) for n in names]
    return [r.upper() for r in results] if excited else results

@rt.function_node
async def broken() -> None:
    await rt.call(greet, "x")
    raise ValueError("no luck")

greet_flow = rt.Flow("greet", entry_point=greet)
all_flow = rt.Flow("greet-all", entry_point=greet_all, save_state=True, state_dir=STATE_DIR)
broken_flow = rt.Flow("broken", entry_point=broken)
not_a_flow = 42
"""


@pytest.fixture
def flows_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "my_flows.py"
    path.write_text(_FLOWS.replace("STATE_DIR", repr(str(tmp_path / "state"))))
    return path


def _strip_times(text: str) -> str:
    """Timings differ between runs; everything else must not."""
    return re.sub(r"in [0-9.]+ (µs|ms|s)\b", "in T", text)


def test_run_prints_result_and_request_tree(
    flows_file: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", f"{flows_file}:greet_flow", "--arg", "name=Alice"]) == 0
    out = _strip_times(capsys.readouterr().out)
    lines = out.splitlines()
    assert lines[0].startswith("flow 'greet', run run-")
    assert lines[0].endswith(": completed in T")
    assert lines[1:] == [
        "result: 'Hello, Alice!'",
        "requests:",
        "└── greet (r1) completed in T -> 'Hello, Alice!'",
    ]


def test_run_args_are_json_or_strings(flows_file: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", f"{flows_file}:all_flow", "--arg", 'names=["Bob", "Charlie"]', "--arg", "excited=true"]
    assert main(argv) == 0
    out = _strip_times(capsys.readouterr().out)
    assert out.splitlines()[1:] == [
        "result: ['HELLO, BOB!', 'HELLO, CHARLIE!']",
        "requests:",
        "└── greet_all (r1) completed in T -> ['HELLO, BOB!', 'HELLO, CHARLIE!']",
        "    ├── greet (r2) completed in T -> 'Hello, Bob!'",
        "    └── greet (r3) completed in T -> 'Hello, Charlie!'",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name=Alice", ("name", "Alice")),
        ("n=3", ("n", 3)),
        ("x=3.5", ("x", 3.5)),
        ("flag=false", ("flag", False)),
        ("v=null", ("v", None)),
        ('items=["a", 1]', ("items", ["a", 1])),
        ('obj={"k": [1]}', ("obj", {"k": [1]})),
        ("text=a=b", ("text", "a=b")),
        ("empty=", ("empty", "")),
        ('quoted="3"', ("quoted", "3")),
    ],
)
def test_parse_arg(text: str, expected: tuple[str, object]) -> None:
    assert parse_arg(text) == expected


def test_a_failed_run_exits_1_and_shows_the_error(
    flows_file: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", f"{flows_file}:broken_flow"]) == 1
    out = _strip_times(capsys.readouterr().out)
    assert out.splitlines()[1:] == [
        "error: ValueError: no luck",
        "requests:",
        "└── broken (r1) failed in T !! ValueError: no luck",
        "    └── greet (r2) completed in T -> 'Hello, x!'",
    ]
    assert out.splitlines()[0].endswith(": failed in T")


def test_show_renders_a_saved_run_as_run_did(
    flows_file: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", f"{flows_file}:all_flow", "--arg", 'names=["Ann"]']) == 0
    ran = capsys.readouterr().out
    saved = flows_file.parent / "state" / "greet-all.json"
    assert main(["show", str(saved)]) == 0
    shown = capsys.readouterr().out
    assert shown == ran  # the same rendering, timings included


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    return captured.err.rstrip("\n")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("@F", "'@F': give FILE.py:FLOW, e.g. examples/greet.py:flow."),
        ("@F:nope", "@F has no 'nope'; the flows it defines are: all_flow, broken_flow, greet_flow."),
        (
            "@F:not_a_flow",
            "@F:not_a_flow is an int, not an rt.Flow; the flows it defines are: all_flow, broken_flow, greet_flow.",
        ),
        ("missing.py:flow", "missing.py: no such file."),
    ],
)
def test_run_with_a_bad_target(
    flows_file: pathlib.Path, capsys: pytest.CaptureFixture[str], target: str, message: str
) -> None:
    target = target.replace("@F", str(flows_file))
    assert main(["run", target]) == 2
    assert _error_line(capsys) == "python -m runtime run: error: " + message.replace("@F", str(flows_file))


def test_run_with_arguments_the_entry_point_does_not_take(
    flows_file: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", f"{flows_file}:greet_flow", "--arg", "name=A", "--arg", "mood=1"]) == 2
    assert _error_line(capsys) == (
        "python -m runtime run: error: Cannot call node 'greet' with these arguments: got an unexpected "
        "keyword argument 'mood'. Its signature is greet(name: str) -> str."
    )


def test_run_with_a_malformed_arg(flows_file: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", f"{flows_file}:greet_flow", "--arg", "Alice"]) == 2
    assert _error_line(capsys) == (
        "python -m runtime run: error: --arg 'Alice': give KEY=VALUE with KEY a parameter name, e.g. --arg name=Alice."
    )


def test_show_a_corrupt_file(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cut.json"
    path.write_text('{"format": "trioflow.state", "version": 1, "state": {')
    assert main(["show", str(path)]) == 2
    assert _error_line(capsys) == (
        f"python -m runtime show: error: State file {path} is not valid JSON: Expecting property name enclosed "
        "in double quotes at line 1, column 54. It may be truncated or edited; restore it, or delete it and run again."
    )


def test_show_a_file_from_the_future(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "future.json"
    path.write_text(json.dumps({"format": "trioflow.state", "version": 99, "state": {}}))
    assert main(["show", str(path)]) == 2
    assert _error_line(capsys) == (
        f"python -m runtime show: error: State file {path} has version 99, but this trioflow reads version 1. "
        "Upgrade trioflow to read it."
    )


def test_show_a_state_with_a_damaged_field(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = rt.Flow("x", entry_point=rt.function_node(lambda: 1)).run().state
    path = tmp_path / "x.json"
    rt.write_state_file(state, path)
    doc = json.loads(path.read_text())
    doc["state"]["status"] = "exploded"
    path.write_text(json.dumps(doc))
    assert main(["show", str(path)]) == 2
    line = _error_line(capsys)
    assert line.startswith(
        f"python -m runtime show: error: State file {path} is not a valid trioflow state: at $.state.status"
    )


def test_show_a_missing_file(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.json"
    assert main(["show", str(path)]) == 2
    assert _error_line(capsys) == (
        f"python -m runtime show: error: State file {path}: no such file. "
        f"There is no state file (*.json) in {tmp_path}."
    )
    for name in ("b.json", "a.json", "notes.txt"):
        (tmp_path / name).write_text("{}")
    assert main(["report", str(path), "-o", str(tmp_path / "r.html")]) == 2
    assert _error_line(capsys) == (
        f"python -m runtime report: error: State file {path}: no such file. "
        f"The state files in {tmp_path} are: a.json, b.json."
    )


def test_render_run_pins_the_layout() -> None:
    t0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    state = rt.JobState(
        "run-1",
        "report",
        status=rt.Status.FAILED,
        started_at=t0,
        finished_at=t0 + datetime.timedelta(seconds=2.5),
        error=rt.ErrorSummary("ValueError", "bad\nday", ("top", "b")),
    )
    state.requests["r1"] = rt.Request(
        "r1", None, "top", rt.Status.FAILED, 0.0, 0.0, 2.5, None, rt.ErrorSummary("ValueError", "bad\nday")
    )
    state.requests["r2"] = rt.Request("r2", "r1", "a", rt.Status.COMPLETED, 0.0, 0.0, 0.0012, "'ok'")
    state.requests["r3"] = rt.Request("r3", "r2", "deep", rt.Status.COMPLETED, 0.0, 0.0, 0.000_05, "1")
    state.requests["r4"] = rt.Request("r4", "r1", "b", rt.Status.CANCELLED, 1.0, 1.0, None)
    assert render_run(state) == textwrap.dedent(
        """\
        flow 'report', run run-1: failed in 2.5 s
        error: ValueError: bad day
        requests:
        └── top (r1) failed in 2.5 s !! ValueError: bad day
            ├── a (r2) completed in 1.2 ms -> 'ok'
            │   └── deep (r3) completed in 50 µs -> 1
            └── b (r4) cancelled in -"""
    )


def test_render_run_of_a_job_with_history() -> None:
    t0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    state = rt.JobState("job-1", "graph", status=rt.Status.COMPLETED, result="3")
    state.history.append(rt.HistoryEntry("source", "output", {"n": 3}, t0, 1.5))
    assert render_run(state).splitlines() == [
        "flow 'graph', run job-1: completed in -",
        "result: 3",
        "history:",
        '  +1.5 s source.output {"n": 3}',
    ]


def test_python_dash_m_runtime_runs_the_readme_example() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", "run", "examples/greet.py:flow", "--arg", "name=Alice"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    # Not a terminal: progress comes as plain lines on stderr; a run this short draws only its last.
    assert re.sub(r"\+[0-9.]+ (µs|ms|s)", "+T", proc.stderr) == (
        "+T | requests: 1 started, 1 done, 0 failed, 0 cancelled, 0 running | completed\n"
    )
    assert "result: 'Hello, Alice!'" in proc.stdout.splitlines()
    assert _strip_times(proc.stdout.splitlines()[-1]) == "└── greet (r1) completed in T -> 'Hello, Alice!'"


def test_python_dash_m_runtime_usage_error_exits_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", "frobnicate"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "invalid choice: 'frobnicate'" in proc.stderr


# -- hostile and unusual state files ------------------------------------------------

_ESC = "\x1b[2J\x1b[H"


def test_show_escapes_terminal_control_characters_in_every_field(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    state = rt.JobState(
        f"run-{_ESC}",
        f"flow{_ESC}",
        status=rt.Status.FAILED,
        started_at=t0,
        finished_at=t0,
        error=rt.ErrorSummary(f"Error{_ESC}", f"bad\r{_ESC}\x07\u202e\x9b"),
    )
    state.requests[f"r1{_ESC}"] = rt.Request(
        f"r1{_ESC}",
        None,
        f"top{_ESC}",
        rt.Status.FAILED,
        0.0,
        0.0,
        None,
        None,
        rt.ErrorSummary("E", f"m{_ESC}"),
    )
    state.requests["r2"] = rt.Request(
        "r2", f"r1{_ESC}", "kid", rt.Status.COMPLETED, 0.0, 0.0, None, f"'{_ESC}'"
    )
    state.history.append(rt.HistoryEntry(f"src{_ESC}", f"out{_ESC}", {_ESC: _ESC}, t0, 0.0))
    path = tmp_path / "hostile.json"
    rt.write_state_file(state, path)
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        r"flow 'flow\x1b[2J\x1b[H', run run-\x1b[2J\x1b[H: failed in 0 µs",
        r"error: Error\x1b[2J\x1b[H: bad \x1b[2J\x1b[H\x07\u202e\x9b",
        "requests:",
        r"└── top\x1b[2J\x1b[H (r1\x1b[2J\x1b[H) failed in - !! E: m\x1b[2J\x1b[H",
        r"    └── kid (r2) completed in - -> '\x1b[2J\x1b[H'",
        "history:",
        r'  +0 µs src\x1b[2J\x1b[H.out\x1b[2J\x1b[H {"\u001b[2J\u001b[H": "\u001b[2J\u001b[H"}',
    ]
    assert [c for c in out if unicodedata.category(c) in {"Cc", "Cf"}] == ["\n"] * 7


def test_errors_on_stderr_escape_terminal_control_characters(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / f"x{_ESC}.json"
    assert main(["show", str(path)]) == 2
    assert _error_line(capsys) == (
        rf"python -m runtime show: error: State file {tmp_path}/x\x1b[2J\x1b[H.json: no such file. There is no state file (*.json) in {tmp_path}."
    )


def test_show_refuses_a_file_over_max_bytes(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "x.json"
    rt.write_state_file(rt.JobState("run-1", "x"), path)
    assert main(["show", "--max-bytes", "100", str(path)]) == 2
    assert _error_line(capsys) == (
        f"python -m runtime show: error: State file {path} is larger than 100 bytes, the most this reads. If it is a "
        "state file, raise the limit: read_state_file(path, max_bytes=N), or show --max-bytes N."
    )
    assert main(["show", "--max-bytes", str(path.stat().st_size), str(path)]) == 0
    assert capsys.readouterr().out.startswith("flow 'x', run run-1: pending")


def test_show_max_bytes_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match=r"^2$"):
        main(["show", "--max-bytes", "0", "x.json"])
    assert capsys.readouterr().err.splitlines()[-1] == (
        "python -m runtime show: error: argument --max-bytes: '0' is not a positive whole number of bytes"
    )


def _show_in_a_subprocess(path: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """``show`` as its own program: a regression that blocks or reads forever fails on the timeout."""
    return subprocess.run(
        [sys.executable, "-m", "runtime", "show", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_show_refuses_a_fifo_without_blocking(tmp_path: pathlib.Path) -> None:
    fifo = tmp_path / "run.json"
    os.mkfifo(fifo)
    proc = _show_in_a_subprocess(fifo)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        f"python -m runtime show: error: State file {fifo} is a FIFO (named pipe), not a regular file; "
        "give the path of a file written by save_state=True.\n"
    )


def test_show_refuses_a_symlink_to_dev_zero_without_reading_it(tmp_path: pathlib.Path) -> None:
    link = tmp_path / "run.json"
    link.symlink_to("/dev/zero")
    proc = _show_in_a_subprocess(link)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        f"python -m runtime show: error: State file {link} is a character device, not a regular file; "
        "give the path of a file written by save_state=True.\n"
    )


def test_show_refuses_json_nested_3000_deep(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 3000 + "]" * 3000)
    assert main(["show", str(path)]) == 2
    assert _error_line(capsys) == (
        f"python -m runtime show: error: State file {path} nests its JSON too deeply to read; trioflow never writes "
        "such a file. Restore it, or delete it and run again."
    )


def test_show_refuses_a_time_without_a_timezone(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "x.json"
    rt.write_state_file(rt.Flow("x", entry_point=rt.function_node(lambda: 1)).run().state, path)
    doc = json.loads(path.read_text())
    doc["state"]["finished_at"] = "2024-01-01T12:00:00"
    path.write_text(json.dumps(doc))
    assert main(["show", str(path)]) == 2
    assert _error_line(capsys) == (
        f"python -m runtime show: error: State file {path} is not a valid trioflow state: at $.state.finished_at, "
        "'2024-01-01T12:00:00' has no UTC offset; trioflow writes times with one, e.g. '2024-01-01T12:00:00+00:00'. "
        "It was edited or damaged; restore it, or delete it and run again."
    )


_DEEP = """
import runtime as rt

@rt.function_node
async def deep(n: int) -> int:
    return 0 if n == 0 else 1 + await rt.call(deep, n - 1)

flow = rt.Flow("deep", entry_point=deep, save_state=True, state_dir=STATE_DIR)
"""


def test_run_and_show_render_a_run_1000_deep(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = tmp_path / "deep.py"
    flows.write_text(_DEEP.replace("STATE_DIR", repr(str(tmp_path / "state"))))
    assert main(["run", f"{flows}:flow", "--arg", "n=1000"]) == 0
    ran = capsys.readouterr().out
    lines = _strip_times(ran).splitlines()
    assert lines[1:3] == ["result: 1000", "requests:"]
    assert lines[3] == "└── deep (r1) completed in T -> 1000"
    assert lines[-1] == " " * 4 * 1000 + "└── deep (r1001) completed in T -> 0"
    assert len(lines) == 3 + 1001
    assert main(["show", str(tmp_path / "state" / "deep.json")]) == 0
    assert capsys.readouterr().out == ran


def test_render_run_draws_a_hand_made_parent_cycle_once() -> None:
    state = rt.JobState("run-1", "loop")
    state.requests["a"] = rt.Request("a", "b", "x", rt.Status.COMPLETED, 0.0)
    state.requests["b"] = rt.Request("b", "a", "y", rt.Status.COMPLETED, 0.0)
    assert render_run(state).splitlines()[1:] == [
        "requests:",
        "└── x (a) completed in -",
        "    └── y (b) completed in -",
    ]


# -- signals and pipes -----------------------------------------------------------------

_FOREVER = """
import trio
import runtime as rt

@rt.function_node
async def wait_forever() -> None:
    print("started", flush=True)
    await trio.sleep_forever()

@rt.function_node
async def outer() -> None:
    await rt.call(wait_forever)

flow = rt.Flow("forever", entry_point=outer, save_state=True, state_dir=STATE_DIR)
unsaved = rt.Flow("forever", entry_point=outer)
"""


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_run_cancels_it_with_one_line_and_exit_128_plus_signal(
    tmp_path: pathlib.Path, signum: signal.Signals, status: int
) -> None:
    flows = tmp_path / "forever.py"
    flows.write_text(_FOREVER.replace("STATE_DIR", repr(str(tmp_path / "state"))))
    with subprocess.Popen(
        [sys.executable, "-m", "runtime", "run", "--quiet", f"{flows}:flow"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "started\n"  # the node runs: the run is under way
        child.send_signal(signum)
        out, err = child.communicate(timeout=60)
    assert child.returncode == status
    assert out == ""
    state_path = tmp_path / "state" / "forever.json"
    assert (
        err
        == f"python -m runtime run: flow 'forever' was cancelled by {signum.name}; its state is saved in {state_path}.\n"
    )
    state = rt.read_state_file(state_path)
    assert state.status is rt.Status.CANCELLED
    assert [(r.node, r.status) for r in state.requests.values()] == [
        ("outer", rt.Status.CANCELLED),
        ("wait_forever", rt.Status.CANCELLED),
    ]


def test_sigint_during_a_run_without_saved_state_says_so(tmp_path: pathlib.Path) -> None:
    flows = tmp_path / "forever.py"
    flows.write_text(_FOREVER.replace("STATE_DIR", repr(str(tmp_path / "state"))))
    with subprocess.Popen(
        [sys.executable, "-m", "runtime", "run", "--quiet", f"{flows}:unsaved"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "started\n"
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
    assert child.returncode == 130
    assert err == (
        "python -m runtime run: flow 'forever' was cancelled by SIGINT; "
        "its state was not saved (the flow has save_state off).\n"
    )
    assert list(tmp_path.iterdir()) == [flows]


@pytest.mark.parametrize("command", ["run", "show"])
def test_output_piped_into_head_ends_quietly(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    flows = tmp_path / "deep.py"
    flows.write_text(_DEEP.replace("STATE_DIR", repr(str(tmp_path / "state"))))
    assert main(["run", f"{flows}:flow", "--arg", "n=300"]) == 0  # ~200 KB of tree: more than a pipe holds
    capsys.readouterr()
    saved = tmp_path / "state" / "deep.json"
    if command == "run":
        saved.unlink()  # else stderr warns that the run overwrites it
    argv = ["--quiet", f"{flows}:flow", "--arg", "n=300"] if command == "run" else [str(saved)]
    with subprocess.Popen(
        [sys.executable, "-m", "runtime", command, *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().startswith(b"flow 'deep', run run-")
        child.stdout.close()  # what `head -1` does after its line
        assert child.stderr is not None
        err = child.stderr.read()
    assert (child.wait(timeout=60), err) == (128 + signal.SIGPIPE, b"")


def test_ctrl_c_while_loading_the_flow_file_is_one_line_and_exit_130(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = tmp_path / "slow_import.py"
    flows.write_text("raise KeyboardInterrupt  # Ctrl-C while the module body runs\n")
    assert main(["run", f"{flows}:flow"]) == 130
    assert _error_line(capsys) == "python -m runtime run: interrupted."


# -- --arg values checked against the entry point's annotations ---------------------------

_TYPED = """
from typing import Optional

import runtime as rt

@rt.function_node
async def typed(
    n: int,
    ratio: float = 1.0,
    loud: bool = False,
    name: str = "",
    tags: list[str] | None = None,
    pair: tuple[int, int] = (0, 0),
    opts: Optional[dict[str, int]] = None,
    anything=None,
) -> str:
    return repr((n, ratio, loud, name, tags, pair, opts, anything))

flow = rt.Flow("typed", entry_point=typed)
"""


@pytest.fixture
def typed_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "typed.py"
    path.write_text(_TYPED)
    return path


def test_arg_values_are_converted_to_the_entry_points_annotations(
    typed_file: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "n=3",
        "ratio=2",
        "loud=true",
        "name=007",
        'tags=["a"]',
        "pair=[1, 2]",
        'opts={"k": 1}',
        "anything=[1]",
    ]
    assert main(["run", f"{typed_file}:flow", *(f"--arg={arg}" for arg in args)]) == 0
    assert (
        capsys.readouterr().out.splitlines()[1]
        == "result: \"(3, 2.0, True, '007', ['a'], (1, 2), {'k': 1}, [1])\""
    )


def test_arg_null_fits_an_optional_parameter(
    typed_file: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["run", f"{typed_file}:flow", "--arg", "n=1", "--arg", "tags=null", "--arg", "name=null"]) == 0
    )
    assert (
        capsys.readouterr().out.splitlines()[1]
        == "result: \"(1, 1.0, False, 'null', None, (0, 0), None, None)\""
    )


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("n=hello", "takes n as int, and 'hello' is not one: expected an integer, got a string."),
        ("n=1.5", "takes n as int, and '1.5' is not one: expected an integer, got a number."),
        ("ratio=true", "takes ratio as float, and 'true' is not one: expected a number, got a boolean."),
        ("loud=yes", "takes loud as bool, and 'yes' is not one: expected a boolean, got a string."),
        (
            'tags=["a", 1]',
            "takes tags as list[str] | None, and '[\"a\", 1]' is not one: at $[1], expected a string, got an integer.",
        ),
        (
            'tags={"a": 1}',
            "takes tags as list[str] | None, and '{\"a\": 1}' is not one: expected an array, got an object.",
        ),
        (
            "pair=[1]",
            "takes pair as tuple[int, int], and '[1]' is not one: expected an array of 2 items, got 1.",
        ),
        (
            "opts=[1]",
            "takes opts as Optional[dict[str, int]], and '[1]' is not one: expected an object, got an array.",
        ),
    ],
)
def test_an_arg_value_of_the_wrong_type_or_shape_is_refused(
    typed_file: pathlib.Path, capsys: pytest.CaptureFixture[str], arg: str, message: str
) -> None:
    argv = ["run", f"{typed_file}:flow", "--arg", arg] + ([] if arg.startswith("n=") else ["--arg", "n=1"])
    assert main(argv) == 2
    assert _error_line(capsys) == f"python -m runtime run: error: --arg {arg}: node 'typed' " + message


def test_a_repeated_arg_is_refused(typed_file: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", f"{typed_file}:flow", "--arg", "n=1", "--arg", "n=2"]) == 2
    assert _error_line(capsys) == (
        "python -m runtime run: error: --arg n is given twice (n=1, then n=2); give each parameter once."
    )


def test_render_run_shows_history_data_too_deep_to_encode_without_raising() -> None:
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    state = rt.JobState("job-1", "graph")
    state.history.append(
        rt.HistoryEntry("src", "out", {"x": deep}, datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC), 0.0)
    )
    assert render_run(state).splitlines()[-1] == "  +0 µs src.out (data nested too deeply to show)"


_CHOICES = """
import enum
from typing import Literal

import runtime as rt

class Color(enum.Enum):
    RED = "red"

@rt.function_node
async def pick(mode: Literal["a", "b"] = "a", color: Color = Color.RED) -> str:
    return f"{mode} {color.name}"

flow = rt.Flow("pick", entry_point=pick)
"""


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        (
            "mode=c",
            "takes mode as Literal['a', 'b'], and 'c' is not one: c not in literal typing.Literal['a', 'b'].",
        ),
        ("color=blue", "takes color as Color, and 'blue' is not one: 'blue' is not a valid Color."),
    ],
)
def test_an_arg_value_outside_a_literal_or_an_enum_is_refused(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], arg: str, message: str
) -> None:
    flows = tmp_path / "choices.py"
    flows.write_text(_CHOICES)
    assert main(["run", f"{flows}:flow", "--arg", "mode=b", "--arg", "color=red"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "result: 'b RED'"
    assert main(["run", f"{flows}:flow", "--arg", arg]) == 2
    assert _error_line(capsys) == f"python -m runtime run: error: --arg {arg}: node 'pick' " + message


_STUCK_CLEANUP = """
import trio
import runtime as rt

@rt.function_node
async def stuck() -> None:
    try:
        print("started", flush=True)
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            print("cleaning up", flush=True)
            await trio.sleep_forever()  # a clean-up that never ends

flow = rt.Flow("stuck", entry_point=stuck, save_state=True, state_dir=STATE_DIR)
"""


def test_a_second_sigint_while_the_run_cleans_up_exits_at_once(tmp_path: pathlib.Path) -> None:
    flows = tmp_path / "stuck.py"
    flows.write_text(_STUCK_CLEANUP.replace("STATE_DIR", repr(str(tmp_path / "state"))))
    with subprocess.Popen(
        [sys.executable, "-m", "runtime", "run", "--quiet", f"{flows}:flow"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "started\n"
        child.send_signal(signal.SIGINT)
        assert child.stdout.readline() == "cleaning up\n"  # the first Ctrl-C cancelled the node
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    assert (child.returncode, out) == (130, "")
    assert err == (
        "python -m runtime run: flow 'stuck' was stopped by a second SIGINT before its nodes finished "
        "cleaning up; its state was not saved.\n"
    )
    assert not (tmp_path / "state").exists()
