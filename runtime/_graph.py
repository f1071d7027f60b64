"""Routine graphs on a Flow: routines, connections, jobs. (Being built.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ._context import RequestMetadata
    from ._publisher import Subscription
    from ._run import RunResult


class GraphMixin:
    """The routine-graph half of :class:`~runtime.Flow`."""

    def __init__(self, *, max_steps: int | None = None) -> None:
        self._routines: dict[str, object] = {}
        self.max_steps = max_steps

    async def _arun_graph(
        self,
        args: tuple[object, ...],
        kwargs: Mapping[str, object],
        *,
        metadata: RequestMetadata | None = None,
        subscriptions: Sequence[Subscription] = (),
    ) -> RunResult[object]:
        raise NotImplementedError
