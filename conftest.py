"""Shared pytest configuration: Hypothesis profiles.

``HYPOTHESIS_PROFILE=ci`` (set by ``.ci/run``) selects a fixed example budget so
the whole suite stays well inside CI's time limit, derandomized: the same
examples every run. ``ci-random`` is the same budget with fresh examples:
CI runs it once more with ``--hypothesis-seed=N`` (a new N each run), and the
report header prints the seed, so a failure found there replays with that
seed. ``dev`` is the default.
"""

import os

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
