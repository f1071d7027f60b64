"""``python -m runtime``: run a flow from a file, show a saved run, or report it as a page.

::

    python -m runtime run examples/greet.py:flow --arg name=Alice
    python -m runtime show .trioflow/greet-flow.json [--json] [--only failed] [--svg out.svg] [--mermaid]
    python -m runtime report .trioflow/greet-flow.json -o run.html
    python -m runtime runs [--db .trioflow/runs.db] [--flow NAME] [--status S] [--limit N --page K]
    python -m runtime show RUN_ID --db .trioflow/runs.db
    python -m runtime resume examples/greet.py:flow RUN_ID [--value JSON] [--rerun CALL_KEY ...]

A thin front end: the views live in their own modules (``_show`` for text and
JSON, ``_picture`` for SVG and Mermaid, ``_report`` for HTML, ``_progress``
for live progress). ``run`` exits with status 1 when the run did not complete;
every command exits with status 2, after a one-line error on stderr, when its
input is unusable.
SIGINT (Ctrl-C) or SIGTERM during ``run`` cancels the run (its state is saved
as ``cancelled`` if the flow saves state), prints one line and exits with
128 + the signal's number: 130 or 143; a second signal while the cancelled
nodes clean up exits at once. A reader that goes away (``| head``)
ends the command quietly with status 141, as SIGPIPE would.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import inspect
import json
import os
import pathlib
import re
import signal
import sys
import types
import typing
import uuid
from typing import TYPE_CHECKING, TypeVar

import cattrs
import cattrs.errors
import outcome
import trio

from ._exceptions import RunPausedError, StateFileError, StoreError, TrioflowError
from ._flow import Flow
from ._picture import graph_svg, mermaid, timeline_svg
from ._progress import Progress, arun_with_progress
from ._report import render_report
from ._serialize import DEFAULT_MAX_STATE_BYTES, describe_structure_error, read_state_file, structure_json
from ._show import format_duration, render_json, render_run, terminal_safe
from ._state import Status
from .store import SQLiteStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from types import ModuleType

    from ._core import RunResult
    from ._node import AnyNode
    from ._state import JobState
    from ._util import AnyFlow

__all__ = ["convert_args", "format_duration", "main", "parse_arg", "render_run", "terminal_safe"]

PROG = "python -m runtime"

T = TypeVar("T")

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


_UNCHECKED = object()
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def _structure_arg(value: object, type_: object) -> object:
    """*value* as *type_*, or :data:`_UNCHECKED` if the converter cannot build *type_*.

    A union tries its members in order (``None`` fits ``None`` only).

    Raises:
        ValueError: *value* fits no member; the message says why.
    """
    union = typing.get_origin(type_) in (typing.Union, types.UnionType)
    members = typing.get_args(type_) if union else (type_,)
    problems: list[str] = []
    unchecked = False
    for member in members:
        if member is type(None):
            if value is None:
                return None
            continue
        try:
            return structure_json(value, member)
        except cattrs.StructureHandlerNotFoundError:
            unchecked = True
        except (cattrs.errors.CattrsError, ValueError, TypeError) as exc:
            problems.append(describe_structure_error(exc))
    if unchecked:
        return _UNCHECKED
    raise ValueError("; ".join(problems) or "expected null")


def _annotations(node: AnyNode) -> dict[str, object]:
    """*node*'s parameter annotations, resolved; a name that cannot be resolved is left out."""
    try:
        return typing.get_type_hints(node.fn)
    except Exception:  # an unresolvable annotation is unchecked, not an error
        return {
            name: param.annotation
            for name, param in node.signature.parameters.items()
            if param.annotation is not inspect.Parameter.empty and not isinstance(param.annotation, str)
        }


def convert_args(node: AnyNode | None, texts: Sequence[str]) -> dict[str, object]:
    """The keyword arguments for *node* from ``--arg KEY=VALUE`` texts.

    Each value is read as JSON if it parses, else as a string (:func:`parse_arg`),
    then, if the parameter is annotated, converted to its type with the
    state converter (:func:`~runtime._serialize.structure_json`): the JSON
    value first, then the text itself, so ``--arg name=3`` gives ``"3"`` to a
    ``str`` parameter. A type the converter cannot build is passed as read.

    Raises:
        CommandError: a malformed or repeated ``--arg``, or a value that is
            not of its parameter's type.
    """
    hints = {} if node is None else _annotations(node)
    parameters = {} if node is None else node.signature.parameters
    kwargs: dict[str, object] = {}
    given: dict[str, str] = {}
    for text in texts:
        key, value = parse_arg(text)
        if key in given:
            msg = f"--arg {key} is given twice ({given[key]}, then {text}); give each parameter once."
            raise CommandError(msg)
        given[key] = text
        param = parameters.get(key)
        if node is not None and param is not None and param.kind not in _VARIADIC and key in hints:
            value = _convert_arg(node, key, text.partition("=")[2], value, hints[key])
        kwargs[key] = value
    return kwargs


