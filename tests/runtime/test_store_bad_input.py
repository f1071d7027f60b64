"""Durable runs, bad input: each a clear error, and nothing written to the store or lost from it.

The rest of issue 16's list is tested beside the feature it guards: a newer
schema, a file that is not a database, a directory (test_store.py); a run
that completed, an unknown id, another flow's run, a changed definition, a
run held in this process (test_resume.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio

import runtime as rt

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[2]


@rt.function_node
async def leaf(i: int) -> int:
    return i


@rt.function_node
async def add(n: int) -> int:
    return sum([await rt.call(leaf, i) for i in range(n)])


def _files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir()}


def test_a_truncated_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    flow = rt.Flow("add", entry_point=add, store=rt.SQLiteStore(path))
    for _ in range(20):
        flow.run(40)
    whole = path.read_bytes()
    assert len(whole) > 3 * 4096
    for cut in (len(whole) // 2, 4096, 100):
        path.write_bytes(whole[:cut])
        before = _files(tmp_path)
        message = (
            rf"^Cannot use the run store '{path}': database disk image is malformed\. The file is damaged "
            r"\(truncated or corrupt\); nothing was written to it\. Restore it from a backup, or give a new path\.$"
        )
        store = rt.SQLiteStore(path)
        with pytest.raises(rt.StoreError, match=message):
            flow.run(1)  # the run does not start: it would not be kept
        with pytest.raises(rt.StoreError, match=message):
            flow.resume("run-1")
        with pytest.raises(rt.StoreError, match=message):
            trio.run(store.runs)
        assert _files(tmp_path) == before, f"cut at {cut} bytes: the store's files changed"


def test_a_store_in_a_directory_nobody_may_write_is_refused() -> None:
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc, a file system no process may create files in")
    path = Path("/proc/trioflow-runs.db")
    with pytest.raises(
        rt.StoreError,
        match=r"^Cannot (use|open) the run store '/proc/trioflow-runs\.db': .*(read-only|unable to open database file)",
    ):
        rt.Flow("add", entry_point=add, store=rt.SQLiteStore(path)).run(1)
    assert not path.exists()


@contextlib.contextmanager
def _without_root() -> Iterator[None]:
    """Under root (CI's containers), act as ``nobody`` for the block: root may write any file, however it is marked."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_a_read_only_store_file_is_refused_for_writing_and_still_read() -> None:
    directory = Path(tempfile.mkdtemp())  # in /tmp, which nobody may traverse (tmp_path's parents are root's)
    try:
        directory.chmod(0o777)
        path = directory / "runs.db"
        store = rt.SQLiteStore(path)
        flow = rt.Flow("add", entry_point=add, store=store)
        run_id = flow.run(3).state.run_id
        path.chmod(0o444)
        before = _files(directory)
        with _without_root():
            with pytest.raises(
                rt.StoreError,
                match=rf"^Cannot use the run store '{path}': its file '{path}' is read-only\. Make the file and its "
                r"directory writable \(SQLite keeps runs\.db-wal and runs\.db-shm beside it\), or give another path\.$",
            ):
                flow.run(1)
            assert _files(directory) == before
            assert [summary.run_id for summary in trio.run(store.runs)] == [run_id]
    finally:
        shutil.rmtree(directory)


async def test_a_run_whose_arguments_are_not_json_cannot_be_resumed_and_the_message_names_them(
    tmp_path: Path,
) -> None:
    @rt.function_node
    async def size(items: object, *, limit: object = None) -> int:
        raise RuntimeError("down")

    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = rt.Flow("size", entry_point=size, store=store)
    run_id = (await flow.arun(["ok", {1, 2}], limit=(1, 2))).state.run_id
    with pytest.raises(
        rt.ResumeError,
        match=r"cannot be started again: its entry's arguments \(\$\.args\[0\]\[1\], \$\.kwargs\.limit\) were "
        r"not JSON values, so the store did not keep them\. Start a new run with JSON arguments",
    ):
        await flow.aresume(run_id)
    (summary,) = await store.runs()
    assert (summary.status, summary.attempts) == (rt.Status.FAILED, 1)  # refused: nothing changed


_HOLDER = textwrap.dedent(
    """
    import sys

    import runtime as rt


    # idempotent=False: the node runs only once the store has committed that it started.
    @rt.function_node(idempotent=False)
    async def wait() -> str:
        print("running", flush=True)
        return sys.stdin.readline().strip()  # until the test says


    flow = rt.Flow("held", entry_point=wait, store=rt.SQLiteStore(sys.argv[1]))
    if sys.argv[2] == "start":
        flow.run()
    else:
        print(flow.resume(sys.argv[2], rerun=True), flush=True)
    """
)


def test_two_processes_resuming_one_run_the_second_is_refused_until_the_first_ends(tmp_path: Path) -> None:
    """Invariant: one process at a time runs a run; a dead holder does not keep it."""
    script, db = tmp_path / "held.py", str(tmp_path / "runs.db")
    script.write_text(_HOLDER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def start(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(script), db, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )

    with start("start") as first:
        assert first.stdout is not None
        assert first.stdin is not None
        assert first.stdout.readline() == "running\n"
        first.kill()  # dies holding the run: status running, its pid gone
    assert first.wait() == -9
    (summary,) = trio.run(rt.SQLiteStore(db).runs)
    run_id = summary.run_id
    assert summary.status is rt.Status.RUNNING
    with start(run_id) as holder:
        assert holder.stdout is not None
        assert holder.stdin is not None
        assert holder.stdout.readline() == "running\n"  # the dead process's hold did not count
        with pytest.raises(
            rt.ResumeError,
            match=rf"is being run by process {holder.pid}, which is alive; one process at a time runs a run\.",
        ):
            trio.run(_resume_as_holder, db, run_id)
        holder.stdin.write("done\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == "done\n"
    assert holder.wait() == 0
    (summary,) = trio.run(rt.SQLiteStore(db).runs)
    assert (summary.status, summary.attempts) == (rt.Status.COMPLETED, 2)


async def _resume_as_holder(db: str, run_id: str) -> object:
    """Resume *run_id* with a flow of the holder's name and fingerprint (its name, its entry's name)."""

    @rt.function_node
    async def wait() -> str:
        raise AssertionError("refused: never runs")

    return await rt.Flow("held", entry_point=wait, store=rt.SQLiteStore(db)).aresume(run_id)
