"""Routine graphs: routines, connections, and the ways to run a job.

A :class:`Graph` is what a routine-graph :class:`~runtime.Flow` holds: the
routine templates, how to make each job's instances of them, and the
connections. The Flow hands it its settings (a
:class:`~runtime._core.RunSettings`) for each job; the graph never reads a
Flow. A job itself (its actors, delivery, pause and resume) lives in
``_job.py``.
"""

from __future__ import annotations

import contextlib
import operator
import types
from typing import TYPE_CHECKING, cast

import trio

from . import _graph_resume
from ._context import RequestMetadata
from ._core import RunResult, new_job_id
from ._exceptions import GraphDefinitionError, JobStateError
from ._job import Job
from ._routine import Connection as Connection  # re-exported: flow.connect returns one
from ._routine import ErrorHandler, Routine, RoutineProps, check_mapping, default_error_handler
from ._state import JobState, _isolate
from ._util import check_not_in_trio

if TYPE_CHECKING:
    import threading
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence

    from ._core import RunSettings
    from ._publisher import Subscription
    from ._routine import ErrorStrategy, RoutineEvent, Slot
    from ._util import AnyFlow
    from .store._base import ResumePoint


#: The execution strategies, the default first (see ``Flow``'s docstring).
STRATEGIES = ("actors", "sequential", "concurrent")
DEFAULT_STRATEGY = "actors"
#: Worker threads of a ``"concurrent"`` job when ``max_workers`` is not given (Routilux's default).
DEFAULT_WORKERS = 5


def _names(names: Sequence[str] | Mapping[str, object]) -> str:
    return ", ".join(repr(name) for name in names) or "none"


