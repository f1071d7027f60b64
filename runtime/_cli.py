"""``python -m runtime``: run a flow from a file, show a saved run, or report it as a page.

::

    python -m runtime run examples/greet.py:flow --arg name=Alice
    python -m runtime show .trioflow/greet-flow.json [--json] [--only failed] [--svg out.svg] [--mermaid]
    python -m runtime report .trioflow/greet-flow.json -o run.html

A thin front end: the views live in their own modules (``_show`` for text and
JSON, ``_picture`` for SVG and Mermaid, ``_report`` for HTML, ``_progress``
for live progress). ``run`` exits with status 1 when the run did not complete;
every command exits with status 2, after a one-line error on stderr, when its
input is unusable.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import sys
import uuid
from typing import TYPE_CHECKING, TypeAlias

from ._exceptions import StateFileError, TrioflowError
from ._flow import Flow
from ._picture import graph_svg, mermaid, timeline_svg
from ._progress import Progress, run_with_progress
from ._report import render_report
from ._serialize import DEFAULT_MAX_STATE_BYTES, read_state_file
from ._show import format_duration, render_json, render_run, terminal_safe
from ._state import Status

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType

    from ._state import JobState

__all__ = ["format_duration", "main", "parse_arg", "render_run", "terminal_safe"]

PROG = "python -m runtime"

_EXIT_FAILED = 1
_EXIT_USAGE = 2


class CommandError(Exception):
    """A problem with the command's input, reported as one line on stderr."""


def parse_arg(text: str) -> tuple[str, object]:
    """Parse one ``--arg key=value``: the value as JSON if it parses, else as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        msg = f"--arg {text!r}: give KEY=VALUE with KEY a parameter name, e.g. --arg name=Alice."
        raise CommandError(msg)
    try:
        value: object = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def _load_module(path: pathlib.Path) -> ModuleType:
    name = f"_trioflow_cli_{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        msg = f"cannot load {os.fspath(path)} as a Python module; give a .py file."
        raise CommandError(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, os.fspath(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        sys.path.remove(os.fspath(path.resolve().parent))
    return module


AnyFlow: TypeAlias = "Flow[..., object]"  # type: ignore[explicit-any]  # the CLI passes **kwargs it parsed


def load_flow(target: str) -> AnyFlow:
    """Load ``FILE.py:NAME`` and return the :class:`~runtime.Flow` named NAME in it."""
    file, sep, attr = target.rpartition(":")
    if not sep or not file or not attr:
        msg = f"{target!r}: give FILE.py:FLOW, e.g. examples/greet.py:flow."
        raise CommandError(msg)
    path = pathlib.Path(file)
    if not path.is_file():
        msg = f"{file}: no such file."
        raise CommandError(msg)
    module = _load_module(path)
    flows = sorted(name for name, value in vars(module).items() if isinstance(value, Flow))
    if not hasattr(module, attr):
        known = ", ".join(flows) or "none"
        msg = f"{file} has no {attr!r}; the flows it defines are: {known}."
        raise CommandError(msg)
    flow = getattr(module, attr)
    if not isinstance(flow, Flow):
        known = ", ".join(flows) or "none"
        kind = type(flow).__qualname__
        article = "an" if kind[:1].lower() in "aeiou" else "a"
        msg = f"{file}:{attr} is {article} {kind}, not an rt.Flow; the flows it defines are: {known}."
        raise CommandError(msg)
    return flow


def _command_run(args: argparse.Namespace) -> int:
    flow = load_flow(args.target)
    kwargs = dict(parse_arg(text) for text in args.arg)
    progress = None if args.quiet else Progress(sys.stderr, use_rich=not args.no_color)
    try:
        outcome = run_with_progress(flow, kwargs, progress)
    except TrioflowError as exc:  # bad arguments, or a flow that cannot run: nothing ran
        raise CommandError(str(exc)) from exc
    print(render_run(outcome.state))
    return 0 if outcome.status is Status.COMPLETED else _EXIT_FAILED


def _read_state(file: str, max_bytes: int) -> JobState:
    try:
        return read_state_file(file, max_bytes=max_bytes)
    except StateFileError as exc:
        raise CommandError(str(exc)) from exc
    except FileNotFoundError as exc:
        msg = f"State file {file}: no such file. {_state_files_near(file)}"
        raise CommandError(msg) from exc
    except OSError as exc:
        msg = f"State file {file}: cannot read it: {exc.strerror or exc}."
        raise CommandError(msg) from exc


def _state_files_near(file: str) -> str:
    """What there is to show: the state files in *file*'s directory (the first ten)."""
    folder = pathlib.Path(file).parent
    try:
        found = sorted(p.name for p in folder.iterdir() if p.suffix == ".json" and p.is_file())
    except OSError:
        return f"Its folder {os.fspath(folder)} cannot be listed either."
    if not found:
        return f"There is no state file (*.json) in {os.fspath(folder)}."
    more = f" and {len(found) - 10} more" if len(found) > 10 else ""
    return f"The state files in {os.fspath(folder)} are: {', '.join(found[:10])}{more}."


