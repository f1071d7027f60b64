"""``python -m benchmarks.compat.railtracks``: Railtracks' own tests, run on trioflow under Trio.

Exports Railtracks' integration tests from a local git checkout of
``RailtownAI/railtracks`` (nothing is fetched) into a temporary directory,
then runs the ones listed in ``tests.txt`` with pytest, under Trio, against
the shim package in ``shim/`` (a ``railtracks`` that only maps names onto
``runtime``). Prints the pass count and the failures grouped by their
one-line reason. Nothing of Railtracks' suite is kept in this repository.

``tests.txt`` lists the model-free integration tests: every test of
``context/``, ``interaction/``, ``orchestration/``, ``run/``,
``test_session.py`` and ``test_state.py`` at the default commit that passes
on railtracks 1.7.0 (pytest-asyncio, ``asyncio_mode=auto``) and whose code
names no model (``llm``, ``agent_node``, ``ToolCall``, message histories).
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import pathlib
import re
import subprocess
import sys
import tarfile
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
DEFAULT_REPO = "/work/.mirror/RailtownAI+railtracks/repo"
#: The newest commit of the mirror before railtracks 1.7.0 was released (2026-08-21).
DEFAULT_COMMIT = "a0bf89dccd526d72ce8497d8438e42d7a66ca00b"
TESTS_DIR = "packages/railtracks/tests"


def export(repo: str, commit: str, into: pathlib.Path) -> pathlib.Path:
    """Write the integration tests at *commit* of the git dir *repo* under *into*; return the package root."""
    paths = [f"{TESTS_DIR}/__init__.py", f"{TESTS_DIR}/conftest.py", f"{TESTS_DIR}/integration_tests"]
    try:
        archive = subprocess.run(
            ["git", f"--git-dir={repo}", "archive", "--format=tar", commit, *paths],
            check=True,
            capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = (
            exc.stderr.decode(errors="replace").strip()
            if isinstance(exc, subprocess.CalledProcessError)
            else exc
        )
        sys.exit(
            f"Cannot export Railtracks' tests from {repo!r} at {commit}: {detail}. "
            "Pass --repo with the git dir of a RailtownAI/railtracks checkout; the harness fetches nothing."
        )
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "packages" / "railtracks"


def normalise(reason: str) -> str:
    """A failure reason with run ids, hex ids and addresses blanked, so equal causes group together."""
    reason = re.sub(r"0x[0-9a-f]+", "0x…", reason)
    reason = re.sub(r"\b(run|job)-[0-9a-f]{8,}\b", r"\1-…", reason)
    reason = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "…", reason)
    return reason if len(reason) <= 160 else reason[:157] + "..."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compat.railtracks", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--repo",
        default=os.environ.get("RAILTRACKS_REPO", DEFAULT_REPO),
        help="git dir of a railtracks checkout",
    )
    parser.add_argument("--commit", default=DEFAULT_COMMIT)
    parser.add_argument("--tests", default=str(HERE / "tests.txt"), help="the test ids to run, one a line")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="list every failing test under its reason"
    )
    parser.add_argument("--json", help="also write each test's outcome and reason to this file")
    parser.add_argument("--min", type=int, default=0, help="exit 1 if fewer tests pass")
    args = parser.parse_args(argv)

    wanted = [line.strip() for line in pathlib.Path(args.tests).read_text().splitlines()]
    wanted = [line for line in wanted if line and not line.startswith("#")]
    with tempfile.TemporaryDirectory(prefix="railtracks-compat-") as tmp:
        root = export(args.repo, args.commit, pathlib.Path(tmp))
        listed = pathlib.Path(tmp) / "tests.txt"
        listed.write_text("\n".join(wanted) + "\n")
        results_path = pathlib.Path(tmp) / "results.json"
        (root / "pytest.ini").write_text("[pytest]\n")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(HERE / "shim"), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
            ),
            "COMPAT_TESTS": str(listed),
            "COMPAT_RESULTS": str(results_path),
            "RAILTRACKS_TEST_MODE": "1",
        }
        files = sorted({test.split("::", 1)[0] for test in wanted})
        command = [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
            "-p", "benchmarks.compat.railtracks._plugin", "--timeout=60", "-W", "ignore::DeprecationWarning",
            "--continue-on-collection-errors",
            *files,
        ]  # fmt: skip
        proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
        if os.environ.get("COMPAT_DEBUG"):
            print(proc.stdout[-20000:], proc.stderr[-4000:], sep="\n")
        if not results_path.exists():
            print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
            sys.exit("pytest ended before it wrote the results (see its output above).")
        results: dict[str, dict[str, str]] = json.loads(results_path.read_text())

    for test in wanted:
        results.setdefault(
            test, {"outcome": "not collected", "reason": "not collected (its module did not load?)"}
        )
    passed = sorted(t for t in wanted if results[t]["outcome"] == "passed")
    failing = [t for t in wanted if results[t]["outcome"] != "passed"]
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for test in failing:
        groups[normalise(results[test]["reason"] or results[test]["outcome"])].append(test)

    print(f"Railtracks' model-free integration tests on trioflow, under Trio (railtracks {args.commit[:10]})")
    print(f"passed {len(passed)} of {len(wanted)}; failing {len(failing)}")
    if groups:
        print("\nfailures by reason:")
    for reason, tests in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        print(f"{len(tests):4d}  {reason}")
        shown = tests if args.verbose else tests[:2]
        for test in shown:
            print(f"        {test.removeprefix('tests/integration_tests/')}")
        if len(tests) > len(shown):
            print(f"        ... and {len(tests) - len(shown)} more")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({t: results[t] for t in wanted}, indent=1))
    return 1 if len(passed) < args.min else 0


if __name__ == "__main__":
    sys.exit(main())
