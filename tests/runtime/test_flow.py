"""``rt.Flow``: invoke/ainvoke/run/arun, timeout, end_on_error, cancellation, saved state."""

import asyncio
import contextlib
import json
import logging
import pathlib
import re
import socket
from collections.abc import Callable, Coroutine

import pytest
import trio
import trio.testing

import runtime as rt


@rt.function_node
async def greet(name: str) -> str:
    return f"Hello, {name}!"


@rt.function_node
async def fail() -> None:
    raise ValueError("boom")


# -- invoking -----------------------------------------------------------------


def test_invoke_returns_the_entry_points_result() -> None:
    flow = rt.Flow("greet-flow", entry_point=greet)
    assert flow.invoke(name="Alice") == "Hello, Alice!"
    assert flow.invoke("Bob") == "Hello, Bob!"


def test_invoke_raises_the_nodes_error() -> None:
    with pytest.raises(ValueError, match=r"^boom\nraised in node 'fail', request path: fail \(r1\)$"):
        rt.Flow("f", entry_point=fail).invoke()


async def test_ainvoke_inside_trio() -> None:
    assert await rt.Flow("greet-flow", entry_point=greet).ainvoke("Ann") == "Hello, Ann!"


async def test_invoke_inside_trio_is_a_clear_error() -> None:
    flow = rt.Flow("etl", entry_point=greet)
    with pytest.raises(
        rt.InvokeInsideTrioError,
        match=r"^Flow\('etl'\)\.invoke\(\.\.\.\) was called inside a running Trio program, where it would "
        r"block the loop\. Use await Flow\('etl'\)\.ainvoke\(\.\.\.\)\.$",
    ):
        flow.invoke("x")
    with pytest.raises(rt.InvokeInsideTrioError, match=r"Use await Flow\('etl'\)\.arun\(\.\.\.\)\.$"):
        flow.run("x")


def test_run_returns_state_result_and_error() -> None:
    ok = rt.Flow("ok", entry_point=greet).run("Ann")
    assert (ok.status, ok.result, ok.error) == (rt.Status.COMPLETED, "Hello, Ann!", None)
    assert ok.unwrap() == "Hello, Ann!"
    bad = rt.Flow("bad", entry_point=fail).run()
    assert bad.status is rt.Status.FAILED
    assert bad.result is None
    assert isinstance(bad.error, ValueError)
    with pytest.raises(ValueError, match=r"^boom\nraised in node 'fail', request path: fail \(r1\)$"):
        bad.unwrap()


def test_each_invocation_is_an_independent_run_with_its_own_id() -> None:
    flow = rt.Flow("greet-flow", entry_point=greet)
    runs = [flow.run(name) for name in ("a", "b", "c")]
    ids = [r.state.run_id for r in runs]
    assert len(set(ids)) == 3
    assert all(re.fullmatch(r"run-[0-9a-f]{12}", run_id) for run_id in ids)
    assert [r.result for r in runs] == ["Hello, a!", "Hello, b!", "Hello, c!"]
    assert [list(r.state.requests) for r in runs] == [["r1"]] * 3


def test_run_state_fields() -> None:
    result = rt.Flow("greet-flow", entry_point=greet, context={"k": 1}).run("Ann")
    state = result.state
    assert state.flow_name == state.flow_id == "greet-flow"
    assert state.run_id == state.job_id
    assert state.status is rt.Status.COMPLETED
    assert state.started_at is not None
    assert state.finished_at is not None
    assert state.created_at <= state.started_at <= state.finished_at
    assert state.result == "'Hello, Ann!'"
    assert state.error is None
    assert state.context == {"k": 1}
    (request,) = state.requests.values()
    assert (request.id, request.parent_id, request.node, request.status) == (
        "r1",
        None,
        "greet",
        rt.Status.COMPLETED,
    )
    assert request.duration is not None
    assert request.duration >= 0
    assert request.result == "'Hello, Ann!'"


def test_failed_run_state_keeps_the_error_summary() -> None:
    state = rt.Flow("f", entry_point=fail).run().state
    assert state.status is rt.Status.FAILED
    assert state.error is not None
    assert (state.error.type, state.error.message) == ("ValueError", "boom")
    assert state.result is None