def _convert_arg(node: AnyNode, key: str, raw: str, value: object, type_: object) -> object:
    problem = ""
    for candidate in (value,) if isinstance(value, str) else (value, raw):
        try:
            converted = _structure_arg(candidate, type_)
        except ValueError as exc:
            problem = problem or str(exc)
            continue
        return value if converted is _UNCHECKED else converted
    # The flow's file is loaded as module _trioflow_cli_<stem>_<hex>: name its types without it.
    expected = re.sub(r"\b_trioflow_cli_\w+\.", "", inspect.formatannotation(type_))
    msg = (
        f"--arg {key}={raw}: node {node.name!r} takes {key} as {expected}, and {raw!r} is not one: {problem}."
    )
    raise CommandError(msg)


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


async def _run_until_signalled(
    flow: AnyFlow, kwargs: dict[str, object], progress: Progress | None = None
) -> RunResult[object] | signal.Signals:
    """Run *flow*; on SIGINT or SIGTERM cancel the run and return the signal instead.

    Cancelling the run cancels every node (their ``finally`` blocks run) and
    saves its state as ``cancelled`` if the flow saves state. A second signal
    while that clean-up still runs (a node shielding a long wait, a thread that
    has not returned) ends the process at once, with one line on stderr.
    """
    received: list[signal.Signals] = []
    ran: outcome.Outcome[RunResult[object]] | None = None
    run_scope = trio.CancelScope()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def cancel_on_signal() -> None:
                async for signum in signals:
                    if received:
                        _exit_now(flow, signal.Signals(signum))
                    received.append(signal.Signals(signum))
                    run_scope.cancel()

            nursery.start_soon(cancel_on_signal)
            with run_scope:
                try:
                    ran = outcome.Value(await arun_with_progress(flow, (), kwargs, progress))
                except Exception as exc:  # re-raised below, outside the nursery's exception group
                    ran = outcome.Error(exc)
            nursery.cancel_scope.cancel()
    if ran is None:  # only a signal cancels the run before it ends
        return received[0]
    return ran.unwrap()  # the run ended (a signal that came after changes nothing)


