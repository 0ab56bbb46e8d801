"""The prediction log: every served prediction ends up in ``ml_predictions``, outages included.

The API hands each response's record to :meth:`PredictionLog.submit`, which only appends to an
in-memory queue. A writer thread drains the queue in batches (``prediction_log_batch_size``
records, or whatever waited ``prediction_log_flush_seconds``) and writes each batch with one
transaction per tenant (row-level security needs ``app.tenant_id`` set per transaction), each a
multi-row ``INSERT ... ON CONFLICT (prediction_id) DO NOTHING``.

Where a record goes when things fail:

* The database is unreachable, or fails for a reason that is not about the rows (a missing
  grant, a lock timeout): the batch is appended to the *spool*, newline-delimited JSON segment
  files under ``settings.prediction_buffer_dir``, fsync'd before the batch leaves memory. The
  writer retries with exponential backoff and, once the database answers, replays the spool
  oldest-first, deleting a segment only after its rows committed. A new process replays what an
  earlier one left. Because inserts skip prediction ids already present, replaying a batch whose
  commit was cut off half-way (it may or may not have landed) still writes each row once.
* A row the table rejects (NOT NULL, CHECK, a value the driver cannot send): the batch is
  retried row by row once; the rows that still fail go to ``rejected-*.jsonl`` beside the spool
  with the error, are counted in :meth:`PredictionLog.stats`, and never block the log.
* The spool is at ``prediction_log_buffer_max_mb`` and the database cannot take the batch:
  :meth:`PredictionLog.submit` raises :class:`~roiml.errors.PredictionLogFullError` until the
  database or the spool has room again, so the API answers 503 instead of serving a prediction
  it cannot record. The in-memory queue is bounded as well: when it is full, the submitting
  thread moves the queue to the spool rather than letting it grow.

Several server processes may share one buffer directory: segments appear atomically (written as
``*.partial``, fsync'd, renamed) and are replayed under an exclusive ``flock``, so two processes
never replay the same segment, and a crashed process's lock goes with it. The size bound is
checked against this process's view of the directory, refreshed every few seconds.

Not covered: records still in memory (at most about ``prediction_log_flush_seconds`` worth, or
the queue) when the process is killed outright; :meth:`PredictionLog.close` spools them.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import orjson
from sqlalchemy import JSON, Column, DateTime, Engine, Executable, MetaData, Table
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    ProgrammingError,
    StatementError,
)

from roiml.db.base import utcnow
from roiml.db.engine import tenant_session
from roiml.db.ml_tables import MLPrediction
from roiml.db.rejected_predictions import rejected_entry, rejected_file
from roiml.errors import ConfigurationError, PredictionLogFullError
from roiml.settings import Settings

__all__ = ["PredictionLog", "PredictionStats"]

log = logging.getLogger(__name__)

PredictionStats = dict[str, float | int | str | bool | None]
"""What :meth:`PredictionLog.stats` returns; the health route shows it as is."""

_Row = dict[str, Any]
_Reject = tuple[Any, str]  # (the record as submitted, why the table refused it)

DEFAULT_MAX_QUEUE: Final = 50_000
_FIRST_BACKOFF: Final = 0.25
_RESCAN_SECONDS: Final = 5.0
_SEGMENT_PREFIX: Final = "seg-"
_SEGMENT_SUFFIX: Final = ".jsonl"
_PARTIAL_SUFFIX: Final = ".partial"
_JSON_OPTIONS: Final = (
    orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
)


def _insert_table() -> Table:
    # The model's JSON columns store a Python None as the JSON value 'null'; a prediction without
    # probabilities should be SQL NULL (and a None in the NOT NULL ``features`` column a refused
    # row, not a JSON null). Same table, same names, only the JSON types differ. The table comes
    # from its own module: roiml.db loads its table modules lazily, so Base.metadata may not hold
    # ml_predictions yet in a process that imported only this module.
    model: Table = MLPrediction.__table__  # type: ignore[assignment]
    none_as_null = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
    columns = [
        Column(
            column.name,
            none_as_null if isinstance(column.type, JSON) else column.type,
            primary_key=column.primary_key,
        )
        for column in model.columns
    ]
    return Table(model.name, MetaData(), *columns)


_TABLE: Final = _insert_table()
_DATETIME_COLUMNS: Final = tuple(c.name for c in _TABLE.columns if isinstance(c.type, DateTime))
# Every row is written with every column, so one compiled statement serves all batches.
_TEMPLATE: Final[dict[str, Any]] = dict.fromkeys(_TABLE.columns.keys())
_TEMPLATE["features"] = {}


def _insert_statement(engine: Engine) -> Executable:
    # ON CONFLICT (prediction_id) DO NOTHING on both backends: SQLite's INSERT OR IGNORE would
    # also skip NOT NULL and CHECK violations without a word, and a bad row must be isolated and
    # kept, not dropped. RETURNING tells new rows from replayed ones, and it makes SQLAlchemy
    # send each batch as one multi-row INSERT ("insertmanyvalues") rather than row by row.
    name = engine.dialect.name
    if name == "postgresql":
        return (
            postgres_insert(_TABLE)
            .on_conflict_do_nothing(index_elements=["prediction_id"])
            .returning(_TABLE.c.prediction_id)
        )
    if name == "sqlite":
        return (
            sqlite_insert(_TABLE)
            .on_conflict_do_nothing(index_elements=["prediction_id"])
            .returning(_TABLE.c.prediction_id)
        )
    raise ConfigurationError(f"the prediction log supports sqlite and postgresql, not {name!r}")


def _normalise(records: Iterable[Any], now: datetime) -> tuple[list[_Row], list[_Reject]]:
    """Rows with every column (missing ones NULL, ``predicted_at`` defaulting to ``now``)."""
    rows: list[_Row] = []
    bad: list[_Reject] = []
    width = len(_TEMPLATE)
    for record in records:
        try:
            row = {**_TEMPLATE, **record}
        except TypeError:
            bad.append((record, f"not a mapping but {type(record).__name__}"))
            continue
        if len(row) != width:
            unknown = sorted(str(key) for key in row if key not in _TEMPLATE)
            bad.append((record, f"ml_predictions has no column(s) {unknown}"))
            continue
        if not isinstance(row["tenant_id"], str):
            bad.append((record, "tenant_id must be a string"))
            continue
        if row["predicted_at"] is None:
            row["predicted_at"] = now
        rows.append(row)
    return rows, bad


def _is_row_error(exc: BaseException) -> bool:
    """Whether ``exc`` is about the values sent (isolate the row) rather than the database."""
    if isinstance(exc, IntegrityError | DataError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return False
        # The driver refused a value before sending it (psycopg: no SQLSTATE; sqlite3 has none).
        # Server-side programming errors (a missing grant or table) carry a SQLSTATE.
        return isinstance(exc, ProgrammingError | InterfaceError) and (
            getattr(exc.orig, "sqlstate", None) is None
        )
    # Raised while binding, before the database saw anything: an enum value the column does not
    # allow, a value JSON cannot encode.
    return isinstance(exc, StatementError)


def _describe(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    text = " ".join(str(cause).split())
    return f"{type(exc).__name__}: {text}"[:500]


def _json_fallback(value: Any) -> Any:
    # The spool must take whatever the API submitted, or the record would be lost on the way to
    # disk; values the table cannot store either are found (and kept) when the row is written.
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def _dumps(rows: Iterable[Any]) -> bytes:
    return b"".join(orjson.dumps(row, default=_json_fallback, option=_JSON_OPTIONS) for row in rows)


def _parse_segment(data: bytes) -> tuple[list[_Row], list[_Reject]]:
    rows: list[_Row] = []
    bad: list[_Reject] = []
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad.append((line.decode("utf-8", "replace"), "unreadable line in a spool segment"))
            continue
        if not isinstance(row, dict):
            bad.append((row, "spool line is not a JSON object"))
            continue
        for name in _DATETIME_COLUMNS:
            value = row.get(name)
            if isinstance(value, str):
                # Unparsable text stays text: the insert refuses it and the row is isolated.
                with suppress(ValueError):
                    row[name] = datetime.fromisoformat(value)
        rows.append(row)
    return rows, bad


def _fsync_directory(directory: Path) -> None:
    # A rename or unlink is durable only once the directory entry is.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _segment_count(name: str) -> int:
    try:
        return int(name.removesuffix(_SEGMENT_SUFFIX).rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


def _is_segment(name: str) -> bool:
    return name.startswith(_SEGMENT_PREFIX) and name.endswith(_SEGMENT_SUFFIX)


class _SpoolFullError(Exception):
    pass


class _Segment:
    """A spool segment claimed (flock'd) by this process for replay."""

    def __init__(self, spool: _Spool, path: Path, data: bytes) -> None:
        self.spool = spool
        self.path = path
        self.data = data

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)
        _fsync_directory(self.path.parent)
        self.spool.forget(len(self.data), _segment_count(self.path.name))


