"""The complete text view of a run (``show``) and its ``--json`` twin: golden files."""

import json
import pathlib

import pytest

import runtime as rt
from runtime._cli import main
from runtime._show import keep_only, render_json, render_run, shorten, walk_tree

GOLDEN = pathlib.Path(__file__).parent / "golden"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    assert text + "\n" == path.read_text(encoding="utf-8"), f"{name} changed; compare with {path}"


def test_show_prints_tree_log_context_states_shared_data_and_undelivered(node_run: rt.JobState) -> None:
    _golden("show_node_run.txt", render_run(node_run, full=True))


def test_show_only_failed_keeps_failed_requests_and_their_ancestors(node_run: rt.JobState) -> None:
    _golden("show_node_run_failed.txt", render_run(node_run, full=True, only=[rt.Status.FAILED]))


def test_show_only_a_status_no_request_has(node_run: rt.JobState) -> None:
    lines = render_run(node_run, only=[rt.Status.TIMED_OUT]).splitlines()
    assert lines[2] == "requests: none of 5 is timed_out"


def test_show_a_graph_job(graph_job: rt.JobState) -> None:
    _golden("show_graph_job.txt", render_run(graph_job, full=True))


def test_show_marks_a_run_in_progress(node_run: rt.JobState) -> None:
    node_run.status = rt.Status.RUNNING
    node_run.finished_at = None
    assert render_run(node_run).splitlines()[0] == (
        "flow 'demo', run run-1: running in - (still in progress: this is a snapshot)"
    )


def test_show_escapes_control_characters_but_keeps_markup_as_text(node_run: rt.JobState) -> None:
    text = render_run(node_run, full=True)
    assert "\x1b" not in text
    assert "<script>alert(1)</script> (r3) failed" in text  # a terminal runs no markup: shown as it is
    assert r"bad <b>\x1b[2J" in text


def test_show_shortens_long_values(node_run: rt.JobState) -> None:
    line = next(line for line in render_run(node_run).splitlines() if "(r5)" in line)
    assert line.endswith("…")
    assert len(line) < 200
    assert shorten("abcdef", 4) == "abc…"
    assert shorten("abcd", 4) == "abcd"


def test_json_is_the_state_document_and_loads_back(node_run: rt.JobState) -> None:
    doc = json.loads(render_json(node_run))
    assert rt.load_state(doc) == node_run


def test_json_only_failed_cuts_the_tree(node_run: rt.JobState) -> None:
    doc = json.loads(render_json(node_run, only=[rt.Status.FAILED]))
    assert [r["id"] for r in doc["state"]["requests"]] == ["r1", "r3"]


def test_keep_only_and_walk_tree_survive_a_parent_cycle() -> None:
    state = rt.JobState(job_id="j", flow_id="f")
    state.requests = {
        "a": rt.Request("a", "b", "x", rt.Status.FAILED),
        "b": rt.Request("b", "a", "y", rt.Status.COMPLETED),
    }
    assert set(keep_only(state.requests, [rt.Status.FAILED])) == {"a", "b"}
    assert sorted(r.id for r, *_ in walk_tree(state.requests)) == ["a", "b"]


def test_walk_tree_draws_a_deep_chain_without_recursion() -> None:
    state = rt.JobState(job_id="j", flow_id="f")
    for i in range(5000):
        state.requests[f"r{i}"] = rt.Request(f"r{i}", f"r{i - 1}" if i else None, "n", rt.Status.COMPLETED)
    depths = [depth for _, depth, _, _ in walk_tree(state.requests)]
    assert depths == list(range(5000))


def _save(state: rt.JobState, tmp_path: pathlib.Path) -> str:
    return str(rt.write_state_file(state, tmp_path / "s.json"))


def test_cli_show_is_the_full_view(
    node_run: rt.JobState, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", _save(node_run, tmp_path), "--only", "failed"]) == 0
    _golden("show_node_run_failed.txt", capsys.readouterr().out.rstrip("\n"))


def test_cli_show_json(
    node_run: rt.JobState, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", _save(node_run, tmp_path), "--json"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert rt.load_state(json.loads(out)) == node_run


def test_cli_show_rejects_an_unknown_status(
    node_run: rt.JobState, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["show", _save(node_run, tmp_path), "--only", "broken"])
    assert "argument --only: invalid choice: 'broken'" in capsys.readouterr().err
