"""Crash tests: a generated flow, killed with SIGKILL at a random record, then resumed.

Each example builds a flow from a seed (``crashflows.build``), runs it once
in this process for reference, then in a child process with a run store,
which SIGKILLs itself as its subscriber sees record *k* (*k* drawn among the
run's records but the last) while the store's writer may be committing. Then the store must
pass SQLite's integrity check, show no partial transaction, and resuming the
run must end with the reference's status, result and request tree.
Hypothesis draws the seed and *k*: a failure prints both (and a blob to
replay it); ``crashflows.build(seed)`` rebuilds the flow.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING

import crashflows
import trio
from hypothesis import given, note, settings
from hypothesis import strategies as st

import runtime as rt

if TYPE_CHECKING:
    import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

_CHILD = textwrap.dedent(
    """
    import os
    import signal
    import sys

    import trio

    import crashflows
    import runtime as rt

    path, seed, crash_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    name, entry = crashflows.build(
        seed, pause=0.002, on_start=lambda: print("started", rt.idempotency_key(), flush=True)
    )
    seen = 0


    def count(event: rt.Event) -> None:
        global seen
        seen += 1
        if seen == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)


    async def main() -> None:
        store = rt.SQLiteStore(path)
        async with store:
            await rt.Flow(name, entry_point=entry, store=store, subscribers=[count]).arun(0)


    trio.run(main)
    """
)


def _tree(state: rt.JobState) -> list[tuple[tuple[str, ...], str, str | None]]:
    """Each request's path, status and result, sorted (a batch's members start in any order)."""
    return sorted((state.request_path(r.id), r.status.value, r.result) for r in state.requests.values())


def _crash(tmp: Path, seed: int, crash_at: int) -> tuple[Path, set[str]]:
    """Run flow *seed* in a child process that SIGKILLs itself at record *crash_at*.

    Returns its store, and the call keys of the ``idempotent=False`` calls that started.
    """
    script, path = tmp / "child.py", tmp / "runs.db"
    script.write_text(_CHILD)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO)])}
    start = time.perf_counter()
    child = subprocess.run(
        [sys.executable, str(script), str(path), str(seed), str(crash_at)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=30,
        check=False,
    )
    note(
        f"child: exit {child.returncode} after {time.perf_counter() - start:.2f} s; stderr: {child.stderr[-2000:]}"
    )
    assert child.returncode == -9, "the child was to die of SIGKILL at the record drawn"
    started = {line.split(":", 1)[1] for line in child.stdout.splitlines() if line.startswith("started ")}
    return path, started


def _check_sound(path: Path) -> list[tuple[str, str]]:
    """Integrity ok, and no partial transaction: each run's row and records agree. Returns (run id, status)."""
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        runs = conn.execute("SELECT run_id, status FROM runs").fetchall()
        records = conn.execute("SELECT run_id, seq, kind FROM records ORDER BY run_id, seq").fetchall()
    assert {run_id for run_id, _, _ in records} == {run_id for run_id, _ in runs}
    for run_id, status in runs:
        kinds = [kind for rid, _, kind in records if rid == run_id]
        seqs = [seq for rid, seq, _ in records if rid == run_id]
        assert seqs == list(range(len(seqs)))  # a gap-free prefix of the run's records
        assert kinds[0] == "run_started"
        # The run's row is updated in the transaction that commits its run_finished record.
        assert (status != "running") == ("run_finished" in kinds)
    return runs


# At least 10 an ordinary CI run (its profile gives 40 examples), more in the thorough profile.
@settings(max_examples=max(10, settings.default.max_examples // 4))
@given(seed=st.integers(min_value=0, max_value=2**32 - 1), crash_draw=st.integers(min_value=0))
def test_a_generated_flow_killed_at_a_random_record_resumes_as_if_it_never_crashed(
    tmp_path_factory: pytest.TempPathFactory, seed: int, crash_draw: int
) -> None:
    """Invariant: SIGKILL at any record leaves a sound store, and crash + resume = the uncrashed run."""
    name, entry = crashflows.build(seed)

    async def reference() -> tuple[rt.RunResult[int], int]:
        seen: list[rt.Event] = []
        result = await rt.Flow(name, entry_point=entry, subscribers=[seen.append]).arun(0)
        return result, len(seen)

    uncrashed, records = trio.run(reference)
    crash_at = 1 + crash_draw % (records - 1)  # any record but the last, run_finished
    note(f"seed {seed}: {records} records, killed at record {crash_at}; tree: {_tree(uncrashed.state)}")
    tmp = tmp_path_factory.mktemp("crash")
    path, started = _crash(tmp, seed, crash_at)
    note(f"idempotent=False calls started: {sorted(started)}")
    runs = _check_sound(path)
    assert runs or not started  # such a call starts only once the store has committed the run's start
    if not runs:
        return  # killed before the store committed the run's start: there is nothing to resume
    ((run_id, status),) = runs
    with sqlite3.connect(path) as conn:
        created = {
            key for (key,) in conn.execute("SELECT call_key FROM records WHERE kind = 'request_created'")
        }
    assert started <= created  # ... and that the call started
    store = rt.SQLiteStore(path)
    if status == "running":
        flow = rt.Flow(name, entry_point=entry, store=store)
        resumed = trio.run(flow._aresume, run_id, ...)
        if isinstance(resumed.error, rt.ResumeError):  # an idempotent=False call was cut short
            refused = str(resumed.error).split("'")[3]
            assert refused in started, f"refused to run again {refused!r}, which never started"
            resumed = trio.run(functools.partial(flow._aresume, run_id, ..., rerun=True))
        assert resumed.status is uncrashed.status
        assert resumed.result == uncrashed.result
        assert _tree(resumed.state) == _tree(uncrashed.state)
    stored = trio.run(store.state, run_id)
    assert stored.status is uncrashed.status
    assert _tree(stored) == _tree(uncrashed.state)
