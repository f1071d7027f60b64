"""Durable graph jobs: snapshots in the store, flow.resume(run_id) of a job, a durable pause."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing
from recording import REPO, kill_after_commits

import runtime as rt
from runtime import _graph_resume

if TYPE_CHECKING:
    from pathlib import Path

# -- a job that pauses itself, across two processes ------------------------------------

_APPROVALS = textwrap.dedent(
    """
    import sys

    import runtime as rt


    class Request(rt.Routine):
        def __init__(self):
            super().__init__()
            self.define_slot("ask", handler=self.ask)
            self.define_event("approved", ["amount"])

        def ask(self, amount):
            ctx = self.get_execution_context()
            ctx.job_state.pause(f"approve {amount}?")
            self.emit_deferred_event("approved", amount=amount)


    class Pay(rt.Routine):
        def __init__(self):
            super().__init__()
            self.paid = 0
            self.define_slot("pay", handler=self.pay)

        def pay(self, amount):
            self.paid += amount
            self.send_output("paid", amount=amount, total=self.paid)


    flow = rt.Flow(flow_id="approvals", store=rt.SQLiteStore(sys.argv[1]))
    flow.add_routine(Request(), "request")
    flow.add_routine(Pay(), "pay")
    flow.connect("request", "approved", "pay", "pay")

    if sys.argv[2] == "start":
        state = flow.execute("request", {"amount": 30})
        print(state.run_id, state.status)
    else:
        print(flow.resume(sys.argv[2])[0]["data"])
    """
)


def test_a_job_its_handler_paused_resumes_in_another_process_and_delivers_its_deferred_event(
    tmp_path: Path,
) -> None:
    script = tmp_path / "approvals.py"
    script.write_text(_APPROVALS)
    db = str(tmp_path / "runs.db")
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run(*args: str) -> str:
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, str(script), db, *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            check=True,
        )
        assert time.monotonic() - began < 3
        return done.stdout.strip()

    run_id, status = run("start").split()
    assert status == "paused"
    with sqlite3.connect(db) as conn:
        (document,) = [
            json.loads(s) for (s,) in conn.execute("SELECT state FROM snapshots WHERE run_id = ?", (run_id,))
        ]
    assert document["deferred"] == [["request", "approved", {"amount": 30}]]
    assert document["paused"] is True
    assert document["pause_reason"] == "approve 30?"
    assert run(run_id) == "{'amount': 30, 'total': 30}"
    (summary,) = trio.run(rt.SQLiteStore(db).runs)
    assert (summary.status, summary.attempts) == (rt.Status.COMPLETED, 2)


# -- snapshots and what a resume does with them --------------------------------------------

#: Messages the slow routine handled, by the attempt handling them: at least once.
handled: list[tuple[int, int]] = []
attempt = [1]


class Fan(rt.Routine):
    """Emits three messages, and counts its own calls on its instance."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.define_slot("go", handler=self.go)
        self.define_event("out", ["i"])

    def go(self) -> None:
        self.calls += 1
        ctx = self.get_execution_context()
        assert ctx is not None
        ctx.job_state.update_routine_state(ctx.routine_id, {"calls": self.calls})
        for i in range(3):
            self.emit("out", i=i)


