"""``python -m benchmarks [--quick] [MODULE ...]``: run the suite and print ratios.

Discovers every ``bench_*.py`` module of this package (``MODULE`` may be given
with or without the ``bench_`` prefix), runs each callable of its
``BENCHMARKS`` list and prints one table. Exits with status 1 if any figure
misses its budget.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ._harness import Options, Row, format_table

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

_PREFIX = "bench_"


def discover() -> list[str]:
    """The short names (``actors`` for ``bench_actors.py``) of every benchmark module."""
    here = [str(Path(__file__).parent)]
    return sorted(
        info.name.removeprefix(_PREFIX)
        for info in pkgutil.iter_modules(here)
        if info.name.startswith(_PREFIX)
    )


def run_module(short: str, opts: Options) -> list[Row]:
    """Run every benchmark of ``bench_<short>.py`` and return its rows."""
    module = importlib.import_module(f"{__package__}.{_PREFIX}{short}")
    benchmarks: Iterable[Callable[[Options], Row | list[Row]]] = module.BENCHMARKS
    rows: list[Row] = []
    for bench in benchmarks:
        start = time.perf_counter()
        result = bench(opts)
        got = [result] if isinstance(result, Row) else list(result)
        rows.extend(got)
        for row in got:
            print(f"  {short}: {row.name} ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    known = discover()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure trioflow against raw Trio doing the same work, and print the ratios.",
    )
    parser.add_argument(
        "modules", nargs="*", metavar="MODULE", help=f"modules to run (default: all of {known})"
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller counts")
    args = parser.parse_args(argv)
    chosen = [m.removeprefix(_PREFIX) for m in args.modules] or known
    unknown = [m for m in chosen if m not in known]
    if unknown:
        parser.error(f"no benchmark module named {', '.join(map(repr, unknown))}; the modules are {known}")
    opts = Options.from_flags(quick=args.quick)
    rows: list[Row] = []
    for short in chosen:
        rows.extend(run_module(short, opts))
    print(format_table(rows))
    missed = [row.name for row in rows if row.ok is False]
    if missed:
        print(f"\nOver budget: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
