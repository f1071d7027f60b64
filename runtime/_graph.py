"""Routine graphs on a Flow: routines, connections, and the ways to run a job.

:class:`GraphMixin` is the routine-graph half of :class:`~runtime.Flow`. A job
itself (its actors, delivery, pause and resume) lives in ``_job.py``.
"""

from __future__ import annotations

import contextlib
import operator
import types
from typing import TYPE_CHECKING, cast

import trio

from ._context import copy_context
from ._exceptions import GraphDefinitionError
from ._job import Job, new_job_id
from ._routine import ErrorHandler, Routine, RoutineProps, default_error_handler
from ._run import RunResult
from ._state import JobState, _isolate

if TYPE_CHECKING:
    import pathlib
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence

    from ._context import RequestMetadata
    from ._publisher import Event, Subscription
    from ._routine import AnyFlow, ErrorStrategy


def _names(names: Sequence[str] | Mapping[str, object]) -> str:
    return ", ".join(repr(name) for name in names) or "none"


class GraphMixin:
    """The routine-graph half of :class:`~runtime.Flow`.

    A graph flow holds routine *templates* and the connections between
    them. Each job runs on its own instances, made the way each template
    was made (``RoutineProps`` in ``_routine.py``); the flow itself is never
    changed by a job.
    """

    # Set by Flow.__init__.
    name: str
    timeout: float | None
    context: dict[str, object]
    save_state: bool
    end_on_error: bool
    state_dir: pathlib.Path
    subscribers: tuple[Callable[[Event], object], ...]

    def __init__(self, *, max_steps: int | None = None) -> None:
        steps: int | None = None
        if max_steps is not None:
            try:
                steps = operator.index(max_steps)
            except TypeError:
                steps = 0
            if steps < 1 or isinstance(max_steps, bool):
                msg = f"Flow({self.name!r}, max_steps={max_steps!r}): max_steps must be a whole number of handler calls, 1 or more, or None for no limit."
                raise ValueError(msg)
        #: The most handler calls one job may make before it fails with
        #: StepLimitError; ``None``: no limit.
        self.max_steps: int | None = steps
        #: The routine a job starts with when ``arun``/``invoke`` (or a session) runs the flow.
        self.entry_id: str | None = None
        self._routines: dict[str, Routine] = {}
        self._props: dict[str, RoutineProps] = {}
        self._connections: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._error_handler: ErrorHandler | None = None

    # -- building the graph -------------------------------------------------------

    @property
    def routines(self) -> Mapping[str, Routine]:
        """The flow's routines (templates) by id, in the order they were added (read-only)."""
        return types.MappingProxyType(self._routines)

    @property
    def connections(self) -> list[tuple[str, str, str, str]]:
        """Every connection as ``(source_id, event, target_id, slot)``, in the order made."""
        return [
            (src, event, dst, slot)
            for (src, event), targets in self._connections.items()
            for dst, slot in targets
        ]

    def add_routine(self, routine: Routine | Callable[[], Routine], routine_id: str | None = None) -> str:
        """Add *routine* to the graph under *routine_id* and return the id.

        The routine is a template: each job runs on its own instance, made by
        calling the routine's constructor again with the same arguments (or
        by calling *routine*, if it is a factory), then applying the settings
        made on the template since. Constructor arguments are shared, not
        copied, by every job (see :class:`~runtime.Routine`).

        Args:
            routine: a :class:`~runtime.Routine` instance; or a ``Routine``
                subclass or a function with no arguments that returns a
                routine, called once now (for the template) and once per job.
            routine_id: unique within the flow; by default the class name in
                lower case, numbered if taken (``datasource``, ``datasource_2``).

        Raises:
            TypeError: *routine* is none of those (or was not initialised with
                ``super().__init__()``), its constructor was given an iterator
                (only the first job could use it: pass a list or a factory), or
                *routine_id* is not a string.
            GraphDefinitionError: the flow already has a routine *routine_id*.

        .. versionadded:: 0.1
        """
        where = f"Flow({self.name!r}).add_routine()"
        if routine_id is not None and (not isinstance(routine_id, str) or not routine_id):
            msg = f"Flow({self.name!r}).add_routine(..., {routine_id!r}): a routine id is a non-empty string."
            raise TypeError(msg)
        if routine_id in self._routines:
            other = type(self._routines[routine_id]).__name__
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
            while routine_id in self._routines:
                n += 1
                routine_id = f"{base}_{n}"
        self._routines[routine_id] = template
        self._props[routine_id] = props
        return routine_id

    def _routine(self, api: str, routine_id: str) -> Routine:
        routine = self._routines.get(routine_id)
        if routine is None:
            msg = f"{api}: flow {self.name!r} has no routine {routine_id!r}; its routines are {_names(self._routines)}."
            raise GraphDefinitionError(msg)
        return routine

    def connect(self, source_id: str, event: str, target_id: str, slot: str) -> None:
        """Connect event *event* of routine *source_id* to slot *slot* of routine *target_id*.

        In a job, every emission of the event is delivered once to the slot,
        in emission order. Cycles are allowed: the Flow's ``timeout``, its
        ``max_steps`` (no limit by default) or the caller's cancel scope ends
        a cycle that never stops.

        Raises:
            GraphDefinitionError: a routine, the event or the slot does not
                exist (the message lists the ones that do); the connection
                already exists; or the event declares a parameter the slot's
                handler cannot take.

        .. versionadded:: 0.1
        """
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
        declared = source.__dict__["_events"][event].params
        the_slot = target.__dict__["_slots"][slot]
        accepted = the_slot._params
        if declared is not None and accepted is not None and not accepted.issuperset(declared):
            missing = ", ".join(repr(p) for p in sorted(declared - accepted))
            handler = getattr(the_slot.handler, "__qualname__", repr(the_slot.handler))
            msg = (
                f"{api}: event {event!r} of routine {source_id!r} carries {missing}, which the handler of "
                f"slot {slot!r} of routine {target_id!r} ({handler}) does not accept. Add the parameter(s) "
                "or **kwargs to the handler."
            )
            raise GraphDefinitionError(msg)
        targets.append((target_id, slot))

    def set_entry(self, routine_id: str) -> None:
        """Make *routine_id* the routine a job starts with when the flow is run with a message.

        ``flow.arun(message)``, ``flow.invoke(message)`` and sessions start a
        job there. Without an entry, the one routine with no incoming
        connection is used.

        Raises:
            GraphDefinitionError: the flow has no such routine.

        .. versionadded:: 0.1
        """
        self._routine(f"set_entry({routine_id!r})", routine_id)
        self.entry_id = routine_id

    def set_error_handler(self, handler: ErrorHandler | ErrorStrategy | str) -> None:
        """Set the error handling of every routine that has none of its own.

        Args:
            handler: an :class:`~runtime.ErrorHandler`, or a strategy.

        .. versionadded:: 0.1
        """
        if not isinstance(handler, ErrorHandler):
            handler = ErrorHandler(strategy=handler)
        self._error_handler = handler

    # -- running a job ------------------------------------------------------------

    def _as_flow(self) -> AnyFlow:
        return cast("AnyFlow", self)

    def _new_job(
        self,
        api: str,
        entry_id: str,
        entry_params: Mapping[str, object] | None,
        *,
        detached: bool,
        metadata: RequestMetadata | None = None,
        subscriptions: Sequence[Subscription] = (),
    ) -> Job:
        if not self._routines:
            msg = f"Flow({self.name!r}).{api}(): the flow has no routines. Add them with add_routine(routine, 'id') first."
            raise GraphDefinitionError(msg)
        entry = self._routines.get(entry_id)
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
        job_id = metadata.run_id if metadata is not None and metadata.run_id else new_job_id()
        state = JobState(job_id=job_id, flow_id=self.name, context=copy_context(self.context))
        return Job._create(
            flow=self._as_flow(),
            state=state,
            routines=self._props,
            connections=self._connections,
            default_handler=self._error_handler or default_error_handler(),
            entry=(entry_id, next(iter(slots)), params),
            detached=detached,
            metadata=metadata,
            subscriptions=subscriptions,
        )

    def execute(self, entry_id: str, entry_params: Mapping[str, object] | None = None) -> JobState:
        """Run a job from synchronous code, from routine *entry_id*, and return its final state.

        The job starts by calling the entry routine's first slot with
        *entry_params* as keyword arguments, and runs until no routine holds
        a message. A job that fails, times out or is cancelled does not raise
        here: its ``status`` and ``error`` say how it ended (as in Routilux),
        and ``undelivered`` lists the messages it never handled. A handler
        that pauses the job here (``ctx.job_state.pause()``) leaves nobody to
        resume it: once no handler runs, the job ends with status ``paused``.
        To pause and resume a job, run it with :meth:`open_job`.

        The Flow's settings apply: ``timeout`` (status ``timed_out``),
        ``end_on_error`` (every handler failure stops the job, whatever its
        routine's strategy), ``max_steps`` (status ``failed`` with a
        :class:`~runtime.StepLimitError`), ``context`` (``rt.context`` in
        handlers, a copy per job), ``save_state`` and ``subscribers``.

        Args:
            entry_id: the routine to start with.
            entry_params: keyword arguments for its first slot (copied).

        Returns:
            The job's :class:`~runtime.JobState`.

        Raises:
            InvokeInsideTrioError: called inside a running Trio program; use
                ``await flow.aexecute(...)``.
            GraphDefinitionError: no routine *entry_id*, or it has no slot.
            TypeError: *entry_params* is not a dict.
            Exception: a routine's constructor (or factory) raised when called
                again for the job, with a note naming the routine; no routine
                of the job has run.

        .. versionadded:: 0.1
        """
        from ._flow import check_not_in_trio  # _flow imports this module

        check_not_in_trio(
            f"Flow({self.name!r}).execute(...)", instead=f"await Flow({self.name!r}).aexecute(...)"
        )
        job = self._new_job("execute", entry_id, entry_params, detached=True)
        trio.run(job._run)
        return job.state

    async def aexecute(self, entry_id: str, entry_params: Mapping[str, object] | None = None) -> JobState:
        """Run a job inside a running Trio program; like :meth:`execute`.

        Cancelling the caller cancels the job: it is recorded as cancelled
        (undelivered messages listed, state saved if ``save_state``) and the
        cancellation propagates.

        .. versionadded:: 0.1
        """
        job = self._new_job("aexecute", entry_id, entry_params, detached=True)
        await job._run()
        return job.state

    @contextlib.asynccontextmanager
    async def open_job(
        self, entry_id: str, entry_params: Mapping[str, object] | None = None
    ) -> AsyncIterator[Job]:
        """Start a job in the caller's Trio program: ``async with flow.open_job(...) as job:``.

        The job runs in the background of the block; the :class:`~runtime.Job`
        handle waits for it, pauses, resumes and cancels it. Leaving the block
        cancels the job if it has not ended, so ``await job.wait()`` inside
        the block to let it finish. Nothing of the job runs after the block.

        Raises:
            GraphDefinitionError: as for :meth:`execute`.

        .. versionadded:: 0.1
        """
        job = self._new_job("open_job", entry_id, entry_params, detached=False)
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

    def pause(self, job_state: JobState, reason: str | None = None) -> None:
        """Pause the job of *job_state* (Routilux spelling of ``job_state.pause()``).

        .. versionadded:: 0.1
        """
        job_state.pause(reason)

    def resume(self, job_state: JobState) -> JobState:
        """Resume the paused job of *job_state* and return the state.

        Raises:
            JobStateError: the job is not paused.

        .. versionadded:: 0.1
        """
        job_state.resume()
        return job_state

    def cancel(self, job_state: JobState, reason: str | None = None) -> None:
        """Cancel the job of *job_state* (Routilux spelling of ``job_state.cancel()``).

        .. versionadded:: 0.1
        """
        job_state.cancel(reason)

    # -- as a run (sessions, arun, invoke) --------------------------------------------

    def _default_entry(self) -> str:
        if self.entry_id is not None:
            return self.entry_id
        targets = {dst for links in self._connections.values() for dst, _ in links}
        roots = [rid for rid in self._routines if rid not in targets]
        if len(roots) == 1:
            return roots[0]
        which = f"routines {_names(roots)} have no" if roots else "every routine has an"
        msg = (
            f"Flow({self.name!r}) cannot tell which routine starts a run: {which} incoming "
            "connection. Choose one with flow.set_entry(routine_id)."
        )
        raise GraphDefinitionError(msg)

    async def _arun_graph(
        self,
        args: tuple[object, ...],
        kwargs: Mapping[str, object],
        *,
        metadata: RequestMetadata | None = None,
        subscriptions: Sequence[Subscription] = (),
        on_result: Callable[[RunResult[object]], object] | None = None,
    ) -> RunResult[object]:
        """Run one job with a message: the graph form of ``Flow._arun`` (*on_result* as there).

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
            "run", entry_id, params, detached=True, metadata=metadata, subscriptions=subscriptions
        )
        try:
            await job._run()
        finally:
            result = RunResult(job.state, job._result(), job.error)
            # Final: the job ended (an outside cancel ends it cancelled, as it counts anyway).
            if on_result is not None and job.state.status.is_final:
                on_result(result)
        return result
