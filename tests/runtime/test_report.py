"""``python -m runtime report``: one self-contained HTML page, rendered in headless Chromium.

The Chromium tests need Debian's ``chromium`` package (``.ci/run`` installs it);
without it they fail, saying so, rather than skip.
"""

import html.parser
import json
import pathlib
import re
import shutil
import subprocess

import pytest

import runtime as rt
from runtime._cli import main
from runtime._report import render_report

SCRIPT = "<script>alert(1)</script>"
_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "Chromium is not installed, so the HTML report cannot be rendered. "
        "Install it: apt-get update && apt-get install -y chromium"
    )


def _browse(page: pathlib.Path, tmp_path: pathlib.Path, *mode: str) -> tuple[str, list[str]]:
    """Open *page* in a fresh headless Chromium; return its stdout and the URLs the page requested."""
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    netlog = profile.with_suffix(".netlog.json")
    proc = subprocess.run(
        [_chromium(), *_FLAGS, f"--user-data-dir={profile}", f"--log-net-log={netlog}", *mode, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    # Chromium's own background requests have no page behind them; the page's carry its file:// key.
    requested = [
        event["params"]["url"]
        for event in log["events"]
        if event["type"] == start_job and "file://" in event["params"].get("network_isolation_key", "")
    ]
    return proc.stdout, requested


class _Text(html.parser.HTMLParser):
    """The page's visible text (not inside <style> or <title>) and the tags it has."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self.tags: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag in ("style", "title", "head"):
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title", "head"):
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.chunks.append(data)


def test_the_check_for_network_requests_catches_one(tmp_path: pathlib.Path) -> None:
    """A control: a page that loads an image is caught, so the report's empty list means something."""
    page = tmp_path / "control.html"
    page.write_text('<html><body><img src="http://127.0.0.1:9/canary.png">hi</body></html>')
    _, requested = _browse(page, tmp_path, "--dump-dom")
    assert requested == ["http://127.0.0.1:9/canary.png"]


def test_report_renders_in_chromium_names_the_failed_request_and_loads_nothing(
    node_run: rt.JobState, tmp_path: pathlib.Path
) -> None:
    state = rt.write_state_file(node_run, tmp_path / "s.json")
    page = tmp_path / "run.html"
    assert main(["report", str(state), "-o", str(page)]) == 0
    dom, requested = _browse(page, tmp_path, "--dump-dom")
    assert requested == []
    parser = _Text()
    parser.feed(dom)
    text = re.sub(r"\s+", " ", "".join(parser.chunks))
    assert "script" not in parser.tags  # the node called <script> is text, not an element
    assert f"{SCRIPT} (r3): ValueError: bad <b>\\x1b[2J" in text  # the failed requests list
    assert f"{SCRIPT} (r3) failed in 2.2 s" in text  # the tree
    assert "main (r1) failed in 2.5 s" in text
    assert "status: failed" in text
    shot = tmp_path / "run.png"
    _browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,1600")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000  # a drawn page, not a blank one


def test_report_is_self_contained(node_run: rt.JobState, graph_job: rt.JobState) -> None:
    for state, connections in ((node_run, []), (graph_job, [("source", "item", SCRIPT, "input")])):
        page = render_report(state, connections)
        assert "Content-Security-Policy" in page
        assert "default-src 'none'" in page
        assert re.search(r"(https?:|//[a-z]|src=|href=|@import|url\((?!#))", page) is None
        assert "<script" not in page
        assert "\x1b" not in page


def test_report_of_a_graph_job_has_the_history_and_connection_graph(
    graph_job: rt.JobState, graph_connections: list[tuple[str, str, str, str]]
) -> None:
    page = render_report(graph_job, graph_connections)
    assert "<h2>History</h2>" in page
    assert "<h2>Connections</h2>" in page
    assert "item → input: 2" in page
    assert "<h2>Undelivered</h2>" in page


def test_report_to_an_unwritable_path(
    node_run: rt.JobState, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = rt.write_state_file(node_run, tmp_path / "s.json")
    target = tmp_path / "missing" / "run.html"
    assert main(["report", str(state), "-o", str(target)]) == 2
    assert capsys.readouterr().err == (
        f"python -m runtime report: error: Cannot write the report to {target}: No such file or directory. "
        "Give a writable path with a folder that exists.\n"
    )


def test_report_of_a_state_of_another_version(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format": "trioflow.state", "version": 99, "state": {}}))
    assert main(["report", str(path), "-o", str(tmp_path / "r.html")]) == 2
    assert capsys.readouterr().err == (
        f"python -m runtime report: error: State file {path} has version 99, but this trioflow reads version 1. "
        "Upgrade trioflow to read it.\n"
    )
    assert not (tmp_path / "r.html").exists()