class _Spool:
    """Append-only segments of newline-delimited JSON, at most ``max_bytes`` in all."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.bytes = 0
        self.records = 0
        self._lock = threading.Lock()
        self._sequence = itertools.count()
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the prediction buffer directory {directory}: {exc}"
            ) from exc
        self.rescan()

    def append(self, rows: Sequence[Any], *, bounded: bool = True) -> None:
        """Write ``rows`` as one new segment, durably; raise if it would pass the bound."""
        if not rows:
            return
        payload = _dumps(rows)  # outside the lock: the CPU work of a big spill blocks no one
        with self._lock:
            if bounded and self.bytes + len(payload) > self.max_bytes:
                raise _SpoolFullError(
                    f"{self.bytes + len(payload)} bytes would pass the bound of {self.max_bytes}"
                )
            # Nanoseconds first, zero-padded: name order is age order, across processes too.
            name = (
                f"{_SEGMENT_PREFIX}{time.time_ns():020d}-{os.getpid()}-"
                f"{next(self._sequence):08d}-{len(rows)}{_SEGMENT_SUFFIX}"
            )
            final = self.directory / name
            partial = self.directory / (name + _PARTIAL_SUFFIX)
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                # Held until closed, so a starting process does not take this file for the
                # leftover of a crashed writer, before or just after the rename.
                fcntl.flock(fd, fcntl.LOCK_EX)
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
                partial.rename(final)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            finally:
                os.close(fd)
            _fsync_directory(self.directory)
            self.bytes += len(payload)
            self.records += len(rows)

    def forget(self, size: int, count: int) -> None:
        """Account for a segment that was deleted."""
        with self._lock:
            self.bytes = max(0, self.bytes - size)
            self.records = max(0, self.records - count)

    def rescan(self) -> None:
        """Recount from the directory (other processes sharing it append and replay too)."""
        with self._lock:
            size = count = 0
            for path in self.directory.iterdir():
                if not _is_segment(path.name):
                    continue
                try:
                    size += path.stat().st_size
                except FileNotFoundError:
                    continue
                count += _segment_count(path.name)
            self.bytes = size
            self.records = count

    def segments(self) -> list[Path]:
        """Segment files, oldest first."""
        return sorted(p for p in self.directory.iterdir() if _is_segment(p.name))

    @contextmanager
    def claim(self, path: Path) -> Iterator[_Segment | None]:
        """``path`` locked for replay by this process, or None if gone or someone else's."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            yield None
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            # Another process may have replayed and deleted it between our listing and lock.
            try:
                current = path.stat().st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if not current:
                yield None
                return
            yield _Segment(self, path, path.read_bytes())
        finally:
            os.close(fd)

    def recover_partials(self, rejects: _RejectFile) -> None:
        """Turn what a crashed writer left half-written into a segment (its complete lines)."""
        for path in sorted(self.directory.glob(f"{_SEGMENT_PREFIX}*{_PARTIAL_SUFFIX}")):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live process is writing it
                data = path.read_bytes()
                complete, _, tail = data.rpartition(b"\n")
                rows, bad = _parse_segment(complete)
                if tail.strip():
                    bad.append((tail.decode("utf-8", "replace"), "cut off by an interrupted write"))
                rejects.write(bad)
                self.append(rows, bounded=False)
                path.unlink(missing_ok=True)
                log.warning("prediction log: recovered %d record(s) from %s", len(rows), path)
            finally:
                os.close(fd)


