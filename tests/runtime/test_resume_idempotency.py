"""Durable runs: rt.idempotency_key(), and nodes made with idempotent=False on resume."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio

import runtime as rt

charged: list[str] = []
#: The run's cancel scope: a node cancels it to stop its run mid-call, as a crash would.
stop: list[trio.CancelScope] = []


@rt.function_node(idempotent=False)
async def pay(amount: int) -> str:
    charged.append(rt.idempotency_key())
    if stop:
        stop.pop().cancel()  # the run stops while this call is in flight
        await trio.sleep_forever()
    return f"paid {amount}"


@rt.function_node
async def note(amount: int) -> int:
    charged.append(f"note {amount}")
    return amount


@rt.function_node
async def checkout(amount: int) -> str:
    await rt.call(note, amount)
    return await rt.call(pay, amount)


@pytest.fixture(autouse=True)
def _fresh() -> None:
    charged.clear()
    stop.clear()


async def _cut_short(flow: rt.Flow[..., object], store: rt.SQLiteStore, *args: object) -> str:
    """Run *flow*, stopped from outside while a node runs; return the run id (all its records committed)."""
    scope = trio.CancelScope()
    stop.append(scope)
    async with store:
        with scope:
            await flow.arun(*args)
    (summary,) = await store.runs()
    return summary.run_id


async def test_an_unfinished_call_of_a_non_idempotent_node_is_not_run_again_unless_the_resume_says_so(
    tmp_path: Path,
) -> None:
    """Invariant: a resume never starts again, unasked, a call of an idempotent=False node that may have done its work."""
    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = rt.Flow("shop", entry_point=checkout, store=store)
    run_id = await _cut_short(flow, store, 5)
    key = "checkout > pay[1]"
    assert charged == ["note 5", f"{run_id}:{key}"]
    refused = await flow._aresume(run_id, ...)
    assert refused.status is rt.Status.FAILED
    assert isinstance(refused.error, rt.ResumeError)
    assert str(refused.error) == (
        f"Run {run_id!r} stopped before running {key!r} again: the stored run started this call of 'pay', "
        "made with idempotent=False, and the store holds no result of it (it was cut short, or returned a "
        "value that is not JSON), so its work may be done already. Check whether it was (the node's "
        f"rt.idempotency_key() is {run_id + ':' + key!r}), then resume with "
        f"flow.resume({run_id!r}, rerun=[{key!r}]) to run it again."
    )
    assert charged == ["note 5", f"{run_id}:{key}"]  # 'note' completed: replayed; 'pay' refused
    # Refused again while nobody says otherwise; another key does not say so.
    with pytest.raises(rt.ResumeError, match=re.escape(f"rerun=[{key!r}]")):
        await flow.aresume(run_id, rerun=["checkout > pay[0]"])
    assert await flow.aresume(run_id, rerun=[key]) == "paid 5"
    # Every attempt gave the call the same key: a de-duplicating service sees one payment.
    assert charged == ["note 5", f"{run_id}:{key}", f"{run_id}:{key}"]
    (summary,) = await store.runs()
    assert (summary.status, summary.attempts) == (rt.Status.COMPLETED, 4)


async def test_a_refused_call_its_caller_caught_does_not_move_the_places_of_later_calls(
    tmp_path: Path,
) -> None:
    """A call refused before it was made keeps its place: the next resume checks later calls at theirs."""

    @rt.function_node
    async def tolerant(amount: int) -> str:
        try:
            paid = await rt.call(pay, amount)
        except ValueError:  # rt.ResumeError is one: the run is ending all the same
            paid = "not paid"
        await rt.call(note, amount)
        return paid

    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = rt.Flow("tolerant", entry_point=tolerant, store=store)
    run_id = await _cut_short(flow, store, 5)
    refused = await flow._aresume(run_id, ...)
    assert isinstance(refused.error, rt.ResumeError)
    assert await flow.aresume(run_id, rerun=True) == "paid 5"


async def test_a_node_that_catches_a_refusal_and_returns_keeps_no_result(tmp_path: Path) -> None:
    """Invariant: what a node returns after its run refused a call is never stored, so never replayed."""

    @rt.function_node
    async def careless(amount: int) -> str:
        try:
            return await rt.call(pay, amount)
        except ValueError:  # rt.ResumeError is one; no checkpoint follows, so the run's cancel comes too late
            return "not paid"

    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = rt.Flow("careless", entry_point=careless, store=store)
    run_id = await _cut_short(flow, store, 5)
    refused = await flow._aresume(run_id, ...)
    assert isinstance(refused.error, rt.ResumeError)
    assert [r.kind for r in await store.records(run_id) if r.node == "careless"][
        -1
    ] is rt.EventKind.REQUEST_CANCELLED
    assert await flow.aresume(run_id, rerun=True) == "paid 5"


async def test_rerun_true_runs_every_unfinished_call_again(tmp_path: Path) -> None:
    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = rt.Flow("shop", entry_point=checkout, store=store)
    run_id = await _cut_short(flow, store, 7)
    assert await flow.aresume(run_id, rerun=True) == "paid 7"


async def test_a_completed_call_of_a_non_idempotent_node_is_replayed_not_refused(tmp_path: Path) -> None:
    attempts: list[int] = []

    @rt.function_node
    async def twice(amount: int) -> list[str]:
        first = await rt.call(pay, amount)
        await rt.call(note, -1)
        attempts.append(1)
        if len(attempts) < 2:
            raise RuntimeError("the shipping service is down")
        return [first, "shipped"]

    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = rt.Flow("ship", entry_point=twice, store=store)
    run_id = (await flow.arun(3)).state.run_id
    assert await flow.aresume(run_id) == ["paid 3", "shipped"]
    assert [c for c in charged if not c.startswith("note")] == [f"{run_id}:twice > pay[0]"]  # paid once


async def test_a_non_idempotent_call_whose_result_is_not_json_is_not_run_again_unasked(
    tmp_path: Path,
) -> None:
    @rt.function_node(idempotent=False)
    async def transfer() -> tuple[str, int]:
        charged.append("transfer")
        return ("sent", 1)

    @rt.function_node
    async def bank() -> object:
        sent = await rt.call(transfer)
        if len(charged) < 2:
            raise RuntimeError("the ledger is down")
        return sent

    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = rt.Flow("bank", entry_point=bank, store=store)
    run_id = (await flow.arun()).state.run_id
    with pytest.raises(rt.ResumeError, match=r"returned a value that is not JSON"):
        await flow.aresume(run_id)
    assert charged == ["transfer"]
    assert await flow.aresume(run_id, rerun=["bank > transfer[0]"]) == ("sent", 1)


async def test_a_non_idempotent_node_paused_at_its_own_interrupt_resumes_with_the_answer(
    tmp_path: Path,
) -> None:
    """The node (and every call waiting for it) was cancelled by its own pause: the answer resumes it."""

    @rt.function_node(idempotent=False)
    async def approve_and_pay(amount: int) -> str:
        answer = await rt.interrupt({"pay": amount})
        charged.append(f"pay {amount} {answer}")
        return str(answer)

    @rt.function_node(idempotent=False)
    async def order(amount: int) -> str:
        return await rt.call(approve_and_pay, amount)

    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = rt.Flow("approvals", entry_point=order, store=store)
    paused = await flow.arun(9)
    assert paused.status is rt.Status.PAUSED
    assert await flow.aresume(paused.state.run_id, "yes") == "yes"
    assert charged == ["pay 9 yes"]


def test_idempotency_key_outside_a_node_is_refused() -> None:
    with pytest.raises(
        rt.OutsideRunError, match=r"^rt\.idempotency_key\(\) was called outside a node's request"
    ):
        rt.idempotency_key()


def test_bad_idempotent_and_rerun_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(
        TypeError,
        match=r"^@function_node\(idempotent='no'\) on 'len': idempotent is True \(the default\) or False\.$",
    ):
        rt.function_node(idempotent="no")(len)  # type: ignore[call-overload]
    flow = rt.Flow("shop", entry_point=checkout, store=rt.SQLiteStore(tmp_path / "runs.db"))
    with pytest.raises(TypeError, match=r"rerun is True, False, or the call keys to run again"):
        flow.resume("run-1", rerun="checkout > pay[1]")  # type: ignore[arg-type]
    assert not (tmp_path / "runs.db").exists()  # refused before the store was touched


_SHOP = textwrap.dedent(
    """
    import trio

    import runtime as rt

    STOP: list[trio.CancelScope] = []


    @rt.function_node(idempotent=False)
    async def pay(amount: int) -> str:
        if STOP:
            STOP.pop().cancel()
            await trio.sleep_forever()
        return f"paid {amount}"


    flow = rt.Flow("shop", entry_point=pay, store=rt.SQLiteStore(DB))
    """
)


def test_resume_from_the_command_line_reruns_a_named_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runtime._cli import main

    script = tmp_path / "shop.py"
    script.write_text(_SHOP.replace("DB", repr(str(tmp_path / "runs.db"))))
    namespace: dict[str, object] = {}
    exec(compile(script.read_text(), str(script), "exec"), namespace)  # the same flow, to start the run
    flow, scopes = namespace["flow"], namespace["STOP"]
    assert isinstance(flow, rt.Flow)
    assert isinstance(flow.store, rt.SQLiteStore)
    assert isinstance(scopes, list)

    async def cut_short() -> str:
        scope = trio.CancelScope()
        scopes.append(scope)
        async with flow.store:
            with scope:
                await flow.arun(4)
        (summary,) = await flow.store.runs()
        return summary.run_id

    run_id = trio.run(cut_short)
    assert main(["resume", f"{script}:flow", run_id]) == 1
    assert "stopped before running 'pay' again" in capsys.readouterr().out
    assert main(["resume", f"{script}:flow", run_id, "--rerun", "pay"]) == 0
    assert "completed" in capsys.readouterr().out


_KILLED = textwrap.dedent(
    """
    import os
    import signal
    import sys

    import runtime as rt


    @rt.function_node
    async def step(i: int) -> int:
        return i


    @rt.function_node(idempotent=False)
    async def pay(amount: int) -> str:
        print("paying", rt.idempotency_key(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # the process dies as the payment goes out
        return "unreachable"


    @rt.function_node
    async def checkout(amount: int) -> str:
        for i in range(3):
            await rt.call(step, i)
        return await rt.call(pay, amount)


    rt.Flow("shop", entry_point=checkout, store=rt.SQLiteStore(sys.argv[1])).run(5)
    """
)


def test_a_process_killed_inside_a_non_idempotent_node_leaves_its_start_committed(tmp_path: Path) -> None:
    """Invariant: an idempotent=False node runs only once its store has committed that it started."""
    script, db = tmp_path / "killed.py", tmp_path / "runs.db"
    script.write_text(_KILLED)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.run(
        [sys.executable, str(script), str(db)], capture_output=True, text=True, env=env, check=False
    )
    assert child.returncode == -9, child.stderr
    run_id = child.stdout.split()[1].split(":")[0]

    @rt.function_node(idempotent=False, name="pay")
    async def pay_once(amount: int) -> str:
        charged.append("paid again")
        return "paid"

    @rt.function_node(name="step")
    async def step(i: int) -> int:
        return i

    @rt.function_node(name="checkout")
    async def checkout_again(amount: int) -> str:
        for i in range(3):
            await rt.call(step, i)
        return await rt.call(pay_once, amount)

    flow = rt.Flow("shop", entry_point=checkout_again, store=rt.SQLiteStore(db))
    with pytest.raises(rt.ResumeError, match=r"stopped before running 'checkout > pay\[3\]' again"):
        flow.resume(run_id)
    assert charged == []
    assert flow.resume(run_id, rerun=True) == "paid"
    assert charged == ["paid again"]


# -- calls keyed by their arguments ------------------------------------------------


async def test_a_keyed_call_replays_its_own_result_when_its_caller_calls_in_another_order(
    tmp_path: Path,
) -> None:
    """Invariant: a call of a node made with idempotency_key= is matched by its key, not by its place."""
    orders = [["a", "b", "boom"], ["b", "a"]]  # the caller's calls start in another order on resume
    fetched: list[str] = []

    @rt.function_node(idempotency_key=lambda item: item)
    async def fetch(item: str) -> str:
        fetched.append(rt.idempotency_key())
        if item == "boom":
            raise RuntimeError("the crawler went down")
        return item.upper()

    @rt.function_node
    async def crawl() -> dict[str, str]:
        return {item: await rt.call(fetch, item) for item in orders.pop(0)}

    store = rt.SQLiteStore(tmp_path / "runs.db")
    flow = rt.Flow("crawl", entry_point=crawl, store=store)
    run_id = (await flow.arun()).state.run_id
    assert fetched == [
        f"{run_id}:crawl > fetch<a>",
        f"{run_id}:crawl > fetch<b>",
        f"{run_id}:crawl > fetch<boom>",
    ]
    fetched.clear()
    assert await flow.aresume(run_id) == {"b": "B", "a": "A"}
    assert fetched == []  # both replayed from the store, each its own result


def test_a_bad_idempotency_key_is_refused_naming_the_node() -> None:
    with pytest.raises(TypeError, match=r"^@function_node\(idempotency_key='id'\) on 'len': give a function"):
        rt.function_node(idempotency_key="id")(len)  # type: ignore[call-overload]

    @rt.function_node(idempotency_key=lambda n: n)
    async def numbered(n: int) -> int:
        return n

    @rt.function_node
    async def caller() -> int:
        return await rt.call(numbered, 3)

    with pytest.raises(
        TypeError,
        match=r"^The idempotency_key function of node 'numbered' returned 3 \(type int\) for a call; it must return a str",
    ):
        rt.Flow("numbers", entry_point=caller).invoke()
