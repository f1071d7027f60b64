"""Whatever a flow is named, its state file is one file directly inside the state directory."""

import os
import pathlib
import tempfile

from hypothesis import given
from hypothesis import strategies as st

import runtime as rt

# Pieces that have broken path handling somewhere: separators, parent links,
# NUL and terminal escapes, Windows device names, the hash separator itself.
_HOSTILE = [
    "..",
    ".",
    "/",
    "\\",
    "\0",
    "\x1b[2J",
    "\n",
    " ",
    "~",
    "C:",
    "CON",
    "nul",
    "com1",
    "-",
    "é",
    "\ud800",
]

flow_names = (
    st.text(min_size=1)
    | st.text(st.characters(codec=None), min_size=1, max_size=40)  # surrogates too
    | st.lists(st.sampled_from(_HOSTILE) | st.text(max_size=4), min_size=1, max_size=12).map("".join)
    | st.text(st.sampled_from("aB/.\0"), min_size=200, max_size=10_000)
).filter(bool)


def _is_one_safe_file_name(file_name: str) -> bool:
    return (
        file_name.isascii()
        and file_name.isprintable()
        and not any(sep in file_name for sep in ("/", "\\", ":", "\0"))
        and not file_name.startswith((".", "-"))
        and file_name.endswith(".json")
        and len(file_name.encode()) <= 105  # leaves room for the ".<name>.<random>.tmp" beside it
    )


@given(name=flow_names)
def test_any_flow_name_gives_one_safe_file_directly_in_the_state_dir(name: str) -> None:
    """The state path is ``state_dir / f`` with *f* one short, printable ASCII file name."""
    state_dir = pathlib.Path("/srv/state")
    path = rt.Flow(name, state_dir=state_dir).state_path
    assert path.parent == state_dir
    assert _is_one_safe_file_name(path.name), path.name
    assert os.path.normpath(path) == os.fspath(path)


@given(first=flow_names, second=flow_names)
def test_distinct_flow_names_give_distinct_files_even_ignoring_case(first: str, second: str) -> None:
    """Two names map to one file only if they are the same name (case-insensitive file systems too)."""
    if first != second:
        assert rt.state_file_name(first).casefold() != rt.state_file_name(second).casefold()


@given(name=flow_names)
def test_a_saved_run_writes_only_its_state_file_inside_the_state_dir(name: str) -> None:
    """Running a flow with save_state writes its run's file and the flow's latest, in the state dir, and nothing else anywhere."""
    with tempfile.TemporaryDirectory() as sandbox:
        state_dir = pathlib.Path(sandbox) / "deep" / "state"
        flow = rt.Flow(name, entry_point=rt.function_node(lambda: 1), save_state=True, state_dir=state_dir)
        result = flow.run()
        assert result.status is rt.Status.COMPLETED
        written = sorted(p for p in pathlib.Path(sandbox).rglob("*") if p.is_file())
        assert written == sorted([flow.state_path, flow.run_state_path(result.state.run_id)])
        assert rt.read_state_file(flow.state_path).flow_name == name
