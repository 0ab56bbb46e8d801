"""The hot tier on Redis: one key per vector, written atomically so an older day never replaces
a newer one, read with one MGET per call."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import pyarrow as pa
import redis

from roiml.db.enums import EntityType
from roiml.store.breaker import CircuitBreaker
from roiml.store.cold import check_day
from roiml.store.online_records import (
    OnlineFeatureSet,
    RecordStore,
    encode_day,
    key_prefix,
    to_epoch_us,
)

__all__ = ["REDIS_FAILURES", "RedisOnlineStore"]

# What a Redis outage raises: refused or reset connections, timeouts, a server still loading.
REDIS_FAILURES: tuple[type[BaseException], ...] = (redis.RedisError, OSError)


# KEYS: vector keys. ARGV: as_of µs, expiry (unix ms), then one record per key.
# Atomic per call, so a concurrent or replayed older day can never overwrite a newer vector.
_WRITE_IF_NOT_OLDER = """
local as_of = tonumber(ARGV[1])
local written = 0
for i, key in ipairs(KEYS) do
    local stored = redis.call('GETRANGE', key, 0, 7)
    if #stored < 8 or struct.unpack('<i8', stored) <= as_of then
        redis.call('SET', key, ARGV[i + 2], 'PXAT', ARGV[2])
        written = written + 1
    end
end
return written
"""


class RedisOnlineStore(RecordStore):
    """The online store on Redis: one key per vector, expiring ``ttl`` after its as_of."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        namespace: str = "roiml",
        write_chunk: int = 2000,
        chunks_per_round_trip: int = 8,
        read_client: redis.Redis | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        """Use ``client``; its responses must be bytes (``decode_responses=False``).

        Reads (the serving path) go through ``read_client`` when given, whose socket timeouts
        should be tens of milliseconds, and through ``breaker``: a dead or hung Redis then
        fails a read with :class:`~roiml.store.breaker.DependencyUnavailableError`, after a
        timeout a few times, then at once while the breaker is open. Writes (the pipeline's
        bulk Lua calls, which take longer than a read's timeout) keep ``client``.
        """
        super().__init__(namespace)
        self._client = client
        self._read_client = read_client if read_client is not None else client
        self._breaker = breaker
        self._write_chunk = write_chunk
        self._chunks_per_round_trip = chunks_per_round_trip
        self._write_script = client.register_script(_WRITE_IF_NOT_OLDER)

    @property
    def breaker(self) -> CircuitBreaker | None:
        """The reads' breaker (None: unguarded)."""
        return self._breaker

    def write_day(
        self,
        frame: pa.Table,
        tenant: str,
        entity_type: EntityType | str,
        feature_set: OnlineFeatureSet,
        *,
        now: datetime | None = None,
    ) -> int:
        """See :meth:`OnlineStore.write_day`."""
        day = check_day(frame, tenant, feature_set.name, feature_set.feature_names)
        prefix = key_prefix(self._namespace, tenant, entity_type, feature_set.name)
        expires_us = day.as_of_us + feature_set.ttl_us
        if expires_us <= to_epoch_us(now):
            return 0
        keys = [prefix + entity_id for entity_id in day.frame.column("entity_id").to_pylist()]
        records = encode_day(day, feature_set)
        written = 0
        pipe = self._client.pipeline(transaction=False)
        queued = 0
        for start in range(0, len(keys), self._write_chunk):
            stop = start + self._write_chunk
            args: list[bytes | int] = [day.as_of_us, expires_us // 1000, *records[start:stop]]
            self._write_script(keys=keys[start:stop], args=args, client=pipe)
            queued += 1
            if queued == self._chunks_per_round_trip:
                written += sum(pipe.execute())
                queued = 0
        if queued:
            written += sum(pipe.execute())
        return written

    def _fetch(self, keys: list[bytes]) -> Sequence[bytes | None]:
        breaker = self._breaker
        if breaker is None:
            return self._mget(keys)
        return breaker.call(lambda: self._mget(keys), REDIS_FAILURES)

    def _mget(self, keys: list[bytes]) -> Sequence[bytes | None]:
        # One MGET, packed here: redis-py's generic packing costs ~1 µs per argument, half the
        # time of a 500-key read. Sending and parsing stay with redis-py's connection.
        parts = [b"*%d\r\n$4\r\nMGET\r\n" % (len(keys) + 1)]
        parts.extend([b"$%d\r\n%s\r\n" % (len(key), key) for key in keys])
        command = b"".join(parts)
        try:
            return self._send(command)
        except redis.ConnectionError:
            # A pooled connection the server dropped: one retry on a fresh one, as redis-py does.
            # Not after a timeout: a hung server would only cost a second one.
            return self._send(command)

    def _send(self, command: bytes) -> list[bytes | None]:
        pool = self._read_client.connection_pool
        connection: Any = pool.get_connection()
        try:
            connection.send_packed_command([command])
            return cast(list[bytes | None], connection.read_response())
        except (redis.ConnectionError, redis.TimeoutError):
            connection.disconnect()
            raise
        finally:
            pool.release(connection)

    def delete_tenant(self, tenant: str) -> int:
        """See :meth:`OnlineStore.delete_tenant` (SCAN + UNLINK, never KEYS)."""
        pattern = self._tenant_prefix(tenant) + "*"
        deleted = 0
        batch: list[bytes] = []
        for key in self._client.scan_iter(match=pattern, count=5000):
            batch.append(key)
            if len(batch) == 5000:
                deleted += cast(int, self._client.unlink(*batch))
                batch = []
        if batch:
            deleted += cast(int, self._client.unlink(*batch))
        return deleted

    def close(self) -> None:
        """See :meth:`OnlineStore.close`."""
        self._client.close()
        if self._read_client is not self._client:
            self._read_client.close()