def test_wrong_arguments_for_the_entry_point_raise_before_the_run() -> None:
    with pytest.raises(
        rt.NodeArgumentError,
        match=r"^Cannot call node 'greet' with these arguments: missing a required argument: 'name'\. "
        r"Its signature is greet\(name: str\) -> str\.$",
    ):
        rt.Flow("g", entry_point=greet).invoke()


# -- construction ---------------------------------------------------------------


def test_entry_point_must_be_a_node() -> None:
    async def plain() -> None: ...

    with pytest.raises(
        rt.NotANodeError,
        match=r"^Flow\('x', entry_point=\.\.\.\) got 'plain', which is a plain callable, not a node\. "
        r"Decorate it with @rt\.function_node to call it in a run\.$",
    ):
        rt.Flow("x", entry_point=plain)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("timeout", "error"),
    [(0, ValueError), (-1, ValueError), (float("nan"), ValueError), ("5", TypeError), (True, TypeError)],
)
def test_timeout_must_be_positive(timeout: object, error: type[Exception]) -> None:
    with pytest.raises(
        error,
        match=rf"^Flow\('x', timeout={re.escape(repr(timeout))}\): timeout must be a positive number of seconds, or None\.$",
    ):
        rt.Flow("x", entry_point=greet, timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"context": [1, 2]},
            TypeError,
            r"Flow\('x', context=\[1, 2\]\): context must be a mapping of str keys to values \(a dict\), or None\.",
        ),
        (
            {"context": "abc"},
            TypeError,
            r"Flow\('x', context='abc'\): context must be a mapping of str keys to values \(a dict\), or None\.",
        ),
        (
            {"context": {1: "one"}},
            TypeError,
            r"Flow\('x', context=\.\.\.\): context keys must be str, not 1 \(int\)\.",
        ),
        (
            {"state_dir": 123},
            TypeError,
            r"Flow\('x', state_dir=123\): state_dir must be a directory path \(a str or os\.PathLike\)\.",
        ),
        (
            {"subscribers": [print, 42]},
            TypeError,
            r"Flow\('x', subscribers=\.\.\.\): subscribers\[1\] is 42, not a callable; "
            r"each subscriber is called with every rt\.Event\.",
        ),
        (
            {"subscribers": print},
            TypeError,
            r"Flow\('x', subscribers=<built-in function print>\): subscribers must be a list of callables, "
            r"each called with every rt\.Event\.",
        ),
        (
            {"save_state": "yes"},
            TypeError,
            r"Flow\('x', save_state='yes'\): save_state must be True or False\.",
        ),
        (
            {"end_on_error": 1},
            TypeError,
            r"Flow\('x', end_on_error=1\): end_on_error must be True or False\.",
        ),
        (
            {"context": list(range(100))},
            TypeError,
            r"Flow\('x', context=\[0, 1, 2, 3, 4, 5, \.\.\.\]\): context must be a mapping .*",
        ),
    ],
)
def test_each_bad_flow_setting_gets_a_one_line_error_naming_it(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{message}$") as info:
        rt.Flow("x", entry_point=greet, **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        (3, TypeError, r"Flow\(name=3\): name must be a non-empty string, not int\."),
        (b"etl", TypeError, r"Flow\(name=b'etl'\): name must be a non-empty string, not bytes\."),
        ("", ValueError, r"Flow\(name=''\): name must be a non-empty string\."),
    ],
)
def test_a_bad_flow_name_gets_a_one_line_error(name: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=f"^{message}$"):
        rt.Flow(name, entry_point=greet)  # type: ignore[arg-type]


def test_subscribers_may_be_any_iterable_of_callables() -> None:
    events: list[rt.Event] = []
    flow = rt.Flow("x", entry_point=greet, subscribers=(f for f in [events.append]))
    assert flow.invoke("Ann") == "Hello, Ann!"
    assert events[-1].kind is rt.EventKind.RUN_FINISHED


def test_the_flows_context_is_copied_at_construction() -> None:
    ctx: dict[str, object] = {"items": [1]}
    flow = rt.Flow("x", entry_point=greet, context=ctx)
    ctx["items"].append(2)  # type: ignore[attr-defined]
    assert flow.context == {"items": [1]}


