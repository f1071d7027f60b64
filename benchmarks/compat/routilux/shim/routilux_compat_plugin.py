"""A pytest plugin of the harness: notes the shim's stand-ins each test used, as a junit property.

A stand-in used inside a routine's handler fails that job, not the test; the test then fails on
what the job did. The property lets ``run.py`` name the stand-in as the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from routilux import _names

if TYPE_CHECKING:
    from collections.abc import Generator


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    _names.USED.clear()
    try:
        return (yield)
    finally:
        if _names.USED:
            item.user_properties.append(("stand_ins", "; ".join(dict.fromkeys(_names.USED))))
