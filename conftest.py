"""Shared pytest configuration: Hypothesis profiles, and a check that tests keep out of ``.trioflow``.

``HYPOTHESIS_PROFILE=ci`` (set by ``.ci/run``) selects a fixed example budget so
the whole suite stays well inside CI's time limit, derandomized: the same
examples every run. ``ci-random`` is the same budget with fresh examples:
CI runs it once more with ``--hypothesis-seed=N`` (a new N each run), and the
report header prints the seed, so a failure found there replays with that
seed. ``dev`` is the default.
The ``ray_cluster`` fixture starts the local Ray the executor tests run on.
"""

from __future__ import annotations

import logging
import os
import pathlib
import sys
import warnings
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "ci-random",
    max_examples=40,
    deadline=None,
    derandomize=False,
    database=None,
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


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[ModuleType]:
    """A local Ray with 2 CPUs for the tests that need one; shut down at the end of the session.

    Local only (``address="local"`` never joins a running cluster), no
    dashboard, quiet. The workers get this process's ``sys.path``, so they
    can import the test modules that define the nodes they run. A missing
    Ray fails the test, naming the extra: nothing is skipped silently.
    """
    try:
        import ray
    except ImportError:
        pytest.fail("These tests need Ray: install the extra with pip install '.[test,ray]'.")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # local only: no usage report leaves the machine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,
            configure_logging=True,
            runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}},
        )
    try:
        yield ray
    finally:
        ray.shutdown()


def pytest_report_header(config: pytest.Config) -> str:
    """Say which Hypothesis profile and seed run, so a randomized failure can be replayed."""
    seed = config.getoption("hypothesis_seed", None)
    profile = os.environ.get("HYPOTHESIS_PROFILE", "dev")
    replay = (
        f"; replay with HYPOTHESIS_PROFILE={profile} pytest --hypothesis-seed={seed}"
        if seed is not None
        else ""
    )
    return f"hypothesis profile: {profile}, seed: {seed if seed is not None else 'per test'}{replay}"
