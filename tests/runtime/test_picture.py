"""SVG timelines, connection graphs and Mermaid text of a run."""

import pathlib
import re
import xml.etree.ElementTree as ET

import pytest

import runtime as rt
from runtime._cli import main
from runtime._picture import delivery_counts, graph_svg, mermaid, timeline_svg

SVG = "{http://www.w3.org/2000/svg}"
SCRIPT = "<script>alert(1)</script>"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # our own output, parsed to check it is well-formed


def _titles(root: ET.Element, cls: str) -> list[str]:
    return [
        (rect.findtext(f"{SVG}title") or "") for rect in root.iter(f"{SVG}rect") if rect.get("class") == cls
    ]


def test_timeline_has_one_bar_per_request_and_the_error_on_hover(node_run: rt.JobState) -> None:
    root = _parse(timeline_svg(node_run))
    bars = [rect for rect in root.iter(f"{SVG}rect") if rect.get("class")]
    assert sorted(rect.get("class") or "" for rect in bars) == [
        "cancelled",
        "completed",
        "completed",
        "failed",
        "failed",
    ]
    assert _titles(root, "failed")[1] == f"{SCRIPT} (r3) failed in 2.2 s ValueError: bad <b>\\x1b[2J"
    # Failures are crossed out: one cross per failed request.
    assert len(list(root.iter(f"{SVG}path"))) == 2
    # Lanes follow the tree: main, fetch, parse, <script>, slow.
    labels = [text.text for text in root.iter(f"{SVG}text") if text.text and "(r" in text.text]
    assert labels == ["main (r1)", "fetch (r2)", "parse (r4)", f"{SCRIPT} (r3)", "slow (r5)"]


def test_timeline_bars_run_from_start_to_end(node_run: rt.JobState) -> None:
    root = _parse(timeline_svg(node_run))
    main_bar = next(
        r for r in root.iter(f"{SVG}rect") if (r.findtext(f"{SVG}title") or "").startswith("main")
    )
    assert float(main_bar.get("x") or 0) == 280.0
    assert float(main_bar.get("width") or 0) == 900.0  # the whole run


def test_svg_escapes_markup_and_control_characters(node_run: rt.JobState, graph_job: rt.JobState) -> None:
    for svg in (timeline_svg(node_run), timeline_svg(graph_job)):
        assert "<script" not in svg
        assert "&lt;script&gt;" in svg
        assert "\x1b" not in svg


def test_graph_job_timeline_has_a_lane_per_routine_a_tick_per_event_and_the_cancel(
    graph_job: rt.JobState,
) -> None:
    root = _parse(timeline_svg(graph_job))
    ticks = _titles(root, "event")
    assert len(ticks) == 4
    assert ticks[2] == f"{SCRIPT}.done at +1 s {{'n': 1}}"
    labels = [text.text for text in root.iter(f"{SVG}text") if text.text and not text.text.startswith("+")]
    assert labels == ["source", SCRIPT]
    cancel = next(root.iter(f"{SVG}line"), None)
    marks = [line for line in root.iter(f"{SVG}line") if line.find(f"{SVG}title") is not None]
    assert cancel is not None
    assert [m.findtext(f"{SVG}title") for m in marks] == [
        "job cancelled: runtime._exceptions.RunCancelledError: Job 'job-1' was cancelled: stop"
    ]


def test_delivery_counts_are_emissions_minus_undelivered(
    graph_job: rt.JobState, graph_connections: list[tuple[str, str, str, str]]
) -> None:
    assert delivery_counts(graph_job, graph_connections) == {
        ("source", "item", SCRIPT, "input"): 2,
        (SCRIPT, "done", "source", "ack"): 1,
    }


def test_connection_graph_labels_each_connection_with_its_deliveries(
    graph_job: rt.JobState, graph_connections: list[tuple[str, str, str, str]]
) -> None:
    root = _parse(graph_svg(graph_job, graph_connections))
    edges = [path.findtext(f"{SVG}title") for path in root.iter(f"{SVG}path") if path.get("fill") == "none"]
    assert edges == [
        f"source.item -> {SCRIPT}.input: 2 delivered",
        f"{SCRIPT}.done -> source.ack: 1 delivered",
    ]
    texts = {text.text for text in root.iter(f"{SVG}text")}
    assert {"item → input: 2", "done → ack: 1", "source"} <= texts


def test_mermaid_tree_has_an_edge_per_parent_link(node_run: rt.JobState) -> None:
    text = mermaid(node_run)
    assert text.splitlines()[0] == "flowchart TD"
    edges = re.findall(r"^    (n\d+) --> (n\d+)$", text, re.MULTILINE)
    assert sorted(edges) == [("n0", "n1"), ("n0", "n2"), ("n0", "n4"), ("n1", "n3")]
    assert '#60;script#62;alert(1)#60;/script#62; (r3) failed 2.2 s"]:::failed' in text
    assert "<" not in text.replace("-->", "")


def test_mermaid_graph(graph_job: rt.JobState, graph_connections: list[tuple[str, str, str, str]]) -> None:
    assert mermaid(graph_job, graph_connections).splitlines() == [
        "flowchart LR",
        '    n0["source"]',
        '    n1["#60;script#62;alert(1)#60;/script#62;"]',
        '    n0 -- "item → input: 2" --> n1',
        '    n1 -- "done → ack: 1" --> n0',
    ]


def test_cli_show_svg_and_mermaid(
    node_run: rt.JobState, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(rt.write_state_file(node_run, tmp_path / "s.json"))
    out = tmp_path / "t.svg"
    assert main(["show", state, "--svg", str(out)]) == 0
    assert capsys.readouterr().out == ""
    assert out.read_text() == timeline_svg(node_run)
    assert main(["show", state, "--mermaid"]) == 0
    assert capsys.readouterr().out == mermaid(node_run) + "\n"


def test_cli_show_svg_with_the_flow_draws_its_connection_graph(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = tmp_path / "graph_flows.py"
    flows.write_text(
        "import runtime as rt\n\n"
        "class Echo(rt.Routine):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.define_slot('input', handler=self.on_input)\n"
        "        self.define_event('output', ['data'])\n\n"
        "    async def on_input(self, data=None, **_):\n"
        "        self.emit('output', data=data)\n\n"
        "flow = rt.Flow(flow_id='echo')\n"
        "flow.add_routine(Echo(), 'a')\n"
        "flow.add_routine(Echo(), 'b')\n"
        "flow.connect('a', 'output', 'b', 'input')\n"
    )
    import importlib.util

    spec = importlib.util.spec_from_file_location("graph_flows_for_test", flows)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    state = module.flow.execute("a", {"data": 1})
    saved = str(rt.write_state_file(state, tmp_path / "s.json"))
    assert main(["show", saved, "--svg", str(tmp_path / "t.svg"), "--flow", f"{flows}:flow"]) == 0
    graph = (tmp_path / "t-graph.svg").read_text()
    assert "a.output -&gt; b.input: 1 delivered" in graph
    assert main(["show", saved, "--mermaid", "--flow", f"{flows}:flow"]) == 0
    assert '    n0 -- "output → input: 1" --> n1' in capsys.readouterr().out


def test_cli_show_svg_to_an_unwritable_path(
    node_run: rt.JobState, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(rt.write_state_file(node_run, tmp_path / "s.json"))
    target = tmp_path / "no" / "such" / "t.svg"
    assert main(["show", state, "--svg", str(target)]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        f"python -m runtime show: error: Cannot write the timeline to {target}: No such file or directory. "
        "Give a writable path with a folder that exists.\n"
    )
