"""SQLiteStore: every record of every run in one SQLite file (WAL mode).

One writer actor, owned by the store's ``async with`` block, holds the write
connection. Runs queue their records with the store; the writer commits all
that is queued as one transaction, in a worker thread (the event loop never
waits on disk; the rows are encoded before, on the writer's task, and
inserted with one ``executemany``). Reads open their own
connection, also in a worker thread, and need no open block: another process
can read a store while runs are written to it.
"""

from __future__ import annotations

import contextlib
import datetime
import difflib
import functools
import json
import logging
import os
import pathlib
import sqlite3
from typing import TYPE_CHECKING, final

import attrs
import trio

import actors

from .._exceptions import ResumeError, StoreError, UnknownRunError, UnserializableValueError
from .._publisher import Event, EventKind
from .._serialize import _converter, _Walker
from .._state import OUTPUT_KEY, Delivery, ErrorSummary, HistoryEntry, JobState, Request, Status
from ._base import ResumePoint, RunSummary

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from types import TracebackType

#: Forward-only schema migrations: step *i* takes a database from version *i* to *i + 1*.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE runs ("
        " run_id TEXT PRIMARY KEY, flow TEXT NOT NULL, status TEXT NOT NULL,"
        " started_offset REAL NOT NULL, finished_offset REAL,"
        " started_wall TEXT NOT NULL, finished_wall TEXT, owner_pid INTEGER NOT NULL)",
        "CREATE INDEX runs_by_flow ON runs (flow)",
        "CREATE TABLE records ("
        " run_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, offset REAL NOT NULL,"
        " request_id TEXT, parent_id TEXT, node TEXT, data TEXT NOT NULL, unserializable TEXT,"
        " PRIMARY KEY (run_id, seq)) WITHOUT ROWID",
    ),
    (
        # Durable runs: call keys, attempts and values for resume; interrupts; snapshots.
        "ALTER TABLE runs ADD COLUMN fingerprint TEXT",
        "ALTER TABLE runs ADD COLUMN input TEXT",
        "ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE runs ADD COLUMN interrupt TEXT",
        "ALTER TABLE runs ADD COLUMN answers TEXT",
        "ALTER TABLE records ADD COLUMN call_key TEXT",
        "ALTER TABLE records ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE records ADD COLUMN value TEXT",
        "CREATE TABLE snapshots ("
        " run_id TEXT NOT NULL, seq INTEGER NOT NULL, state TEXT NOT NULL,"
        " PRIMARY KEY (run_id, seq)) WITHOUT ROWID",
        "CREATE INDEX runs_by_status ON runs (status)",
    ),
)

SCHEMA_VERSION = len(_MIGRATIONS)
"""The schema version this runtime writes; it reads this one and every older one (migrating it)."""

#: Records queued for the writer beyond which recorders wait (backpressure on the runs).
_MAX_QUEUED = 8192

_logger = logging.getLogger("runtime.store")


def _utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC)


# -- encoding records --------------------------------------------------------


_SCALARS = frozenset({str, int, bool, type(None)})
_dumps = json.JSONEncoder(separators=(",", ":")).encode
_encode_str = json.encoder.encode_basestring_ascii
_CONSTANTS: dict[object, str] = {None: "null", True: "true", False: "false"}


def _scalar(value: str | int | bool | None) -> str:
    """A scalar's JSON text, as ``_dumps`` gives it, without the encoder's general path (most records' data)."""
    kind = type(value)
    if kind is str:
        return _encode_str(value)  # type: ignore[arg-type]
    if kind is int:
        return int.__repr__(value)
    return _CONSTANTS[value]


def _encode(event: Event) -> tuple[str, str | None]:
    """The record's data as JSON text, and the paths of values stored as their repr (JSON), if any."""
    data = event.data
    if type(data) in _SCALARS:  # most records: a summary, an executor's name, nothing
        return _scalar(data), None  # type: ignore[arg-type]
    kind = event.kind
    walker = _Walker(run_id=event.run_id, strict=False)
    plain: object
    if kind is EventKind.REQUEST_FAILED and isinstance(data, ErrorSummary):
        plain = _converter.unstructure(data)
    elif kind is EventKind.REQUEST_CANCELLED and isinstance(data, Status):
        plain = data.value
    else:
        plain = walker.walk(data, "$.data")
    bad = json.dumps(walker.bad_paths) if walker.bad_paths else None
    return _dumps(plain), bad


def _error(value: object) -> ErrorSummary | None:
    if not isinstance(value, dict):
        return None
    return ErrorSummary(str(value.get("type")), str(value.get("message")), tuple(value.get("path") or ()))


def _decode(kind: EventKind, data: object) -> object:
    """The record's data as the run recorded it (error summaries and statuses as their types)."""
    if kind is EventKind.REQUEST_FAILED:
        return _error(data)
    if kind is EventKind.REQUEST_CANCELLED and isinstance(data, str):
        return Status(data)
    return data


# -- rebuilding a state ------------------------------------------------------


