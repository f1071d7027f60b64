"""What the record-path tests share: a collecting recorder, two small routine graphs, a crash.

Imported by ``test_record.py`` (recorders), ``test_store.py`` (the run store) and
``test_resume.py`` (resuming stored runs).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import trio

import runtime as rt

if TYPE_CHECKING:
    from collections.abc import Sequence

REPO = Path(__file__).resolve().parents[2]


def kill_after_commits(tmp_path: Path, script: str, after: int) -> tuple[Path, int]:
    """Run *script* on a new run store and SIGKILL it once *after* records are committed.

    *script* gets the database path as its argument and prints ``committed N``
    after each commit. The store left behind passes SQLite's integrity check.
    Returns the store's path and the last count the child reported.
    """
    source = tmp_path / "crash.py"
    source.write_text(script)
    path = tmp_path / "runs.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        [sys.executable, str(source), str(path)], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO
    ) as child:
        assert child.stdout is not None
        committed = 0
        while committed < after:
            line = child.stdout.readline()
            assert line, f"the child ended (exit code {child.wait()}) before committing {after} records"
            committed = int(line.split()[1])
        child.send_signal(signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    return path, committed


class Collect:
    """A recorder that keeps every batch it is given."""

    def __init__(self) -> None:
        self.batches: list[list[rt.Event]] = []

    async def record(self, records: Sequence[rt.Event]) -> None:
        self.batches.append(list(records))

    @property
    def records(self) -> list[rt.Event]:
        """Every record, in the order the run made them."""
        return [r for batch in self.batches for r in batch]


class Counter(rt.Routine):
    """A handler that changes its job's state every public way, then emits and sends an output."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.count)
        self.define_event("counted", ["n"])

    def count(self, data: int = 0, **kwargs: object) -> None:
        ctx = self.get_execution_context()
        assert ctx is not None
        ctx.job_state.update_routine_state(ctx.routine_id, {"seen": data})
        ctx.job_state.update_shared_data("last", data)
        ctx.job_state.append_to_shared_log({"message": "counted"})
        self.emit("counted", n=data)
        self.send_output("total", n=data)


class _Slow(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.wait)

    async def wait(self, **kwargs: object) -> None:
        await trio.sleep(10)


class _Fan(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger", handler=self.go)
        self.define_event("out", ["i"])

    def go(self) -> None:
        for i in range(3):
            self.emit("out", i=i)


def fan_into_slow(**settings: object) -> rt.Flow[..., object]:
    """A graph 'fan' -> 'slow': three messages to a routine that takes 10 s over each, so a cancel leaves two undelivered."""
    flow: rt.Flow[..., object] = rt.Flow(flow_id="undelivered", **settings)  # type: ignore[arg-type]
    flow.add_routine(_Fan(), "fan")
    flow.add_routine(_Slow(), "slow")
    flow.connect("fan", "out", "slow", "input")
    return flow