# -- timeout -------------------------------------------------------------------


async def test_timeout_cancels_every_node_before_raising(autojump_clock: trio.abc.Clock) -> None:
    finally_ran: dict[str, float] = {}

    @rt.function_node
    async def sleeper(name: str) -> None:
        try:
            await trio.sleep(100)
        finally:
            finally_ran[name] = trio.current_time()

    @rt.function_node
    async def parent() -> None:
        try:
            await rt.call_batch(sleeper, ["a", "b"])
        finally:
            finally_ran["parent"] = trio.current_time()

    flow = rt.Flow("slow", entry_point=parent, timeout=5)
    with pytest.raises(rt.RunTimeoutError) as info:
        await flow.ainvoke()
    assert finally_ran == {"a": 5.0, "b": 5.0, "parent": 5.0}
    assert re.fullmatch(
        r"Flow 'slow' \(run run-[0-9a-f]{12}\) timed out after 5 s; every node of it was cancelled and its "
        r"finally blocks ran\.",
        str(info.value),
    )
    assert isinstance(info.value, TimeoutError)


async def test_timed_out_run_state(autojump_clock: trio.abc.Clock) -> None:
    @rt.function_node
    async def parent() -> None:
        await rt.call(greet, "fast")
        await trio.sleep(10)

    result = await rt.Flow("slow", entry_point=parent, timeout=2.5).arun()
    assert result.status is rt.Status.TIMED_OUT
    assert isinstance(result.error, rt.RunTimeoutError)
    statuses = {r.node: r.status for r in result.state.requests.values()}
    assert statuses == {"parent": rt.Status.CANCELLED, "greet": rt.Status.COMPLETED}
    assert result.state.requests["r1"].finished_at == 2.5
    assert result.state.error is not None
    assert result.state.error.type == "runtime.RunTimeoutError"


async def test_a_run_within_its_timeout_completes(autojump_clock: trio.abc.Clock) -> None:
    @rt.function_node
    async def nap() -> str:
        await trio.sleep(4)
        return "rested"

    assert await rt.Flow("nap", entry_point=nap, timeout=5).ainvoke() == "rested"


# -- awaited from asyncio -----------------------------------------------------------

_FROM_ASYNCIO_FIX = (
    r", but trioflow runs on Trio\. From asyncio code, run it in a worker thread with "
    r"await asyncio\.to_thread\(flow\.invoke, \.\.\.\), or through trio-asyncio with "
    r"await trio_asyncio\.trio_as_aio\(flow\.ainvoke\)\(\.\.\.\); from synchronous code, call flow\.invoke\(\.\.\.\)\.$"
)


async def _enter(manager: contextlib.AbstractAsyncContextManager[object]) -> None:
    async with manager:
        pass


def _graph_flow() -> rt.Flow[..., object]:
    class Start(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("go", handler=self.go)

        def go(self, **data: object) -> None:
            pass

    flow: rt.Flow[..., object] = rt.Flow("graph")
    flow.add_routine(Start(), "start")
    return flow


@pytest.mark.parametrize(
    ("call", "label"),
    [
        (lambda flow: flow.ainvoke("Ann"), r"Flow\('greet'\)\.ainvoke\(\.\.\.\) was awaited"),
        (lambda flow: flow.arun("Ann"), r"Flow\('greet'\)\.arun\(\.\.\.\) was awaited"),
        (
            lambda flow: _enter(flow.stream("Ann")),
            r"async with Flow\('greet'\)\.stream\(\.\.\.\) was entered",
        ),
        (lambda _: _graph_flow().aexecute("start"), r"Flow\('graph'\)\.aexecute\(\.\.\.\) was awaited"),
        (
            lambda _: _enter(_graph_flow().open_job("start")),
            r"async with Flow\('graph'\)\.open_job\(\.\.\.\) was entered",
        ),
    ],
)
def test_awaiting_a_flow_from_asyncio_says_trioflow_runs_on_trio(
    call: Callable[[rt.Flow[..., str]], Coroutine[object, object, object]], label: str
) -> None:
    flow = rt.Flow("greet", entry_point=greet)
    with pytest.raises(rt.OutsideTrioError, match=f"^{label} in asyncio{_FROM_ASYNCIO_FIX}"):
        asyncio.run(call(flow))


def test_a_flow_runs_from_asyncio_in_a_worker_thread() -> None:
    async def main() -> str:
        return await asyncio.to_thread(rt.Flow("greet", entry_point=greet).invoke, "Ann")

    assert asyncio.run(main()) == "Hello, Ann!"


# -- end_on_error ----------------------------------------------------------------


def _catching_parent(finally_ran: list[str]) -> rt.Node[[], str]:
    @rt.function_node
    async def sibling() -> None:
        try:
            await trio.sleep(100)
        finally:
            finally_ran.append("sibling")

    @rt.function_node
    async def failing() -> None:
        await trio.sleep(1)
        raise ConnectionError("refused")

    @rt.function_node
    async def parent() -> str:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rt.call, sibling)
            try:
                await rt.call(failing)
            except ConnectionError:
                nursery.cancel_scope.cancel()
                return "caught"
        return "not raised"

    return parent


