"""The layering of STYLE.md §1, as the import-linter contracts in pyproject.toml check it.

``lint-imports`` runs in a subprocess: it reads the tree from the directory it
runs in, so a copy of the tree with one bad import added is checked as itself,
not as the ``runtime`` this process has imported.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LINT, "--no-cache", "--no-logo"],
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_tree_keeps_every_layer_contract() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "broken"),
    [
        # the kernel reaches up into the runtime
        ("actors/_util.py", "from runtime import _flow", "actors._util -> runtime._flow"),
        # records/state reach up into sessions
        ("runtime/_state.py", "from runtime import _session", "runtime._state -> runtime._session"),
        # the node-run engine reaches across into the graph engine
        ("runtime/_call.py", "from runtime import _job", "runtime._call -> runtime._job"),
        # the runtime depends on the users' fuzz kit
        ("runtime/_flow.py", "import runtime.testing._faults", "runtime._flow -> runtime.testing._faults"),
        # the runtime reaches past the kernel's public face
        ("runtime/_flow.py", "from actors._cell import Cell", "runtime._flow -> actors._cell"),
    ],
    ids=[
        "kernel-imports-runtime",
        "state-imports-sessions",
        "engines-cross",
        "runtime-imports-testing",
        "runtime-imports-kernel-internals",
    ],
)
def test_a_deliberate_bad_import_breaks_a_contract(
    tmp_path: Path, module: str, bad_import: str, broken: str
) -> None:
    for package in ("actors", "runtime"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / module).open("a", encoding="utf-8") as file:
        file.write(f"\n{bad_import}  # a deliberate bad import\n")
    result = _lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    # The report names the offending import with its line: the one just added, at the end.
    line = len((tmp_path / module).read_text(encoding="utf-8").splitlines())
    assert f"{broken} (l.{line})" in result.stdout, result.stdout
