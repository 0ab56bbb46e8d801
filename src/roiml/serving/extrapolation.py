"""How far an answer reaches past the tenant's data: its extrapolation, and the limit on it.

*Fresh* means covered by the tenant's source data: the data end is the latest stamp of any of
the tenant's source rows (each table's first time column in
:data:`roiml.features.sources.TIME_COLUMNS`: a document read, an email sent, a session, an
alert, a search, a closing, a purchase), and the data are fresh through the day after it (a
daily load delivers a day's rows the next morning, so answering on that day uses all there is).
An answer for a later day extrapolates by the days between: ``extrapolation_days``; none (null)
on or before that day. Why the tenant's end and not the entity's: a homeowner with no activity
for a year is news only while the tenant's data run on (their silence is a feature); when the
whole feed stopped (a sales file that ends in 2015, asked about in 2026) every feature is as of
the feed's end, whatever the entity. The online store's timestamps say when a vector was
computed, not when its data end, so they cannot tell either.

The data end is read once per tenant and process (one statement over the source tables; the
server's own tenant at start-up, in the background), then refreshed in the background every
:data:`REFRESH_SECONDS`: a prediction reads a dict.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Engine, Table, func, select, union_all

from roiml.db.engine import tenant_session
from roiml.db.source_models import (
    Alert,
    DocumentAccessEvent,
    EmailEvent,
    PlatformSession,
    Property,
    Search,
    Transaction,
)
from roiml.features.sources import TIME_COLUMNS

__all__ = [
    "LIMIT_SETTING",
    "REFRESH_SECONDS",
    "DataEnds",
    "extrapolation_days",
    "refusal",
    "tenant_data_end",
]

log = logging.getLogger(__name__)

LIMIT_SETTING = "ROIML_API_MAX_EXTRAPOLATION_DAYS"
# A tenant's loads land daily at most: a data end five minutes old is as good as a fresh one.
REFRESH_SECONDS = 300.0
# After a failed read (the database away), try again this soon.
RETRY_SECONDS = 30.0
_TABLES: dict[str, Table] = {
    model.__tablename__: model.__table__  # type: ignore[misc]
    for model in (
        DocumentAccessEvent,
        EmailEvent,
        PlatformSession,
        Alert,
        Search,
        Transaction,
        Property,
    )
}


def tenant_data_end(engine: Engine, tenant: str) -> datetime | None:
    """The latest stamp of any of ``tenant``'s source rows (naive UTC), None if it has none.

    One statement: each table's maximum of its stamp column, the largest of them.
    """
    parts = [
        select(func.max(_TABLES[name].c[columns[0]]).label("stamp")).where(
            _TABLES[name].c.tenant_id == tenant
        )
        for name, columns in TIME_COLUMNS.items()
    ]
    stamps = union_all(*parts).subquery()
    query = select(func.max(stamps.c.stamp).label("stamp"))
    with tenant_session(engine, tenant) as session:
        value = session.execute(query).scalar_one_or_none()
    if value is None:
        return None
    if isinstance(value, str):  # SQLite's MAX over a union loses the column's type
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=None) if value.tzinfo is not None else value


def _fresh_through(data_end: datetime) -> date:
    """The last day an answer may be for without extrapolating: the day after the data end."""
    return data_end.date() + timedelta(days=1)


def extrapolation_days(answered_for: datetime, data_end: datetime | None) -> int | None:
    """Whole days from the day the data are fresh through to the day answered for; None when
    the answer does not extrapolate (or the tenant has no dated rows to measure against)."""
    if data_end is None:
        return None
    days = (answered_for.date() - _fresh_through(data_end)).days
    return days if days > 0 else None


def refusal(answered_for: datetime, data_end: datetime, days: int, limit: int, tenant: str) -> str:
    """The 422's detail: the gap, the limit, the setting, and what to do."""
    latest = _fresh_through(data_end) + timedelta(days=limit)
    return (
        f"an answer for {answered_for.date().isoformat()} would extrapolate {days} days past "
        f"the data of tenant {tenant!r} (its last recorded event is of "
        f"{data_end.date().isoformat()}), over the limit of {limit} days ({LIMIT_SETTING}); "
        f"ask with as_of_date on or before {latest.isoformat()}, load the tenant's newer data, "
        "or raise the limit"
    )


@dataclass
class _Entry:
    value: datetime | None
    due: float  # monotonic time of the next refresh
    refreshing: bool = False


class DataEnds:
    """Each tenant's data end, read on its first prediction and refreshed in the background.

    ``read(tenant)`` reads it (a database call; may raise). A failed first read answers None
    (the answers are not flagged: the API degrades, it does not fail) and is tried again in
    the background after :data:`RETRY_SECONDS`; a failed refresh keeps the value it had.
    """

    def __init__(
        self,
        read: Callable[[str], datetime | None],
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.refresh_seconds = refresh_seconds
        self.retry_seconds = retry_seconds
        self._monotonic = monotonic
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._first_reads: dict[str, threading.Lock] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="roiml-data-end")

    def get(self, tenant: str) -> datetime | None:
        """``tenant``'s data end as last read (read now on its first call)."""
        entry = self._entries.get(tenant)
        if entry is None:
            return self._first(tenant)
        if not entry.refreshing and self._monotonic() >= entry.due:
            with self._lock:
                if entry.refreshing:
                    return entry.value
                entry.refreshing = True
            self._pool.submit(self._refresh, tenant, entry)
        return entry.value

    def prime(self, tenant: str) -> None:
        """Read ``tenant``'s data end now, on the background thread: the server's own tenant
        at start-up, so that no request of it waits for the read (a request that comes while
        it runs waits for it, and does not read again)."""
        self._pool.submit(self._first, tenant)

    def forget(self, tenant: str) -> None:
        """Drop ``tenant``'s value: the next prediction reads it again (after an import)."""
        self._entries.pop(tenant, None)

    def close(self) -> None:
        """Stop the refresh thread."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _first(self, tenant: str) -> datetime | None:
        with self._lock:
            gate = self._first_reads.setdefault(tenant, threading.Lock())
        # One first read per tenant: concurrent first requests wait for it, not repeat it.
        with gate:
            entry = self._entries.get(tenant)
            if entry is not None:
                return entry.value
            try:
                value = self._read(tenant)
            except Exception as exc:  # any failure: unflagged answers, retried
                log.warning("data end of tenant %r not read (%s); retrying", tenant, exc)
                self._entries[tenant] = _Entry(None, self._monotonic() + self.retry_seconds)
                return None
            self._entries[tenant] = _Entry(value, self._monotonic() + self.refresh_seconds)
            return value

    def _refresh(self, tenant: str, entry: _Entry) -> None:
        try:
            value = self._read(tenant)
        except Exception as exc:  # keep the last value, try again soon
            log.warning("data end of tenant %r not refreshed (%s); retrying", tenant, exc)
            entry.due = self._monotonic() + self.retry_seconds
        else:
            entry.value = value
            entry.due = self._monotonic() + self.refresh_seconds
        finally:
            entry.refreshing = False
