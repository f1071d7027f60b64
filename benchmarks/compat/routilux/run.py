"""Run Routilux 0.10's own test suite against trioflow, through a shim that only maps names.

    python benchmarks/compat/routilux/run.py [--repo GIT_DIR] [--ref v0.10.0]
                                             [--tests DIR] [--serilux WHEEL_OR_DIR] [--list]

Exports ``tests/`` at *ref* from a Routilux git directory (or copies a tests
directory given with ``--tests``) into a temporary directory, drops
``test_serialization_utils.py`` (serilux's own helpers) and
``test_execution_tracker_comprehensive.py`` (monitoring), installs serilux
0.3.1 into that directory (or uses the wheel or directory given), and runs
the tests with ``shim/`` first on the path: its ``routilux`` package maps
Routilux's names onto trioflow and nothing else. Prints the passed and
failed counts, the failures grouped by reason, and with ``--list`` one line
per failure.

Nothing here runs in CI, and the suite's code never enters this repository:
it lives in the temporary directory, removed at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = pathlib.Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]  # the trioflow checkout this script belongs to
DEFAULT_MIRROR = "/work/.mirror/lzjever+routilux/repo"
DROPPED = ("test_serialization_utils.py", "test_execution_tracker_comprehensive.py")
SERILUX = "serilux==0.3.1"
PYTEST_INI = """\
[pytest]
python_files = test_*.py
markers =
    unit: unit tests
    integration: integration tests
    slow: slow tests
    persistence: persistence tests
    resume: resume tests