async def test_end_on_error_false_lets_the_parent_catch(autojump_clock: trio.abc.Clock) -> None:
    finally_ran: list[str] = []
    result = await rt.Flow("lenient", entry_point=_catching_parent(finally_ran)).arun()
    assert result.status is rt.Status.COMPLETED
    assert result.result == "caught"
    assert finally_ran == ["sibling"]


async def test_end_on_error_true_ends_the_run_although_the_parent_catches(
    autojump_clock: trio.abc.Clock,
) -> None:
    finally_ran: list[str] = []
    flow = rt.Flow("strict", entry_point=_catching_parent(finally_ran), end_on_error=True)
    with pytest.raises(
        ConnectionError, match=r"^refused\nraised in node 'failing', request path: parent > failing \(r2\)$"
    ) as info:
        await flow.ainvoke()
    assert info.value.__notes__ == ["raised in node 'failing', request path: parent > failing (r2)"]
    assert finally_ran == ["sibling"]
    assert trio.current_time() == 1.0

    result = await flow.arun()
    assert result.status is rt.Status.FAILED
    statuses = {r.node: r.status for r in result.state.requests.values()}
    assert statuses == {
        "parent": rt.Status.CANCELLED,
        "failing": rt.Status.FAILED,
        "sibling": rt.Status.CANCELLED,
    }


@rt.function_node
async def _refused() -> str:
    raise ConnectionError("refused")


def _statuses(result: rt.RunResult[object]) -> dict[str, rt.Status]:
    return {r.node: r.status for r in result.state.requests.values()}


async def test_end_on_error_never_runs_a_parents_except_around_call() -> None:
    handled: list[str] = []
    cleaned: list[str] = []

    @rt.function_node
    async def parent() -> str:
        try:
            return await rt.call(_refused)
        except ConnectionError:
            handled.append("parent")  # a side effect end_on_error must prevent
            return "fallback"
        finally:
            cleaned.append("parent")

    flow = rt.Flow("strict", entry_point=parent, end_on_error=True)
    with pytest.raises(
        ConnectionError, match=r"^refused\nraised in node '_refused', request path: parent > _refused \(r2\)$"
    ):
        await flow.ainvoke()
    result = await flow.arun()
    assert result.status is rt.Status.FAILED
    assert isinstance(result.error, ConnectionError)
    assert _statuses(result) == {"parent": rt.Status.CANCELLED, "_refused": rt.Status.FAILED}
    assert handled == []
    assert cleaned == ["parent", "parent"]


