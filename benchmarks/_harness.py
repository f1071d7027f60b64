"""What every ``bench_*.py`` module shares: result rows, options and a timer.

A benchmark module exposes ``BENCHMARKS``, a list of callables. Each takes the
run's :class:`Options` and returns one :class:`Row` or a list of them::

    from benchmarks._harness import Options, Row, trio_best_of_pair

    def bench_echo(opts: Options) -> Row:
        n = opts.scale(10_000)
        ours, floor = trio_best_of_pair(opts.repeat, lambda: _ours(n), lambda: _floor(n))
        return Row("echo round trip", ours / n, floor / n, "s", budget=2.0)

    BENCHMARKS = [bench_echo]

Measure ours and the floor in the same process run, with the same counts, so
the ratio compares like with like on whatever machine runs it; taking turns
(:func:`trio_best_of_pair`) keeps a change in load from skewing the ratio.
"""

from __future__ import annotations

import gc
import math
import time
from typing import TYPE_CHECKING, final

import attrs
import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable


@final
@attrs.frozen
class Options:
    """How hard to measure, chosen on the command line.

    Attributes:
        quick: ``--quick`` was given: fewer repeats, smaller counts.
        repeat: how many times to measure each figure (the best one counts).
    """

    quick: bool = False
    repeat: int = 3

    @classmethod
    def from_flags(cls, *, quick: bool) -> Options:
        """The options for a full run, or a ``--quick`` one."""
        return cls(quick=True, repeat=2) if quick else cls()

    def scale(self, n: int) -> int:
        """*n* operations for a full run, a tenth of them (at least 1) for ``--quick``."""
        return max(1, n // 10) if self.quick else n


@final
@attrs.frozen
class Row:
    """One figure: our cost next to the floor's cost for the same work.

    Attributes:
        name: what was measured, e.g. ``"ask round trip"``.
        ours_s: our cost per operation (seconds when *unit* is ``"s"``).
        floor_s: the floor's cost per operation, in the same unit.
        unit: ``"s"`` for time per operation, ``"B"`` for bytes per item.
        budget: the largest acceptable ``ours_s / floor_s``, or ``None`` for a
            figure that is only reported.
    """

    name: str
    ours_s: float
    floor_s: float
    unit: str
    budget: float | None = None

    @property
    def ratio(self) -> float:
        """``ours_s / floor_s`` (infinite if the floor measured as zero)."""
        return self.ours_s / self.floor_s if self.floor_s > 0 else math.inf

    @property
    def ok(self) -> bool | None:
        """Whether the ratio is within budget; ``None`` when there is no budget."""
        return None if self.budget is None else self.ratio <= self.budget


def best_of(n: int, fn: Callable[[], float | None]) -> float:
    """Call *fn* *n* times and return the smallest measurement, in seconds.

    If *fn* returns a number, that is its own measurement (so it can leave its
    set-up out); if it returns ``None``, the whole call is timed. Each try
    starts from a collected heap, so that garbage an earlier figure left
    behind is not collected inside this one's timing (the collector stays on
    while timing: allocating is part of what is measured).
    """
    best = math.inf
    for _ in range(n):
        gc.collect()
        start = time.perf_counter()
        measured = fn()
        elapsed = time.perf_counter() - start
        best = min(best, elapsed if measured is None else measured)
    return best


def trio_best_of(n: int, async_fn: Callable[[], Awaitable[float | None]]) -> float:
    """:func:`best_of` for a Trio program: each of the *n* tries is a fresh ``trio.run``."""

    async def main() -> float | None:
        return await async_fn()

    return best_of(n, lambda: trio.run(main))


def trio_best_of_pair(
    n: int, ours: Callable[[], Awaitable[float | None]], floor: Callable[[], Awaitable[float | None]]
) -> tuple[float, float]:
    """:func:`trio_best_of` for ours and the floor, taking turns.

    Alternating the two keeps a change in machine load (other processes, CPU
    frequency) from landing on one side of the ratio only.
    """
    best_ours = best_floor = math.inf
    for _ in range(n):
        best_ours = min(best_ours, trio_best_of(1, ours))
        best_floor = min(best_floor, trio_best_of(1, floor))
    return best_ours, best_floor


def format_value(value: float, unit: str) -> str:
    """*value* in *unit*, scaled for reading: ``12.3 µs``, ``4.4 KB``."""
    if unit == "s":
        for scale, suffix in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
            if value >= scale:
                return f"{value / scale:.3g} {suffix}"
        return f"{value / 1e-9:.3g} ns"
    if unit == "B":
        for scale, suffix in ((2**20, "MiB"), (2**10, "KiB")):
            if value >= scale:
                return f"{value / scale:.3g} {suffix}"
        return f"{value:.0f} B"
    return f"{value:.3g} {unit}"


def format_table(rows: Iterable[Row]) -> str:
    """The rows as a plain-text table: figure | ours | floor | ratio | budget | ok."""
    header = ("figure", "ours", "floor", "ratio", "budget", "ok")
    cells = [header]
    for row in rows:
        budget = "-" if row.budget is None else f"<= {row.budget:.2f}x"
        ok = {None: "-", True: "yes", False: "NO"}[row.ok]
        cells.append(
            (
                row.name,
                format_value(row.ours_s, row.unit),
                format_value(row.floor_s, row.unit),
                f"{row.ratio:.2f}x",
                budget,
                ok,
            )
        )
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    lines = [
        " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
