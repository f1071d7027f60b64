"""Live progress: a consumer of a run's events, drawn in place on a terminal or as plain lines."""

import io
import os
import pathlib
import pty
import re
import subprocess
import sys

import pytest
import trio
import trio.testing

import runtime as rt
from runtime._progress import Progress, arun_with_progress, follow

REPO = pathlib.Path(__file__).resolve().parents[2]


def _times(text: str) -> str:
    return re.sub(r"[0-9.]+ (µs|ms|s)\b", "T", text)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _event(
    seq: int,
    kind: rt.EventKind,
    offset: float,
    request: str | None = None,
    node: str | None = None,
    data: object = None,
) -> rt.Event:
    return rt.Event("run-1", seq, kind, offset, request, None, node, data)


def test_plain_lines_are_throttled_and_the_last_is_always_drawn() -> None:
    out = io.StringIO()
    clock = _Clock()
    progress = Progress(out, live=False, interval=1.0, clock=clock)
    progress(_event(0, rt.EventKind.REQUEST_CREATED, 0.0, "r1", "main"))
    progress(_event(1, rt.EventKind.REQUEST_CREATED, 0.1, "r2", "slow\x1b[2J"))
    assert out.getvalue() == ""  # less than an interval since it began
    clock.now = 1.5
    progress(_event(2, rt.EventKind.REQUEST_CREATED, 0.2, "r3", "fast"))
    clock.now = 1.6
    progress(_event(3, rt.EventKind.REQUEST_FAILED, 0.3, "r3", "fast"))
    clock.now = 1.7
    progress(_event(4, rt.EventKind.REQUEST_SUCCEEDED, 0.4, "r2"))
    progress(_event(5, rt.EventKind.REQUEST_CANCELLED, 0.5, "r1"))
    progress(_event(6, rt.EventKind.RUN_FINISHED, 0.5, data={"status": "failed"}))
    assert out.getvalue().splitlines() == [
        "+200 ms | requests: 3 started, 0 done, 0 failed, 0 cancelled, 3 running | slowest: main for 200 ms",
        "+500 ms | requests: 3 started, 1 done, 1 failed, 1 cancelled, 0 running | failed",
    ]


def test_the_slowest_request_in_flight_is_named_safely() -> None:
    progress = Progress(io.StringIO(), live=False)
    progress.feed(_event(0, rt.EventKind.REQUEST_CREATED, 0.0, "r1", "slow\x1b[2J"))
    progress.feed(_event(1, rt.EventKind.REQUEST_CREATED, 1.0, "r2", "fast"))
    assert progress.line() == (
        "+1 s | requests: 2 started, 0 done, 0 failed, 0 cancelled, 2 running | slowest: slow\\x1b[2J for 1 s"
    )


def test_a_terminal_gets_one_line_redrawn_in_place() -> None:
    out = io.StringIO()
    clock = _Clock()
    progress = Progress(out, live=True, use_rich=False, clock=clock)
    clock.now = 1.0
    progress(_event(0, rt.EventKind.REQUEST_CREATED, 0.0, "r1", "main"))
    progress(_event(1, rt.EventKind.REQUEST_SUCCEEDED, 0.2, "r1", "main"))
    progress(_event(2, rt.EventKind.RUN_FINISHED, 0.2, data={"status": "completed"}))
    assert out.getvalue() == (
        "\r\x1b[2K+0 µs | requests: 1 started, 0 done, 0 failed, 0 cancelled, 1 running | slowest: main for 0 µs"
        "\r\x1b[2K+200 ms | requests: 1 started, 1 done, 0 failed, 0 cancelled, 0 running | completed\n"
    )


def test_graph_jobs_show_events_per_routine() -> None:
    class Echo(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.on_input)
            self.define_event("output", ["data"])

        def on_input(self, data: object = None, **_: object) -> None:
            self.emit("output", data=data)

    out = io.StringIO()
    flow = rt.Flow(flow_id="echo", subscribers=[Progress(out, live=False)])
    flow.add_routine(Echo(), "a")
    flow.add_routine(Echo(), "b")
    flow.connect("a", "output", "b", "input")
    assert flow.execute("a", {"data": 1}).status is rt.Status.COMPLETED
    assert _times(out.getvalue()) == "+T | routine events: 2 (a 1, b 1) | completed\n"


async def test_follow_redraws_the_elapsed_time_while_a_node_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    @rt.function_node
    async def slow() -> int:
        await trio.sleep(3.05)
        return 1

    out = io.StringIO()
    progress = Progress(out, live=False, interval=1.0, clock=trio.current_time)
    async with rt.Flow("slow", entry_point=slow).stream() as events:
        await follow(events, progress)
    assert out.getvalue().splitlines() == [
        "+1 s | requests: 1 started, 0 done, 0 failed, 0 cancelled, 1 running | slowest: slow for 1 s",
        "+2 s | requests: 1 started, 0 done, 0 failed, 0 cancelled, 1 running | slowest: slow for 2 s",
        "+3 s | requests: 1 started, 0 done, 0 failed, 0 cancelled, 1 running | slowest: slow for 3 s",
        "+3.05 s | requests: 1 started, 1 done, 0 failed, 0 cancelled, 0 running | completed",
    ]