class _RejectFile:
    """``rejected-<date>-<pid>.jsonl`` beside the spool: rows the table refused, with why (the
    format is :mod:`roiml.db.rejected_predictions`, which monitoring reads with)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.total = 0
        self._lock = threading.Lock()

    def write(self, items: Sequence[_Reject]) -> None:
        if not items:
            return
        now = utcnow()
        lines = _dumps(rejected_entry(rec, error, now) for rec, error in items)
        path = rejected_file(self.directory, now)
        with self._lock:
            self.total += len(items)
            try:
                with path.open("ab") as handle:
                    handle.write(lines)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as exc:
                # Last resort, but never silent: the records go to the log itself.
                log.error(
                    "prediction log: cannot write %d rejected record(s) to %s (%s): %s",
                    len(items),
                    path,
                    exc,
                    lines.decode("utf-8", "replace"),
                )
                return
        log.warning(
            "prediction log: %d record(s) refused by ml_predictions, kept in %s (first: %s)",
            len(items),
            path,
            items[0][1],
        )


class PredictionLog:
    """Batches predictions into ``ml_predictions`` from a writer thread; never loses one.

    ``max_queue`` bounds the records held in memory; ``retry_max_seconds`` caps the backoff
    between attempts while the database is away. Use as a context manager or call
    :meth:`close`.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        retry_max_seconds: float = 10.0,
    ) -> None:
        self._engine = engine
        self._statement = _insert_statement(engine)
        self._batch_size = settings.prediction_log_batch_size
        self._flush_seconds = settings.prediction_log_flush_seconds
        self._max_queue = max(max_queue, self._batch_size)
        self._retry_max = max(retry_max_seconds, _FIRST_BACKOFF)
        directory = settings.prediction_buffer_dir
        self._spool = _Spool(directory, settings.prediction_log_buffer_max_mb * 1024 * 1024)
        self._rejects = _RejectFile(directory)

        # Shared with submitters, under _lock. Record positions count from 0 over the log's
        # life: [_taken, _submitted) is in _pending, in-flight batches are below _taken.
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the writer waits here
        self._settled = threading.Condition(self._lock)  # flush() waits here
        self._pending: deque[Mapping[str, Any]] = deque()
        self._submitted = 0
        self._taken = 0
        self._inflight: dict[int, tuple[int, int]] = {}  # token -> (first position, count)
        self._tokens = itertools.count()
        self._first_pending_at = 0.0
        self._flush_target = 0
        self._stopping = False
        self._closed = False
        self._full = False

        # The writer's own state; stats() reads it without a lock (single attribute reads).
        self._held: list[_Row] = []  # the batch being written, spooled, or waiting for room
        self._held_token: int | None = None
        self._database_ok = True
        self._retry_at = 0.0
        self._backoff = _FIRST_BACKOFF
        self._last_error: str | None = None
        self._written_total = 0
        self._duplicates_total = 0
        self._failed_batches = 0
        self._replay_queue: deque[Path] = deque()
        self._replay_idle_until = 0.0
        self._next_rescan = time.monotonic() + _RESCAN_SECONDS

        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public API

    def submit(self, records: Sequence[Mapping[str, Any]], *, wake: bool = True) -> None:
        """Queue ``records`` (``ml_predictions`` columns, naive UTC datetimes) for writing.

        Returns at once. Raises :class:`PredictionLogFullError` when the predictions could not be
        kept: the database refuses writes and the disk buffer is at its bound. With ``wake``
        false a full batch does not wake the writer yet (its flush interval still does): the
        caller calls :meth:`wake` once its response is sent, so the writer's CPU does not
        compete with the request that produced the rows.
        """
        count = len(records)
        if count == 0:
            return
        with self._lock:
            if self._closed:
                raise RuntimeError("the prediction log is closed")
            if self._full:
                raise PredictionLogFullError(self._full_message())
            pending = self._pending
            if len(pending) + count <= self._max_queue:
                if not pending:
                    self._first_pending_at = time.monotonic()
                pending.extend(records)
                self._submitted += count
                if wake and len(pending) >= self._batch_size:
                    self._work.notify()
                return
            self._spill_locked(records)

    def wake(self) -> None:
        """Wake the writer if a full batch waits (after a :meth:`submit` with ``wake=False``)."""
        with self._lock:
            if len(self._pending) >= self._batch_size:
                self._work.notify()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is in the database or the spool.

        Returns False if ``timeout`` seconds passed first.
        """
        with self._lock:
            target = self._submitted
            self._flush_target = max(self._flush_target, target)
            self._work.notify()
            return self._settled.wait_for(lambda: self._settled_position() >= target, timeout)

    def close(self, timeout: float = 30.0) -> bool:
        """Flush and stop the writer; what the database cannot take now stays in the spool.

        Returns False if the writer did not stop within ``timeout`` seconds; the queue is then
        spooled from here, and only a batch the stuck writer holds can be lost.
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                self._stopping = True
                self._work.notify()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            return True
        with self._lock:
            leftover = list(self._pending)
            self._pending.clear()
            self._taken += len(leftover)
            self._settled.notify_all()
        rows, bad = _normalise(leftover, utcnow())
        self._rejects.write(bad)
        self._spool_last_resort(rows)
        log.error(
            "prediction log: the writer did not stop within %.1f s; %d queued record(s) spooled, "
            "a batch it is still writing may be lost (%s)",
            timeout,
            len(rows),
            self._last_error,
        )
        return False

    def stats(self) -> PredictionStats:
        """Counters for the health route: queue, spool, totals, last error, database state."""
        with self._lock:
            queued = len(self._pending) + sum(n for _, n in self._inflight.values())
            full = self._full
        return {
            "queued": queued,
            "spooled_records": self._spool.records,
            "spooled_bytes": self._spool.bytes,
            "spool_max_bytes": self._spool.max_bytes,
            "written_total": self._written_total,
            "duplicates_total": self._duplicates_total,
            "rejected_total": self._rejects.total,
            "failed_batches": self._failed_batches,
            "last_error": self._last_error,
            "database_ok": self._database_ok,
            "full": full,
        }

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ submit side

    def _spill_locked(self, records: Sequence[Mapping[str, Any]]) -> None:
        # The queue is full: move it and the new records to disk from the caller's thread. The
        # lock stays held so positions stay consistent; only an overloaded log gets here.
        older = list(self._pending)
        rows, bad = _normalise(itertools.chain(older, records), utcnow())
        try:
            self._spool.append(rows)
        except (_SpoolFullError, OSError) as exc:
            self._full = True
            raise PredictionLogFullError(self._full_message()) from exc
        self._pending.clear()
        self._submitted += len(records)
        self._taken = self._submitted
        self._rejects.write(bad)
        self._settled.notify_all()

    def _full_message(self) -> str:
        return (
            f"the prediction log is full: the database is not taking writes "
            f"({self._last_error or 'no error yet'}) and the disk buffer in "
            f"{self._spool.directory} holds {self._spool.bytes} of {self._spool.max_bytes} bytes; "
            "restore the database or raise ROIML_PREDICTION_LOG_BUFFER_MAX_MB"
        )

    def _settled_position(self) -> int:
        # Every record below this position is in the database, the spool or the rejects file.
        return min((start for start, _ in self._inflight.values()), default=self._taken)

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        try:
            self._spool.recover_partials(self._rejects)
        except OSError as exc:
            self._last_error = _describe(exc)
            log.error("prediction log: cannot recover partial spool files: %s", exc)
        while True:
            try:
                if not self._step():
                    return
            except Exception as exc:
                # A bug here must not stop the only writer: whatever it held stays in _held and
                # is retried after a pause.
                log.exception("prediction log: writer step failed")
                self._last_error = _describe(exc)
                time.sleep(self._flush_seconds)

    def _step(self) -> bool:
        """One round: take a batch, give it a home, replay one spool segment. False = stopped."""
        with self._lock:
            self._wait_for_work()
            stopping = self._stopping
            raw: list[Mapping[str, Any]] = []
            if self._held_token is None:
                raw = self._take_locked()
        if raw:
            rows, bad = _normalise(raw, utcnow())
            self._held = rows
            self._rejects.write(bad)
        if self._held:
            self._settle_held(final=stopping)
        if self._held_token is not None and not self._held:
            with self._lock:
                del self._inflight[self._held_token]
                self._held_token = None
                self._settled.notify_all()
        if stopping:
            with self._lock:
                return bool(self._pending) or self._held_token is not None
        if self._held_token is None and self._database_due():
            self._replay_one()
        now = time.monotonic()
        if now >= self._next_rescan:
            self._next_rescan = now + _RESCAN_SECONDS
            self._spool.rescan()
        return True

    def _wait_for_work(self) -> None:
        # Called with the lock held. Returns when there is something to do, or after a tick.
        while not self._stopping:
            now = time.monotonic()
            if self._held_token is not None:
                # A batch waits for the database or for room in the spool.
                if self._database_due(now):
                    return
                timeout = min(self._flush_seconds, self._retry_at - now)
            else:
                waiting = len(self._pending)
                if waiting >= self._batch_size:
                    return
                if waiting and (
                    self._taken < self._flush_target
                    or now - self._first_pending_at >= self._flush_seconds
                ):
                    return
                replay = self._spool.records > 0 and now >= self._replay_idle_until
                if replay and self._database_due(now):
                    return
                timeout = self._flush_seconds
                if waiting:
                    timeout = self._first_pending_at + self._flush_seconds - now
                if replay:
                    timeout = min(timeout, self._retry_at - now)
            if not self._work.wait(max(timeout, 0.001)):
                return  # a tick: lets the writer rescan the spool and retry

    def _take_locked(self) -> list[Mapping[str, Any]]:
        count = min(len(self._pending), self._batch_size)
        if count == 0:
            return []
        popleft = self._pending.popleft
        raw = [popleft() for _ in range(count)]
        token = next(self._tokens)
        self._inflight[token] = (self._taken, count)
        self._taken += count
        self._held_token = token
        if self._pending:
            self._first_pending_at = time.monotonic()
        return raw

    def _settle_held(self, *, final: bool) -> None:
        rows = self._held
        if self._database_due():
            rows = self._deliver(rows)
        if rows:
            try:
                self._spool.append(rows, bounded=not final)
            except _SpoolFullError as exc:
                self._held = rows
                if not self._full:
                    log.error("prediction log: disk buffer full (%s); refusing predictions", exc)
                self._full = True
                return
            except OSError as exc:
                self._last_error = _describe(exc)
                if final:
                    self._spool_last_resort(rows)
                    rows = []
                else:
                    self._held = rows
                    self._full = True
                    log.error("prediction log: cannot write the disk buffer: %s", exc)
                    return
            self._full = False
        self._held = []

    def _spool_last_resort(self, rows: list[_Row]) -> None:
        try:
            self._spool.append(rows, bounded=False)
        except OSError as exc:
            log.error(
                "prediction log: cannot spool %d record(s) (%s); they follow: %s",
                len(rows),
                exc,
                _dumps(rows).decode("utf-8", "replace"),
            )

    def _database_due(self, now: float | None = None) -> bool:
        return self._database_ok or (time.monotonic() if now is None else now) >= self._retry_at

    def _deliver(self, rows: list[_Row]) -> list[_Row]:
        """Insert ``rows``, one transaction per tenant; return the rows still needing a home."""
        groups: dict[str, list[_Row]] = {}
        for row in rows:
            groups.setdefault(row["tenant_id"], []).append(row)
        left: list[_Row] = []
        items = list(groups.items())
        for index, (tenant, group) in enumerate(items):
            try:
                self._insert(tenant, group)
                continue
            except Exception as exc:
                self._failed_batches += 1
                if _is_row_error(exc):
                    kept = self._isolate(tenant, group)
                else:
                    self._mark_down(exc)
                    kept = group
            left.extend(kept)
            if kept:  # the database stopped answering: the other tenants wait with this one
                for _, rest in items[index + 1 :]:
                    left.extend(rest)
                break
        return left

    def _isolate(self, tenant: str, group: list[_Row]) -> list[_Row]:
        """Write ``group`` row by row; refused rows go to the rejects file."""
        refused: list[_Reject] = []
        try:
            for index, row in enumerate(group):
                try:
                    self._insert(tenant, [row])
                except Exception as exc:
                    if not _is_row_error(exc):
                        self._mark_down(exc)
                        return group[index:]
                    refused.append((row, _describe(exc)))
            return []
        finally:
            self._rejects.write(refused)

    def _insert(self, tenant: str, rows: list[_Row]) -> None:
        with tenant_session(self._engine, tenant) as session:
            inserted = len(session.connection().execute(self._statement, rows).all())
        self._written_total += inserted
        self._duplicates_total += len(rows) - inserted
        self._mark_up()

    def _mark_down(self, exc: BaseException) -> None:
        self._last_error = _describe(exc)
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self._retry_max)
        if self._database_ok:
            log.warning(
                "prediction log: database write failed (%s); buffering in %s",
                self._last_error,
                self._spool.directory,
            )
        self._database_ok = False

    def _mark_up(self) -> None:
        if not self._database_ok:
            log.info("prediction log: database writes succeed again; replaying the buffer")
        self._database_ok = True
        self._backoff = _FIRST_BACKOFF
        self._full = False

    def _replay_one(self) -> None:
        """Replay the oldest spool segment this process can claim."""
        if not self._replay_queue:
            if self._spool.records <= 0 or time.monotonic() < self._replay_idle_until:
                return
            self._replay_queue.extend(self._spool.segments())
        while self._replay_queue:
            path = self._replay_queue.popleft()
            with self._spool.claim(path) as segment:
                if segment is None:
                    continue
                rows, bad = _parse_segment(segment.data)
                self._rejects.write(bad)
                left = self._deliver(rows) if rows else []
                if len(left) == len(rows) and rows:
                    self._replay_queue.appendleft(path)  # untouched: first in line next time
                    return
                if left:
                    # Part went in: keep only the rest, then drop the old segment.
                    self._spool.append(left, bounded=False)
                segment.delete()
                return
        # Nothing claimable (all gone, or other processes' to replay): recount, and pause
        # instead of listing the directory again at once.
        self._spool.rescan()
        self._replay_idle_until = time.monotonic() + self._flush_seconds
