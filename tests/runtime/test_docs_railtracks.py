"""Every Python snippet of docs/coming-from-railtracks.md runs and prints what its comments say.

The snippets run in order in one namespace, as a reader would paste them,
in a context of their own so their ``rt.set_config`` reaches no other test.
Each ``print(...)  # text`` line must print ``text``.
"""

import contextlib
import contextvars
import io
import pathlib
import re
import warnings

import runtime as rt

REPO = pathlib.Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "coming-from-railtracks.md"


def test_every_snippet_runs_and_prints_what_it_says() -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL)
    assert len(blocks) == 7
    expected = [m for block in blocks for m in re.findall(r"^\s*print\(.*\)  # (.*)$", block, re.MULTILINE)]
    namespace: dict[str, object] = {"__name__": "doc_coming_from_railtracks"}
    out = io.StringIO()

    def run() -> None:
        for i, block in enumerate(blocks):
            # The page's own code, as a reader would run it.
            exec(compile(block, f"coming-from-railtracks.md snippet #{i}", "exec"), namespace)

    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        # The page shows rt.Session, which warns that it is deprecated in favour of rt.Flow.
        warnings.simplefilter("ignore", rt.TrioflowDeprecationWarning)
        contextvars.copy_context().run(run)
    assert out.getvalue().splitlines() == expected


def test_the_readme_links_the_page() -> None:
    assert "(docs/coming-from-railtracks.md)" in (REPO / "README.md").read_text()
