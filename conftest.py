"""Shared pytest configuration: Hypothesis profiles, and a check that tests keep out of ``.trioflow``.

``HYPOTHESIS_PROFILE=ci`` (set by ``.ci/run``) selects a fixed example budget so
the whole suite stays well inside CI's time limit; ``dev`` is the default.
"""

import os
import pathlib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


_REPO = pathlib.Path(__file__).resolve().parent


def _state_files() -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in (_REPO / ".trioflow").glob("*")}


@pytest.fixture(autouse=True, scope="session")
def _the_suite_writes_no_state_file_into_the_repository() -> Iterator[None]:
    """Tests (and the examples they run) save state under ``tmp_path``, never in ``./.trioflow``."""
    before = _state_files()
    yield
    written = sorted(name for name, mtime in _state_files().items() if before.get(name) != mtime)
    assert not written, f"the tests wrote {written} into {_REPO / '.trioflow'}; write under tmp_path instead"
