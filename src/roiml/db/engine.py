"""Engines and tenant-scoped sessions. The only place that knows SQLite from PostgreSQL."""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker, with_loader_criteria

from roiml.db.base import TenantMixin
from roiml.errors import ConfigurationError, DatabaseUnavailableError
from roiml.jsonformat import dumps_text

__all__ = [
    "DatabaseTimeouts",
    "check_connection",
    "is_postgres",
    "make_engine",
    "statement_deadline",
    "tenant_session",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatabaseTimeouts:
    """Bounds on a PostgreSQL engine's calls (the API's; batch jobs run unbounded).

    ``statement_ms`` is sent as ``statement_timeout`` (the server cancels a slow statement)
    and also enforced on the client: a server that stopped answering (hung, or a network that
    drops packets) never cancels anything, so a watchdog shuts the connection's socket down
    ``margin_ms`` after the server should have, and the statement fails instead of hanging.
    """

    connect_seconds: int = 2
    statement_ms: int = 2000
    pool_seconds: float = 1.0
    margin_ms: int = 250


class _Watchdog:
    """One thread that shuts down the socket of any statement past its deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, int] = {}  # token -> socket fd
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, fd: int, seconds: float) -> int:
        token = next(self._tokens)
        with self._cond:
            self._armed[token] = fd
            heapq.heappush(self._heap, (time.monotonic() + seconds, token))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="db-watchdog", daemon=True)
                self._thread.start()
            elif self._heap[0][1] == token:
                self._cond.notify()
        return token

    def disarm(self, token: int) -> None:
        # The heap entry stays until its deadline; an unknown token is skipped then.
        with self._cond:
            self._armed.pop(token, None)

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                fd = self._armed.pop(token)
                _shut_down(fd)


def _shut_down(fd: int) -> None:
    # shutdown() acts on the connection, not on the descriptor: the statement's blocked read
    # returns end-of-file and libpq reports the connection lost. The duplicate is closed, the
    # original stays libpq's.
    try:
        duplicate = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
        log.warning("database statement past its deadline: connection shut down")
    except OSError:
        pass
    finally:
        duplicate.close()


_WATCHDOG = _Watchdog()
_DEADLINE = threading.local()


@contextmanager
def statement_deadline(seconds: float) -> Iterator[None]:
    """Statements of this thread on a bounded engine (:class:`DatabaseTimeouts`) fail after
    ``seconds`` rather than the engine's bound, inside the block (a prediction's reads are
    held to less than the API's other statements)."""
    previous = getattr(_DEADLINE, "seconds", None)
    _DEADLINE.seconds = seconds
    try:
        yield
    finally:
        _DEADLINE.seconds = previous


def _bound(engine: Engine, timeouts: DatabaseTimeouts) -> None:
    default = (timeouts.statement_ms + timeouts.margin_ms) / 1000

    def arm(info: dict[Any, Any], dbapi_connection: Any) -> None:
        disarm(info)
        try:
            fd = dbapi_connection.pgconn.socket
        except Exception:  # already closed: nothing can hang on it
            return
        seconds = getattr(_DEADLINE, "seconds", None) or default
        info["roiml_watch"] = _WATCHDOG.arm(fd, seconds)

    def disarm(info: dict[Any, Any]) -> None:
        token = info.pop("roiml_watch", None)
        if token is not None:
            _WATCHDOG.disarm(token)

    # A deadline runs from a statement's start until the next statement, COMMIT or ROLLBACK
    # re-arms it or the connection goes back to the pool: what the connection does in between
    # without an event (COMMIT itself, a COPY on the driver's connection) is bounded too.
    @event.listens_for(engine, "before_cursor_execute")
    def _executing(conn: Any, cursor: Any, *_: Any) -> None:
        arm(conn.info, cursor.connection)

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _ending(conn: Any) -> None:
        # An event handler must not raise: a connection already invalidated has no socket.
        if conn.invalidated:
            return
        try:
            arm(conn.info, conn.connection.dbapi_connection)
        except Exception:
            return

    @event.listens_for(engine.pool, "reset")
    def _resetting(dbapi_connection: Any, connection_record: Any, reset_state: Any) -> None:
        arm(connection_record.info, dbapi_connection)

    # Disarmed before the socket can close: its descriptor's number may be reused at once.
    @event.listens_for(engine.pool, "checkin")
    @event.listens_for(engine.pool, "close")
    def _returned(dbapi_connection: Any, connection_record: Any) -> None:
        if connection_record is not None:
            disarm(connection_record.info)

    @event.listens_for(engine.pool, "invalidate")
    @event.listens_for(engine.pool, "soft_invalidate")
    def _invalidated(dbapi_connection: Any, connection_record: Any, exception: Any) -> None:
        if connection_record is not None:
            disarm(connection_record.info)

    @event.listens_for(engine, "handle_error")
    def _failed(context: Any) -> None:
        connection = context.connection
        if connection is not None and not connection.invalidated:
            try:
                disarm(connection.info)
            except Exception:
                return


def _normalise_url(url: str) -> str:
    # Users write postgresql://...; psycopg 3 is the driver we ship, psycopg2 is not installed.
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, *, timeouts: DatabaseTimeouts | None = None, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the per-backend settings the project relies on; on
    PostgreSQL, ``timeouts`` bound every connect, pool wait and statement."""
    try:
        # A bad port ("host:abc") surfaces as ValueError rather than ArgumentError.
        parsed = make_url(_normalise_url(url))
    except (ArgumentError, ValueError) as exc:
        raise ConfigurationError(f"database URL {url!r} is not a valid SQLAlchemy URL") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = _create_engine(url, parsed, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            # WAL lets the API read while a batch job writes; NORMAL is durable enough with WAL.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    if parsed.get_backend_name() == "postgresql":
        if timeouts is None:
            kwargs.setdefault("pool_pre_ping", True)
            kwargs.setdefault("connect_args", {"connect_timeout": 5})
            return _create_engine(url, parsed, **kwargs)
        # No pre-ping: SQLAlchemy's ping is a statement no event sees, so nothing bounds it on
        # a hung server. A dead pooled connection fails its first statement instead, which
        # invalidates the pool; the caller's breaker and retry cover that one failure.
        kwargs.setdefault("pool_pre_ping", False)
        kwargs.setdefault("pool_timeout", timeouts.pool_seconds)
        kwargs.setdefault(
            "connect_args",
            {
                "connect_timeout": timeouts.connect_seconds,
                "options": f"-c statement_timeout={timeouts.statement_ms}",
            },
        )
        engine = _create_engine(url, parsed, **kwargs)
        _bound(engine, timeouts)
        return engine
    raise ConfigurationError(
        f"unsupported database backend {parsed.get_backend_name()!r}: use sqlite or postgresql"
    )


def _create_engine(url: str, parsed: URL, **kwargs: Any) -> Engine:
    # JSON columns (the prediction log's features and SHAP values, kilobytes a row) are written
    # by orjson: several times faster than the json module, and NaN becomes null rather than the
    # bare NaN token PostgreSQL's JSONB refuses.
    kwargs.setdefault("json_serializer", dumps_text)
    # An unknown or uninstalled driver ("postgresql+pg8000://") is a setting error, not a crash.
    try:
        return create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        raise ConfigurationError(
            f"database URL {url!r} names a driver that is not available ({exc}); "
            "use sqlite:/// or postgresql:// (psycopg 3)"
        ) from exc


def is_postgres(engine: Engine) -> bool:
    """Whether ``engine`` talks to PostgreSQL."""
    return engine.dialect.name == "postgresql"


def check_connection(engine: Engine) -> None:
    """Raise :class:`DatabaseUnavailableError` with the URL (password hidden) if unreachable."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        shown = engine.url.render_as_string(hide_password=True)
        # libpq's messages span lines; the CLI prints this as one line.
        reason = " ".join(str(exc.orig).split()).rstrip(".")
        raise DatabaseUnavailableError(
            f"cannot reach the database at {shown}: {reason}. "
            "Start it, or point ROIML_DATABASE_URL at a running server."
        ) from exc


@contextmanager
def tenant_session(engine: Engine, tenant_id: str) -> Iterator[Session]:
    """A session in one transaction, scoped to ``tenant_id``.

    On PostgreSQL the transaction sets ``app.tenant_id``, which the row-level security policies
    read, so even hand-written SQL sees only this tenant. On every backend ORM queries also get a
    tenant filter, which is the only guard SQLite has.
    """
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    with factory() as session, session.begin():
        if is_postgres(engine):
            session.execute(
                text("SELECT set_config('app.tenant_id', :tenant, true)"), {"tenant": tenant_id}
            )

        @event.listens_for(session, "do_orm_execute")
        def _scope(state: Any) -> None:
            if state.is_select or state.is_update or state.is_delete:
                state.statement = state.statement.options(
                    with_loader_criteria(
                        TenantMixin,
                        lambda cls: cls.tenant_id == tenant_id,
                        include_aliases=True,
                    )
                )

        yield session