class Slow(rt.Routine):
    """Takes 10 s over each message in the first attempt, none after."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.take)

    async def take(self, i: int) -> None:
        handled.append((attempt[0], i))
        if attempt[0] == 1:
            await trio.sleep(10)
        self.send_output("took", i=i)


def _fan_into_slow(store: rt.SQLiteStore, name: str = "fan") -> rt.Flow[..., object]:
    flow: rt.Flow[..., object] = rt.Flow(flow_id=name, store=store)
    flow.add_routine(Fan(), "fan")
    flow.add_routine(Slow(), "slow")
    flow.connect("fan", "out", "slow", "input")
    return flow


async def test_a_cancelled_job_goes_on_from_its_last_snapshot_and_its_in_flight_handler_runs_again(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_graph_resume, "SNAPSHOT_EVERY", 1)  # a snapshot at every quiet moment
    handled.clear()
    attempt[0] = 1
    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = _fan_into_slow(store)
    async with flow.open_job("fan") as job:
        await trio.sleep(1)  # slow is 1 s into its first message
        job.cancel()
        first = await job.wait()
    assert first.status is rt.Status.CANCELLED
    attempt[0] = 2
    outputs = await _fan_into_slow(store).aresume(first.run_id)
    assert [o["data"] for o in outputs] == [{"i": 0}, {"i": 1}, {"i": 2}]
    # The message in flight when the job stopped ran again; fan, done before the snapshot, did not.
    assert handled == [(1, 0), (2, 0), (2, 1), (2, 2)]
    state = await store.state(first.run_id)
    assert state.status is rt.Status.COMPLETED
    assert state.routine_states["fan"] == {"calls": 1, "status": "completed"}
    assert state.undelivered == []  # the first attempt's undelivered records were rolled back
    assert [h.data for h in state.history] == [{"i": 0}, {"i": 1}, {"i": 2}]


async def test_a_job_without_a_snapshot_starts_again_from_its_entry(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    handled.clear()
    attempt[0] = 1
    store = rt.SQLiteStore(tmp_path / "runs.db")
    async with _fan_into_slow(store).open_job("fan") as job:
        await trio.sleep(1)
        job.cancel()  # while slow's handler runs: no snapshot, and fewer records than SNAPSHOT_EVERY
    attempt[0] = 2
    resumed = await _fan_into_slow(store)._aresume(job.job_id, ...)
    assert resumed.state.routine_states["fan"] == {"calls": 1, "status": "completed"}  # a new instance, again
    assert handled == [(1, 0), (2, 0), (2, 1), (2, 2)]
    assert [h.data for h in (await store.state(job.job_id)).history] == [{"i": 0}, {"i": 1}, {"i": 2}]


# -- bad input -------------------------------------------------------------------------


async def _stopped_job(store: rt.SQLiteStore) -> str:
    """The id of a job of flow 'fan' cancelled from outside while it runs."""
    handled.clear()
    attempt[0] = 1
    async with store:  # opened before the clock runs: a MockClock jumps over the opening's thread
        with trio.move_on_after(1):
            await _fan_into_slow(store).aexecute("fan")
    (summary,) = await store.runs(flow="fan")
    return summary.run_id


async def test_resume_refuses_a_completed_job_another_flows_job_and_a_changed_graph(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow: rt.Flow[..., object] = rt.Flow(flow_id="pay", store=store)
    flow.add_routine(Fan(), "fan")
    done = await flow.aexecute("fan")
    where = f"Run '{done.run_id}' of the run store '{store.path}'"
    with pytest.raises(rt.ResumeError, match=rf"^{where} completed; there is nothing to resume\."):
        await flow.aresume(done.run_id)

    run_id = await _stopped_job(store)
    where = f"Run '{run_id}' of the run store '{store.path}'"
    with pytest.raises(
        rt.ResumeError, match=rf"^{where} is a run of flow 'fan', not of 'pay'\. Resume it with flow 'fan'\.$"
    ):
        await flow.aresume(run_id)
    changed = _fan_into_slow(store)
    changed.add_routine(Slow(), "slower")
    with pytest.raises(
        rt.ResumeError, match=rf"^{where} was started by another definition of flow 'fan' \(fingerprint "
    ):
        await changed.aresume(run_id)
    assert (await store.runs(flow="fan"))[0].attempts == 1  # nothing written


@pytest.mark.parametrize("rerun", [True, ["fan"]])
async def test_resume_of_a_job_refuses_rerun_and_writes_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, rerun: object
) -> None:
    """``rerun=`` names calls of ``idempotent=False`` nodes; a job has none, so asking for it is an error, not a no-op."""
    store = rt.SQLiteStore(tmp_path / "runs.db")
    run_id = await _stopped_job(store)
    before = await store.runs(flow="fan")
    with pytest.raises(
        TypeError,
        match=r"a routine graph's job has none: it resumes from its last snapshot.*Leave rerun out\.$",
    ):
        await _fan_into_slow(store).aresume(run_id, rerun=rerun)  # type: ignore[arg-type]
    assert await store.runs(flow="fan") == before  # nothing written


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("{not json", r"it is not JSON \(Expecting property name"),
        ('{"format": 1}', r"its 'messages' are not \[source, event, target, slot, data\] lists"),
        ('{"format": 7}', r"its format is 7, not 1"),
    ],
)
async def test_resume_refuses_a_corrupt_snapshot_and_writes_nothing(
    tmp_path: Path, document: str, problem: str
) -> None:
    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow: rt.Flow[..., object] = rt.Flow(flow_id="pausing", store=store)
    flow.add_routine(_Pauses(), "pauses")
    state = await flow.aexecute("pauses")
    assert state.status is rt.Status.PAUSED
    with sqlite3.connect(store.path) as conn:
        (seq,) = conn.execute("SELECT seq FROM snapshots WHERE run_id = ?", (state.run_id,)).fetchone()
        conn.execute("UPDATE snapshots SET state = ? WHERE run_id = ?", (document, state.run_id))
        before = (
            conn.execute("SELECT * FROM runs").fetchall(),
            conn.execute("SELECT COUNT(*) FROM records").fetchone(),
        )
    with pytest.raises(
        rt.ResumeError,
        match=rf"^Run '{state.run_id}' of the run store '{store.path}' has a corrupt snapshot \(of its records up to "
        rf"{seq}\): {problem}.*\. The store was changed outside trioflow; nothing was resumed\. Start a new run, or "
        r"delete the run's row from the snapshots table to resume the job from its start\.$",
    ):
        await flow.aresume(state.run_id)
    with sqlite3.connect(store.path) as conn:
        after = (
            conn.execute("SELECT * FROM runs").fetchall(),
            conn.execute("SELECT COUNT(*) FROM records").fetchone(),
        )
    assert after == before


class _Pauses(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("go", handler=self.go)
        self.define_event("later", [])

    def go(self) -> None:
        ctx = self.get_execution_context()
        assert ctx is not None
        ctx.job_state.pause()
        self.emit_deferred_event("later")


# -- Flow(store=True) opens the store for every way of running a job ------------------------


async def test_aexecute_and_open_job_open_the_flows_store(tmp_path: Path) -> None:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="opened", store=True, state_dir=tmp_path)
    flow.add_routine(Fan(), "fan")
    first = await flow.aexecute("fan")
    async with flow.open_job("fan") as job:
        await job.wait()
    assert flow.store is not None
    assert {r.run_id for r in await flow.store.runs()} == {first.run_id, job.job_id}


def test_execute_opens_the_flows_store(tmp_path: Path) -> None:
    flow: rt.Flow[..., object] = rt.Flow(flow_id="opened", store=True, state_dir=tmp_path)
    flow.add_routine(Fan(), "fan")
    state = flow.execute("fan")
    assert state.status is rt.Status.COMPLETED
    assert flow.store is not None
    assert [r.run_id for r in trio.run(flow.store.runs)] == [state.run_id]


# -- a crash: snapshots never refer to records not committed -------------------------------

_LOOP = textwrap.dedent(
    """
    import sys

    import trio

    import runtime as rt

    N = 700


    class Loop(rt.Routine):
        def __init__(self):
            super().__init__()
            self.count = 0
            self.define_slot("tick", handler=self.tick)
            self.define_event("next", ["i"])

        async def tick(self, i):
            await trio.sleep(0.0005)
            self.count += 1
            ctx = self.get_execution_context()
            ctx.job_state.update_routine_state(ctx.routine_id, {"count": self.count, "last": i})
            if i < N:
                self.emit("next", i=i + 1)
            else:
                self.send_output("done", count=self.count)


    def loop(store):
        flow = rt.Flow(flow_id="loop", store=store)
        flow.add_routine(Loop(), "loop")
        flow.connect("loop", "next", "loop", "tick")
        return flow


    if __name__ == "__main__":
        def committed(n):
            print(f"committed {n}", flush=True)

        async def main():
            store = rt.SQLiteStore(sys.argv[1], on_commit=committed)
            async with store:
                await loop(store).aexecute("loop", {"i": 0})

        trio.run(main)
    """
)


@pytest.mark.parametrize("after", [30, 1100])
def test_a_job_killed_mid_write_resumes_from_a_committed_snapshot_to_the_uncrashed_end(
    tmp_path: Path, after: int
) -> None:
    """Invariant: crash (SIGKILL after *after* committed records) + resume = the uncrashed job's routine state."""
    path, _ = kill_after_commits(tmp_path, _LOOP, after)
    with sqlite3.connect(path) as conn:
        (run_id,) = [r for (r,) in conn.execute("SELECT run_id FROM runs WHERE status = 'running'")]
        (last,) = conn.execute("SELECT MAX(seq) FROM records WHERE run_id = ?", (run_id,)).fetchone()
        snapshots = conn.execute("SELECT seq FROM snapshots WHERE run_id = ?", (run_id,)).fetchall()
    assert all(seq <= last for (seq,) in snapshots)  # never ahead of the records committed
    assert bool(snapshots) == (after > 1000)  # one every 1,000 records
    namespace: dict[str, object] = {"__name__": "loop"}
    exec(compile(_LOOP, "loop.py", "exec"), namespace)
    flow = namespace["loop"](rt.SQLiteStore(path))  # type: ignore[operator]
    assert isinstance(flow, rt.Flow)
    assert flow.store is not None
    outputs = flow.resume(run_id)
    assert [o["data"] for o in outputs] == [{"count": 701}]  # each message counted once: from the snapshot on
    state = trio.run(flow.store.state, run_id)
    assert state.routine_states["loop"] == {"count": 701, "last": 700, "status": "completed"}


def test_resume_from_the_command_line_goes_on_with_a_paused_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runtime._cli import main

    script = tmp_path / "approvals.py"
    script.write_text(
        _APPROVALS.replace("sys.argv[1]", repr(str(tmp_path / "runs.db"))).split("if sys.argv")[0]
    )
    namespace: dict[str, object] = {}
    exec(compile(script.read_text(), str(script), "exec"), namespace)  # the same flow, to start the job
    flow = namespace["flow"]
    assert isinstance(flow, rt.Flow)
    job = flow.execute("request", {"amount": 5})
    assert job.status is rt.Status.PAUSED
    assert main(["resume", f"{script}:flow", job.run_id, "--rerun", "request"]) == 2
    assert "Leave --rerun out." in capsys.readouterr().err
    assert main(["resume", f"{script}:flow", job.run_id]) == 0  # the refusal wrote nothing
    out = capsys.readouterr().out
    assert "completed" in out
    assert main(["resume", f"{script}:flow", job.run_id]) == 2
    assert "completed; there is nothing to resume" in capsys.readouterr().err
