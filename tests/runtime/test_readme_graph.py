"""The README's routine-graph example runs and prints what its comments say."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

README = Path(__file__).parents[2] / "README.md"


def test_the_readme_routine_graph_example_prints_what_its_comments_say(
    capsys: pytest.CaptureFixture[str],
) -> None:
    section = README.read_text(encoding="utf-8").split("## Routine graphs", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    # Each print(...) line ends with "# what it prints" (or "# what: why").
    promised = [line.split("# ", 1)[1] for line in code.group(1).splitlines() if line.startswith("print(")]
    exec(compile(code.group(1), str(README), "exec"), {"__name__": "readme_graph"})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(promised) == 3
    for out, comment in zip(printed, promised, strict=True):
        assert comment == out or comment.startswith(f"{out}: "), (out, comment)
