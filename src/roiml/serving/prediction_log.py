"""The prediction log: every answered prediction ends up in ``ml_predictions``, crashes included.

An answered prediction is durable before the answer leaves. :meth:`PredictionLog.submit`
serialises the response's record and appends it with one ``os.write`` to this process's
*journal*, a file of newline-delimited JSON under ``settings.prediction_buffer_dir`` opened
``O_APPEND``. Once ``write`` returns, the record is in the kernel's page cache, which outlives the
process: a worker SIGKILLed a microsecond later loses nothing. (A machine crash is another
matter: the writer ``fdatasync``s the journal while the database is away, when records stay there
longest; with the database up a record spends well under a second there.)

A writer thread reads the journal behind the submitters and inserts its records in batches
(``prediction_log_batch_size`` records, or whatever waited ``prediction_log_flush_seconds``), one
transaction per tenant (row-level security needs ``app.tenant_id`` set per transaction), each a
multi-row ``INSERT ... ON CONFLICT (prediction_id) DO NOTHING``. A journal is rotated every few
megabytes and deleted once every record in it is in the database.

Where a record goes when things fail:

* The database is unreachable, or fails for a reason that is not about the rows (a missing
  grant, a read-only file): the records stay in the journal, the writer retries with
  exponential backoff (a failed connection is dropped, so the next attempt opens a new one) and
  goes on from where it stopped once the database answers. Inserts skip prediction ids already
  present, so a batch whose commit was cut off half-way is simply sent again.
* A row the table rejects (NOT NULL, CHECK, a value the driver cannot send): the batch is
  retried row by row once; the rows that still fail go to ``rejected-*.jsonl`` beside the
  journals with the error, are counted in :meth:`PredictionLog.stats`, and never block the log.
* A process that dies leaves its journal behind. Each journal is ``flock``ed by its process for
  as long as it writes it, and the kernel drops the lock with the process, so any other log on
  the directory (the surviving workers, the restarted one) finds an unlocked journal, claims it
  and replays it. Replaying what was already written only counts duplicates.
* The journals of every process sharing the directory are at ``prediction_log_buffer_max_mb``
  (the database is not taking the records, or not fast enough), or the journal cannot be
  written at all (a read-only or full disk): :meth:`PredictionLog.submit` raises
  :class:`PredictionLogRefusedError`, an HTTP 503 with ``Retry-After``, rather than serve a
  prediction it cannot record. It recovers by itself as soon as the database or the disk does.
  Near the bound, or with the database away, each submit counts the directory (every process's
  journals) under an ``flock`` the processes share, so they share the bound too.

Journals left by an earlier version's spool (``seg-*.jsonl``, ``seg-*.jsonl.partial``) are
replayed the same way.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import math
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
from sqlalchemy import JSON, Column, DateTime, Engine, Executable, MetaData, Table, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    ProgrammingError,
    StatementError,
)
from starlette.exceptions import HTTPException

from roiml.db.base import utcnow
from roiml.db.engine import tenant_session
from roiml.db.ml_tables import MLPrediction
from roiml.db.rejected_predictions import rejected_entry, rejected_file
from roiml.errors import ConfigurationError, PredictionLogFullError
from roiml.jsonformat import dumps_text
from roiml.settings import Settings

__all__ = ["PredictionLog", "PredictionLogHealth", "PredictionLogRefusedError", "PredictionStats"]

log = logging.getLogger(__name__)

PredictionStats = dict[str, float | int | str | bool | None]
"""What :meth:`PredictionLog.stats` returns; the health route shows it as is."""

PredictionLogHealth = dict[str, float | int | str | bool | None]
"""What :meth:`PredictionLog.health` returns: ``state`` and the disk buffer's usage."""

_Row = dict[str, Any]
_Reject = tuple[Any, str]  # (the record as submitted, why the table refused it)