def _rebuild(run_id: str, flow: str, started: datetime.datetime, records: Sequence[Event]) -> JobState:
    """Apply *records* in order to an empty state of *run_id*."""
    state = JobState(job_id=run_id, flow_id=flow, created_at=started)
    state._clock.anchor = started
    requests = state.requests
    for record in records:
        kind, data, offset = record.kind, record.data, record.offset
        if kind is EventKind.RUN_STARTED:
            # Each attempt (the first run, each resume) runs the flow again: its tree is the run's.
            requests.clear()
            state.started_at = started
            state.status = Status.RUNNING
        elif kind is EventKind.REQUEST_CREATED:
            assert record.request_id is not None
            requests[record.request_id] = Request(
                id=record.request_id,
                parent_id=record.parent_id,
                node=record.node or "",
                status=Status.RUNNING,
                created_at=offset,
                started_at=offset,
                executor=data if isinstance(data, str) else None,
            )
        elif kind in _OUTCOMES and record.request_id in requests:
            request = requests[record.request_id]
            # A cancelled request's data names how its executor ended it (killed, orphaned), if not plainly.
            ending = data if kind is EventKind.REQUEST_CANCELLED and isinstance(data, str) else None
            request.status = Status(ending) if ending is not None else _OUTCOMES[kind]
            request.finished_at = offset
            if kind is EventKind.REQUEST_SUCCEEDED:
                request.result = data if isinstance(data, str) else None
            elif kind is EventKind.REQUEST_FAILED:
                request.error = data if isinstance(data, ErrorSummary) else None
        elif kind is EventKind.STREAM and record.request_id is None and isinstance(data, dict):
            # A routine's send_output: the job keeps its outputs in its shared data.
            outputs = state.shared_data.setdefault(OUTPUT_KEY, [])
            assert isinstance(outputs, list)
            outputs.append(
                {
                    "routine_id": record.node,
                    "output_type": data.get("output_type"),
                    "data": data.get("data"),
                    "timestamp": state._wall_time(offset).isoformat(),
                }
            )
        elif kind is EventKind.LOG and isinstance(data, dict):
            if record.request_id is not None:
                data = {"request": record.request_id, "node": record.node, **data}
            if "timestamp" in data:
                state.shared_log.append(data)
            else:
                state._append_log(data, offset)
        elif kind is EventKind.ROUTINE_EVENT and isinstance(data, dict):
            state.history.append(
                HistoryEntry(
                    routine_id=record.node or "",
                    event_name=str(data.get("event")),
                    data=dict(data.get("data") or {}),
                    timestamp=state._wall_time(offset),
                    offset=offset,
                )
            )
        elif kind is EventKind.ROUTINE_STATE and isinstance(data, dict):
            state.routine_states.setdefault(record.node or "", {}).update(data)
        elif kind is EventKind.SHARED_DATA and isinstance(data, dict):
            state.shared_data[str(data.get("key"))] = data.get("value")
        elif kind is EventKind.UNDELIVERED and isinstance(data, dict):
            state.undelivered.append(Delivery(**data))
        elif kind is EventKind.RUN_FINISHED and isinstance(data, dict):
            status = data.get("status")
            state.status = Status(status) if isinstance(status, str) else Status.FAILED
            result = data.get("result")
            state.result = result if isinstance(result, str) or result is None else repr(result)
            # The record carries the error as "type: message", not where it was raised.
            error = data.get("error")
            if isinstance(error, str):
                error_type, _, message = error.partition(": ")
                state.error = ErrorSummary(error_type, message)
            state.finished_at = state._wall_time(offset)
    return state


_OUTCOMES = {
    EventKind.REQUEST_SUCCEEDED: Status.COMPLETED,
    EventKind.REQUEST_FAILED: Status.FAILED,
    EventKind.REQUEST_CANCELLED: Status.CANCELLED,
}


# -- connections -------------------------------------------------------------


def _schema_version(conn: sqlite3.Connection) -> int:
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if has_meta is None:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return 0 if row is None else int(row[0])


def _connect(path: pathlib.Path, *, write: bool) -> sqlite3.Connection:
    """Open *path* (creating and migrating it if *write*); refuse a newer schema."""
    _check_path(path)
    if write:
        _check_writable(path)
    try:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    except sqlite3.Error as exc:
        msg = f"Cannot open the run store {str(path)!r}: {exc}. Give the path of a SQLite file in a writable directory."
        raise StoreError(msg) from exc
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        version = _schema_version(conn)
        if version > SCHEMA_VERSION:
            msg = (
                f"The run store {str(path)!r} has schema version {version}, newer than version "
                f"{SCHEMA_VERSION}, the newest this trioflow reads. Upgrade trioflow to read it, or give another path."
            )
            raise StoreError(msg)
        if write:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            for step in range(version, SCHEMA_VERSION):
                conn.execute("BEGIN IMMEDIATE")
                for statement in _MIGRATIONS[step]:
                    conn.execute(statement)
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(step + 1),)
                )
                conn.execute("COMMIT")
    except sqlite3.Error as exc:
        conn.close()
        msg = f"Cannot use the run store {str(path)!r}: {exc}. {_fix(path, exc)}"
        raise StoreError(msg) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _fix(path: pathlib.Path, exc: sqlite3.Error) -> str:
    """What to do about *exc*, raised opening the store at *path* (nothing was written to it)."""
    text = str(exc)
    if "malformed" in text:
        return "The file is damaged (truncated or corrupt); nothing was written to it. Restore it from a backup, or give a new path."
    if "readonly" in text or "read-only" in text:
        return (
            f"Make the file and its directory writable (SQLite keeps {path.name}-wal and {path.name}-shm "
            "beside it), or give another path."
        )
    return "Give the path of a trioflow run store (a SQLite file), or a new path."


def _check_writable(path: pathlib.Path) -> None:
    """Refuse a store file, or the directory of one, that this process may not write: before SQLite opens it read-only."""
    # The effective ids decide what the process may write (a set-uid program, a dropped privilege).
    effective = os.access in os.supports_effective_ids
    for where in (path, path.parent):
        if where.exists() and not os.access(where, os.W_OK, effective_ids=effective):
            what = "file" if where == path else "directory"
            msg = (
                f"Cannot use the run store {str(path)!r}: its {what} {str(where)!r} is read-only. Make the file and "
                f"its directory writable (SQLite keeps {path.name}-wal and {path.name}-shm beside it), or give another path."
            )
            raise StoreError(msg)


def _check_path(path: pathlib.Path) -> None:
    if path.is_dir():
        msg = f"The run store path {str(path)!r} is a directory. Give the path of a file in it, e.g. {str(path / 'runs.db')!r}."
        raise StoreError(msg)


