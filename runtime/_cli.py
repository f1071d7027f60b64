"""``python -m runtime``: run a flow from a file, or show a saved run.

::

    python -m runtime run examples/greet.py:flow --arg name=Alice
    python -m runtime show .trioflow/greet-flow.json

Both print the same rendering of a run (:func:`render_run`): its status and
result, then the request tree with each node's status, timing and result or
error. ``run`` exits with status 1 when the run did not complete; both exit
with status 2, after a one-line error on stderr, when their input is unusable.
SIGINT (Ctrl-C) or SIGTERM during ``run`` cancels the run (its state is saved
as ``cancelled`` if the flow saves state), prints one line and exits with
128 + the signal's number: 130 or 143; a second signal while the cancelled
nodes clean up exits at once. A reader that goes away (``| head``)
ends the command quietly with status 141, as SIGPIPE would.
"""

from __future__ import annotations

import argparse
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
import unicodedata
import uuid
from typing import TYPE_CHECKING

import cattrs
import cattrs.errors
import outcome
import trio

from ._exceptions import StateFileError, TrioflowError
from ._flow import Flow
from ._serialize import DEFAULT_MAX_STATE_BYTES, describe_structure_error, read_state_file, structure_json
from ._state import Status

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from types import ModuleType

    from ._core import RunResult
    from ._node import AnyNode
    from ._state import JobState, Request
    from ._util import AnyFlow

PROG = "python -m runtime"

_EXIT_FAILED = 1
_EXIT_USAGE = 2


class CommandError(Exception):
    """A problem with the command's input, reported as one line on stderr."""


def format_duration(seconds: float | None) -> str:
    """*seconds* for reading: ``850 µs``, ``12.3 ms``, ``4.05 s``; ``-`` if unknown."""
    if seconds is None:
        return "-"
    if seconds >= 1.0:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


# Control characters, format characters (bidi overrides, zero-width) and lone surrogates.
_UNSAFE_CATEGORIES = frozenset(("Cc", "Cf", "Cs"))


def _escape_char(char: str) -> str:
    if unicodedata.category(char) not in _UNSAFE_CATEGORIES:
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def terminal_safe(text: str) -> str:
    """*text* as one line that cannot drive a terminal.

    Line breaks become spaces; every other control character (``ESC``,
    ``CR``, ``BEL``, C1 controls), format character (bidi overrides,
    zero-width characters) and lone surrogate is written as a Python-style
    escape, ``\\x1b``. Everything the CLI prints from a run or a state file
    passes through here.
    """
    line = " ".join(text.splitlines())
    if line.isprintable():
        return line
    return "".join(map(_escape_char, line))


def _request_line(request: Request) -> str:
    line = f"{request.node} ({request.id}) {request.status.value} in {format_duration(request.duration)}"
    if request.error is not None:
        line += f" !! {request.error.type}: {request.error.message}"
    elif request.result is not None:
        line += f" -> {request.result}"
    return line


def _tree_lines(requests: Mapping[str, Request]) -> Iterator[str]:
    """The request tree, one line per request, depth first, without recursion.

    A request whose parent is not in *requests* is a root. Each request is
    drawn once, so even a hand-made state with a parent cycle ends.
    """
    children: dict[str | None, list[Request]] = {}
    for request in requests.values():
        parent = request.parent_id if request.parent_id in requests else None
        children.setdefault(parent, []).append(request)
    drawn: set[str] = set()

    def branches(kids: Sequence[Request], prefix: str) -> list[tuple[Request, str, bool]]:
        return [(kid, prefix, index == len(kids) - 1) for index, kid in reversed(list(enumerate(kids)))]

    stack = branches(children.get(None, []), "")
    # Requests on a parent cycle have no root above them: draw them as roots, after the rest.
    stack[:0] = [(r, "", True) for r in reversed(list(requests.values())) if r.parent_id in requests]
    while stack:
        request, prefix, last = stack.pop()
        if request.id in drawn:
            continue
        drawn.add(request.id)
        yield f"{prefix}{'└── ' if last else '├── '}{_request_line(request)}"
        stack.extend(branches(children.get(request.id, []), prefix + ("    " if last else "│   ")))


def _json_text(data: object) -> str:
    try:
        return json.dumps(data, default=repr)
    except RecursionError:  # loaded, but too deep for the encoder's stack
        return "(data nested too deeply to show)"


def render_run(state: JobState) -> str:
    """Render a finished (or saved) run as text: header, result, request tree.

    The same rendering serves ``run`` and ``show``, so a saved run looks
    exactly as it did when it ran. Multi-line results and messages are kept
    on one line each, and control characters are escaped
    (:func:`terminal_safe`): a state file cannot drive the reader's terminal.
    The tree is drawn without recursion, so a run of any depth renders.
    """
    started, finished = state.started_at, state.finished_at
    took = None if started is None or finished is None else (finished - started).total_seconds()
    lines = [f"flow {state.flow_name!r}, run {state.run_id}: {state.status.value} in {format_duration(took)}"]
    if state.error is not None:
        lines.append(f"error: {state.error.type}: {state.error.message}")
    elif state.status is Status.COMPLETED:
        lines.append(f"result: {state.result}")
    if state.requests:
        lines.append("requests:")
        lines.extend(_tree_lines(state.requests))
    if state.history:
        lines.append("history:")
        lines.extend(
            f"  +{format_duration(entry.offset)} {entry.routine_id}.{entry.event_name} {_json_text(entry.data)}"
            for entry in state.history
        )
    return "\n".join(map(terminal_safe, lines))


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
    flow: AnyFlow, kwargs: dict[str, object]
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
                    ran = outcome.Value(await flow.arun(**kwargs))
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
        result = trio.run(_run_until_signalled, flow, kwargs)
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


def _command_show(args: argparse.Namespace) -> int:
    try:
        state = read_state_file(args.file, max_bytes=args.max_bytes)
    except StateFileError as exc:
        raise CommandError(str(exc)) from exc
    except OSError as exc:
        msg = f"State file {args.file}: cannot read it: {exc.strerror or exc}."
        raise CommandError(msg) from exc
    print(render_run(state))
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


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m runtime`` argument parser."""
    parser = argparse.ArgumentParser(prog=PROG, description="Run trioflow flows and inspect saved runs.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run a flow and print its result and request tree",
        description="Load FILE.py, run the rt.Flow named FLOW in it, print the result and the request tree.",
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
    run.set_defaults(handler=_command_run)
    show = commands.add_parser(
        "show",
        help="render a saved run (a save_state file) as a tree",
        description="Render a state file written by save_state=True.",
    )
    show.add_argument("file", metavar="STATE.json", help="e.g. .trioflow/greet-flow.json")
    show.add_argument(
        "--max-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_STATE_BYTES,
        metavar="N",
        help=f"refuse a file larger than N bytes (default {DEFAULT_MAX_STATE_BYTES}, 64 MiB)",
    )
    show.set_defaults(handler=_command_show)
    return parser


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
