"""Durable runs, slice 2: call keys, resume from a store, rt.interrupt across processes."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio
from recording import kill_after_commits

import runtime as rt
from runtime.store import SCHEMA_VERSION
from runtime.store._sqlite import _MIGRATIONS

REPO = Path(__file__).resolve().parents[2]

ran: list[str] = []
broken: set[int] = set()


@rt.function_node
async def item(i: int) -> int:
    ran.append(f"item {i}")
    if i in broken:
        raise RuntimeError(f"item {i} is broken")
    return i * 10


@rt.function_node
async def total(n: int) -> int:
    values = [await rt.call(item, i) for i in range(n)]
    values += await rt.call_batch(item, [100, 101])
    return sum(values)


@rt.function_node
async def approve(amount: int) -> dict[str, object]:
    ran.append("approve")
    answer = await rt.interrupt({"approve": amount})
    return {"amount": amount, "answer": answer}


@rt.function_node
async def order(amount: int) -> dict[str, object]:
    priced = await rt.call(item, amount)
    return await rt.call(approve, priced)


@pytest.fixture(autouse=True)
def _fresh() -> None:
    ran.clear()
    broken.clear()


def _tree(state: rt.JobState) -> list[tuple[str, str | None, str]]:
    """The request tree as (node, parent's node, status), in creation order."""
    requests = state.requests
    return [
        (r.node, None if r.parent_id is None else requests[r.parent_id].node, r.status.value)
        for r in requests.values()
    ]


# -- call keys -----------------------------------------------------------------


async def test_every_request_record_carries_its_call_key(tmp_path: Path) -> None:
    """Invariant: a call key is the parent's key, the node's name and its place among the parent's calls."""
    seen: list[rt.Event] = []
    flow = rt.Flow("keys", entry_point=total, subscribers=[seen.append])
    assert await flow.ainvoke(2) == 0 + 10 + 1000 + 1010
    created = [(e.request_id, e.key) for e in seen if e.kind is rt.EventKind.REQUEST_CREATED]
    assert created == [
        ("r1", "total"),
        ("r2", "total > item[0]"),
        ("r3", "total > item[1]"),
        ("r4", "total > item[2]"),
        ("r5", "total > item[3]"),
    ]
    outcomes = {e.request_id: e.key for e in seen if e.kind is rt.EventKind.REQUEST_SUCCEEDED}
    assert outcomes == dict(created)


# -- resume --------------------------------------------------------------------


async def test_a_resumed_run_replays_completed_calls_and_runs_the_rest(tmp_path: Path) -> None:
    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = rt.Flow("total", entry_point=total, store=store)
    broken.add(2)
    first = await flow.arun(4)
    assert first.status is rt.Status.FAILED
    assert ran == ["item 0", "item 1", "item 2"]
    broken.clear()
    ran.clear()
    assert await flow.aresume(first.state.run_id) == 0 + 10 + 20 + 30 + 1000 + 1010
    # item 0 and 1 completed: replayed, not run again; item 2 failed: run again, as is all that followed.
    assert ran[:2] == ["item 2", "item 3"]
    assert sorted(ran[2:]) == ["item 100", "item 101"]  # a batch: in any order
    stored = await store.state(first.state.run_id)
    uncrashed = await rt.Flow("total", entry_point=total).arun(4)
    assert stored.status is rt.Status.COMPLETED
    assert _tree(stored) == _tree(uncrashed.state)
    (summary,) = await store.runs()
    assert (summary.run_id, summary.status, summary.attempts) == (first.state.run_id, rt.Status.COMPLETED, 2)
    with sqlite3.connect(store.path) as conn:
        seqs = [seq for (seq,) in conn.execute("SELECT seq FROM records ORDER BY seq")]
        attempts = {a for (a,) in conn.execute("SELECT DISTINCT attempt FROM records")}
    assert seqs == list(range(len(seqs)))  # the attempt's records go on after the stored ones
    assert attempts == {1, 2}


@rt.function_node
async def group(base: int) -> int:
    await rt.log("group", base=base)
    values = [await rt.call(item, base + 1), await rt.call(item, base + 2)]
    with contextlib.suppress(RuntimeError):
        await rt.call(item, -base)  # fails, caught: a failed call inside a completed one
    return sum(values)


@rt.function_node
async def groups(n: int) -> object:
    total = sum([await rt.call(group, 10 * i) for i in range(n)])
    return {"total": total, "answer": await rt.interrupt("ok?")}


async def test_a_replayed_call_records_its_stored_subtree_so_the_tree_is_whole(tmp_path: Path) -> None:
    """Invariant: however many attempts, the resumed run's request tree is the uncrashed run's."""
    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = rt.Flow("groups", entry_point=groups, store=store)
    broken.update({0, -10, -20, 22})
    first = await flow.arun(3)
    assert first.status is rt.Status.FAILED  # item 22 failed: group 20 failed
    broken.discard(22)
    ran.clear()
    with pytest.raises(rt.RunPausedError):
        await flow.aresume(first.state.run_id)
    assert ran == ["item 22", "item -20"]  # groups 0 and 10 and item 21 were replayed, subtrees and all
    ran.clear()
    assert await flow.aresume(first.state.run_id, "yes") == {
        "total": 10 * (1 + 2 + 11 + 12 + 21 + 22),
        "answer": "yes",
    }
    assert ran == []
    stored = await store.state(first.state.run_id)
    uncrashed = await rt.Flow("groups", entry_point=groups, store=rt.SQLiteStore(tmp_path / "other.db")).arun(
        3
    )
    assert _tree(stored)[1:] == _tree(uncrashed.state)[1:]  # all but the root, which paused there
    assert [r.error for r in stored.requests.values() if r.error] == [
        r.error for r in uncrashed.state.requests.values() if r.error and r.node == "item"
    ]


async def test_a_result_that_is_not_json_is_not_replayed_but_run_again(tmp_path: Path) -> None:
    @rt.function_node
    async def pair() -> tuple[int, int]:
        ran.append("pair")
        return (1, 2)

    @rt.function_node
    async def top() -> list[object]:
        first = await rt.call(pair)
        await rt.call(item, 1)
        return [first]

    flow = rt.Flow("pairs", entry_point=top, store=rt.SQLiteStore(tmp_path / "runs.db"))
    broken.add(1)
    run_id = (await flow.arun()).state.run_id
    broken.clear()
    ran.clear()
    assert await flow.aresume(run_id) == [(1, 2)]
    assert ran == ["pair", "item 1"]


async def test_a_run_whose_code_calls_another_node_stops_naming_the_first_divergent_call(
    tmp_path: Path,
) -> None:
    @rt.function_node
    async def other(i: int) -> int:
        return i

    store = rt.SQLiteStore(tmp_path / "runs.db")
    broken.add(1)
    run_id = (await rt.Flow("total", entry_point=total, store=store).arun(3)).state.run_id

    @rt.function_node(name="total")
    async def changed(n: int) -> int:
        await rt.call(item, 0)
        return await rt.call(other, 1)

    with pytest.raises(
        rt.DivergenceError,
        match=rf"^Run '{run_id}' diverged from its stored history at call 1 of 'total': it called "
        r"'total > other\[1\]' where the stored run called 'total > item\[1\]'\. A resumed run must make the "
        r"same calls in the same order; resume it with the code that started it, or start a new run\.",
    ) as caught:
        await rt.Flow("total", entry_point=changed, store=store).aresume(run_id)
    assert (caught.value.expected, caught.value.found) == ("total > item[1]", "total > other[1]")


async def test_resume_refuses_a_completed_run_an_unknown_id_and_another_flows_run(tmp_path: Path) -> None:
    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = rt.Flow("total", entry_point=total, store=store)
    run_id = (await flow.arun(1)).state.run_id
    where = f"Run '{run_id}' of the run store '{store.path}'"
    with pytest.raises(
        rt.ResumeError,
        match=rf"^{where} completed; there is nothing to resume\. Start a new run with flow\.invoke\(\.\.\.\)\.$",
    ):
        await flow.aresume(run_id)
    with pytest.raises(
        rt.UnknownRunError,
        match=rf"^The run store '{store.path}' has no run 'run-x'\. The nearest it has: '{run_id}'\.$",
    ):
        await flow.aresume("run-x")
    with pytest.raises(
        rt.ResumeError,
        match=rf"^{where} is a run of flow 'total', not of 'other'\. Resume it with flow 'total'\.$",
    ):
        await rt.Flow("other", entry_point=total, store=store).aresume(run_id)


async def test_resume_refuses_a_run_of_a_changed_definition(tmp_path: Path) -> None:
    store = rt.SQLiteStore(tmp_path / "runs.db")
    broken.add(0)
    run_id = (await rt.Flow("total", entry_point=total, store=store).arun(1)).state.run_id
    changed = rt.Flow("total", entry_point=order, store=store)
    with pytest.raises(
        rt.ResumeError, match=r"was started by another definition of flow 'total' \(fingerprint "
    ):
        await changed.aresume(run_id)


async def test_a_run_held_by_a_live_process_is_refused(tmp_path: Path) -> None:
    """Invariant: one process at a time runs a run: a resume is refused while a live process holds it."""
    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = rt.Flow("total", entry_point=total, store=store)
    broken.add(0)
    run_id = (await flow.arun(1)).state.run_id
    with sqlite3.connect(store.path) as conn:  # as a live process running it leaves it
        conn.execute(
            "UPDATE runs SET status = 'running', owner_pid = ? WHERE run_id = ?", (os.getppid(), run_id)
        )
    with pytest.raises(
        rt.ResumeError,
        match=rf"is being run by process {os.getppid()}, which is alive; one process at a time",
    ):
        await flow.aresume(run_id)


async def test_two_resumes_of_one_run_in_one_process_the_second_is_refused(tmp_path: Path) -> None:
    gate, running = trio.Event(), trio.Event()

    @rt.function_node
    async def waits() -> int:
        if broken:
            raise RuntimeError("not yet")
        running.set()
        await gate.wait()
        return 1

    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = rt.Flow("waits", entry_point=waits, store=store)
    broken.add(0)
    run_id = (await flow.arun()).state.run_id
    broken.clear()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(flow.aresume, run_id)
        await running.wait()
        with pytest.raises(rt.ResumeError, match=r"is being run by process \d+, which is alive"):
            await flow.aresume(run_id)
        gate.set()
    (summary,) = await store.runs()
    assert summary.status is rt.Status.COMPLETED


def test_a_flow_without_a_store_cannot_resume() -> None:
    with pytest.raises(
        rt.TrioflowError, match=r"^Flow\('total'\)\.resume\('run-1'\): this flow has no store"
    ):
        rt.Flow("total", entry_point=total).resume("run-1")


# -- interrupts ----------------------------------------------------------------


def test_an_interrupt_pauses_the_run_and_a_value_resumes_it(tmp_path: Path) -> None:
    flow = rt.Flow("orders", entry_point=order, store=True, state_dir=tmp_path)
    paused = flow.run(3)
    assert paused.status is rt.Status.PAUSED
    run_id = paused.state.run_id
    assert isinstance(paused.error, rt.RunPausedError)
    assert (paused.error.run_id, paused.error.payload, paused.error.key) == (
        run_id,
        {"approve": 30},
        "order > approve[1] ! interrupt[0]",
    )
    assert str(paused.error) == (
        f"Run '{run_id}' of flow 'orders' paused at rt.interrupt() in 'order > approve[1] ! interrupt[0]', "
        f"waiting for a value (payload: {{'approve': 30}}). Resume it with flow.resume('{run_id}', value), "
        "from this process or another."
    )
    with pytest.raises(rt.ResumeError, match=r"which waits for a value\. Resume it with one: flow\.resume\("):
        flow.resume(run_id)
    ran.clear()
    assert flow.resume(run_id, "yes") == {"amount": 30, "answer": "yes"}
    assert ran == ["approve"]  # the priced item was replayed; the node that waited ran again
    assert (tmp_path / "runs.db").exists()


async def test_a_run_paused_and_resumed_inside_one_open_store_block(tmp_path: Path) -> None:
    """The resume waits for the store to commit the paused attempt's records before it reads them."""
    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = rt.Flow("orders", entry_point=order, store=store)
    async with store:
        paused = await flow.arun(2)
        assert paused.status is rt.Status.PAUSED
        assert await flow.aresume(paused.state.run_id, "ok") == {"amount": 20, "answer": "ok"}
    (summary,) = await store.runs()
    assert (summary.status, summary.attempts) == (rt.Status.COMPLETED, 2)


def test_invoke_of_a_run_that_pauses_raises_with_the_run_id_and_payload(tmp_path: Path) -> None:
    flow = rt.Flow("orders", entry_point=order, store=True, state_dir=tmp_path)
    with pytest.raises(rt.RunPausedError) as caught:
        flow.invoke(1)
    assert caught.value.payload == {"approve": 10}
    with pytest.raises(rt.ResumeError, match=r"Give a JSON value"):
        flow.resume(caught.value.run_id, {1, 2})
    assert flow.resume(caught.value.run_id, [True]) == {"amount": 10, "answer": [True]}


def test_a_value_for_a_run_not_paused_at_an_interrupt_is_refused(tmp_path: Path) -> None:
    flow = rt.Flow("total", entry_point=total, store=True, state_dir=tmp_path)
    broken.add(0)
    run_id = flow.run(1).state.run_id
    with pytest.raises(rt.ResumeError, match=r"is failed, not paused at rt\.interrupt\(\)"):
        flow.resume(run_id, "x")


_ORDERS = textwrap.dedent(
    """
    import sys

    import runtime as rt


    @rt.function_node
    async def approve(amount: int) -> dict:
        return {"amount": amount, "answer": await rt.interrupt({"approve": amount})}


    flow = rt.Flow("orders", entry_point=approve, store=rt.SQLiteStore(sys.argv[1]))
    if sys.argv[2] == "start":
        try:
            flow.invoke(5)
        except rt.RunPausedError as paused:
            print(paused.run_id, paused.payload["approve"])
    else:
        print(flow.resume(sys.argv[2], sys.argv[3]))
    """
)


def test_an_interrupt_is_answered_by_another_process(tmp_path: Path) -> None:
    script = tmp_path / "orders.py"
    script.write_text(_ORDERS)
    db = str(tmp_path / "runs.db")
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(script), db, *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            check=True,
        )
        return done.stdout.strip()

    run_id, payload = run("start").split()
    assert payload == "5"
    assert run(run_id, "granted") == "{'amount': 5, 'answer': 'granted'}"