def _write_output(path: str, text: str, what: str) -> None:
    """Write *text* to *path*, or raise a one-line :class:`CommandError` saying why not."""
    try:
        pathlib.Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        msg = f"Cannot write the {what} to {path}: {exc.strerror or exc}. Give a writable path with a folder that exists."
        raise CommandError(msg) from exc


def _connections(args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    return load_flow(args.flow).connections if args.flow else []


def _command_show(args: argparse.Namespace) -> int:
    state = _read_state(args.file, args.max_bytes)
    only = [Status(value) for value in args.only] if args.only else None
    connections = _connections(args)
    if args.svg:
        picture = timeline_svg(state)
        if connections:
            _write_output(_beside(args.svg, "-graph"), graph_svg(state, connections), "connection graph")
        _write_output(args.svg, picture, "timeline")
    if args.mermaid:
        print(terminal_safe_lines(mermaid(state, connections)))
    elif args.json:
        print(render_json(state, only=only))
    elif not args.svg:
        print(render_run(state, full=True, only=only))
    return 0


def _beside(path: str, suffix: str) -> str:
    p = pathlib.Path(path)
    return os.fspath(p.with_name(p.stem + suffix + p.suffix))


def terminal_safe_lines(text: str) -> str:
    """Each line of *text* made terminal-safe."""
    return "\n".join(map(terminal_safe, text.split("\n")))


def _command_report(args: argparse.Namespace) -> int:
    state = _read_state(args.file, args.max_bytes)
    _write_output(args.output, render_report(state, _connections(args)), "report")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"{text!r} is not a positive whole number of bytes"
        raise argparse.ArgumentTypeError(msg)
    return value


def _add_state_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="STATE.json", help="e.g. .trioflow/greet-flow.json")
    parser.add_argument(
        "--max-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_STATE_BYTES,
        metavar="N",
        help=f"refuse a file larger than N bytes (default {DEFAULT_MAX_STATE_BYTES}, 64 MiB)",
    )
    parser.add_argument(
        "--flow",
        metavar="FILE.py:FLOW",
        help="the routine-graph flow the run came from, to draw its connections with delivery counts",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m runtime`` argument parser."""
    parser = argparse.ArgumentParser(prog=PROG, description="Run trioflow flows and inspect saved runs.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run a flow and print its result and request tree",
        description="Load FILE.py, run the rt.Flow named FLOW in it, print the result and the request tree. "
        "While it runs, its progress is drawn on stderr.",
    )
    run.add_argument("target", metavar="FILE.py:FLOW", help="the file and the name of the flow in it")
    run.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a keyword argument for the entry point; VALUE is read as JSON if it parses, else as a string",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="draw no live progress")
    run.add_argument("--no-color", action="store_true", help="never use rich for the live line")
    run.set_defaults(handler=_command_run)
    show = commands.add_parser(
        "show",
        help="render a saved run (a save_state file): tree, logs, context, states",
        description="Render a state file written by save_state=True.",
    )
    _add_state_arguments(show)
    views = show.add_mutually_exclusive_group()
    views.add_argument("--json", action="store_true", help="print the state document as JSON")
    views.add_argument("--mermaid", action="store_true", help="print the tree (or graph) as Mermaid text")
    show.add_argument(
        "--only",
        action="append",
        choices=[status.value for status in Status],
        metavar="STATUS",
        help="show only requests with this status (and their ancestors); repeat for more, e.g. --only failed",
    )
    show.add_argument(
        "--svg",
        metavar="OUT.svg",
        help="write the timeline as SVG (and, with --flow, the connection graph to OUT-graph.svg)",
    )
    show.set_defaults(handler=_command_show)
    report = commands.add_parser(
        "report",
        help="write a saved run as one self-contained HTML page",
        description="Write a state file as one HTML page that loads nothing: summary, timeline, tree, log, history.",
    )
    _add_state_arguments(report)
    report.add_argument("-o", "--output", required=True, metavar="OUT.html", help="where to write the page")
    report.set_defaults(handler=_command_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except CommandError as exc:
        message = terminal_safe(" ".join(str(exc).split()))
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return _EXIT_USAGE
    return status