"""

# (group, pattern on "ErrorType: message"): the first that matches names the group.
GROUPS: list[tuple[str, str]] = [
    ("Routilux-private machinery", r"RoutiluxPrivateError|has no attribute '_"),
    (
        "slot.receive() raises what the handler raises (no job state outside a job)",
        r"\.receive\(\.\.\., (job_state|flow)=|Should have at least \d+ error records",
    ),
    ("public Routilux name trioflow lacks (Connection, ExecutionTracker, ...)", r"NotInTrioflowError"),
    (
        "execution_strategy / max_workers / shutdown",
        r"execution_strategy|max_workers|shutdown|set_execution_strategy",
    ),
    ("Flow(execution_timeout=...): trioflow's Flow(timeout=...)", r"execution_timeout"),
    ("JobState() without a job id or flow id", r"JobState\.__init__\(\) missing \d required positional"),
    (
        "JobState.serialize / deserialize / save / load",
        r"'JobState' object has no attribute '(serialize|deserialize|save|load)'",
    ),
    ("emit(..., flow=...)", r"undeclared parameter\(s\) 'flow'|unexpected keyword argument 'flow'"),
    (
        "deserialize needs allow= (serilux's global registry is not read)",
        r"is not allowed, so nothing was imported",
    ),
    ("a Routilux-format document (no 'format'/'version')", r"its format is None"),
    ("a Routilux-format document (no 'format'/'version')", r"it is a Routilux \(serilux\) document"),
    ("JobState.pending_tasks is read-only (a job's undelivered messages)", r"property 'pending_tasks'"),
    (
        "flow.resume(job_state) of a state that is not a running job (a saved graph job is not resumed)",
        r"Cannot resume\(\) job .* not a running job",
    ),
    ("Routilux's document keys (_type, _config)", r"KeyError: '_(type|config)'|_config"),
    ("a plain function as a handler cannot be serialized", r"which is not a method of its routine"),
    ("critical routines (is_critical, set_as_critical)", r"critical|set_as_optional"),
    ("param_mapping / Connection", r"param_mapping|Connection"),
    ("a mutable ErrorHandler", r"FrozenInstanceError|retry_count|'ErrorHandler' object has no attribute"),
    ("wait_for_completion's polling options (stability_checks, ...)", r"stability_checks|progress_callback"),
    (
        "Flow.wait_for_completion / error_handler / Routine.config",
        r"wait_for_completion|'Flow' object has no attribute 'error_handler'|'config'",
    ),
    ("routine states ({'status': ...})", r"routine_states|get_routine_state"),
    ("strict entry routines (an entry needs a slot)", r"has no slot to start a job with"),
    ("emit only inside a job", r"was called outside a job"),
    (
        "execute() returns when the job has ended (nothing left to pause)",
        r"Cannot pause\(\) job .* not a running job",
    ),
    ("Slot / Event made outside a routine", r"(Slot|RoutineEvent)\.__init__\(\)"),
    ("a routine called as the entry (Routine.__call__)", r"'\w+' object is not callable"),
    (
        "slot.receive() raises what the handler raises (no job state outside a job)",
        r"\.receive\(\.\.\., (job_state|flow)=|^ValueError: Handler error$|no_match_handler\(\) missing",
    ),
    ("an unknown merge strategy is refused", r"merge_strategy=.*: choose 'override', 'append'"),
    ("events declare their parameters (an undeclared one emitted)", r"with undeclared parameter\(s\)"),
    ("Slot.serialize (a slot is written in its routine's document)", r"'Slot' object has no attribute '(de)?serialize'"),
    (
        "handlers called by their signature",
        r"does not accept|carries .*, which the handler|unexpected keyword argument|missing \d+ required positional",
    ),
    (
        "Slot/Event connect, receive, get_slot/get_event (Routilux wiring)",
        r"has no attribute '(connect|receive|get_slot|get_event|routine|output_params)'",
    ),
    ("a Routilux attribute or method trioflow lacks", r"has no attribute"),
    (
        "wait_for_completion on a hand-made state (tests mock Routilux's _task_queue)",
        r"Should complete successfully",
    ),
    ("a status string that is not a status is refused", r"JobState\.status=.*a status is one of"),
    ("Routilux's error wording", r"Regex pattern did not match|DID NOT RAISE"),
    ("a job's status or result differs", r"^AssertionError|^assert "),
]


def export_tests(args: argparse.Namespace, work: pathlib.Path) -> pathlib.Path:
    target = work / "tests"
    if args.tests:
        shutil.copytree(args.tests, target)
    else:
        archive = subprocess.run(
            ["git", f"--git-dir={args.repo}", "archive", args.ref, "tests"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
    for name in DROPPED:
        (target / name).unlink(missing_ok=True)
    (work / "pytest.ini").write_text(PYTEST_INI, encoding="utf-8")
    return target


def install_serilux(args: argparse.Namespace, work: pathlib.Path) -> pathlib.Path:
    if args.serilux and pathlib.Path(args.serilux).is_dir() and not str(args.serilux).endswith(".whl"):
        return pathlib.Path(args.serilux)
    site = work / "site"
    source = args.serilux or SERILUX
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), source],
        check=True,
    )
    return site


def run_suite(work: pathlib.Path, site: pathlib.Path, extra: list[str]) -> pathlib.Path:
    junit = work / "junit.xml"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE / "shim"), str(site), str(REPO_ROOT)])
    env.pop("HYPOTHESIS_PROFILE", None)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(work / "pytest.ini"),
            "--rootdir",
            str(work),
            "-p",
            "routilux_compat_plugin",
            f"--junitxml={junit}",
            "--timeout=60",
            "-o",
            "junit_family=xunit1",
            *extra,
        ],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        check=False,
    )
    return junit


def one_line(message: str) -> str:
    line = next((part.strip() for part in message.splitlines() if part.strip()), "")
    return line


def group_of(reason: str) -> str:
    for group, pattern in GROUPS:
        if re.search(pattern, reason):
            return group
    return "other: " + re.sub(r"'[^']*'|\d+", "…", reason)[:90]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=DEFAULT_MIRROR, help="a Routilux git directory")
    parser.add_argument("--ref", default="v0.10.0", help="the tag or commit whose tests run")
    parser.add_argument("--tests", help="a Routilux tests/ directory, instead of --repo/--ref")
    parser.add_argument("--serilux", help="a serilux 0.3.1 wheel, or a directory it is installed in")
    parser.add_argument("--list", action="store_true", help="one line per failing test")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args()

    work = pathlib.Path(tempfile.mkdtemp(prefix="routilux-compat-"))
    try:
        export_tests(args, work)
        site = install_serilux(args, work)
        junit = run_suite(work, site, args.pytest_args)
        cases = ET.parse(junit).getroot().iter("testcase")
        passed, failed, skipped = 0, [], 0
        for case in cases:
            name = f"{pathlib.Path(case.get('file') or case.get('classname', '')).name}::{case.get('name')}"
            bad = case.find("failure")
            if bad is None:
                bad = case.find("error")
            if bad is not None:
                reason = one_line(bad.get("message") or bad.text or "")
                used = [p.get("value", "") for p in case.iter("property") if p.get("name") == "stand_ins"]
                if used and "NotInTrioflowError" not in reason and "RoutiluxPrivateError" not in reason:
                    reason = f"{used[0]} (used inside the job), then {reason}"
                failed.append((name, reason, group_of(reason)))
            elif case.find("skipped") is not None:
                skipped += 1
            else:
                passed += 1
        total = passed + len(failed) + skipped
        print(
            f"Routilux {args.ref if not args.tests else args.tests} tests on trioflow: "
            f"{passed} passed, {len(failed)} failed, {skipped} skipped, of {total}"
        )
        groups = collections.Counter(group for _, _, group in failed)
        print("\nFailures by group:")
        for group, count in groups.most_common():
            print(f"  {count:4}  {group}")
        if args.list:
            print("\nFailures:")
            for name, reason, group in sorted(failed, key=lambda f: (f[2], f[0])):
                print(f"  [{group}] {name}: {reason[:220]}")
    finally:
        if args.keep:
            print(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