_FIRST_BACKOFF: Final = 0.25
_RESCAN_SECONDS: Final = 2.0
# How old the count of the other processes' journals may be for a submit to skip counting them
# again. A count from the writer's last rescan could be seconds old on a loaded machine: while a
# worker still took the database for up, it appended on a count made before the other worker
# filled the spool, and the journals passed the bound by 20 kB (CI, test_spool).
_COUNT_FRESH_SECONDS: Final = 0.25
# A journal is rotated past this size (or an eighth of the bound, if smaller), so the records
# already in the database that a live journal still holds stay a small part of what is counted.
_ROTATE_BYTES: Final = 4 * 1024 * 1024
_MIN_ROTATE_BYTES: Final = 64 * 1024
_READ_BYTES: Final = 1024 * 1024
# /health says "refusing" for this long after a refused submit, even if the next would pass.
_REFUSING_SECONDS: Final = 5.0
_TYPICAL_PAYLOAD: Final = 8 * 1024  # a prediction's record is ~5.5 kB
_JOURNAL_PREFIX: Final = "journal-"
_JOURNAL_SUFFIX: Final = ".jsonl"
_LEFT_PATTERNS: Final = (
    f"{_JOURNAL_PREFIX}*{_JOURNAL_SUFFIX}",
    "seg-*.jsonl",
    "seg-*.jsonl.partial",
)
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
        # One parameter, the batch as a JSON array, expanded by the server: a multi-row INSERT
        # of 500 rows x 20 columns spent half its time in the driver splitting and adapting
        # 10,000 placeholders (2,100 rows/s; this way ~2.5x that, bench/prediction_log_drain.py).
        # A JSON null becomes SQL NULL, so a None in the NOT NULL ``features`` is still refused.
        return text(
            f"INSERT INTO {_TABLE.name} "
            f"SELECT * FROM jsonb_populate_recordset(NULL::{_TABLE.name}, CAST(:rows AS jsonb)) "
            "ON CONFLICT (prediction_id) DO NOTHING RETURNING prediction_id"
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


def _record_default(value: Any) -> Any:
    # Values a table column can take in another form; anything else fails the record's encoding,
    # and the record goes to the rejects file instead of the journal (stringified, it would be
    # stored as text the table never meant to hold).
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _lenient_default(value: Any) -> Any:
    # The rejects file must take whatever was refused, or the record would be lost on the way.
    try:
        return _record_default(value)
    except TypeError:
        return str(value)


def _dumps(rows: Iterable[Any]) -> bytes:
    return b"".join(
        orjson.dumps(row, default=_lenient_default, option=_JSON_OPTIONS) for row in rows
    )


def _encode(records: Sequence[Any]) -> tuple[bytes, list[_Reject]]:
    """The journal lines of ``records``, and the records JSON cannot encode as they are."""
    lines: list[bytes] = []
    bad: list[_Reject] = []
    for record in records:
        try:
            lines.append(orjson.dumps(record, default=_record_default, option=_JSON_OPTIONS))
        except TypeError as exc:
            bad.append((record, f"not JSON serialisable: {exc}"))
    return b"".join(lines), bad


def _parse_lines(lines: Iterable[bytes]) -> tuple[list[_Row], list[_Reject]]:
    rows: list[_Row] = []
    bad: list[_Reject] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad.append((line.decode("utf-8", "replace"), "unreadable line in a journal"))
            continue
        if not isinstance(row, dict):
            bad.append((row, "journal line is not a JSON object"))
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


class _Journal:
    """One file of newline-delimited records, held under an exclusive ``flock`` by this process:
    its own (appended to by submitters, read by the writer) or one a dead process left.

    ``size`` is how far records were appended (its own) or the file's size when claimed;
    ``offset`` how far the writer has settled them (inserted, or kept as refused).
    """

    def __init__(self, path: Path, fd: int, size: int, *, own: bool) -> None:
        self.path = path
        self.fd = fd
        self.size = size
        self.offset = 0
        self.own = own
        self.sealed = not own  # no more appends: the writer deletes it once read to the end
        self.records = 0  # settled so far (a claimed journal's count, for the log line)
        self.torn = False  # holds part of a line past ``size``: takes no more appends

    @classmethod
    def create(cls, directory: Path) -> _Journal:
        """A new journal of this process's, locked for its life."""
        name = f"{_JOURNAL_PREFIX}{time.time_ns():020d}-{os.getpid()}-{next(_NAMES):06d}"
        path = directory / f"{name}{_JOURNAL_SUFFIX}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        return cls(path, fd, 0, own=True)

    @classmethod
    def claim(cls, path: Path) -> _Journal | None:
        """``path`` locked for replay, or None if it is gone or a live process holds it."""
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Its owner may have deleted it between our listing and our lock.
            stat = os.fstat(fd)
            if path.stat().st_ino != stat.st_ino:
                raise FileNotFoundError(path)
        except (BlockingIOError, FileNotFoundError):
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, stat.st_size, own=False)

    def append(self, payload: bytes) -> None:
        """Append ``payload`` whole, or leave the file as it was and raise (``torn`` if even
        that failed)."""
        view = memoryview(payload)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError:
            # A short write (a full disk) must not leave half a line for the next to run into.
            if len(view) < len(payload):
                try:
                    os.ftruncate(self.fd, self.size)
                except OSError:
                    self.torn = True
            raise
        self.size += len(payload)

    def read_lines(self, limit: int) -> tuple[list[bytes], int, bytes | None]:
        """Up to ``limit`` complete lines from ``offset``, the bytes they take, and a sealed
        file's cut-off last line (written by a process killed mid-write, or a legacy partial
        segment) once it is all that is left."""
        available = self.size - self.offset
        want = min(available, _READ_BYTES)
        while True:
            data = os.pread(self.fd, want, self.offset)
            end = data.rfind(b"\n")
            if end >= 0 or want >= available or len(data) < want:
                break
            want = min(available, want * 2)
        if end < 0:
            tail = data if self.sealed and data else None
            return [], 0, tail
        lines = data[: end + 1].split(b"\n")[:-1][:limit]
        return lines, sum(len(line) + 1 for line in lines), None

    def close(self, *, delete: bool) -> None:
        """Release it; ``delete``: first remove it (while still locked, so no one claims it)."""
        try:
            if delete:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)