@pytest.mark.parametrize("return_exceptions", [False, True])
async def test_end_on_error_never_runs_a_parents_except_around_call_batch(
    autojump_clock: trio.abc.Clock, return_exceptions: bool
) -> None:
    handled: list[object] = []

    @rt.function_node
    async def maybe(n: int) -> int:
        await trio.sleep(n)
        if n == 1:
            raise ConnectionError("refused")
        return n

    @rt.function_node
    async def parent() -> list[object]:
        try:
            results = await rt.call_batch(maybe, [2, 1, 3], return_exceptions=return_exceptions)
        except ConnectionError:
            handled.append("except")
            return []
        handled.append(results)  # with return_exceptions the error would be in the list
        return results

    result = await rt.Flow("strict", entry_point=parent, end_on_error=True).arun()
    assert result.status is rt.Status.FAILED
    assert str(result.error) == "refused"
    assert trio.current_time() == 1.0
    assert handled == []
    assert [r.status for r in result.state.requests.values()] == [
        rt.Status.CANCELLED,
        rt.Status.CANCELLED,
        rt.Status.FAILED,
        rt.Status.CANCELLED,
    ]


async def test_end_on_error_never_runs_the_except_of_any_ancestor() -> None:
    handled: list[str] = []

    @rt.function_node
    async def middle() -> str:
        try:
            return await rt.call(_refused)
        except ConnectionError:
            handled.append("middle")
            raise

    @rt.function_node
    async def top() -> str:
        try:
            return await rt.call(middle)
        except Exception:  # the widest catch a user may write
            handled.append("top")
            return "fallback"

    result = await rt.Flow("strict", entry_point=top, end_on_error=True).arun()
    assert result.status is rt.Status.FAILED
    assert str(result.error) == "refused"
    assert handled == []
    assert _statuses(result) == {
        "top": rt.Status.CANCELLED,
        "middle": rt.Status.CANCELLED,
        "_refused": rt.Status.FAILED,
    }


# -- cancellation from outside ------------------------------------------------------


async def test_cancelling_ainvoke_cancels_the_run(
    autojump_clock: trio.abc.Clock, tmp_path: pathlib.Path
) -> None:
    finally_ran: list[str] = []
    events: list[rt.Event] = []

    @rt.function_node
    async def child() -> None:
        try:
            await trio.sleep(100)
        finally:
            finally_ran.append("child")

    @rt.function_node
    async def parent() -> None:
        try:
            await rt.call(child)
        finally:
            finally_ran.append("parent")

    flow = rt.Flow("c", entry_point=parent, save_state=True, state_dir=tmp_path, subscribers=[events.append])
    with trio.move_on_after(3) as scope:
        await flow.ainvoke()
    assert scope.cancelled_caught
    assert sorted(finally_ran) == ["child", "parent"]
    assert events[-1].kind is rt.EventKind.RUN_FINISHED
    assert isinstance(events[-1].data, dict)
    assert events[-1].data["status"] == "cancelled"
    state = rt.read_state_file(tmp_path / "c.json")
    assert state.status is rt.Status.CANCELLED
    assert [r.status for r in state.requests.values()] == [rt.Status.CANCELLED] * 2
    await trio.testing.wait_all_tasks_blocked()


# -- saved state ----------------------------------------------------------------


def test_save_state_writes_the_state_document(tmp_path: pathlib.Path) -> None:
    flow = rt.Flow(
        "greet-flow", entry_point=greet, save_state=True, state_dir=tmp_path, context={"user_id": "123"}
    )
    result = flow.run("Ann")
    path = tmp_path / "greet-flow.json"
    assert flow.state_path == path
    doc = json.loads(path.read_text())
    assert (doc["format"], doc["version"]) == ("trioflow.state", 1)
    saved = rt.read_state_file(path)
    assert saved == result.state
    assert saved.context == {"user_id": "123"}
    # The run's own file, and the flow's latest; no temporary files left.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["greet-flow.json", "greet-flow.runs"]
    own = tmp_path / "greet-flow.runs" / f"{result.state.run_id}.json"
    assert list((tmp_path / "greet-flow.runs").iterdir()) == [own]
    assert flow.run_state_path(result.state.run_id) == own
    assert rt.read_state_file(own) == result.state


