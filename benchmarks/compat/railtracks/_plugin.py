"""The pytest plugin the harness loads into the run of Railtracks' tests.

- runs each ``async def`` test under ``trio.run`` (with a nursery for
  ``asyncio.create_task``), as pytest-asyncio would under asyncio;
- replaces the ``asyncio`` module by :mod:`._asyncio_on_trio` in the test
  modules and conftests (names only; no assertion is touched);
- keeps only the tests listed in ``COMPAT_TESTS`` (the others are deselected);
- writes each test's outcome, and a failure's one-line reason, to ``COMPAT_RESULTS``.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import pathlib
import re
import sys
from typing import Any

import pytest

from . import _asyncio_on_trio

_ASYNCIO = _asyncio_on_trio.module()
_REAL_ASYNCIO = sys.modules["asyncio"]
_results: dict[str, dict[str, str]] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "asyncio: an async Railtracks test (run under Trio by the harness)")


def _patch_asyncio(root: str) -> None:
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path.startswith(root) and getattr(module, "asyncio", None) is _REAL_ASYNCIO:
            module.asyncio = _ASYNCIO


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = set(pathlib.Path(os.environ["COMPAT_TESTS"]).read_text().split())
    keep = [item for item in items if item.nodeid in wanted]
    drop = [item for item in items if item.nodeid not in wanted]
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep
    _patch_asyncio(str(config.rootpath))
    for item in keep:
        _results[item.nodeid] = {"outcome": "not run", "reason": ""}


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    function = pyfuncitem.obj
    if not inspect.iscoroutinefunction(function):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    _asyncio_on_trio.run_in_trio(functools.partial(function, **kwargs))
    return True


def _reason(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    missing = re.search(r"fixture '[^']+' not found", str(report.longrepr))
    if missing:
        text = missing.group(0)
    lines = [line for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else "?"
    if getattr(report, "when", "call") not in ("call", "collect"):
        line = f"(in {report.when}) {line}"
    return line


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _results.setdefault(report.nodeid, {"outcome": "not run", "reason": ""})
    if entry["outcome"] == "failed":
        return
    if report.failed:
        entry.update(outcome="failed", reason=_reason(report))
    elif report.skipped:
        entry.update(outcome="skipped", reason="skipped")
    elif report.when == "call":
        entry.update(outcome="passed", reason="")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if not report.failed:
        return
    reason = f"(collecting) {_reason(report)}"  # type: ignore[arg-type]
    for test in pathlib.Path(os.environ["COMPAT_TESTS"]).read_text().split():
        if test.split("::", 1)[0] == report.nodeid:
            _results[test] = {"outcome": "not collected", "reason": reason}


def pytest_sessionfinish(session: pytest.Session, exitstatus: Any) -> None:
    pathlib.Path(os.environ["COMPAT_RESULTS"]).write_text(json.dumps(_results, indent=1))
