"""The embedded online store: one SQLite file (WAL) under ``data_dir``, for installs without Redis.

Same keys (as bytes) and binary records as Redis, in one ``WITHOUT ROWID`` table keyed by the
Redis key, so a read is one primary-key ``IN`` query and shares the decoding of
:class:`roiml.store.online_records.RecordStore`. The write upsert keeps a stored vector whose
as_of is newer, like the Redis Lua script; expired rows are purged on write, and reads check the
age themselves anyway.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from roiml.db.enums import EntityType
from roiml.store.cold import check_day
from roiml.store.online_records import (
    OnlineFeatureSet,
    RecordStore,
    encode_day,
    key_prefix,
    to_epoch_us,
)

__all__ = ["SqliteOnlineStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_vectors (
    key BLOB PRIMARY KEY,
    as_of_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL,
    record BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_online_vectors_expires ON online_vectors (expires_us);
"""
# ">=": rewriting the same day is allowed (idempotent, and it repairs a bad write).
_UPSERT = """
INSERT INTO online_vectors (key, as_of_us, expires_us, record) VALUES (?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
    as_of_us = excluded.as_of_us, expires_us = excluded.expires_us, record = excluded.record
WHERE excluded.as_of_us >= online_vectors.as_of_us
"""
_WRITE_CHUNK = 5000
# SQLite's default SQLITE_MAX_VARIABLE_NUMBER since 3.32; bigger reads go in several queries.
_MAX_VARIABLES = 32766


class SqliteOnlineStore(RecordStore):
    """The online store in a local SQLite file; one connection per thread."""

    def __init__(self, path: Path, *, namespace: str = "roiml") -> None:
        """Open (creating if needed) the store at ``path``."""
        super().__init__(namespace)
        self._path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._select_sql: dict[int, str] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection().executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            # Autocommit mode; writes open their own transaction explicitly.
            connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA busy_timeout=30000")
            # Reads come straight from the page cache of the mapped file, without copies.
            connection.execute("PRAGMA mmap_size=1073741824")
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def write_day(
        self,
        frame: pa.Table,
        tenant: str,
        entity_type: EntityType | str,
        feature_set: OnlineFeatureSet,
        *,
        now: datetime | None = None,
    ) -> int:
        """See :meth:`roiml.store.online.OnlineStore.write_day`."""
        day = check_day(frame, tenant, feature_set.name, feature_set.feature_names)
        prefix = key_prefix(self._namespace, tenant, entity_type, feature_set.name).encode()
        now_us = to_epoch_us(now)
        expires_us = day.as_of_us + feature_set.ttl_us
        if expires_us <= now_us:
            return 0
        records = encode_day(day, feature_set)
        entity_ids = [e.encode() for e in day.frame.column("entity_id").to_pylist()]
        connection = self._connection()
        written = 0
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute("DELETE FROM online_vectors WHERE expires_us <= ?", (now_us,))
            for start in range(0, len(entity_ids), _WRITE_CHUNK):
                rows = [
                    (prefix + entity_id, day.as_of_us, expires_us, record)
                    for entity_id, record in zip(
                        entity_ids[start : start + _WRITE_CHUNK],
                        records[start : start + _WRITE_CHUNK],
                        strict=True,
                    )
                ]
                # rowcount counts only rows inserted or really updated, not the kept newer ones.
                written += connection.executemany(_UPSERT, rows).rowcount
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return written

    def _fetch(self, keys: list[bytes]) -> Sequence[bytes | None]:
        connection = self._connection()
        found: dict[bytes, bytes] = {}
        for start in range(0, len(keys), _MAX_VARIABLES):
            batch = keys[start : start + _MAX_VARIABLES]
            found.update(connection.execute(self._select(len(batch)), batch).fetchall())
        return [found.get(key) for key in keys]

    def _select(self, count: int) -> str:
        sql = self._select_sql.get(count)
        if sql is None:
            marks = ",".join("?" * count)
            sql = f"SELECT key, record FROM online_vectors WHERE key IN ({marks})"
            self._select_sql[count] = sql
        return sql

    def delete_tenant(self, tenant: str) -> int:
        """See :meth:`roiml.store.online.OnlineStore.delete_tenant`."""
        low = self._tenant_prefix(tenant).encode()
        high = low[:-1] + b";"  # ";" follows ":": every key starting with ``low`` sorts below
        cursor = self._connection().execute(
            "DELETE FROM online_vectors WHERE key >= ? AND key < ?", (low, high)
        )
        return cursor.rowcount

    def close(self) -> None:
        """See :meth:`roiml.store.online.OnlineStore.close`."""
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()
