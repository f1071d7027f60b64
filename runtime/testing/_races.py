"""Races within one run: two requests writing one ``rt.context`` key while both are running.

A run started in an :func:`~runtime.testing.inject` block (every run of the
kit's runners is) gets a context that records each write: which request
wrote which key, in order. :func:`check_races` then reports two requests,
neither an ancestor of the other, that wrote the same key while both were
running: which value is left depends on how their steps interleave.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, TypeVar, final

from .._context import current_frame
from ._checkers import _fail, _label

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from .._core import RunResult
    from .._state import JobState

T = TypeVar("T")


@final
class RecordingContext(dict[str, object]):
    """A run's context that remembers who wrote each key: ``writes`` holds ``(key, request id)``, in order.

    Only assignments through ``rt.context`` (``put``, ``update``, ``delete``)
    are seen, not in-place changes to a value.
    """

    __slots__ = ("writes",)

    def __init__(self, values: Mapping[str, object]) -> None:
        super().__init__(values)
        self.writes: list[tuple[str, str | None]] = []

    def _writer(self) -> str | None:
        frame = current_frame.get(None)
        actor = None if frame is None else frame.actor
        return None if actor is None else actor.request_id

    def __setitem__(self, key: str, value: object) -> None:
        self.writes.append((key, self._writer()))
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.writes.append((key, self._writer()))
        super().__delitem__(key)

    def update(self, *args: object, **kwargs: object) -> None:
        values: dict[str, object] = dict(*args, **kwargs)
        writer = self._writer()
        self.writes.extend((key, writer) for key in values)
        super().update(values)

    def __deepcopy__(self, memo: dict[int, object]) -> dict[str, object]:
        return copy.deepcopy(dict(self), memo)

    def __reduce__(self) -> tuple[type[dict[str, object]], tuple[dict[str, object]]]:
        return dict, (dict(self),)


def record_context_writes(state: JobState) -> None:
    """Make *state*'s context record its writes (once; a node run's only)."""
    if type(state.context) is dict:
        state.context = RecordingContext(state.context)


def _ancestors(state: JobState, request_id: str) -> set[str]:
    found: set[str] = set()
    parent = state.requests[request_id].parent_id
    while parent is not None and parent not in found:
        found.add(parent)
        parent = state.requests[parent].parent_id
    return found


def check_races(result: RunResult[T]) -> None:
    """Check that no two requests of a run wrote one ``rt.context`` key while both were running.

    Two requests race for a key when both wrote it, neither is an ancestor
    of the other, and their lifetimes (created to finished, on Trio's clock)
    overlap: e.g. two children of one ``call_batch`` each putting
    ``"last_price"``. Which value is left then depends on the schedule. Give
    each its own key (``f"price:{item}"``), or let the parent write once from
    their results. Requests one after the other, and a parent and its
    children, are ordered and never race.

    The run must have been started by the kit (a runner, or in an
    :func:`~runtime.testing.inject` block), which records each write.
    In-place changes to a value (``rt.context.get("items").append(x)``) are
    not seen.

    Raises:
        AssertionError: two requests raced; the message names the key and both
            requests by path.
        TypeError: the run's writes were not recorded; the message says how.

    .. versionadded:: 0.2
    """
    state = result.state
    context = state.context
    if not isinstance(context, RecordingContext):
        msg = (
            f"check_races(): run {state.run_id} of flow {state.flow_name!r} was not recorded: run it with "
            "rtt.run_with_schedule(...), or start it inside a rtt.inject(...) block."
        )
        raise TypeError(msg)
    writers: dict[str, list[str]] = {}
    for key, request_id in context.writes:
        if request_id is not None and request_id in state.requests:
            mine = writers.setdefault(key, [])
            if request_id not in mine:
                mine.append(request_id)
    for key, ids in writers.items():
        _check_key(state, key, ids)


def _check_key(state: JobState, key: str, ids: Iterable[str]) -> None:
    ordered = list(ids)
    for i, first in enumerate(ordered):
        a = state.requests[first]
        for second in ordered[i + 1 :]:
            b = state.requests[second]
            if first in _ancestors(state, second) or second in _ancestors(state, first):
                continue
            a_end = a.finished_at if a.finished_at is not None else float("inf")
            b_end = b.finished_at if b.finished_at is not None else float("inf")
            if a.created_at < b_end and b.created_at < a_end:
                raise _fail(
                    state,
                    f"{_label(state, first)} and {_label(state, second)} both wrote rt.context[{key!r}] while both "
                    f"were running ({a.created_at:g}-{a_end:g} s and {b.created_at:g}-{b_end:g} s): the value left "
                    "depends on the schedule. Give each its own key, or let their caller write once from their results.",
                )
