"""examples/fuzz_my_flow.py runs as written and reports the bug it finds, shrunk."""

import os
import pathlib
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_fuzz_my_flow_reports_the_shrunk_bug(tmp_path: pathlib.Path) -> None:
    proc = subprocess.run(
        [sys.executable, REPO / "examples" / "fuzz_my_flow.py"],
        cwd=tmp_path,  # what it writes (Hypothesis' database) goes there, not into the repository
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "runtime.testing found a bug in the quote workflow."
    what = next(line for line in lines if line.startswith("What went wrong: "))
    assert "it was priced with another run's customer" in what
    # The counterexample is shrunk: two customers, one short delay.
    start = lines.index("The smallest case Hypothesis could shrink it to:")
    example = lines[start + 1 : start + 5]
    assert example[0].strip().endswith("test_concurrent_quotes_are_isolated(")
    names = re.fullmatch(r"names=\['(\w+)', '(\w+)'\],", example[1].strip())
    assert names is not None, example
    assert names.group(1) != names.group(2)
    assert example[2].strip().startswith("schedule=Schedule((0.")
    assert example[3].strip() == ")"
    assert "Fix: keep per-run data in rt.context" in proc.stdout