def _run_cli(*args: str, tty: bool) -> tuple[int, str, str]:
    command = [sys.executable, "-m", "runtime", "run", "examples/greet.py:flow", "--arg", "name=Alice", *args]
    if not tty:
        proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
        return proc.returncode, proc.stdout, proc.stderr
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            command,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=60,
            check=False,
            env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "200"},
        )
    finally:
        os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the follower end is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.returncode, proc.stdout.decode(), b"".join(chunks).decode()


def test_cli_run_draws_progress_in_place_on_a_terminal() -> None:
    status, out, err = _run_cli("--no-color", tty=True)
    assert status == 0
    assert "result: 'Hello, Alice!'" in out
    assert _times(err).replace("\r\n", "\n") == (
        "\r\x1b[2K+T | requests: 1 started, 1 done, 0 failed, 0 cancelled, 0 running | completed\n"
    )


def test_cli_run_with_rich_draws_in_colour_on_a_terminal() -> None:
    try:
        import rich  # noqa: F401  # the rich extra: .ci/run installs it
    except ImportError:
        pytest.fail("This test needs the rich extra: pip install '.[test,rich]'.")
    status, _, err = _run_cli(tty=True)
    assert status == 0
    # rich.live hides the cursor, colours the counts and redraws the line in place.
    assert err.startswith("\x1b[?25l")
    assert _times(err).endswith(
        "\r\x1b[2K+T | requests: 1 started, \x1b[32m1 done\x1b[0m, \x1b[1;31m0 failed\x1b[0m, "
        "\x1b[33m0 cancelled\x1b[0m, 0 running | completed\r\n\x1b[?25h"
    )


def test_cli_run_quiet_draws_nothing() -> None:
    status, out, err = _run_cli("--quiet", tty=False)
    assert status == 0
    assert err == ""
    assert "result: 'Hello, Alice!'" in out


async def test_arun_with_progress_redraws_while_a_node_runs_and_restores_the_flow(
    autojump_clock: trio.testing.MockClock,
) -> None:
    @rt.function_node
    async def slow() -> int:
        await trio.sleep(2.5)
        return 1

    out = io.StringIO()
    flow = rt.Flow("slow", entry_point=slow)
    progress = Progress(out, live=False, interval=1.0, clock=trio.current_time)
    result = await arun_with_progress(flow, (), {}, progress)
    assert result.status is rt.Status.COMPLETED
    assert flow.subscribers == ()
    assert out.getvalue().splitlines() == [
        "+1 s | requests: 1 started, 0 done, 0 failed, 0 cancelled, 1 running | slowest: slow for 1 s",
        "+2 s | requests: 1 started, 0 done, 0 failed, 0 cancelled, 1 running | slowest: slow for 2 s",
        "+2.5 s | requests: 1 started, 1 done, 0 failed, 0 cancelled, 0 running | completed",
    ]


async def test_arun_with_progress_raises_a_bad_argument_error_unwrapped() -> None:
    @rt.function_node
    async def greet(name: str) -> str:
        return name

    flow = rt.Flow("greet", entry_point=greet)
    with pytest.raises(rt.NodeArgumentError, match=r"^Cannot call node 'greet' with these arguments"):
        await arun_with_progress(flow, (), {"mood": 1}, Progress(io.StringIO(), live=False))
    assert flow.subscribers == ()


def test_a_flow_subscriber_counts_each_run_afresh() -> None:
    @rt.function_node
    async def one() -> int:
        return 1

    out = io.StringIO()
    flow = rt.Flow("one", entry_point=one, subscribers=[Progress(out, live=False)])
    flow.run()
    flow.run()
    assert (
        _times(out.getvalue()).splitlines()
        == ["+T | requests: 1 started, 1 done, 0 failed, 0 cancelled, 0 running | completed"] * 2
    )


class _Fan(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.fan)
        self.define_event("output", ["i"])

    def fan(self, n: int = 0, **_: object) -> None:
        for i in range(n):
            self.emit("output", i=i)


class _Slow(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.work)

    async def work(self, **_: object) -> None:
        await trio.sleep(0.9)  # never ends on a redraw's tick: which of two equal deadlines wakes first is not fixed


async def test_graph_progress_shows_messages_handled_and_queued_per_routine(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flow = rt.Flow("fan")
    flow.add_routine(_Fan(), "fan")
    flow.add_routine(_Slow(), "slow")
    flow.connect("fan", "output", "slow", "input")
    flow.set_entry("fan")
    out = io.StringIO()
    progress = Progress(out, live=False, interval=1.5, clock=trio.current_time)
    result = await arun_with_progress(flow, (), {"n": 4}, progress)
    assert result.status is rt.Status.COMPLETED
    lines = out.getvalue().splitlines()
    # Every 1.5 s: slow takes a message every 0.9 s, so its queue drains as it goes.
    assert lines[:2] == [
        "+1.5 s | routines handled/queued: slow 2/2, fan 1/0 | routine events: 4 (fan 4)",
        "+3 s | routines handled/queued: slow 4/0, fan 1/0 | routine events: 4 (fan 4)",
    ]
    assert lines[-1] == "+3.6 s | routine events: 4 (fan 4) | completed"
    assert progress.probe is not None
    assert progress.probe() == {}  # the job has ended
