"""Every Python snippet of docs/fuzzing.md and of the README's "Fuzz your workflow" section runs.

The snippets of a page run in order in one namespace, as a reader would
paste them; then the tests they define run, and those that show a bug must
report it as the page says.
"""

from __future__ import annotations

import functools
import pathlib
import re

import pytest
import trio
import trio.testing
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

REPO = pathlib.Path(__file__).resolve().parents[2]
FAST = settings(max_examples=10, database=None, derandomize=True, deadline=None)


def snippets(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


def run_page(name: str, blocks: list[str]) -> dict[str, object]:
    namespace: dict[str, object] = {"__name__": f"doc_{name}"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{name} snippet #{i}", "exec"), namespace)  # the docs' own code
    return namespace


def fails_with(test: object, message: str) -> str:
    with pytest.raises(AssertionError) as caught:
        test()  # type: ignore[operator]
    assert str(caught.value).split("\n")[0] == message
    return "\n".join(getattr(caught.value, "__notes__", []))


def test_the_readme_fuzz_example_runs_and_finds_its_bug() -> None:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Fuzz your workflow") :]
    section = section[: section.index("\n## ", 5)]
    blocks = snippets(section)
    assert len(blocks) == 1
    namespace = run_page("README", blocks)
    notes = fails_with(namespace["test_an_order_is_charged_at_most_once"], "order-1 was charged 3 times")
    shown = re.search(r"# Falsifying example: (plan=.*)", blocks[0])
    assert shown is not None
    assert shown.group(1) + "," in notes


def test_every_fuzzing_doc_snippet_runs() -> None:
    blocks = snippets((REPO / "docs" / "fuzzing.md").read_text())
    assert len(blocks) == 9
    namespace = run_page("fuzzing.md", blocks)
    # The checkout bug, reported as the page shows it.
    notes = fails_with(
        namespace["test_a_purchase_is_charged_at_most_once"],
        "checkout charged [30, 30, 30] for one purchase ('gave up')",
    )
    assert "plan=FaultPlan({'send_receipt': Fault.raising(InjectedError('injected fault'))})," in notes
    # The runner's own checks pass on a batch that lets cancellation through.
    namespace["test_a_cancelled_batch_stops"]()  # type: ignore[operator]
    # The async test, run as pytest-trio would: each example in its own trio.run.
    cancelled = namespace["test_a_cancelled_checkout_stops"]
    inner = cancelled.hypothesis.inner_test  # type: ignore[attr-defined]

    def in_trio(**kwargs: object) -> None:
        trio.run(functools.partial(inner, **kwargs), clock=trio.testing.MockClock(autojump_threshold=0))

    cancelled.hypothesis.inner_test = in_trio  # type: ignore[attr-defined]
    cancelled(autojump_clock=None)  # type: ignore[operator]
    # The retried confirmation, found with the exceptions the code catches.
    fails_with(namespace["test_an_order_is_paid_once"], "o-1 was paid 3 times")
    # A routine graph of one's own, with faults under its retry strategy.
    namespace["test_a_graph_charges_each_order_once"]()  # type: ignore[operator]
    # The state machine, briefly.
    run_state_machine_as_test(namespace["Sessions"], settings=settings(FAST, stateful_step_count=5))  # type: ignore[arg-type]
