"""The README's tour of the actors kernel runs and prints what the README says."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

README = Path(__file__).parents[2] / "README.md"


def test_the_readme_tour_prints_what_it_promises(capsys: pytest.CaptureFixture[str]) -> None:
    text = README.read_text(encoding="utf-8")
    tour = text.split("## A tour of the actors kernel", 1)[1]
    code = re.search(r"```python\n(.*?)```", tour, re.DOTALL)
    printed = re.search(r"It prints:\n\n```text\n(.*?)```", tour, re.DOTALL)
    assert code is not None
    assert printed is not None
    exec(compile(code.group(1), str(README), "exec"), {"__name__": "readme_tour"})
    assert capsys.readouterr().out == printed.group(1)
