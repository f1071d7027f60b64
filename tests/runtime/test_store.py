"""Durable runs: SQLiteStore keeps every record of every run, and rebuilds runs from them."""

from __future__ import annotations

import os
import sqlite3
import textwrap
from pathlib import Path

import pytest
import trio
import trio.testing
from recording import Collect, Counter, fan_into_slow, kill_after_commits

import runtime as rt
from runtime.store import SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[2]


@rt.function_node
async def leaf(x: int) -> int:
    await rt.log("leaf", x=x)
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x * 2


@rt.function_node
async def root(n: int) -> list[int]:
    return [await rt.call(leaf, i) for i in range(n)]


@rt.function_node
async def fails() -> int:
    return await rt.call(leaf, -1)


def _without_timestamps(log: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in entry.items() if k != "timestamp"} for entry in log]


def _with_output_times_cut(shared: dict[str, object]) -> dict[str, object]:
    """Shared data with the outputs' wall times cut: the store rebuilds them from offsets."""
    outputs = shared.get("output_log")
    if not isinstance(outputs, list):
        return shared
    return {**shared, "output_log": _without_timestamps(outputs)}


def _history(state: rt.JobState) -> list[tuple[str, str, dict[str, object], float]]:
    return [(e.routine_id, e.event_name, e.data, e.offset) for e in state.history]


def _assert_same_state(stored: rt.JobState, live: rt.JobState) -> None:
    assert stored.run_id == live.run_id
    assert stored.flow_name == live.flow_name
    assert stored.requests == live.requests
    assert _history(stored) == _history(live)
    assert stored.routine_states == live.routine_states
    assert _with_output_times_cut(stored.shared_data) == _with_output_times_cut(live.shared_data)
    assert _without_timestamps(stored.shared_log) == _without_timestamps(live.shared_log)
    assert stored.undelivered == live.undelivered
    assert (stored.status, stored.result, stored.error) == (live.status, live.result, live.error)


async def test_a_node_runs_records_land_in_order_and_rebuild_its_state(tmp_path: Path) -> None:
    store = rt.SQLiteStore(tmp_path / "runs.db")
    seen = Collect()
    flow = rt.Flow("stored", entry_point=root, store=store, recorders=[seen])
    async with store:
        result = await flow.arun(3)
    records = await store.records(result.state.run_id)
    assert [r.seq for r in records] == list(range(len(records)))
    assert records == seen.records
    _assert_same_state(await store.state(result.state.run_id), result.state)


async def test_a_failed_runs_errors_are_stored_as_summaries(tmp_path: Path) -> None:
    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = rt.Flow("failing", entry_point=fails, store=store)
    async with store:
        result = await flow.arun()
    assert result.state.status is rt.Status.FAILED
    stored = await store.state(result.state.run_id)
    _assert_same_state(stored, result.state)
    assert stored.requests["r2"].error == rt.ErrorSummary("ValueError", "negative: -1", ("fails", "leaf"))
    [summary] = await store.runs()
    assert (summary.flow, summary.status, summary.owner_pid) == ("failing", rt.Status.FAILED, os.getpid())


async def test_a_graph_jobs_records_land_in_order_and_rebuild_its_state(tmp_path: Path) -> None:
    store = rt.SQLiteStore(tmp_path / "runs.db")
    seen = Collect()
    flow: rt.Flow[..., object] = rt.Flow(flow_id="graph-stored", store=store, recorders=[seen])
    flow.add_routine(Counter(), "counter")
    async with store:
        state = await flow.aexecute("counter", {"data": 3})
    assert await store.records(state.run_id) == seen.records
    stored = await store.state(state.run_id)
    _assert_same_state(stored, state)
    assert stored.routine_states == {"counter": {"seen": 3, "status": "completed"}}
    assert _history(stored) == [("counter", "counted", {"n": 3}, state.history[0].offset)]