_NAMES: Final = itertools.count()


def _spool_files(directory: Path) -> list[Path]:
    """Every journal (and legacy spool segment) in ``directory``, oldest name first."""
    found: list[Path] = []
    for pattern in _LEFT_PATTERNS:
        found.extend(directory.glob(pattern))
    return sorted(found, key=lambda p: p.name)


def _disk_takes(directory: Path, size: int) -> bool:
    """Whether the file system under ``directory`` is writable with ``size`` bytes free."""
    try:
        stat = os.statvfs(directory)
    except OSError:
        return False
    return not stat.f_flag & os.ST_RDONLY and stat.f_bavail * stat.f_frsize >= size


def _spool_bytes(directory: Path) -> int:
    """What every journal in ``directory`` holds, whichever process writes it."""
    total = 0
    try:
        entries = os.scandir(directory)
    except OSError:
        return 0
    with entries:
        for entry in entries:
            name = entry.name
            if name.startswith((_JOURNAL_PREFIX, "seg-")):
                with suppress(OSError):
                    total += entry.stat(follow_symlinks=False).st_size
    return total


class PredictionLogRefusedError(HTTPException, PredictionLogFullError):
    """The prediction log cannot record a prediction now, so it is not served: HTTP 503 with
    ``Retry-After``.

    An HTTP exception first (before :class:`~roiml.errors.RoimlError` in the method resolution
    order), so the app's handler for HTTP exceptions answers it with its status and headers
    rather than the generic RoimlError handler's 422. Its message is for the API's clients: it
    says what to do and names no host, port or path (those are in the server's log and on
    ``/health``).
    """

    def __init__(self, retry_after: int) -> None:
        message = (
            "this prediction was not served because it could not be recorded: the prediction "
            "log is not taking records right now (its database is not accepting writes and its "
            f"disk buffer is full, or the buffer cannot be written). Retry in {retry_after} s; "
            "the service recovers by itself once either has room, and /health shows its state"
        )
        HTTPException.__init__(self, 503, detail=message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after

    def __str__(self) -> str:
        return str(self.detail)


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
    """Journals every prediction before it is answered and writes it to ``ml_predictions`` from
    a writer thread; never loses one that was answered.

    ``retry_max_seconds`` caps the backoff between attempts while the database is away. Use as a
    context manager or call :meth:`close`.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        retry_max_seconds: float = 10.0,
    ) -> None:
        self._engine = engine
        self._statement = _insert_statement(engine)
        self._sqlite = engine.dialect.name == "sqlite"
        self._batch_size = settings.prediction_log_batch_size
        self._flush_seconds = settings.prediction_log_flush_seconds
        self._retry_max = max(retry_max_seconds, _FIRST_BACKOFF)
        self._directory = settings.prediction_buffer_dir
        self._max_bytes = settings.prediction_log_buffer_max_mb * 1024 * 1024
        self._rotate_bytes = max(min(_ROTATE_BYTES, self._max_bytes // 8), _MIN_ROTATE_BYTES)
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the prediction buffer directory {self._directory}: {exc}"
            ) from exc
        self._rejects = _RejectFile(self._directory)
        try:
            self._bound_fd: int | None = os.open(
                self._directory / ".bound.lock", os.O_RDWR | os.O_CREAT, 0o600
            )
        except OSError:
            self._bound_fd = None  # a read-only directory: refusing anyway, nothing to order

        # Shared with submitters, under _lock. Counts are of records in this log's own journals.
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the writer waits here
        self._done = threading.Condition(self._lock)  # flush() waits here
        self._own: deque[_Journal] = deque()  # oldest first; the last takes the appends
        self._submitted = 0
        self._settled = 0  # in the database, or kept as refused
        self._first_pending_at = 0.0
        self._flush_target = 0
        self._stopping = False
        self._closed = False
        self._journal_error: str | None = None
        self._refused_at = -math.inf
        self._refused_total = 0
        self._largest_payload = 0
        self._own_bytes = 0  # what this log's journals hold on disk
        self._others_bytes = 0  # what other processes' journals held when last counted
        self._others_counted_at = -math.inf  # when (monotonic)
        self._current_locked()  # a directory that cannot be written is reported, not fatal

        # The writer's own state; stats() and health() read it without a lock (single reads).
        self._database_ok = True
        self._retry_at = 0.0
        self._backoff = _FIRST_BACKOFF
        self._last_error: str | None = None
        self._written_total = 0
        self._duplicates_total = 0
        self._failed_batches = 0
        self._replayed_files = 0
        self._left: _Journal | None = None  # a dead process's journal being replayed
        self._next_rescan = 0.0

        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public API

    def submit(self, records: Sequence[Mapping[str, Any]], *, wake: bool = True) -> None:
        """Journal ``records`` (``ml_predictions`` columns, naive UTC datetimes) for writing.

        Returns once they are in this process's journal, from where a crash of the process
        cannot take them. Raises :class:`PredictionLogRefusedError` (a
        :class:`~roiml.errors.PredictionLogFullError`) when they cannot be kept: the journal
        cannot be written, or the database refuses writes and the journals are at their bound.
        With ``wake`` false a full batch does not wake the writer yet (its flush interval still
        does): the caller calls :meth:`wake` once its response is sent, so the writer's CPU does
        not compete with the request that produced the rows.
        """
        if not records:
            return
        payload, bad = _encode(records)
        self._rejects.write(bad)
        count = len(records) - len(bad)
        if count == 0:
            return
        with self._lock:
            if self._closed:
                raise RuntimeError("the prediction log is closed")
            journal = self._current_locked()
            if journal is None:
                raise self._refuse_locked()
            self._largest_payload = max(self._largest_payload, len(payload))
            with self._room_for(len(payload)) as room:
                if not room:
                    raise self._refuse_locked()
                try:
                    journal.append(payload)
                except OSError as exc:
                    self._journal_failed_locked(journal, exc)
                    raise self._refuse_locked() from exc
            if self._journal_error is not None:
                log.warning("prediction log: the journal takes writes again; serving predictions")
                self._journal_error = None
            if self._submitted == self._settled:
                self._first_pending_at = time.monotonic()
            self._submitted += count
            self._own_bytes += len(payload)
            if wake and (
                self._submitted - self._settled >= self._batch_size
                or journal.size - journal.offset >= self._rotate_bytes
            ):
                self._work.notify()

    def wake(self) -> None:
        """Wake the writer if a full batch waits (after a :meth:`submit` with ``wake=False``)."""
        with self._lock:
            if self._submitted - self._settled >= self._batch_size:
                self._work.notify()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is in the database, or the database is found
        not to take writes (the records wait on disk). False if ``timeout`` seconds passed."""
        with self._lock:
            target = self._submitted
            self._flush_target = max(self._flush_target, target)
            self._work.notify()
            return self._done.wait_for(
                lambda: self._settled >= target or not self._database_ok or self._closed,
                timeout,
            )

    def close(self, timeout: float = 30.0) -> bool:
        """Write what the database takes now, stop the writer and release the journals; what
        is left in them is replayed by the next log to open the directory.

        Returns False if the writer did not stop within ``timeout`` seconds (its journals then
        stay locked until the process exits, and are replayed after that).
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                self._stopping = True
                self._work.notify()
                self._done.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error(
                "prediction log: the writer did not stop within %.1f s (%s); its journals are "
                "replayed by the next process",
                timeout,
                self._last_error,
            )
            return False
        with self._lock:
            while self._own:
                journal = self._own.popleft()
                journal.close(delete=journal.offset >= journal.size)
        if self._left is not None:
            self._left.close(delete=False)
            self._left = None
        if self._bound_fd is not None:
            os.close(self._bound_fd)
            self._bound_fd = None
        return True

    def stats(self) -> PredictionStats:
        """Counters for the health route: backlog, disk buffer, totals, last error, database."""
        with self._lock:
            queued = self._submitted - self._settled
            refused_total = self._refused_total
        health = self.health()
        return {
            "state": health["state"],
            "queued": queued,
            "spooled_bytes": health["spool_bytes"],
            "spool_max_bytes": self._max_bytes,
            "spool_used": health["spool_used"],
            "written_total": self._written_total,
            "duplicates_total": self._duplicates_total,
            "rejected_total": self._rejects.total,
            "refused_total": refused_total,
            "replayed_files": self._replayed_files,
            "failed_batches": self._failed_batches,
            "last_error": self._last_error,
            "database_ok": self._database_ok,
            "full": health["state"] == "refusing",
        }

    def health(self) -> PredictionLogHealth:
        """The log's state for ``/health``, with no host, port or path in it.

        ``state`` is ``ok``; ``degraded`` (predictions are served and journaled, but the
        database is not taking them, a dead process's journal is being replayed, or the last
        journal write failed); or ``refusing`` (prediction routes answer 503: no journal can be
        created, the disk is read-only or full, the journals of all workers are at their bound,
        or a submit was refused in the last few seconds). ``spool_bytes`` / ``spool_max_bytes`` /
        ``spool_used``: the journals of every process on the directory against the bound.
        """
        used = _spool_bytes(self._directory)
        now = time.monotonic()
        with self._lock:
            has_journal = self._current_locked() is not None
            journal_ok = has_journal and self._journal_error is None
            recent_refusal = now - self._refused_at < _REFUSING_SECONDS
            backlog = self._submitted - self._settled
            refused_total = self._refused_total
        database_ok = self._database_ok
        # Judged from what every worker shares (the directory, the disk), not only from this
        # worker's own submits: a worker that no request reached still tells the truth.
        # Full when a submit like the largest seen would not fit under the bound.
        largest = self._largest_payload or _TYPICAL_PAYLOAD
        full = used + largest > self._max_bytes
        if full or recent_refusal or not has_journal or not _disk_takes(self._directory, largest):
            state = "refusing"
        elif not journal_ok or not database_ok or self._left is not None:
            state = "degraded"
        else:
            state = "ok"
        return {
            "state": state,
            "database_writes": "ok" if database_ok else "failing",
            "journal": "ok" if journal_ok else "last write failed",
            "spool_bytes": used,
            "spool_max_bytes": self._max_bytes,
            "spool_used": round(used / self._max_bytes, 4),
            "backlog_records": backlog,
            "replaying_left_journal": self._left is not None,
            "refused_total": refused_total,
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

    def _current_locked(self) -> _Journal | None:
        """The journal appends go to, opening one if there is none; None if none can be."""
        if self._own and not self._own[-1].sealed:
            return self._own[-1]
        try:
            journal = _Journal.create(self._directory)
        except OSError as exc:
            if self._journal_error is None:
                log.error("prediction log: cannot create a journal: %s; refusing predictions", exc)
            self._journal_error = _describe(exc)
            return None
        self._own.append(journal)
        return journal

    def _journal_failed_locked(self, journal: _Journal, exc: OSError) -> None:
        if journal.torn:
            # Later records go to a new journal: this one holds part of a line the truncate
            # could not take back (the writer reads only up to the last complete one).
            journal.sealed = True
        if self._journal_error is None:
            log.error("prediction log: cannot write the journal: %s; refusing predictions", exc)
        self._journal_error = _describe(exc)

    @contextmanager
    def _room_for(self, adding: int) -> Iterator[bool]:
        """Whether ``adding`` bytes fit under the bound; held until they are appended.

        Every process's journals count: a bound kept per process let two workers fill 3.4 MB
        of a 2 MB one. With the database taking writes and the journals far from the bound,
        this log's own bytes and the others' as counted in the last
        :data:`_COUNT_FRESH_SECONDS` decide without a look at the disk.
        Otherwise the directory is counted, under an exclusive ``flock`` on ``.bound.lock`` held
        through the append, so two processes cannot both take the last room.
        """
        if (
            self._database_ok
            and time.monotonic() - self._others_counted_at <= _COUNT_FRESH_SECONDS
            and self._own_bytes + self._others_bytes + adding <= self._max_bytes // 2
        ):
            yield True
            return
        fd = self._bound_fd
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            total = _spool_bytes(self._directory)
            self._others_bytes = max(0, total - self._own_bytes)
            self._others_counted_at = time.monotonic()
            yield total + adding <= self._max_bytes
        finally:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _refuse_locked(self) -> PredictionLogRefusedError:
        now = time.monotonic()
        self._refused_at = now
        self._refused_total += 1
        wait = self._retry_at - now if not self._database_ok else _REFUSING_SECONDS
        return PredictionLogRefusedError(max(1, min(30, math.ceil(wait))))

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        while True:
            try:
                if not self._step():
                    return
            except Exception as exc:
                # A bug here must not stop the only writer: the journals keep every record, and
                # the next round starts from what was settled.
                log.exception("prediction log: writer step failed")
                self._last_error = _describe(exc)
                time.sleep(self._flush_seconds)

    def _step(self) -> bool:
        """One round: a batch of this log's journal, a batch of a dead process's, upkeep.
        Returns False once stopped."""
        with self._lock:
            self._wait_for_work()
            stopping = self._stopping
            journal = self._own[0] if self._own else None
        if journal is not None and self._database_due():
            self._settle_batch(journal)
        self._tidy()
        if self._left is not None and self._database_due() and not stopping:
            self._replay_batch(self._left)
        now = time.monotonic()
        if now >= self._next_rescan and not stopping:
            self._rescan(now)
        if stopping:
            with self._lock:
                backlog = self._submitted - self._settled
            return backlog > 0 and self._database_ok
        return True

    def _wait_for_work(self) -> None:
        # Called with the lock held. Returns when there is something to do.
        while not self._stopping:
            now = time.monotonic()
            due = self._database_due(now)
            pending = self._submitted - self._settled
            flush_at = self._first_pending_at + self._flush_seconds
            if due and pending:
                if pending >= self._batch_size or self._settled < self._flush_target:
                    return
                if now >= flush_at:
                    return
            if due and self._left is not None:
                return
            if now >= self._next_rescan:
                return
            # Idle, it still looks every flush interval: a submit wakes it only for a full batch.
            timeout = min(self._next_rescan - now, self._flush_seconds)
            if not due:
                timeout = min(timeout, self._retry_at - now)
            elif pending:
                timeout = min(timeout, flush_at - now)
            self._work.wait(max(timeout, 0.001))

    def _settle_batch(self, journal: _Journal) -> None:
        """Write the next batch of this log's oldest journal."""
        count = self._write_batch(journal)
        if count:
            with self._lock:
                self._settled += count
                if self._submitted > self._settled:
                    self._first_pending_at = time.monotonic()
                self._done.notify_all()

    def _replay_batch(self, journal: _Journal) -> None:
        """Write the next batch of a dead process's journal; drop the journal once done."""
        self._write_batch(journal)
        if journal.offset >= journal.size:
            self._replayed_files += 1  # before the file goes: whoever sees it gone sees this
            journal.close(delete=True)
            with suppress(OSError):
                _fsync_directory(self._directory)
            self._left = None
            self._next_rescan = 0.0  # another may be waiting
            log.warning(
                "prediction log: replayed %d record(s) a stopped process left in %s",
                journal.records,
                journal.path.name,
            )

    def _write_batch(self, journal: _Journal) -> int:
        """Insert the next batch of ``journal``; the lines settled (0 if the database is away)."""
        lines, used, tail = journal.read_lines(self._batch_size)
        if not lines and tail is None:
            return 0
        rows, bad = _parse_lines(lines)
        if tail is not None:
            bad.append((tail.decode("utf-8", "replace"), "cut off by an interrupted write"))
            used = len(tail)
        rows, more = _normalise(rows, utcnow())
        bad.extend(more)
        left, refused = self._deliver(rows) if rows else ([], [])
        if left:
            return 0  # the database is away: the whole batch again later (ids already in skip)
        self._rejects.write([*bad, *refused])
        journal.offset += used
        settled = len(lines) + (tail is not None)
        journal.records += settled
        return settled

    def _tidy(self) -> None:
        """Drop this log's journals that are read to the end; rotate the one that grew."""
        with self._lock:
            while len(self._own) > 1 or (self._own and self._own[0].sealed):
                oldest = self._own[0]
                if oldest.offset < oldest.size:
                    break
                self._own.popleft().close(delete=True)
                self._own_bytes -= oldest.size
            current = self._own[-1] if self._own else None
            if current is None or current.sealed or current.size < self._rotate_bytes:
                return
            current.sealed = True
            self._current_locked()

    def _rescan(self, now: float) -> None:
        self._next_rescan = now + _RESCAN_SECONDS
        total = _spool_bytes(self._directory)
        with self._lock:
            self._others_bytes = max(0, total - self._own_bytes)
            self._others_counted_at = time.monotonic()
        if not self._database_ok:
            # The records wait here longest while the database is away: worth a disk write.
            with self._lock:
                descriptors = [journal.fd for journal in self._own]
            for fd in descriptors:
                with suppress(OSError):
                    os.fdatasync(fd)
        if self._left is not None:
            return
        with self._lock:
            mine = {journal.path for journal in self._own}
        try:
            candidates = _spool_files(self._directory)
        except OSError:
            return
        for path in candidates:
            if path in mine:
                continue
            claimed = _Journal.claim(path)
            if claimed is not None:
                log.warning(
                    "prediction log: replaying %s (%d bytes), left by a process that stopped",
                    path.name,
                    claimed.size,
                )
                self._left = claimed
                return

    def _database_due(self, now: float | None = None) -> bool:
        return self._database_ok or (time.monotonic() if now is None else now) >= self._retry_at

    def _deliver(self, rows: list[_Row]) -> tuple[list[_Row], list[_Reject]]:
        """Insert ``rows``, one transaction per tenant: the rows still needing a home (the
        database stopped answering) and the rows the table refused."""
        groups: dict[str, list[_Row]] = {}
        for row in rows:
            groups.setdefault(row["tenant_id"], []).append(row)
        refused: list[_Reject] = []
        items = list(groups.items())
        for index, (tenant, group) in enumerate(items):
            try:
                self._insert(tenant, group)
                continue
            except Exception as exc:
                self._failed_batches += 1
                if not _is_row_error(exc):
                    self._mark_down(exc)
                    return [row for _, rest in items[index:] for row in rest], refused
                left = self._isolate(tenant, group, refused)
            if left:  # the database stopped answering: the other tenants wait with this one
                return [*left, *(row for _, rest in items[index + 1 :] for row in rest)], refused
        return [], refused

    def _isolate(self, tenant: str, group: list[_Row], refused: list[_Reject]) -> list[_Row]:
        """Write ``group`` row by row; refused rows are added to ``refused``."""
        for index, row in enumerate(group):
            try:
                self._insert(tenant, [row])
            except Exception as exc:
                if not _is_row_error(exc):
                    self._mark_down(exc)
                    return group[index:]
                refused.append((row, _describe(exc)))
        return []

    def _insert(self, tenant: str, rows: list[_Row]) -> None:
        params: Any = rows if self._sqlite else {"rows": dumps_text(rows)}
        with tenant_session(self._engine, tenant) as session:
            inserted = len(session.connection().execute(self._statement, params).all())
        self._written_total += inserted
        self._duplicates_total += len(rows) - inserted
        self._mark_up()

    def _mark_down(self, exc: BaseException) -> None:
        self._last_error = _describe(exc)
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self._retry_max)
        if self._sqlite:
            # A SQLite connection opened while its file or directory was read-only stays
            # read-only after they are writable again: the next attempt opens new ones.
            self._engine.dispose()
        if self._database_ok:
            log.warning(
                "prediction log: database write failed (%s); predictions wait in the journals",
                self._last_error,
            )
        self._database_ok = False
        with self._lock:
            self._done.notify_all()

    def _mark_up(self) -> None:
        if not self._database_ok:
            log.info("prediction log: database writes succeed again; catching up")
        self._database_ok = True
        self._backoff = _FIRST_BACKOFF
