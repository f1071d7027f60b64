"""Seed 000's examples, ported with only their import line changed, print what the seed says.

Each runs as its own program from the repository root, as a user would run it.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _run_example(name: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """Run ``examples/{name}`` from *cwd* (a test's ``tmp_path``): state files go under it, not the repository."""
    proc = subprocess.run(
        [sys.executable, REPO / "examples" / name],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


SEED_000 = [
    ("greet.py", ["Hello, Alice!"]),
    ("greet_multiple.py", ["['Hello, Bob!', 'Hello, Charlie!']"]),
    ("conditional.py", ["Hello, Diana!", "Bye, Robert!"]),
    ("flow_configuration.py", ["['Hello, Bob!', 'Hello, Charlie!']"]),
    ("error_handling.py", ["Flow failed: report service unavailable"]),
    ("api_workflow.py", ["https://us-west.api.example.com (key se***)"]),
    ("tracked_execution.py", ["daily report: 42 orders", "state saved to .trioflow/daily-report-v1.json"]),
]


@pytest.mark.parametrize(("example", "printed"), SEED_000)
def test_seed_example_prints_what_the_seed_says(
    example: str, printed: list[str], tmp_path: pathlib.Path
) -> None:
    assert _run_example(example, tmp_path).stdout.splitlines() == printed


@pytest.mark.parametrize(("example", "printed"), SEED_000)
def test_the_examples_import_runtime_as_rt(example: str, printed: list[str]) -> None:
    lines = (REPO / "examples" / example).read_text().splitlines()
    assert "import runtime as rt" in lines
    assert not any(line.startswith(("import railtracks", "from railtracks")) for line in lines)


def test_saved_state_examples_write_their_state_file(tmp_path: pathlib.Path) -> None:
    _run_example("greet_multiple.py", tmp_path)
    import runtime as rt

    state = rt.read_state_file(tmp_path / ".trioflow" / "greet-multiple-flow.json")
    assert state.status is rt.Status.COMPLETED
    assert state.context == {"user_id": "123"}
    assert [r.node for r in state.requests.values()] == ["greet_multiple", "greet", "greet"]


def test_running_a_saved_state_example_twice_warns_about_the_overwrite(tmp_path: pathlib.Path) -> None:
    _run_example("tracked_execution.py", tmp_path)
    second = _run_example("tracked_execution.py", tmp_path)
    assert "State file .trioflow/daily-report-v1.json already exists, overwriting." in second.stderr


def test_timeout_and_errors_example(tmp_path: pathlib.Path) -> None:
    lines = _run_example("timeout_and_errors.py", tmp_path).stdout.splitlines()
    assert re.fullmatch(
        r"timeout: Flow 'lookup-timeout' \(run run-[0-9a-f]{12}\) timed out after 0\.1 s; every node of it was "
        r"cancelled and its finally blocks ran\.",
        lines[0],
    )
    assert lines[1:] == [
        "  cleaned up: ['patient', 'slow_lookup(60)']",
        "  run state: timed_out; requests: patient=cancelled, slow_lookup=cancelled",
        "end_on_error=False: ['fallback (lookup service refused the connection)', 'looked up in 0.05 s']",
        "  cleaned up: ['slow_lookup(0.05)']",
        "end_on_error=True: the run failed with ConnectionError: lookup service refused the connection",
        "  note: raised in node 'flaky_lookup', request path: lookup_all > flaky_lookup (r2)",
        "  cleaned up: ['slow_lookup(0.05)']",
        "  run state: failed; requests: lookup_all=cancelled, flaky_lookup=failed, slow_lookup=cancelled",
    ]
