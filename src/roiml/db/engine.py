"""Engines and tenant-scoped sessions. The only place that knows SQLite from PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker, with_loader_criteria

from roiml.db.base import TenantMixin
from roiml.errors import ConfigurationError, DatabaseUnavailableError
from roiml.jsonformat import dumps_text

__all__ = ["check_connection", "is_postgres", "make_engine", "tenant_session"]


def _normalise_url(url: str) -> str:
    # Users write postgresql://...; psycopg 3 is the driver we ship, psycopg2 is not installed.
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the per-backend settings the project relies on."""
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
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("connect_args", {"connect_timeout": 5})
        return _create_engine(url, parsed, **kwargs)
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