def _value(event: Event) -> str | None:
    """The JSON text of the record's full value (a result, the entry's arguments); ``None`` if it is not JSON."""
    value = event.value
    if event.kind is EventKind.RUN_STARTED:
        if not isinstance(value, dict):
            return None
        started = value
        value = {"args": list(started.get("args") or ()), "kwargs": dict(started.get("kwargs") or {})}
        if "entry" in started:  # a graph job: its entry routine, slot and data
            value["entry"] = started["entry"]
    elif event.kind is not EventKind.REQUEST_SUCCEEDED:
        return None
    if type(value) in _SCALARS:
        return _dumps(value)
    try:
        plain = _Walker(run_id=event.run_id, strict=True).walk(value, "$.value")
    except UnserializableValueError:
        return None
    return _dumps(plain)


def _input_paths(event: Event) -> str | None:
    """The paths (``$.args[0]``, ``$.kwargs.x``) of a ``run_started`` record's arguments that are not JSON, as JSON text; ``None`` if all are."""
    value = event.value
    if not isinstance(value, dict):
        return None
    walker = _Walker(run_id=event.run_id, strict=False)
    walker.walk({"args": list(value.get("args") or ()), "kwargs": dict(value.get("kwargs") or {})}, "$")
    return json.dumps(walker.bad_paths) if walker.bad_paths else None


def _boxed(event: Event) -> str | None:
    """The result of a ``request_succeeded`` record as the JSON text ``[result]``, if it is JSON; else ``None``.

    Boxed: the ``value`` column has always held it so (stores written
    before keep it readable), and ``NULL`` stays apart from a ``None`` result.
    """
    value = event.value
    if type(value) in _SCALARS:
        return f"[{_scalar(value)}]"  # type: ignore[arg-type]
    try:
        return _dumps([_Walker(run_id=event.run_id, strict=True).walk(value, "$.value")])
    except UnserializableValueError:
        return None


def _resumed_from(event: Event) -> str | None:
    """For a resumed graph job's ``run_started``: the JSON text ``[seq]``, the last record of the snapshot it resumed from (-1: none)."""
    value = event.value
    if isinstance(value, dict) and type(seq := value.get("resumed_from")) is int:
        return f"[{seq}]"
    return None


def _chain(records: list[Event], resumed: Mapping[int, int]) -> list[Event]:
    """*records* less those a resumed graph job rolled back: after its snapshot, before the attempt.

    *resumed* maps each resumed attempt's ``run_started`` record to the last
    record of the snapshot it resumed from.
    """
    if not resumed:
        return records
    dropped = list(resumed.items())
    return [r for r in records if not any(last < r.seq < start for start, last in dropped)]


_BASE_COLUMNS = (
    "run_id",
    "seq",
    "kind",
    "offset",
    "request_id",
    "parent_id",
    "node",
    "data",
    "call_key",
    "value",
)
#: Columns almost every row leaves empty: a batch's rows carry them only if some row of it fills one.
_RARE_COLUMNS = ("unserializable", "attempt")


def _rows(records: Sequence[Event], attempts: Mapping[str, int]) -> tuple[list[list[object]], bool]:
    """The ``records`` table's rows of *records*, for one ``executemany``.

    Also whether the rows carry the rare columns (values stored as their
    repr, a resumed run's attempt): a batch without them binds two
    parameters a row fewer. A call key
    is stored with the request's creation only (its other records name the
    request); a result (``[result]``, see :func:`_boxed`) only with ``request_succeeded``.
    """
    rows: list[list[object]] = []
    rare: list[tuple[str | None, int]] = []
    has_rare = False
    created, succeeded, started = EventKind.REQUEST_CREATED, EventKind.REQUEST_SUCCEEDED, EventKind.RUN_STARTED
    for event in records:
        data, bad = _encode(event)
        kind = event.kind
        if kind is EventKind.RUN_STARTED and bad is None:
            bad = _input_paths(event)  # named when a resume cannot start the run again
        rows.append(
            [
                event.run_id,
                event.seq,
                kind.value,
                event.offset,
                event.request_id,
                event.parent_id,
                event.node,
                data,
                event.key if kind is created else None,
                _boxed(event) if kind is succeeded else _resumed_from(event) if kind is started else None,
            ]
        )
        attempt = attempts.get(event.run_id, 1) if attempts else 1
        rare.append((bad, attempt))
        if bad is not None or attempt != 1:
            has_rare = True
    if has_rare:
        for row, (bad, attempt) in zip(rows, rare, strict=True):
            row += (bad, attempt)
    return rows, has_rare