def test_concurrent_runs_of_one_flow_save_one_state_file_each(tmp_path: pathlib.Path) -> None:
    """Invariant: save_state never overwrites one run's file with another's; the flow's file is the latest."""

    async def main() -> list[rt.RunResult[str]]:
        results: list[rt.RunResult[str]] = []

        async def one(name: str) -> None:
            results.append(await flow.arun(name))

        async with trio.open_nursery() as nursery:
            for name in ("a", "b", "c"):
                nursery.start_soon(one, name)
        return results

    flow = rt.Flow("many", entry_point=greet, save_state=True, state_dir=tmp_path)
    results = trio.run(main)
    for result in results:
        assert rt.read_state_file(flow.run_state_path(result.state.run_id)) == result.state
    assert rt.read_state_file(flow.state_path).run_id == results[-1].state.run_id


def test_a_run_id_chosen_by_a_caller_stays_inside_the_state_dir(tmp_path: pathlib.Path) -> None:
    flow = rt.Flow("f", entry_point=greet, save_state=True, state_dir=tmp_path)
    path = flow.run_state_path("../../etc/passwd")
    assert path.parent == tmp_path / "f.runs"
    assert "/" not in path.name
    assert path.name.startswith("_.._etc_passwd~")


def test_save_state_default_directory(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rt.Flow("daily-report-v1", entry_point=greet, save_state=True).invoke("x")
    assert rt.read_state_file(tmp_path / ".trioflow" / "daily-report-v1.json").status is rt.Status.COMPLETED


@pytest.mark.parametrize(
    ("name", "file_name"),
    [
        ("greet-all", "greet-all.json"),
        ("daily-report-v1", "daily-report-v1.json"),
        ("v1.2_final", "v1.2_final.json"),
        ("../x", "_x~d6b96a97d147daaa.json"),
        ("/abs/x", "_abs_x~b9abcef727369aff.json"),
        ("a/b/c", "a_b_c~d76a7b72669c9cec.json"),
        ("assistant-x/../../../escape", "assistant-x_.._.._.._escape~6e8c3956c40f1447.json"),
        ("\0", "_~6e340b9cffb37a98.json"),
        ("\x1b[2J", "_2J~05704e8a84c06017.json"),
        ("CON", "CON~a3dbc4b644a9a2c5.json"),
        ("con.v2", "con.v2~1a80e66a095335df.json"),
        ("Greet", "Greet~d4fd03eee15d7906.json"),
    ],
)
def test_state_path_is_a_file_directly_in_the_state_dir(
    name: str, file_name: str, tmp_path: pathlib.Path
) -> None:
    assert rt.Flow(name, state_dir=tmp_path).state_path == tmp_path / file_name


def test_a_user_chosen_part_of_a_flow_name_cannot_write_outside_the_state_dir(tmp_path: pathlib.Path) -> None:
    user_id = "x/../../../escape"  # the per-user builder of examples/sessions.py, with a hostile id
    state_dir = tmp_path / "a" / "b" / "state"
    flow = rt.Flow(f"assistant-{user_id}", entry_point=greet, save_state=True, state_dir=state_dir)
    run_id = flow.run("x").state.run_id
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == [
        state_dir / "assistant-x_.._.._.._escape~6e8c3956c40f1447.json",
        state_dir / "assistant-x_.._.._.._escape~6e8c3956c40f1447.runs" / f"{run_id}.json",
    ]
    assert rt.read_state_file(flow.state_path).flow_name == "assistant-x/../../../escape"


def test_a_flow_name_of_10000_characters_saves_under_the_file_name_limit(tmp_path: pathlib.Path) -> None:
    name = "report-" + "x" * 9993
    flow = rt.Flow(name, entry_point=greet, save_state=True, state_dir=tmp_path)
    flow.invoke("x")
    saved, runs = sorted(tmp_path.iterdir())
    assert saved == flow.state_path
    assert runs == saved.with_suffix(".runs")
    assert saved.name == "report-" + "x" * 57 + "~" + saved.name[-21:-5] + ".json"
    assert len(saved.name) == 86
    assert rt.read_state_file(saved).flow_name == name


def test_a_symlink_at_the_state_path_is_replaced_not_followed(tmp_path: pathlib.Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "greet-flow.json").symlink_to(outside)
    rt.Flow("greet-flow", entry_point=greet, save_state=True, state_dir=state_dir).invoke("x")
    assert outside.read_text() == "keep me"
    assert not (state_dir / "greet-flow.json").is_symlink()
    assert rt.read_state_file(state_dir / "greet-flow.json").status is rt.Status.COMPLETED


def test_save_state_however_the_run_ends(tmp_path: pathlib.Path) -> None:
    flow = rt.Flow("f", entry_point=fail, save_state=True, state_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^boom\nraised in node 'fail', request path: fail \(r1\)$"):
        flow.invoke()
    state = rt.read_state_file(tmp_path / "f.json")
    assert state.status is rt.Status.FAILED
    assert state.error == rt.ErrorSummary("ValueError", "boom")
    assert state.requests["r1"].error == rt.ErrorSummary("ValueError", "boom", ("fail",))


async def test_save_state_of_a_timed_out_run(autojump_clock: trio.abc.Clock, tmp_path: pathlib.Path) -> None:
    @rt.function_node
    async def slow() -> None:
        await trio.sleep(10)

    flow = rt.Flow("slow", entry_point=slow, timeout=1, save_state=True, state_dir=tmp_path)
    with pytest.raises(rt.RunTimeoutError):
        await flow.ainvoke()
    state = rt.read_state_file(tmp_path / "slow.json")
    assert state.status is rt.Status.TIMED_OUT
    assert state.requests["r1"].status is rt.Status.CANCELLED


def test_overwriting_a_state_file_warns_naming_it(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    flow = rt.Flow("my-unique-run", entry_point=greet, save_state=True, state_dir=tmp_path)
    with caplog.at_level(logging.WARNING):
        first = flow.run("a")
        assert caplog.records == []
        second = flow.run("b")
    path = tmp_path / "my-unique-run.json"
    assert [r.getMessage() for r in caplog.records] == [f"State file {path} already exists, overwriting."]
    assert caplog.records[0].levelno == logging.WARNING
    assert first.state.run_id != second.state.run_id
    assert rt.read_state_file(path).run_id == second.state.run_id


def test_unserializable_context_is_reported_by_path_and_the_result_is_kept(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    @rt.function_node
    async def connect() -> object:
        conn = socket.socket()
        rt.context.put("conn", conn)
        rt.context.get("nested").append({"fn": print})  # type: ignore[attr-defined]
        return conn

    flow = rt.Flow("sock", entry_point=connect, save_state=True, state_dir=tmp_path, context={"nested": []})
    with caplog.at_level(logging.WARNING, logger="runtime.state"):
        result = flow.run()
    try:
        assert [r.getMessage() for r in caplog.records] == [
            f"Run {result.state.run_id} of flow 'sock': $.context.nested[0].fn, $.context.conn cannot be saved as "
            f"JSON; the state file {flow.run_state_path(result.state.run_id)} keeps their repr instead (listed under its "
            '"unserializable" key).'
        ]
        assert result.status is rt.Status.COMPLETED
        assert isinstance(result.result, socket.socket)
        doc = json.loads((tmp_path / "sock.json").read_text())
        assert doc["unserializable"] == ["$.context.nested[0].fn", "$.context.conn"]
        assert doc["state"]["context"]["conn"]["type"] == "socket.socket"
        assert doc["state"]["requests"][0]["result"].startswith("<socket.socket")
        assert rt.read_state_file(tmp_path / "sock.json").status is rt.Status.COMPLETED
    finally:
        result.result.close()  # type: ignore[union-attr]


def test_a_state_file_is_never_left_truncated(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    flow = rt.Flow("atomic", entry_point=greet, save_state=True, state_dir=tmp_path)
    first = flow.run("first")
    before = (tmp_path / "atomic.json").read_text()

    def crash(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", crash)
    with caplog.at_level(logging.ERROR, logger="runtime.state"):
        result = flow.run("second")
    # A failed save is reported, and never turns a finished run into an OSError.
    assert result.unwrap() == "Hello, second!"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        f"Could not save the state of run {result.state.run_id} of flow 'atomic' to {tmp_path / 'atomic.json'}."
    ]
    assert isinstance(errors[0].exc_info[1], OSError)  # type: ignore[index]
    assert (tmp_path / "atomic.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic.json", "atomic.runs"]
    assert [p.name for p in (tmp_path / "atomic.runs").iterdir()] == [f"{first.state.run_id}.json"]