# -- crash, then resume ----------------------------------------------------------

_CRASHING = textwrap.dedent(
    """
    import sys

    import trio

    import runtime as rt


    @rt.function_node
    async def step(i: int) -> int:
        await trio.sleep(0.001)
        return i * i


    @rt.function_node
    async def steps(n: int) -> int:
        total = 0
        for i in range(n):
            total += await rt.call(step, i)
        return total


    def committed(n: int) -> None:
        print(f"committed {n}", flush=True)


    async def main() -> None:
        store = rt.SQLiteStore(sys.argv[1], on_commit=committed)
        async with store:
            await rt.Flow("steps", entry_point=steps, store=store).arun(300)


    trio.run(main)
    """
)


@rt.function_node
async def step(i: int) -> int:
    ran.append(f"step {i}")
    return i * i


@rt.function_node
async def steps(n: int) -> int:
    total = 0
    for i in range(n):
        total += await rt.call(step, i)
    return total


@pytest.mark.parametrize("after", [1, 40, 257, 420])
def test_a_run_killed_mid_write_resumes_to_the_result_and_tree_of_an_uncrashed_run(
    tmp_path: Path, after: int
) -> None:
    """Invariant: crash (SIGKILL after *after* committed records) + resume = the same result and request tree."""
    path, _ = kill_after_commits(tmp_path, _CRASHING, after)
    with sqlite3.connect(path) as conn:
        (run_id,) = [r for (r,) in conn.execute("SELECT run_id FROM runs WHERE status = 'running'")]
    store = rt.SQLiteStore(path)
    flow = rt.Flow("steps", entry_point=steps, store=store)
    assert flow.resume(run_id) == sum(i * i for i in range(300))
    assert len(ran) < 300  # what the crashed run completed was replayed
    uncrashed = rt.Flow("steps", entry_point=steps).run(300)
    assert _tree(trio.run(store.state, run_id)) == _tree(uncrashed.state)