@functools.cache
def _insert_rows(has_rare: bool) -> str:
    """The statement inserting rows that carry the rare columns or not."""
    columns = [*_BASE_COLUMNS, *(_RARE_COLUMNS if has_rare else ())]
    return f"INSERT INTO records ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _write(
    conn: sqlite3.Connection,
    records: Sequence[Event],
    rows: list[list[object]],
    started_wall: dict[str, float],
    has_rare: bool = True,
    snapshots: Sequence[tuple[str, int, str]] = (),
) -> None:
    """Commit *rows* of *records* (in order), their runs' rows and *snapshots* as one transaction.

    A snapshot replaces its run's older one: a store keeps each job's last.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        for event in records:
            if event.kind is EventKind.RUN_STARTED:
                wall = started_wall[event.run_id]
                value = event.value if isinstance(event.value, dict) else {}
                row = conn.execute(
                    "SELECT started_wall FROM runs WHERE run_id = ?", (event.run_id,)
                ).fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO runs (run_id, flow, status, started_offset, started_wall, owner_pid,"
                        " fingerprint, input) VALUES (?, ?, 'running', ?, ?, ?, ?, ?)",
                        (
                            event.run_id,
                            str(event.data),
                            event.offset,
                            _utc(wall).isoformat(),
                            os.getpid(),
                            value.get("fingerprint"),
                            _value(event),
                        ),
                    )
                else:
                    # A resumed attempt: its clock starts at 0 again; the run's start stays the first's.
                    since = wall - datetime.datetime.fromisoformat(row[0]).timestamp()
                    conn.execute(
                        "UPDATE runs SET status = 'running', started_offset = ?, finished_offset = NULL,"
                        " finished_wall = NULL, owner_pid = ?, interrupt = NULL WHERE run_id = ?",
                        (event.offset - since, os.getpid(), event.run_id),
                    )
        conn.executemany(_insert_rows(has_rare), rows)
        for run_id, seq, document in snapshots:
            conn.execute("DELETE FROM snapshots WHERE run_id = ?", (run_id,))
            conn.execute("INSERT INTO snapshots (run_id, seq, state) VALUES (?, ?, ?)", (run_id, seq, document))
        for event in records:
            if event.kind is EventKind.RUN_FINISHED and isinstance(event.data, dict):
                row = conn.execute(
                    "SELECT started_offset, started_wall FROM runs WHERE run_id = ?", (event.run_id,)
                ).fetchone()
                finished = datetime.datetime.fromisoformat(row[1]) + datetime.timedelta(
                    seconds=event.offset - row[0]
                )
                interrupt = event.data.get("interrupt")
                conn.execute(
                    "UPDATE runs SET status = ?, finished_offset = ?, finished_wall = ?, interrupt = ?"
                    " WHERE run_id = ?",
                    (
                        str(event.data.get("status")),
                        event.offset,
                        finished.isoformat(),
                        None if interrupt is None else _encode(attrs.evolve(event, data=interrupt))[0],
                        event.run_id,
                    ),
                )
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            runs = ", ".join(sorted({repr(e.run_id) for e in records}))
            msg = f"Cannot write the records of run {runs} to the run store: {exc}. Check the database file and its disk; the store has stopped."
            raise StoreError(msg) from exc
        raise


@final
class _Writer(actors.Actor[None, None]):
    """Owns the write connection; each message wakes it to commit every record queued so far, as one transaction, off the loop."""

    shielded = True
    keeps_nursery = False
    mailbox_size = 2  # at most one wake-up waits while one is handled

    def __init__(self, store: SQLiteStore, conn: sqlite3.Connection) -> None:
        self._store = store
        self._conn = conn

    async def handle(self, message: None) -> None:
        store = self._store
        store._busy = True
        batch, snapshots = store._take()
        walls = {
            e.run_id: store._started_wall.pop(e.run_id, _now())
            for e in batch
            if e.kind is EventKind.RUN_STARTED
        }
        # Encoding is Python work: done here, it does not contend with the loop for the GIL.
        for event in batch:
            if event.kind is EventKind.RUN_STARTED and isinstance(event.value, dict):
                attempt = event.value.get("attempt")
                if isinstance(attempt, int) and attempt > 1:
                    store._attempts[event.run_id] = attempt
        rows, has_rare = _rows(batch, store._attempts)
        for event in batch:
            if event.kind is EventKind.RUN_FINISHED:
                store._attempts.pop(event.run_id, None)
        try:
            await trio.to_thread.run_sync(_write, self._conn, batch, rows, walls, has_rare, snapshots)
            store._note_committed(batch)
        finally:
            store._busy = False
            store._done.set()
            store._done = trio.Event()
        store.committed += len(batch)
        if store._on_commit is not None:
            store._on_commit(store.committed)


@final
class SQLiteStore:
    """A run store in one SQLite file, in WAL mode: ``Flow(..., store=SQLiteStore(path))``.

    Open it around the runs it keeps; its writer lives as long as the block::

        store = rt.SQLiteStore("runs.db")
        async with store:
            await flow.arun(...)  # a Flow made with store=store
        print(await store.runs())

    The writer commits everything the runs queued since its last commit
    as one transaction (a batch a run hands the store is never split), each
    run's records in order; a crash loses at most what was not yet
    committed, and leaves every run's records a gap-free prefix. Values that are not JSON are stored
    as their ``repr``, and the record notes their paths (``$.data...``).
    Reading (:meth:`runs`, :meth:`records`, :meth:`state`) needs no open
    block.

    Args:
        path: the database file; created (with its directory's files for
            WAL) if missing.
        on_commit: called on the loop after each commit with the number of
            records this store has committed so far (a progress display, a
            test's synchronization).

    Raises:
        StoreError: *path* is a directory.

    .. versionadded:: 0.1
    """

    def __init__(
        self, path: str | os.PathLike[str], *, on_commit: Callable[[int], object] | None = None
    ) -> None:
        self.path = pathlib.Path(path)
        _check_path(self.path)
        self._key = str(self.path.resolve())
        #: Records committed by this store object so far.
        self.committed = 0
        self._on_commit = on_commit
        self._writer: actors.ActorRef[None, None] | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._started_wall: dict[str, float] = {}
        #: The attempt of each resumed run this store writes (from its run_started record), stamped on its records.
        self._attempts: dict[str, int] = {}
        # The records waiting for the writer's next transaction, and whether it was woken for them.
        self._queued: list[Event] = []
        self._woken = False
        self._taken = trio.Event()
        # Whether the writer is committing a batch, and the event it sets after each commit.
        self._busy = False
        self._done = trio.Event()
        # Graph jobs' snapshots, as (run id, last record, JSON), each written once its record is taken.
        self._snapshots: list[tuple[str, int, str]] = []
        # The last record of each unfinished run the writer has taken.
        self._taken_seq: dict[str, int] = {}
        #: The number of each unfinished run's last committed record (for wait_committed).
        self._last_committed: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    @property
    def is_open(self) -> bool:
        """Whether the store's ``async with`` block is open (its writer runs)."""
        return self._stack is not None

    async def __aenter__(self) -> SQLiteStore:
        if self._stack is not None:
            msg = f"{self!r} is already open. Open a store once, around all the runs it keeps."
            raise StoreError(msg)
        conn = await trio.to_thread.run_sync(lambda: _connect(self.path, write=True))
        stack = contextlib.AsyncExitStack()
        try:
            stack.callback(conn.close)
            system = await stack.enter_async_context(actors.open_system())
            self._writer = await system.spawn(_Writer(self, conn), name="store-writer")
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        self._writer = None
        self._done.set()  # a wait_committed sees the store closed
        self._done = trio.Event()
        assert stack is not None
        try:
            return await stack.__aexit__(exc_type, exc, tb)
        finally:
            self._snapshots.clear()  # of runs whose records never came
            self._taken_seq.clear()

    async def record(self, records: Sequence[Event]) -> None:
        """Queue *records* for the writer's next transaction; wait only while its queue is full.

        Raises:
            StoreError: the store is not open, or its writer failed.
        """
        writer = self._writer
        if writer is None:
            msg = f"{self!r} is not open, so it cannot keep run {records[0].run_id!r}. Run the flow inside async with store: ..."
            raise StoreError(msg)
        if not writer.is_alive:
            msg = f"{self!r} has stopped writing (its writer failed: {writer.failure!r}), so it cannot keep run {records[0].run_id!r}. Open the store again."
            raise StoreError(msg)
        if records[0].kind is EventKind.RUN_STARTED:
            # The run's wall clock: now, less how far into the run the batch's last record is.
            self._started_wall[records[0].run_id] = _now() - records[-1].offset
            _HELD.add((self._key, records[0].run_id))
        if records[-1].kind is EventKind.RUN_FINISHED:
            _HELD.discard((self._key, records[0].run_id))
        self._queued.extend(records)
        self._wake(writer)
        while len(self._queued) > _MAX_QUEUED:
            # Backpressure: the writer is busy with the last transaction; wait until it takes these.
            await self._taken.wait()

    def _wake(self, writer: actors.ActorRef[None, None]) -> None:
        if not self._woken:
            self._woken = True
            writer.tell_nowait(None)

    def snapshot(self, run_id: str, seq: int, document: Mapping[str, object]) -> bool:
        """Queue a graph job's snapshot, covering its records up to *seq*; return whether it could.

        The writer commits it in the transaction that commits record *seq*,
        or a later one: a snapshot never refers to a record not committed.
        The store keeps each job's last snapshot. ``False`` (nothing queued,
        a warning logged naming the value) if the store is not open or the
        document is not JSON.
        """
        writer = self._writer
        if writer is None or not writer.is_alive:
            return False
        try:
            plain = _Walker(run_id=run_id, strict=True).walk(dict(document), "$.snapshot")
        except UnserializableValueError as exc:
            _logger.warning("No snapshot of job %s kept at record %d: %s", run_id, seq, exc)
            return False
        self._snapshots.append((run_id, seq, _dumps(plain)))
        self._wake(writer)
        return True

    async def wait_committed(self, run_id: str, seq: int) -> None:
        """Wait until the records of *run_id* up to number *seq* are committed.

        Returns at once if the store is not open (it is keeping no run).

        Raises:
            StoreError: the writer failed before it committed them.
        """
        while self._last_committed.get(run_id, -1) < seq:
            writer = self._writer
            if writer is None:
                return
            if not writer.is_alive:
                msg = f"{self!r} has stopped writing (its writer failed: {writer.failure!r}), so it cannot keep run {run_id!r}. Open the store again."
                raise StoreError(msg)
            await self._done.wait()

    def _note_committed(self, batch: Sequence[Event]) -> None:
        last = self._last_committed
        finished = EventKind.RUN_FINISHED
        for event in batch:
            if event.kind is finished:
                last.pop(event.run_id, None)
            else:
                last[event.run_id] = event.seq

    def _take(self) -> tuple[list[Event], list[tuple[str, int, str]]]:
        """The writer's side of the queue: every queued record, in order, and the snapshots they cover; wakes the waiting recorders."""
        batch, self._queued = self._queued, []
        self._woken = False
        self._taken.set()
        self._taken = trio.Event()
        snapshots: list[tuple[str, int, str]] = []
        taken = self._taken_seq
        for event in batch:
            taken[event.run_id] = event.seq
        if self._snapshots:
            waiting: list[tuple[str, int, str]] = []
            for snapshot in self._snapshots:
                (snapshots if taken.get(snapshot[0], -1) >= snapshot[1] else waiting).append(snapshot)
            self._snapshots = waiting
        for event in batch:
            if event.kind is EventKind.RUN_FINISHED:
                del taken[event.run_id]
        return batch, snapshots

    # -- reading ---------------------------------------------------------------

    def _read(self, work: Callable[[sqlite3.Connection], object]) -> object:
        if not self.path.exists():
            msg = f"The run store {str(self.path)!r} does not exist. Give the path of a store a flow has written."
            raise StoreError(msg)
        conn = _connect(self.path, write=False)
        try:
            return work(conn)
        except sqlite3.Error as exc:
            msg = (
                f"Cannot read the run store {str(self.path)!r}: {exc}. Give the path of a trioflow run store."
            )
            raise StoreError(msg) from exc
        finally:
            conn.close()

    async def runs(
        self,
        flow: str | None = None,
        status: Status | str | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[RunSummary]:
        """The stored runs, newest first; only *flow*'s, or only those in *status*, if given.

        *limit* and *offset* page through them: at most *limit* runs, after
        skipping the *offset* newest.

        Raises:
            StoreError: the database cannot be read, or is of a newer schema.
            ValueError: *status* is not a status.
        """
        wanted = None if status is None else Status(status)
        query = (
            "SELECT run_id, flow, status, started_offset, finished_offset, started_wall, owner_pid, attempt"
            " FROM runs"
        )
        clauses: list[str] = []
        params: list[object] = []
        if flow is not None:
            clauses.append("flow = ?")
            params.append(flow)
        if wanted is not None:
            clauses.append("status = ?")
            params.append(wanted.value)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY rowid DESC"
        if limit is not None or offset:
            query += " LIMIT ? OFFSET ?"
            params += [-1 if limit is None else limit, offset]
        rows = await trio.to_thread.run_sync(self._read, lambda conn: conn.execute(query, params).fetchall())
        assert isinstance(rows, list)
        return [
            RunSummary(
                run_id=run_id,
                flow=flow_name,
                status=Status(run_status),
                started=datetime.datetime.fromisoformat(started_wall),
                duration=None if finished is None else finished - started,
                owner_pid=pid,
                attempts=attempts,
            )
            for run_id, flow_name, run_status, started, finished, started_wall, pid, attempts in rows
        ]

    def _unknown(self, conn: sqlite3.Connection, run_id: str) -> UnknownRunError:
        ids = [row[0] for row in conn.execute("SELECT run_id FROM runs")]
        nearest = difflib.get_close_matches(run_id, ids, n=3, cutoff=0.0)
        hint = f"The nearest it has: {', '.join(repr(i) for i in nearest)}." if nearest else "It has no runs."
        msg = f"The run store {str(self.path)!r} has no run {run_id!r}. {hint}"
        return UnknownRunError(msg)

    def _load(
        self, conn: sqlite3.Connection, run_id: str, *, chain: bool = False
    ) -> tuple[str, datetime.datetime, list[Event]]:
        """The run's flow, start and records; with *chain*, less those its resumed attempts rolled back."""
        run = conn.execute("SELECT flow, started_wall FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if run is None:
            raise self._unknown(conn, run_id)
        rows = conn.execute(
            "SELECT seq, kind, offset, request_id, parent_id, node, data,"
            " CASE WHEN kind = 'run_started' THEN value END FROM records WHERE run_id = ? ORDER BY seq",
            (run_id,),
        ).fetchall()
        records = []
        resumed: dict[int, int] = {}
        for seq, kind, offset, request_id, parent_id, node, data, started in rows:
            event_kind = EventKind(kind)
            if started is not None:  # a graph job's attempt resumed from a snapshot
                with contextlib.suppress(ValueError, TypeError, IndexError):
                    resumed[seq] = int(json.loads(started)[0])
            records.append(
                Event(
                    run_id,
                    seq,
                    event_kind,
                    offset,
                    request_id,
                    parent_id,
                    node,
                    _decode(event_kind, json.loads(data)),
                )
            )
        return run[0], datetime.datetime.fromisoformat(run[1]), _chain(records, resumed) if chain else records

    async def records(self, run_id: str) -> list[Event]:
        """The stored records of *run_id*, in order (results and errors as the run recorded them).

        Raises:
            UnknownRunError: the store has no run *run_id*; the message names the nearest ids.
            StoreError: the database cannot be read, or is of a newer schema.
        """
        loaded = await trio.to_thread.run_sync(self._read, lambda conn: self._load(conn, run_id))
        assert isinstance(loaded, tuple)
        return loaded[2]  # type: ignore[no-any-return]

    async def state(self, run_id: str) -> JobState:
        """The state of *run_id*, rebuilt by applying its stored records in order.

        It has what the records carry: the request tree, the history, routine
        states, shared data and log, undelivered messages, and the status,
        result and error (the run's error without its path; not the run's
        context or metrics). A resumed graph job's records that its resume
        rolled back (made after the snapshot it resumed from) are left out.

        Raises:
            UnknownRunError: the store has no run *run_id*; the message names the nearest ids.
            StoreError: the database cannot be read, or is of a newer schema.
        """
        loaded = await trio.to_thread.run_sync(self._read, lambda conn: self._load(conn, run_id, chain=True))
        assert isinstance(loaded, tuple)
        flow, started, records = loaded
        return _rebuild(run_id, flow, started, records)

    # -- resuming ----------------------------------------------------------------

    async def begin_resume(
        self, run_id: str, *, flow: str, fingerprint: str, answer: object = ...
    ) -> ResumePoint:
        """Take *run_id* for a new attempt, in one transaction, and say what the attempt replays.

        The run is marked ``running`` by this process: another process (or
        another resume in this one) is refused until the attempt ends, or
        this process dies. Call :meth:`end_resume` when the attempt ends.

        Args:
            run_id: the run to resume.
            flow: the resuming flow's name; the run must be one of its runs.
            fingerprint: the resuming flow's definition fingerprint; it must
                be the stored one.
            answer: the value of the interrupt the run paused at (a JSON
                value); ``...`` (the default) for none.

        Raises:
            UnknownRunError: the store has no run *run_id* (the message names the nearest ids).
            ResumeError: the run completed, belongs to another flow or
                definition, is held by a running process, paused at an
                interrupt and no *answer* is given (or one is given for a run
                not paused at one), or its arguments or *answer* are not JSON.
            StoreError: the database cannot be read or written.
        """
        while (
            self._writer is not None and self._writer.is_alive and (self._queued or self._woken or self._busy)
        ):
            # The run's last attempt may still be queued here: its records must be read whole.
            await self._done.wait()
        point = await trio.to_thread.run_sync(self._begin_resume, run_id, flow, fingerprint, answer)
        assert isinstance(point, ResumePoint)
        return point

    def end_resume(self, run_id: str) -> None:
        """Release *run_id*, taken by :meth:`begin_resume`, in this process (its attempt has ended)."""
        _HELD.discard((self._key, run_id))

    def _begin_resume(self, run_id: str, flow: str, fingerprint: str, answer: object) -> ResumePoint:
        if not self.path.exists():
            msg = f"The run store {str(self.path)!r} does not exist. Give the path of a store a flow has written."
            raise StoreError(msg)
        conn = _connect(self.path, write=True)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                point = self._claim(conn, run_id, flow, fingerprint, answer)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            msg = f"Cannot resume run {run_id!r} from the run store {str(self.path)!r}: {exc}. Check the database file."
            raise StoreError(msg) from exc
        finally:
            conn.close()
        _HELD.add((self._key, run_id))
        return point

    def _claim(
        self, conn: sqlite3.Connection, run_id: str, flow: str, fingerprint: str, answer: object
    ) -> ResumePoint:
        row = conn.execute(
            "SELECT flow, status, fingerprint, input, attempt, owner_pid, interrupt, answers"
            " FROM runs WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise self._unknown(conn, run_id)
        stored_flow, status, stored_fingerprint, input_text, attempt, pid, interrupt_text, answers_text = row
        where = f"Run {run_id!r} of the run store {str(self.path)!r}"
        problem = None
        if stored_flow != flow:
            problem = f"{where} is a run of flow {stored_flow!r}, not of {flow!r}. Resume it with flow {stored_flow!r}."
        elif status == Status.COMPLETED:
            problem = f"{where} completed; there is nothing to resume. Start a new run with flow.invoke(...)."
        elif stored_fingerprint is not None and stored_fingerprint != fingerprint:
            problem = (
                f"{where} was started by another definition of flow {flow!r} (fingerprint {stored_fingerprint}, "
                f"now {fingerprint}: its nodes or routines changed). Resume it with the code that started it, "
                "or start a new run."
            )
        elif status == Status.RUNNING and _held(self._key, run_id, pid):
            problem = (
                f"{where} is being run by process {pid}, which is alive; one process at a time runs a run. "
                "Wait until it ends (or the process exits), then resume it."
            )
        elif input_text is None:
            (paths,) = conn.execute(
                "SELECT unserializable FROM records WHERE run_id = ? AND kind = 'run_started' ORDER BY seq LIMIT 1",
                (run_id,),
            ).fetchone() or (None,)
            named = f" ({', '.join(json.loads(paths))})" if paths else ""
            problem = (
                f"{where} cannot be started again: its entry's arguments{named} were not JSON values, so the store "
                "did not keep them. Start a new run with JSON arguments (dict, list, str, number, bool, None)."
            )
        if problem is not None:
            raise ResumeError(problem)
        answers: dict[str, object] = json.loads(answers_text) if answers_text else {}
        interrupt = json.loads(interrupt_text) if interrupt_text else None
        if answer is not ...:
            if status != Status.PAUSED or not isinstance(interrupt, dict):
                msg = f"{where} is {status}, not paused at rt.interrupt(), so there is nothing to give a value to. Resume it without one: flow.resume({run_id!r})."
                raise ResumeError(msg)
            try:
                answers[str(interrupt.get("key"))] = _Walker(run_id=run_id, strict=True).walk(
                    answer, "$.value"
                )
            except UnserializableValueError as exc:
                msg = f"Cannot resume run {run_id!r} with this value: {exc.path} is not a JSON value, and a run store keeps JSON. Give a JSON value (dict, list, str, number, bool, None)."
                raise ResumeError(msg) from None
        elif status == Status.PAUSED and isinstance(interrupt, dict):
            msg = f"{where} paused at rt.interrupt() in {interrupt.get('key')!r}, which waits for a value. Resume it with one: flow.resume({run_id!r}, value)."
            raise ResumeError(msg)
        arguments = json.loads(input_text)
        graph_entry = arguments.get("entry") if isinstance(arguments, dict) else None
        job = (None, None, -1, None) if graph_entry is None else self._graph_point(conn, run_id, where, graph_entry)
        next_seq = conn.execute(
            "SELECT COALESCE(MAX(seq), -1) + 1 FROM records WHERE run_id = ?", (run_id,)
        ).fetchone()[0]
        results: dict[str, object] = {}
        slots: dict[tuple[str, int], str] = {}
        keys: dict[tuple[int, str], str] = {}
        # Each attempt's calls under each call key, as made: what a replayed call's subtree was.
        made: dict[tuple[int, str], list[tuple[int, str]]] = {}
        calls: dict[tuple[int, str], list[object]] = {}
        ended_in: dict[str, int] = {}
        # How each call key's last stored call went: a call started and not ended is in flight.
        last: dict[str, EventKind] = {}
        for kind, request_id, parent_id, node, key, record_attempt, data, value in conn.execute(
            "SELECT kind, request_id, parent_id, node, call_key, attempt, data, value FROM records"
            " WHERE run_id = ? AND kind IN ('request_created', 'request_succeeded', 'request_failed',"
            " 'request_cancelled') ORDER BY seq",
            (run_id,),
        ):
            event_kind = EventKind(kind)
            if event_kind is not EventKind.REQUEST_CREATED:
                # A request's outcome names it; its key was stored with its creation.
                call = calls.get((record_attempt, request_id))
                if call is None:
                    continue
                call[3:] = [event_kind, _decode(event_kind, json.loads(data))]
                last[str(call[0])] = event_kind
                boxed = None if value is None else json.loads(value)
                if event_kind is EventKind.REQUEST_SUCCEEDED and isinstance(boxed, list):
                    results[str(call[0])] = boxed[0]
                # Any ending: a failed call inside a replayed one has its own calls recorded again too.
                ended_in[str(call[0])] = record_attempt
                continue
            if key is None:
                continue
            keys[record_attempt, request_id] = key
            last[key] = event_kind
            calls[record_attempt, request_id] = [key, node, json.loads(data)]
            if parent_id is not None and (record_attempt, parent_id) in keys:
                parent_key = keys[record_attempt, parent_id]
                if key.endswith("]"):  # keyed by its place (``node[3]``), not by its arguments (``node<k>``)
                    # The place its key names: a place whose call was refused before it was made
                    # (a divergence, an unfinished non-idempotent call) has no record.
                    slots[parent_key, int(key[key.rindex("[") + 1 : -1])] = key
                made.setdefault((record_attempt, parent_key), []).append((record_attempt, request_id))
        children = {
            parent_key: tuple(
                tuple(calls[call]) for call in made[made_in, parent_key] if len(calls[call]) == 5
            )
            for parent_key, made_in in ended_in.items()
            if (made_in, parent_key) in made
        }
        waiting = str(interrupt.get("key")) if status == Status.PAUSED and isinstance(interrupt, dict) else None
        conn.execute(
            "UPDATE runs SET status = 'running', owner_pid = ?, attempt = ?, answers = ? WHERE run_id = ?",
            (os.getpid(), attempt + 1, _dumps(answers), run_id),
        )
        return ResumePoint(
            run_id=run_id,
            attempt=attempt + 1,
            next_seq=next_seq,
            args=tuple(arguments.get("args") or ()),
            kwargs=dict(arguments.get("kwargs") or {}),
            results=results,
            slots=slots,
            answers=answers,
            children=children,
            entry=job[0],
            snapshot=job[1],
            snapshot_seq=job[2],
            state=job[3],
            in_flight=frozenset(
                key
                for key, ending in last.items()
                if (ending is not EventKind.REQUEST_FAILED and key not in results)
                and not (waiting is not None and _on_path(key, waiting))
            ),
        )

    def _graph_point(
        self, conn: sqlite3.Connection, run_id: str, where: str, entry: object
    ) -> tuple[tuple[str, str, dict[str, object]], dict[str, object] | None, int, JobState]:
        """What a graph job resumes from: its start, its last snapshot (and the last record it covers), its state then."""
        if not (
            isinstance(entry, list)
            and len(entry) == 3
            and isinstance(entry[0], str)
            and isinstance(entry[1], str)
            and isinstance(entry[2], dict)
        ):
            msg = f"{where} has a corrupt start: {entry!r} is not [routine id, slot, data]. The store was changed outside trioflow; nothing was resumed. Start a new run."
            raise ResumeError(msg)
        row = conn.execute(
            "SELECT seq, state FROM snapshots WHERE run_id = ? ORDER BY seq DESC LIMIT 1", (run_id,)
        ).fetchone()
        snapshot: dict[str, object] | None = None
        last = -1
        if row is not None:
            last = int(row[0])
            try:
                document = json.loads(row[1])
            except ValueError as exc:
                problem: str | None = f"it is not JSON ({exc})"
            else:
                problem = _snapshot_problem(document)
                snapshot = document
            if problem is not None:
                msg = (
                    f"{where} has a corrupt snapshot (of its records up to {last}): {problem}. The store was "
                    "changed outside trioflow; nothing was resumed. Start a new run, or delete the run's row "
                    "from the snapshots table to resume the job from its start."
                )
                raise ResumeError(msg)
        flow, started, records = self._load(conn, run_id, chain=True)
        state = _rebuild(run_id, flow, started, [r for r in records if r.seq <= last])
        return (entry[0], entry[1], entry[2]), snapshot, last, state


def _is_list_of(value: object, size: int, strings: int) -> bool:
    """Whether *value* is a list of *size*-item lists: *strings* strings, then a JSON object."""
    return isinstance(value, list) and all(
        isinstance(item, list)
        and len(item) == size
        and all(isinstance(part, str) for part in item[:strings])
        and isinstance(item[strings], dict)
        for item in value
    )


def _snapshot_problem(document: object) -> str | None:
    """What is wrong with a graph job's snapshot document, or ``None`` (see ``Job._snapshot_document``)."""
    if not isinstance(document, dict):
        return f"it is a {type(document).__name__}, not a JSON object"
    if document.get("format") != 1:
        return f"its format is {document.get('format')!r}, not 1"
    if not _is_list_of(document.get("messages"), 5, 4):
        return "its 'messages' are not [source, event, target, slot, data] lists"
    if not _is_list_of(document.get("deferred"), 3, 2):
        return "its 'deferred' events are not [routine id, event, data] lists"
    steps = document.get("steps")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        return f"its 'steps' {steps!r} is not a count"
    if not isinstance(document.get("paused"), bool) or not isinstance(document.get("pause_reason"), str | None):
        return "its 'paused' or 'pause_reason' is not a bool and a str or null"
    routines = document.get("routines")
    if not isinstance(routines, dict):
        return "its 'routines' is not a JSON object"
    for routine_id, kept in routines.items():
        if not (
            isinstance(kept, dict)
            and isinstance(kept.get("attrs"), dict)
            and isinstance(kept.get("merged"), dict)
            and all(isinstance(kept.get(n), int) and not isinstance(kept.get(n), bool) for n in ("failures", "handled"))
        ):
            return f"routine {routine_id!r}'s entry is not {{'attrs', 'merged', 'failures', 'handled'}}"
    return None


def _on_path(key: str, interrupt: str) -> bool:
    """Whether call *key* is the node that awaits the interrupt *interrupt*, or one of the calls waiting for it."""
    return interrupt.startswith((f"{key} ! ", f"{key} > "))


#: The runs this process runs or resumes, as (store path, run id): a resume of one of them is refused.
_HELD: set[tuple[str, str]] = set()


def _held(store: str, run_id: str, pid: int) -> bool:
    """Whether run *run_id*, stored as running by process *pid*, is still held by it."""
    if pid == os.getpid():
        return (store, run_id) in _HELD
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _now() -> float:
    return datetime.datetime.now(datetime.UTC).timestamp()
