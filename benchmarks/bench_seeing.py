"""Seeing runs (issue 17): live progress, OpenTelemetry traces, and views of a big run.

- a run of 1,000 sequential ``rt.call`` with live progress on (the CLI's path,
  :func:`runtime._progress.arun_with_progress`, drawing plain lines), per call. Floor: the same run with progress off. Budget 1.2x.
- the same run with an ``rt.TraceExporter`` attached (the OpenTelemetry SDK,
  spans kept by its in-memory exporter), per call. Floor: no exporter.
  Budget 2x. Left out when the ``otel`` extra is not installed.
- ``show``, ``show --svg`` and ``report`` of a saved 100,000-request run,
  through the CLI (reading the file included): seconds, against a floor of
  the 5 s budget, and peak memory (``tracemalloc``) against 500 MB; each ratio
  must stay below 1.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import pathlib
import tempfile
import time
import tracemalloc

import runtime as rt
from runtime._cli import main
from runtime._progress import Progress, arun_with_progress

from ._harness import Options, Row, best_of, trio_best_of_pair

_CALLS = 1_000
_BIG = 100_000
_SECONDS_BUDGET = 5.0
_BYTES_BUDGET = 500e6


async def _trivial(i: int) -> int:
    return i


trivial = rt.function_node(_trivial)


@rt.function_node
async def _call_loop(n: int) -> int:
    for i in range(n):
        await rt.call(trivial, i)
    return n


async def _plain(n: int, subscribers: tuple[object, ...] = (), recorders: tuple[object, ...] = ()) -> float:
    flow = rt.Flow("bench-seeing", entry_point=_call_loop, subscribers=subscribers, recorders=recorders)  # type: ignore[arg-type]
    start = time.perf_counter()
    await flow.ainvoke(n)
    return time.perf_counter() - start


async def _with_progress(n: int) -> float:
    progress = Progress(io.StringIO(), live=False)
    flow = rt.Flow("bench-seeing", entry_point=_call_loop)
    start = time.perf_counter()
    await arun_with_progress(flow, (n,), {}, progress)
    elapsed = time.perf_counter() - start
    assert progress.done == n + 1
    return elapsed


def bench_progress(opts: Options) -> list[Row]:
    n = opts.scale(_CALLS * 10) // 10 or 1
    ours, floor = trio_best_of_pair(opts.repeat, lambda: _with_progress(n), lambda: _plain(n))
    # Most of the first row is the engine publishing events at all (a run with no
    # subscriber publishes none); the second row is what progress itself adds.
    ours2, noop = trio_best_of_pair(
        opts.repeat, lambda: _with_progress(n), lambda: _plain(n, (lambda _event: None,))
    )
    return [
        Row("run with live progress (per rt.call)", ours / n, floor / n, "s", budget=1.2),
        Row("  live progress over a no-op subscriber", ours2 / n, noop / n, "s", budget=1.2),
    ]


def bench_otel(opts: Options) -> list[Row]:
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        return []
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    exporter = rt.TraceExporter(provider)
    n = opts.scale(_CALLS * 10) // 10 or 1

    async def ours(attach: str) -> float:
        memory.clear()
        elapsed = await (_plain(n, recorders=(exporter,)) if attach == "recorder" else _plain(n, (exporter,)))
        assert len(memory.get_finished_spans()) == n + 2
        return elapsed

    as_recorder, floor = trio_best_of_pair(opts.repeat, lambda: ours("recorder"), lambda: _plain(n))
    as_subscriber, floor2 = trio_best_of_pair(opts.repeat, lambda: ours("subscriber"), lambda: _plain(n))
    return [
        Row("rt.call with a TraceExporter (a recorder)", as_recorder / n, floor / n, "s", budget=2.0),
        Row("  the same exporter as a live subscriber", as_subscriber / n, floor2 / n, "s"),
    ]


def big_state(n: int) -> rt.JobState:
    """A failed run of *n* requests: a root, 1,000 children, the rest under them; every 97th fails."""
    t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    state = rt.JobState(
        job_id="run-big",
        flow_id="big",
        status=rt.Status.FAILED,
        started_at=t0,
        finished_at=t0 + datetime.timedelta(seconds=n / 1000 + 1),
        error=rt.ErrorSummary("ValueError", "bad"),
    )
    state.requests["r0"] = rt.Request(
        "r0",
        None,
        "root",
        rt.Status.FAILED,
        0.0,
        0.0,
        n / 1000 + 1,
        None,
        rt.ErrorSummary("ValueError", "bad"),
    )
    for i in range(1, n):
        parent = "r0" if i <= 1000 else f"r{i % 1000 + 1}"
        failed = i % 97 == 0
        state.requests[f"r{i}"] = rt.Request(
            f"r{i}",
            parent,
            f"node{i % 50}",
            rt.Status.FAILED if failed else rt.Status.COMPLETED,
            i / 1000,
            i / 1000,
            i / 1000 + 0.5,
            None if failed else repr(i),
            rt.ErrorSummary("ValueError", f"bad {i}") if failed else None,
        )
    return state


def bench_big_views(opts: Options) -> list[Row]:
    n = opts.scale(_BIG)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        state = str(rt.write_state_file(big_state(n), pathlib.Path(folder) / "big.json"))
        for name, argv in (
            ("show", ["show", state]),
            ("show --svg", ["show", state, "--svg", f"{folder}/big.svg"]),
            ("report", ["report", state, "-o", f"{folder}/big.html"]),
        ):

            def view(argv: list[str] = argv) -> None:
                with contextlib.redirect_stdout(io.StringIO()):
                    assert main(argv) == 0

            seconds = best_of(opts.repeat, view)
            tracemalloc.start()
            try:
                view()
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            label = f"{name} of {n // 1000}k requests"
            rows.append(Row(f"{label} (floor: 5 s budget)", seconds, _SECONDS_BUDGET, "s", budget=1.0))
            rows.append(Row(f"{label}, peak memory (floor: 500 MB)", peak, _BYTES_BUDGET, "B", budget=1.0))
    return rows


BENCHMARKS = [bench_progress, bench_otel, bench_big_views]