# -- the store's schema ------------------------------------------------------------


async def test_a_store_of_schema_version_1_is_migrated_forward_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with sqlite3.connect(path) as conn:
        for statement in _MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        conn.execute(
            "INSERT INTO runs VALUES ('run-old', 'old', 'completed', 0.0, 1.0, '2026-01-01T00:00:00+00:00', NULL, 1)"
        )
    store = rt.SQLiteStore(path)
    async with store:
        pass
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "records", "snapshots"} <= tables
    (old,) = await store.runs()
    assert (old.run_id, old.status, old.attempts) == ("run-old", rt.Status.COMPLETED, 1)


# -- the command line ------------------------------------------------------------


def _stored_runs(tmp_path: Path) -> tuple[Path, list[str]]:
    """A store with three runs: two of 'total' (the second failed), one of a flow with an ESC in its name."""
    db = tmp_path / "runs.db"
    store = rt.SQLiteStore(db)
    ids = [rt.Flow("total", entry_point=total, store=store).run(1).state.run_id]
    broken.add(0)
    ids.append(rt.Flow("total", entry_point=total, store=store).run(1).state.run_id)
    ids.append(rt.Flow("evil\x1b[2J", entry_point=total, store=store).run(1).state.run_id)
    return db, ids


def test_runs_lists_a_stores_runs_newest_first_filtered_and_paged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runtime._cli import main

    db, (ok, failed, evil) = _stored_runs(tmp_path)
    assert main(["runs", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["RUN", "FLOW", "STATUS", "ATTEMPTS", "STARTED", "(UTC)", "DURATION"]
    assert [line.split()[:4] for line in lines[1:]] == [
        [evil, "evil\\x1b[2J", "failed", "1"],
        [failed, "total", "failed", "1"],
        [ok, "total", "completed", "1"],
    ]
    assert main(["runs", "--db", str(db), "--flow", "total", "--status", "failed"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == [failed]
    assert main(["runs", "--db", str(db), "--limit", "2", "--page", "2"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == [ok]
    assert main(["runs", "--db", str(db), "--page", "9"]) == 0
    assert capsys.readouterr().out == "no runs on this page\n"


def test_show_reads_a_run_from_a_store_and_names_the_nearest_ids_of_an_unknown_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runtime._cli import main

    db, (ok, _, _) = _stored_runs(tmp_path)
    assert main(["show", ok, "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert f"run {ok}" in out
    assert main(["show", "run-nope", "--db", str(db)]) == 2
    assert capsys.readouterr().err.startswith(
        f"python -m runtime show: error: The run store '{db}' has no run 'run-nope'. The nearest it has: "
    )
    assert main(["runs", "--db", str(tmp_path / "none.db")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_resume_from_the_command_line_answers_an_interrupt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runtime._cli import main

    script = tmp_path / "orders.py"
    script.write_text(_ORDERS.replace("sys.argv[1]", repr(str(tmp_path / "runs.db"))).split("if sys.argv")[0])
    namespace: dict[str, object] = {}
    exec(compile(script.read_text(), str(script), "exec"), namespace)  # the same flow, to start the run
    flow = namespace["flow"]
    assert isinstance(flow, rt.Flow)
    run_id = flow.run(7).state.run_id
    assert main(["resume", f"{script}:flow", run_id]) == 2
    assert "which waits for a value" in capsys.readouterr().err
    assert main(["resume", f"{script}:flow", run_id, "--value", '"ok"']) == 0
    assert "completed" in capsys.readouterr().out
    assert main(["resume", f"{script}:flow", run_id]) == 2
    assert "completed; there is nothing to resume" in capsys.readouterr().err


# -- the page ----------------------------------------------------------------------


def test_every_durable_doc_snippet_runs() -> None:
    import re

    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "durable.md").read_text(), re.DOTALL)
    assert len(blocks) == 4
    namespace: dict[str, object] = {"__name__": "doc_durable"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"durable.md snippet #{i}", "exec"), namespace)  # the page's own code