def _exit_now(flow: AnyFlow, signum: signal.Signals) -> typing.NoReturn:
    """End the process on a second signal, without waiting for the run's clean-up."""
    line = (
        f"{PROG} run: flow {flow.name!r} was stopped by a second {signum.name} before its nodes "
        "finished cleaning up; its state was not saved."
    )
    print(terminal_safe(line), file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(128 + signum.value)  # a thread still running a node cannot be stopped otherwise


def _command_run(args: argparse.Namespace) -> int:
    flow = load_flow(args.target)
    kwargs = convert_args(flow.entry_point, args.arg)
    try:
        progress = None if args.quiet else Progress(sys.stderr, use_rich=not args.no_color)
        result = trio.run(_run_until_signalled, flow, kwargs, progress)
    except TrioflowError as exc:  # bad arguments, or a flow that cannot run: nothing ran
        raise CommandError(str(exc)) from exc
    if isinstance(result, signal.Signals):
        where = (
            f"its state is saved in {flow.state_path}"
            if flow.save_state
            else "its state was not saved (the flow has save_state off)"
        )
        print(
            terminal_safe(f"{PROG} run: flow {flow.name!r} was cancelled by {result.name}; {where}."),
            file=sys.stderr,
        )
        return 128 + result.value
    print(render_run(result.state))
    return 0 if result.status is Status.COMPLETED else _EXIT_FAILED


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


def _stored(work: Callable[[SQLiteStore], Awaitable[T]], db: str) -> T:
    """Run *work* on the run store *db*, turning its errors into command errors."""
    if not pathlib.Path(db).exists():
        msg = f"Run store {db}: no such file. Give the path of a store a flow has written (--db PATH)."
        raise CommandError(msg)
    try:
        return trio.run(work, SQLiteStore(db))
    except StoreError as exc:
        raise CommandError(str(exc)) from exc


def _load_state(args: argparse.Namespace) -> JobState:
    """The run to show: a state file, or with ``--db`` a run id in a run store (also while it runs)."""
    if args.db is None:
        return _read_state(args.file, args.max_bytes)
    run_id: str = args.file
    return _stored(lambda store: store.state(run_id), args.db)


def _command_runs(args: argparse.Namespace) -> int:
    limit: int = args.limit
    offset = (args.page - 1) * limit
    runs = _stored(
        lambda store: store.runs(flow=args.flow, status=args.status, limit=limit, offset=offset), args.db
    )
    if not runs:
        print("no runs" + (" on this page" if args.page > 1 else ""))
        return 0
    rows = [("RUN", "FLOW", "STATUS", "ATTEMPTS", "STARTED (UTC)", "DURATION")]
    for run in runs:
        rows.append(
            (
                run.run_id,
                run.flow,
                run.status.value,
                str(run.attempts),
                run.started.strftime("%Y-%m-%d %H:%M:%S"),
                "-" if run.duration is None else format_duration(run.duration),
            )
        )
    cells = [[terminal_safe(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(rows[0]))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _command_resume(args: argparse.Namespace) -> int:
    flow = load_flow(args.target)
    value: object = ...
    if args.value is not None:
        try:
            value = json.loads(args.value)
        except json.JSONDecodeError as exc:
            msg = (
                f"--value {args.value!r} is not JSON ({exc.msg}); give a JSON value, e.g. --value '\"yes\"'."
            )
            raise CommandError(msg) from exc
    if args.rerun and flow._graph.routines:
        msg = f"--rerun names unfinished calls of idempotent=False nodes, and {flow.name!r} is a routine graph, whose jobs have none: a job resumes from its last snapshot. Leave --rerun out."
        raise CommandError(msg)
    try:
        result = trio.run(functools.partial(flow._aresume, args.run_id, value, rerun=args.rerun or False))
    except TrioflowError as exc:  # no store, an unknown or finished run, a held one: nothing ran
        raise CommandError(str(exc)) from exc
    print(render_run(result.state))
    if isinstance(result.error, RunPausedError):
        print(terminal_safe(str(result.error)))
    return 0 if result.status is Status.COMPLETED else _EXIT_FAILED


def _command_show(args: argparse.Namespace) -> int:
    state = _load_state(args)
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
    state = _load_state(args)
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
    parser.add_argument(
        "file", metavar="STATE.json|RUN_ID", help="e.g. .trioflow/greet-flow.json; with --db, a run id"
    )
    parser.add_argument(
        "--db",
        metavar="PATH",
        help="read run RUN_ID from this run store (e.g. .trioflow/runs.db) instead of a file",
    )
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
        help=(
            "a keyword argument for the entry point, once per parameter; VALUE is read as JSON if it parses, "
            "else as a string, and checked against the parameter's annotation (e.g. int, list[str])"
        ),
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
    runs = commands.add_parser(
        "runs",
        help="list the runs kept in a run store, newest first",
        description="List the runs a store keeps (Flow(store=...)), newest first, a page at a time.",
    )
    runs.add_argument(
        "--db", default=".trioflow/runs.db", metavar="PATH", help="the run store (default %(default)s)"
    )
    runs.add_argument("--flow", metavar="NAME", help="only this flow's runs")
    runs.add_argument(
        "--status",
        choices=[status.value for status in Status],
        metavar="STATUS",
        help="only runs in this status",
    )
    runs.add_argument(
        "--limit", type=_positive_count, default=20, metavar="N", help="runs per page (default 20)"
    )
    runs.add_argument("--page", type=_positive_count, default=1, metavar="K", help="which page (default 1)")
    runs.set_defaults(handler=_command_runs)
    resume = commands.add_parser(
        "resume",
        help="resume a stored run: replay what completed, run the rest",
        description="Load FILE.py, and resume run RUN_ID of the rt.Flow named FLOW in it from the flow's store.",
    )
    resume.add_argument("target", metavar="FILE.py:FLOW", help="the file and the name of the flow in it")
    resume.add_argument("run_id", metavar="RUN_ID", help="the run to resume")
    resume.add_argument("--value", metavar="JSON", help="the value for the rt.interrupt() the run paused at")
    resume.add_argument(
        "--rerun",
        metavar="CALL_KEY",
        action="append",
        help="run again this unfinished call of an idempotent=False node (repeatable)",
    )
    resume.set_defaults(handler=_command_resume)
    return parser


def _positive_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"{text!r} is not a positive whole number"
        raise argparse.ArgumentTypeError(msg)
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
        sys.stdout.flush()
    except CommandError as exc:
        message = terminal_safe(" ".join(str(exc).split()))
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return _EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C outside a run (loading the flow's file, say): nothing to cancel
        print(f"{PROG} {args.command}: interrupted.", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as a program killed by SIGPIPE
        # does. Point stdout at devnull so the flush at exit does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 128 + signal.SIGPIPE
    return status