class Graph:
    """The routine graph of a Flow: templates, connections, and its running jobs.

    Each job runs on its own instances, made from how each template was made
    (``RoutineProps`` in ``_routine.py``); the graph itself is never
    changed by a job. The public face of every method is the Flow's.
    """

    def __init__(
        self,
        name: str,
        *,
        max_steps: int | None = None,
        execution_strategy: str = DEFAULT_STRATEGY,
        max_workers: int = DEFAULT_WORKERS,
    ) -> None:
        steps: int | None = None
        if max_steps is not None:
            try:
                steps = operator.index(max_steps)
            except TypeError:
                steps = 0
            if steps < 1 or isinstance(max_steps, bool):
                msg = f"Flow({name!r}, max_steps={max_steps!r}): max_steps must be a whole number of handler calls, 1 or more, or None for no limit."
                raise ValueError(msg)
        self.name = name
        #: The most handler calls one job may make before it fails with
        #: StepLimitError; ``None``: no limit.
        self.max_steps: int | None = steps
        self.execution_strategy = DEFAULT_STRATEGY
        self.max_workers = 1
        self.set_execution_strategy(
            execution_strategy, max_workers, api=f"Flow({name!r}, execution_strategy=..., max_workers=...)"
        )
        #: The routine a job starts with when ``arun``/``invoke`` (or a session) runs the flow.
        self.entry_id: str | None = None
        self.routines: dict[str, Routine] = {}
        self._props: dict[str, RoutineProps] = {}
        self._connections: dict[tuple[str, str], list[tuple[str, str]]] = {}
        #: ``param_mapping`` of the connections that have one, by (source, event, target, slot).
        self._mappings: dict[tuple[str, str, str, str], dict[str, str]] = {}
        self._error_handler: ErrorHandler | None = None
        # The jobs of this graph running now, by id: how flow.pause(job_state)
        # and JobState.wait_for_completion reach a job from its state.
        self.running_jobs: dict[str, Job] = {}

    # -- building the graph -------------------------------------------------------

    @property
    def connections(self) -> list[tuple[str, str, str, str]]:
        """Every connection as ``(source_id, event, target_id, slot)``, in the order made.

        The links made by hand between the graph's routines come after those
        made with ``connect`` (see :meth:`wiring`).
        """
        return [
            (src, event, dst, slot)
            for (src, event), targets in self.wiring(None)[0].items()
            for dst, slot in targets
        ]

    def wiring(
        self, api: str | None
    ) -> tuple[dict[tuple[str, str], list[tuple[str, str]]], dict[tuple[str, str, str, str], dict[str, str]]]:
        """The connections and mappings of a job: ``connect``'s, then the links made by hand.

        A link made by hand (``event.connect(slot)``, ``Connection(event, slot)``)
        from an event of one of the graph's routines to a slot of another is
        a connection like ``connect``'s; the same pair made both ways is one
        connection. *api* names the call for the errors; ``None``: leave out
        a link that cannot be honoured instead of raising.

        Raises:
            GraphDefinitionError: a link to a slot whose routine is not in the
                graph (or was added under two ids), or the same pair with two
                different mappings.
        """
        links = [
            (source_id, name, link)
            for source_id, template in self.routines.items()
            for name, spec in template.__dict__["_events"].items()
            for link in spec._links or ()
        ]
        if not links:
            return self._connections, self._mappings
        ids: dict[int, list[str]] = {}
        for routine_id, template in self.routines.items():
            ids.setdefault(id(template), []).append(routine_id)
        connections = {key: list(targets) for key, targets in self._connections.items()}
        mappings = dict(self._mappings)
        for source_id, event, link in links:
            slot = link.target_slot
            assert slot is not None  # a link always has both ends
            owner = slot.routine
            found = ids.get(id(owner), []) if owner is not None else []
            problem = None
            if len(ids[id(self.routines[source_id])]) > 1 or len(found) > 1:
                twice = source_id if len(found) <= 1 else found[0]
                problem = (
                    f"routine {twice!r} was added to flow {self.name!r} under several ids, and a link made by hand "
                    "cannot say which one it connects. Connect them with flow.connect(...) instead."
                )
            elif not found or owner.__dict__["_slots"].get(slot.name) is not slot:
                whose = "no routine" if owner is None else f"a {type(owner).__name__} routine"
                problem = (
                    f"slot {slot.name!r} of {whose}, which is not a routine of flow {self.name!r}. In a flow, a link "
                    "made by hand is one of the flow's connections: add that routine with flow.add_routine(...), "
                    "or remove the link with event.disconnect(slot)."
                )
            else:
                target_id = found[0]
                mapping = dict(link.param_mapping)
                targets = connections.setdefault((source_id, event), [])
                key = (source_id, event, target_id, slot.name)
                if (target_id, slot.name) not in targets:
                    targets.append((target_id, slot.name))
                    if mapping:
                        mappings[key] = mapping
                    continue
                if mappings.get(key, {}) == mapping:
                    continue
                problem = (
                    f"slot {slot.name!r} of routine {target_id!r}, with param_mapping={mapping!r}, but "
                    f"flow.connect(...) connected them with param_mapping={mappings.get(key, {})!r}. Give the "
                    "connection one mapping: drop one of the two."
                )
            if api is not None:
                msg = f"{api}: event {event!r} of routine {source_id!r} is linked by hand (event.connect(slot)) to {problem}"
                raise GraphDefinitionError(msg)
        return connections, mappings

    def add_routine(self, routine: Routine | Callable[[], Routine], routine_id: str | None = None) -> str:
        """``Flow.add_routine``: add a template and how to make each job's instance of it."""
        where = f"Flow({self.name!r}).add_routine()"
        if routine_id is not None and (not isinstance(routine_id, str) or not routine_id):
            msg = f"Flow({self.name!r}).add_routine(..., {routine_id!r}): a routine id is a non-empty string."
            raise TypeError(msg)
        if routine_id in self.routines:
            other = type(self.routines[routine_id]).__name__
            msg = (
                f"add_routine(..., {routine_id!r}): flow {self.name!r} already has a routine {routine_id!r} "
                f"({other}); give each routine its own id."
            )
            raise GraphDefinitionError(msg)
        props = RoutineProps.of(routine, where)
        template = props.template
        if routine_id is None:
            base = type(template).__name__.lower()
            routine_id, n = base, 1
            while routine_id in self.routines:
                n += 1
                routine_id = f"{base}_{n}"
        self.routines[routine_id] = template
        self._props[routine_id] = props
        recipe = template.__dict__.get("_recipe")
        if recipe is not None and recipe.flow is None:
            recipe.flow = self.name  # a flow's routine emits only inside a job
        return routine_id

    def _routine(self, api: str, routine_id: str) -> Routine:
        routine = self.routines.get(routine_id)
        if routine is None:
            msg = f"{api}: flow {self.name!r} has no routine {routine_id!r}; its routines are {_names(self.routines)}."
            raise GraphDefinitionError(msg)
        return routine

    def connect(
        self,
        source_id: str,
        event: str,
        target_id: str,
        slot: str,
        param_mapping: Mapping[str, str] | None = None,
    ) -> Connection:
        """``Flow.connect``: check both ends and the mapping, then connect."""
        api = f"connect({source_id!r}, {event!r}, {target_id!r}, {slot!r})"
        source = self._routine(api, source_id)
        target = self._routine(api, target_id)
        events = source._defs("_events")
        if event not in events:
            msg = f"{api}: routine {source_id!r} has no event {event!r}; its events are {_names(events)}."
            raise GraphDefinitionError(msg)
        slots = target._defs("_slots")
        if slot not in slots:
            msg = f"{api}: routine {target_id!r} has no slot {slot!r}; its slots are {_names(slots)}."
            raise GraphDefinitionError(msg)
        targets = self._connections.setdefault((source_id, event), [])
        if (target_id, slot) in targets:
            msg = f"{api}: these are already connected; each connection delivers every emission once."
            raise GraphDefinitionError(msg)
        the_event, the_slot = cast("RoutineEvent", events[event]), cast("Slot", slots[slot])
        mapping = check_mapping(api, the_event, the_slot, param_mapping)
        targets.append((target_id, slot))
        if mapping:
            self._mappings[source_id, event, target_id, slot] = mapping
        connection = Connection(source_id, event, target_id, slot, mapping)
        connection.source_event = the_event
        connection.target_slot = the_slot
        return connection

    def set_execution_strategy(
        self, strategy: str, max_workers: int | None = None, *, api: str | None = None
    ) -> None:
        """``Flow.set_execution_strategy``: check, then keep, how the next jobs run their handlers."""
        where = api or f"Flow({self.name!r}).set_execution_strategy({strategy!r}, max_workers={max_workers!r})"
        if strategy not in STRATEGIES:
            choices = ", ".join(repr(name) for name in STRATEGIES)
            msg = f"{where}: {strategy!r} is not an execution strategy; choose one of {choices}."
            raise ValueError(msg)
        if max_workers is not None and (
            not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
        ):
            msg = f"{where}: max_workers={max_workers!r} must be a whole number of worker threads, 1 or more."
            raise ValueError(msg)
        self.execution_strategy = strategy
        if strategy == "concurrent":
            self.max_workers = DEFAULT_WORKERS if max_workers is None else max_workers
        else:
            self.max_workers = 1

    def set_entry(self, routine_id: str) -> None:
        """``Flow.set_entry``."""
        self._routine(f"set_entry({routine_id!r})", routine_id)
        self.entry_id = routine_id

    def set_error_handler(self, handler: ErrorHandler | ErrorStrategy | str) -> None:
        """``Flow.set_error_handler``."""
        if not isinstance(handler, ErrorHandler):
            handler = ErrorHandler(strategy=handler)
        self._error_handler = handler

    # -- running a job ------------------------------------------------------------

    def _new_job(
        self,
        settings: RunSettings,
        flow: AnyFlow,
        api: str,
        entry_id: str,
        entry_params: Mapping[str, object] | None,
        *,
        detached: bool,
        metadata: RequestMetadata | None = None,
        subscriptions: Sequence[Subscription] = (),
        strategy: str | None = None,
    ) -> Job:
        workers = self.max_workers
        if strategy is None:
            strategy = self.execution_strategy
        elif strategy != self.execution_strategy:
            if strategy not in STRATEGIES:
                choices = ", ".join(repr(name) for name in STRATEGIES)
                msg = f"Flow({self.name!r}).{api}(..., execution_strategy={strategy!r}): not an execution strategy; choose one of {choices}."
                raise ValueError(msg)
            workers = DEFAULT_WORKERS if strategy == "concurrent" else 1
        if not self.routines:
            msg = f"Flow({self.name!r}).{api}(): the flow has no routines. Add them with add_routine(routine, 'id') first."
            raise GraphDefinitionError(msg)
        entry = self.routines.get(entry_id)
        if entry is None:
            entry = self._routine(f"{api}({entry_id!r})", entry_id)  # raises
        slots = entry._defs("_slots")
        if not slots:
            msg = (
                f"{api}({entry_id!r}): routine {entry_id!r} has no slot to start a job with. "
                "Define one with define_slot(name, handler=...)."
            )
            raise GraphDefinitionError(msg)
        if entry_params is None:
            params: dict[str, object] = {}
        elif isinstance(entry_params, dict | types.MappingProxyType) or hasattr(entry_params, "keys"):
            params = cast("dict[str, object]", _isolate(dict(entry_params)))
        else:
            msg = f"{api}({entry_id!r}, entry_params={entry_params!r}): entry_params is a dict of the entry slot's keyword arguments, or None."
            raise TypeError(msg)
        connections, mappings = self.wiring(f"Flow({self.name!r}).{api}({entry_id!r})")
        job_id = metadata.run_id if metadata is not None and metadata.run_id else new_job_id()
        job: Job = Job._create(
            settings=settings,
            flow=flow,
            job_id=job_id,
            max_steps=self.max_steps,
            running=self.running_jobs,
            routines=self._props,
            connections=connections,
            mappings=mappings,
            strategy=strategy,
            max_workers=workers,
            default_handler=self._error_handler or default_error_handler(),
            entry=(entry_id, next(iter(slots)), params),
            detached=detached,
            metadata=metadata,
            subscriptions=subscriptions,
        )
        _graph_resume.prepare(job, flow, (entry_id, next(iter(slots)), params))
        return job

    def execute(
        self,
        settings: RunSettings,
        flow: AnyFlow,
        entry_id: str,
        entry_params: Mapping[str, object] | None,
        strategy: str | None = None,
    ) -> JobState:
        """``Flow.execute``: a job in a Trio run of its own."""
        check_not_in_trio(
            f"Flow({self.name!r}).execute(...)", instead=f"await Flow({self.name!r}).aexecute(...)"
        )
        job = self._new_job(
            settings, flow, "execute", entry_id, entry_params, detached=True, strategy=strategy
        )
        trio.run(job._run)
        return job.state

    async def aexecute(
        self,
        settings: RunSettings,
        flow: AnyFlow,
        entry_id: str,
        entry_params: Mapping[str, object] | None,
        strategy: str | None = None,
    ) -> JobState:
        """``Flow.aexecute``: a job in the calling task."""
        job = self._new_job(
            settings, flow, "aexecute", entry_id, entry_params, detached=True, strategy=strategy
        )
        await job._run()
        return job.state

    @contextlib.asynccontextmanager
    async def open_job(
        self, settings: RunSettings, flow: AnyFlow, entry_id: str, entry_params: Mapping[str, object] | None
    ) -> AsyncIterator[Job]:
        """``Flow.open_job``: a job in the background of the caller's block."""
        job = self._new_job(settings, flow, "open_job", entry_id, entry_params, detached=False)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(job._run)
                try:
                    yield job
                finally:
                    job.cancel("the open_job() block was left before the job ended")
        except BaseExceptionGroup as group:
            # The job task never raises but to pass on a cancellation, so a
            # lone exception is the block's own: raise it as it was raised.
            if len(group.exceptions) == 1:
                inner = group.exceptions[0]
                raise inner from inner.__cause__
            raise

    async def aresume(self, settings: RunSettings, flow: AnyFlow, point: ResumePoint) -> RunResult[object]:
        """``Flow.aresume`` of a stored job: a job of the same id, going on from its last snapshot."""
        assert point.entry is not None
        entry_id, _, params = point.entry
        job = self._new_job(
            settings,
            flow,
            "resume",
            entry_id,
            params,
            detached=True,
            metadata=RequestMetadata(run_id=point.run_id),
        )
        _graph_resume.restore(job, point)
        await job._run()
        return RunResult(job.state, job._result(), job.error)

    def running_job(self, api: str, job_state: JobState) -> Job:
        """The running job of *job_state*, or a :class:`JobStateError` for *api*."""
        job = self.running_jobs.get(job_state.job_id)
        if job is None:
            msg = (
                f"Cannot {api} job {job_state.job_id!r} of flow {job_state.flow_id!r}: it is not a running job of "
                f"flow {self.name!r} (its status is {job_state.status}). Only a job started by execute(), "
                "aexecute() or open_job() can be paused, resumed or cancelled, while it runs."
            )
            raise JobStateError(msg)
        return job

    def job_finished(self, job_id: str) -> threading.Event | None:
        """The event set when the running job *job_id* ends; ``None`` if it is not running."""
        job = self.running_jobs.get(job_id)
        return None if job is None else job.finished_sync

    # -- as a run (sessions, arun, invoke) --------------------------------------------

    def _default_entry(self) -> str:
        if self.entry_id is not None:
            return self.entry_id
        targets = {dst for links in self._connections.values() for dst, _ in links}
        roots = [rid for rid in self.routines if rid not in targets]
        if len(roots) == 1:
            return roots[0]
        which = f"routines {_names(roots)} have no" if roots else "every routine has an"
        msg = (
            f"Flow({self.name!r}) cannot tell which routine starts a run: {which} incoming "
            "connection. Choose one with flow.set_entry(routine_id)."
        )
        raise GraphDefinitionError(msg)

    async def arun(
        self,
        settings: RunSettings,
        flow: AnyFlow,
        args: tuple[object, ...],
        kwargs: Mapping[str, object],
        *,
        metadata: RequestMetadata | None = None,
        subscriptions: Sequence[Subscription] = (),
        on_result: Callable[[RunResult[object]], object] | None = None,
    ) -> RunResult[object]:
        """Run one job with a message: the graph form of ``_run.run_flow`` (*on_result* as there).

        The entry routine is :attr:`entry_id`, or the one routine with no
        incoming connection. Its first slot gets the message's keys if the
        message is a dict, else ``data=message``, plus *kwargs*. The result is
        the list of the job's outputs (``send_output``), or ``None``.
        """
        if len(args) > 1:
            msg = f"Flow({self.name!r}) runs a routine graph with one message, not {len(args)} arguments."
            raise TypeError(msg)
        params: dict[str, object] = {}
        if args:
            message = args[0]
            if isinstance(message, dict):
                params.update(message)
            else:
                params["data"] = message
        params.update(kwargs)
        entry_id = self._default_entry()
        job = self._new_job(
            settings,
            flow,
            "run",
            entry_id,
            params,
            detached=True,
            metadata=metadata,
            subscriptions=subscriptions,
        )
        try:
            await job._run()
        finally:
            result = RunResult(job.state, job._result(), job.error)
            # Final: the job ended (an outside cancel ends it cancelled, as it counts anyway).
            if on_result is not None and job.state.status.is_final:
                on_result(result)
        return result
