"""Seed 003's examples (Routilux state management), with only their import lines changed, print what their code implies.

Each runs as its own program from the repository root, as a user would run it.
"""

import ast
import datetime
import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = [
    "routilux_state_basics.py",
    "routilux_routine_state.py",
    "routilux_shared_data.py",
    "routilux_history.py",
    "routilux_stateful_workflow.py",
]


def _run_example(name: str, cwd: pathlib.Path) -> list[str]:
    """Run ``examples/{name}`` from *cwd* (a test's ``tmp_path``), importing this checkout's packages."""
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
    assert proc.stderr == ""
    return proc.stdout.splitlines()


@pytest.mark.parametrize("example", EXAMPLES)
def test_only_the_imports_changed(example: str) -> None:
    lines = (REPO / "examples" / example).read_text().splitlines()
    assert lines[0] == "from runtime import Flow, Routine"
    imports = [line.strip() for line in lines if "import" in line]
    assert set(imports) <= {"from runtime import Flow, Routine", "from runtime import JobState"}
    assert not any("routilux" in line for line in imports)


def test_step_1_jobstate_basics(tmp_path: pathlib.Path) -> None:
    status, flow_id, created, records, processor = _run_example("routilux_state_basics.py", tmp_path)
    assert status == "Status: completed"
    assert flow_id == "Flow ID: jobstate_flow"
    assert created.startswith("Created at: ")
    assert datetime.datetime.fromisoformat(created.removeprefix("Created at: ")).tzinfo is not None
    assert records == "Execution records: 2"  # one emission each: source, then processor
    assert processor == "Processor state: {'last_processed': 'test', 'processed': True}"


def test_step_2_routine_state(tmp_path: pathlib.Path) -> None:
    assert _run_example("routilux_routine_state.py", tmp_path) == [
        "Processed: 3",
        "Errors: 0",
        "Last processed: routilux",
    ]


def test_step_3_shared_data(tmp_path: pathlib.Path) -> None:
    collected, count, *entries = _run_example("routilux_shared_data.py", tmp_path)
    assert collected == "Collected items: ['a', 'b', 'c']"
    assert count == "Log entries: 6"
    logged = [ast.literal_eval(line.strip()) for line in entries]
    assert len(logged) == 6
    for entry in logged:
        datetime.datetime.fromisoformat(entry.pop("timestamp"))
    # Each routine handles its messages in order; the two routines run concurrently.
    assert [e for e in logged if e["action"] == "collected"] == [
        {"action": "collected", "data": item, "routine": "collector"} for item in "abc"
    ]
    processed = [e for e in logged if e["action"] == "processed"]
    assert [e["data"] for e in processed] == ["a", "b", "c"]
    for entry in processed:
        assert re.fullmatch(rf"Processed [0-3] items, current: {entry['data']}", entry["result"])


def test_step_4_history_records_one_entry_per_emission(tmp_path: pathlib.Path) -> None:
    total, per_processor, *records = _run_example("routilux_history.py", tmp_path)
    assert total == "Total records: 6"
    assert per_processor == "Processor executions: 3"
    parsed = [re.fullmatch(r"  (\w+): (\w+) at (.+)", line) for line in records]
    assert all(parsed)
    # The source emits all three items in one handler call, before the processor handles any.
    assert [(m[1], m[2]) for m in parsed if m] == [("source", "output")] * 3 + [("processor", "output")] * 3
    stamps = [datetime.datetime.fromisoformat(m[3]) for m in parsed if m]
    assert stamps == sorted(stamps)


def test_step_5_stateful_workflow(tmp_path: pathlib.Path) -> None:
    assert _run_example("routilux_stateful_workflow.py", tmp_path) == [
        *(f"Aggregated: item_{i} (valid=True)" for i in range(5)),
        "",
        "=== Execution State ===",
        "Source generated: 5",
        "Validator - Valid: 5, Invalid: 0",
        "Aggregator - Total: 5, Valid: 5",
        "",
        "Execution status: completed",
    ]