async def test_a_cancelled_jobs_undelivered_messages_are_stored(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = fan_into_slow(store=store)
    async with store, flow.open_job("fan") as job:
        await trio.sleep(1)
        job.cancel()
        state = await job.wait()
    stored = await store.state(state.run_id)
    assert len(stored.undelivered) == 2
    _assert_same_state(stored, state)


async def test_two_concurrent_runs_of_one_flow_are_stored_apart(tmp_path: Path) -> None:
    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = rt.Flow("twice", entry_point=root, store=store)
    results: dict[int, rt.RunResult[list[int]]] = {}

    async def run(n: int) -> None:
        results[n] = await flow.arun(n)

    async with store, trio.open_nursery() as nursery:
        nursery.start_soon(run, 2)
        nursery.start_soon(run, 5)
    summaries = await store.runs(flow="twice")
    assert {s.run_id for s in summaries} == {r.state.run_id for r in results.values()}
    for result in results.values():
        _assert_same_state(await store.state(result.state.run_id), result.state)
        records = await store.records(result.state.run_id)
        assert [r.seq for r in records] == list(range(len(records)))
        assert {r.run_id for r in records} == {result.state.run_id}


async def test_runs_are_listed_newest_first_and_filtered(tmp_path: Path) -> None:
    store = rt.SQLiteStore(tmp_path / "runs.db")
    good = rt.Flow("good", entry_point=root, store=store)
    bad = rt.Flow("bad", entry_point=fails, store=store)
    async with store:
        first = await good.arun(1)
        second = await bad.arun()
        third = await good.arun(2)
    ids = [r.state.run_id for r in (third, second, first)]
    listed = await store.runs()
    assert [s.run_id for s in listed] == ids
    assert all(s.duration is not None and s.duration >= 0 for s in listed)
    assert listed[0].started >= listed[2].started
    assert [s.run_id for s in await store.runs(flow="good")] == [ids[0], ids[2]]
    assert [s.run_id for s in await store.runs(status="failed")] == [ids[1]]
    assert await store.runs(flow="bad", status=rt.Status.COMPLETED) == []


async def test_a_value_that_cannot_be_serialized_is_stored_as_its_repr_with_its_path(tmp_path: Path) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque>"

    @rt.function_node
    async def shares() -> int:
        await rt.log("shared", thing=Opaque(), fine=[1, 2])
        return 1

    path = tmp_path / "runs.db"
    store = rt.SQLiteStore(path)
    flow = rt.Flow("opaque", entry_point=shares, store=store)
    async with store:
        result = await flow.arun()
    assert result.state.status is rt.Status.COMPLETED
    [log] = [r for r in await store.records(result.state.run_id) if r.kind is rt.EventKind.LOG]
    assert log.data == {
        "level": "INFO",
        "message": "shared",
        "thing": {"$unserializable": "<Opaque>", "type": f"{__name__}.{Opaque.__qualname__}"},
        "fine": [1, 2],
    }
    with sqlite3.connect(path) as conn:
        noted = conn.execute("SELECT unserializable FROM records WHERE kind = 'log'").fetchall()
    assert noted == [('["$.data.thing"]',)]


async def test_an_unknown_run_id_is_refused_naming_the_nearest_ids(tmp_path: Path) -> None:
    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = rt.Flow("known", entry_point=root, store=store)
    async with store:
        result = await flow.arun(1)
    run_id = result.state.run_id
    wanted = run_id[:-1] + ("0" if run_id[-1] != "0" else "1")
    with pytest.raises(KeyError) as caught:
        await store.state(wanted)
    assert isinstance(caught.value, rt.UnknownRunError)
    assert str(caught.value) == (
        f"The run store {str(tmp_path / 'runs.db')!r} has no run {wanted!r}. The nearest it has: {run_id!r}."
    )


async def test_a_database_of_a_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with rt.SQLiteStore(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    newer = SCHEMA_VERSION + 1
    message = (
        rf"^The run store '{path}' has schema version {newer}, newer than version {SCHEMA_VERSION}, "
        r"the newest this trioflow reads\. Upgrade trioflow to read it, or give another path\.$"
    )
    with pytest.raises(rt.StoreError, match=message):
        async with rt.SQLiteStore(path):
            pass
    with pytest.raises(rt.StoreError, match=message):
        await rt.SQLiteStore(path).runs()


def test_a_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        rt.StoreError,
        match=rf"^The run store path '{tmp_path}' is a directory\. Give the path of a file in it, "
        rf"e\.g\. '{tmp_path / 'runs.db'}'\.$",
    ):
        rt.SQLiteStore(tmp_path)


async def test_a_store_that_is_not_open_refuses_records_and_the_run_goes_on(tmp_path: Path) -> None:
    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = rt.Flow("unopened", entry_point=root, store=store)
    assert await flow.ainvoke(2) == [0, 2]
    with pytest.raises(
        rt.StoreError,
        match=rf"^SQLiteStore\('{tmp_path / 'runs.db'}'\) is not open, so it cannot keep run 'x'\. "
        r"Run the flow inside async with store: \.\.\.$",
    ):
        await store.record([rt.Event("x", 0, rt.EventKind.RUN_STARTED, 0.0)])


def test_a_flow_refuses_a_store_that_is_not_one() -> None:
    with pytest.raises(
        TypeError,
        match=r"^Flow\('f', store=42\): a store is an rt\.Store, e\.g\. rt\.SQLiteStore\('runs\.db'\), or True for <state_dir>/runs\.db\.$",
    ):
        rt.Flow("f", entry_point=root, store=42)  # type: ignore[arg-type]


_CRASHING = textwrap.dedent(
    """
    import sys

    import trio

    import runtime as rt


    @rt.function_node
    async def step(i: int) -> int:
        await rt.log("step", i=i)
        return i


    @rt.function_node
    async def forever() -> None:
        i = 0
        while True:
            await rt.call(step, i)
            i += 1


    def committed(n: int) -> None:
        print(f"committed {n}", flush=True)


    async def main() -> None:
        store = rt.SQLiteStore(sys.argv[1], on_commit=committed)
        flow = rt.Flow("crash", entry_point=forever, store=store)
        async with store, trio.open_nursery() as nursery:
            nursery.start_soon(flow.arun)
            nursery.start_soon(flow.arun)


    trio.run(main)
    """
)


@pytest.mark.parametrize("after", [1, 2, 100, 255, 256, 257, 700, 1500, 3000, 4500])
def test_a_run_killed_mid_write_leaves_a_sound_database_and_gap_free_records(
    tmp_path: Path, after: int
) -> None:
    """SIGKILL after *after* records were committed: integrity ok, each run's records a prefix 0..k."""
    path, committed = kill_after_commits(tmp_path, _CRASHING, after)
    with sqlite3.connect(path) as conn:
        runs = dict(conn.execute("SELECT run_id, status FROM runs").fetchall())
        stored = conn.execute("SELECT run_id, seq FROM records ORDER BY run_id, seq").fetchall()
    assert len(stored) >= committed
    assert set(runs.values()) == {"running"}
    for run_id in runs:
        seqs = [seq for rid, seq in stored if rid == run_id]
        assert seqs == list(range(len(seqs)))
    assert {rid for rid, _ in stored} <= set(runs)


async def test_a_store_state_can_be_read_after_a_crash(tmp_path: Path) -> None:
    """The state of a run that never finished is rebuilt from its committed prefix, status running."""
    path = tmp_path / "runs.db"
    store = rt.SQLiteStore(path)
    flow = rt.Flow("unfinished", entry_point=root, store=store)
    async with store:
        result = await flow.arun(2)
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM records WHERE kind = 'run_finished'")
    stored = await store.state(result.state.run_id)
    assert stored.status is rt.Status.RUNNING
    assert stored.requests == result.state.requests
    assert stored.requests["r1"].status is rt.Status.COMPLETED


async def test_a_write_that_fails_stops_the_store_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = rt.SQLiteStore(path)
    flow = rt.Flow("broken", entry_point=root, store=store)
    with pytest.RaisesGroup(
        pytest.RaisesExc(
            rt.StoreError,
            match=r"^Cannot write the records of run '[^']+' to the run store: no such table: records\. "
            r"Check the database file and its disk; the store has stopped\.\n"
            r"Escalated by actor 'store-writer' \(supervision: escalate\)\.$",
        ),
        flatten_subgroups=True,
    ):
        async with store:
            with sqlite3.connect(path) as conn:
                conn.execute("DROP TABLE records")
            assert await flow.ainvoke(2) == [0, 2]  # the run goes on; its recorder failed
            await trio.sleep_forever()  # the writer's failure ends the store's block


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_text("not a database, " * 100)
    with pytest.raises(
        rt.StoreError,
        match=rf"^Cannot use the run store '{path}': file is not a database\. Give the path of a trioflow "
        r"run store \(a SQLite file\), or a new path\.$",
    ):
        async with rt.SQLiteStore(path):
            pass
    assert path.read_text() == "not a database, " * 100


async def test_a_store_is_opened_once_at_a_time(tmp_path: Path) -> None:
    store = rt.SQLiteStore(tmp_path / "runs.db")
    async with store:
        with pytest.raises(
            rt.StoreError,
            match=rf"^SQLiteStore\('{tmp_path / 'runs.db'}'\) is already open\. "
            r"Open a store once, around all the runs it keeps\.$",
        ):
            async with store:
                pass
    async with store:  # and again once it was closed
        pass


async def test_a_request_its_executor_killed_is_rebuilt_killed(tmp_path: Path) -> None:
    store = rt.SQLiteStore(tmp_path / "runs.db")
    records = [
        rt.Event("run-k", 0, rt.EventKind.RUN_STARTED, 0.0, data="kill"),
        rt.Event("run-k", 1, rt.EventKind.REQUEST_CREATED, 0.0, "r1", None, "crunch", "processes"),
        rt.Event("run-k", 2, rt.EventKind.REQUEST_CANCELLED, 1.0, "r1", None, "crunch", rt.Status.KILLED),
        rt.Event(
            "run-k", 3, rt.EventKind.RUN_FINISHED, 1.0, data={"status": "timed_out", "result": None, "error": None}
        ),
    ]
    async with store:
        await store.record(records)
    stored = await store.state("run-k")
    assert [(r.id, r.status, r.executor) for r in stored.requests.values()] == [
        ("r1", rt.Status.KILLED, "processes")
    ]
