"""The hot tier's records: their binary format, keys, codec and the read path both backends share.

The one module the backends (:mod:`roiml.store.online_redis`, :mod:`roiml.store.online_sqlite`)
build on; the interface they meet and the factory that picks one live above them, in
:mod:`roiml.store.online` (the layout Feast gives its online stores), so no import goes back up.

A vector is one compact binary record: a 16-byte little-endian header (as_of in microseconds
since the epoch, then a hash of the feature set's declared feature order) followed by the
float64 values, NaN for null. The header is exactly two float64 slots wide, so all records of a
set read in one call decode as one ``(n, 2 + features)`` array: no per-record parsing. A record
whose hash differs from the reader's (the definition changed) reads as missing, as does one
older than the set's TTL: expiry is checked at read time, not left to the backend's expiry.
When every record of a read is present, fresh and current (the usual case), all of them
decode as one ``(entities, all slots of all sets)`` array instead of one array per set.

Keys are ``<namespace>:v1:<tenant>:<entity type>:<feature set>:<entity id>``.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, cast

import numpy as np
import numpy.typing as npt

from roiml.db.enums import EntityType
from roiml.store.cold import FeatureDay, check_entity_type, check_name

__all__ = [
    "DEFAULT_TTL",
    "HEADER",
    "KEY_VERSION",
    "FeatureMatrix",
    "FeatureVector",
    "OnlineFeatureSet",
    "OnlineMatrix",
    "RecordStore",
    "StampedMatrix",
    "VectorRows",
    "decode_records",
    "encode_day",
    "key_prefix",
    "schema_hash",
    "set_spans",
    "to_epoch_us",
]

log = logging.getLogger(__name__)

DEFAULT_TTL = timedelta(days=7)
KEY_VERSION = "v1"
HEADER = struct.Struct("<qQ")  # as_of (µs since epoch), schema hash
_VALUE = np.dtype("<f8")
_HEADER_SLOTS = HEADER.size // _VALUE.itemsize
_EPOCH = datetime(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)
# The as_of of a stand-in for a missing record: so old that it is always expired.
_NEVER_US = -(2**62)

FeatureVector = npt.NDArray[np.float64]
FeatureMatrix = npt.NDArray[np.float64]
# One row per requested entity, one entry per requested feature set, in request order.
VectorRows = list[list[FeatureVector | None]]


def schema_hash(feature_names: Sequence[str]) -> int:
    """A 64-bit hash of the declared feature order; a changed definition changes it."""
    digest = hashlib.blake2b("\x1f".join(feature_names).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@dataclass(frozen=True, slots=True)
class OnlineFeatureSet:
    """What a read or write needs to know of a feature set, resolved once at start-up."""

    name: str
    feature_names: tuple[str, ...]
    ttl: timedelta = DEFAULT_TTL
    schema_hash: int = field(init=False)
    ttl_us: int = field(init=False)
    record_size: int = field(init=False)
    missing_record: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_name(self.name, "feature set")
        if not self.feature_names or isinstance(self.feature_names, str):
            raise ValueError(f"feature set {self.name!r} needs a tuple of feature names")
        names = tuple(self.feature_names)
        digest = schema_hash(names)
        size = HEADER.size + _VALUE.itemsize * len(names)
        object.__setattr__(self, "feature_names", names)
        object.__setattr__(self, "schema_hash", digest)
        object.__setattr__(self, "ttl_us", self.ttl // _ONE_US)
        object.__setattr__(self, "record_size", size)
        # Stands in for an absent or malformed record so every set decodes as one array.
        missing = HEADER.pack(_NEVER_US, digest) + bytes(size - HEADER.size)
        object.__setattr__(self, "missing_record", missing)


class OnlineMatrix(NamedTuple):
    """A read's result as arrays: ``values`` is (entities, all features of all sets in
    request order), NaN where missing; ``found`` is (entities, sets), False where missing."""

    values: FeatureMatrix
    found: npt.NDArray[np.bool_]


class StampedMatrix(NamedTuple):
    """:class:`OnlineMatrix` with each found vector's ``as_of`` (µs since the epoch, shape
    (entities, sets)); where a vector was not found its entry is meaningless (``found`` says)."""

    values: FeatureMatrix
    found: npt.NDArray[np.bool_]
    as_of_us: npt.NDArray[np.int64]


def set_spans(feature_sets: Sequence[OnlineFeatureSet]) -> list[tuple[int, int]]:
    """Each set's ``[start, stop)`` columns in a read's matrix (the sets side by side, in
    order)."""
    spans, start = [], 0
    for feature_set in feature_sets:
        spans.append((start, start + len(feature_set.feature_names)))
        start += len(feature_set.feature_names)
    return spans


def to_epoch_us(moment: datetime | None) -> int:
    """``moment`` (naive UTC, or aware) in µs since the epoch; None means the current time."""
    if moment is None:
        return time.time_ns() // 1000
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return (moment - _EPOCH) // _ONE_US


def key_prefix(namespace: str, tenant: str, entity_type: EntityType | str, feature_set: str) -> str:
    """``<namespace>:v1:<tenant>:<entity type>:<feature set>:``; the entity id follows."""
    kind = check_entity_type(entity_type).value
    return f"{namespace}:{KEY_VERSION}:{check_name(tenant, 'tenant')}:{kind}:{feature_set}:"


# --------------------------------------------------------------------------- codec


def encode_day(day: FeatureDay, feature_set: OnlineFeatureSet) -> list[bytes]:
    """One binary record per row of ``day``, in row order."""
    rows = day.frame.num_rows
    records = np.empty((rows, _HEADER_SLOTS + len(feature_set.feature_names)), dtype=_VALUE)
    header = np.frombuffer(HEADER.pack(day.as_of_us, feature_set.schema_hash), dtype=_VALUE)
    records[:, :_HEADER_SLOTS] = header
    for index, name in enumerate(feature_set.feature_names, start=_HEADER_SLOTS):
        # Arrow turns null into NaN when it converts a float column.
        records[:, index] = day.frame.column(name).to_numpy(zero_copy_only=False)
    blob = records.tobytes()
    size = feature_set.record_size
    return [blob[offset : offset + size] for offset in range(0, len(blob), size)]


def decode_records(
    records: Sequence[bytes | None],
    entity_count: int,
    feature_sets: Sequence[OnlineFeatureSet],
    now_us: int,
    warned: set[tuple[str, int]],
) -> OnlineMatrix:
    """Decode ``records`` laid out entity-major (entity 0's sets, then entity 1's, ...).

    ``warned`` remembers the (set, stored hash) pairs already logged as a changed definition.
    """
    whole = _whole_rows(records, entity_count, feature_sets, now_us)
    if whole is not None:
        return whole
    return _per_set(records, entity_count, feature_sets, now_us, warned)


@dataclass(frozen=True, slots=True)
class _RowLayout:
    """Where each set's header and values sit in one entity's joined records."""

    # Holding the sets keeps their ids, the cache key, from being reused by other objects.
    feature_sets: tuple[OnlineFeatureSet, ...]
    sizes: list[int]
    row_slots: int
    as_of_slots: npt.NDArray[np.intp]
    hash_slots: npt.NDArray[np.intp]
    value_slots: npt.NDArray[np.intp]
    ttls_us: npt.NDArray[np.int64]
    hash_bytes: bytes  # one entity's expected hashes, as stored

    @classmethod
    def of(cls, feature_sets: tuple[OnlineFeatureSet, ...]) -> _RowLayout:
        as_of_slots: list[int] = []
        value_slots: list[int] = []
        slot = 0
        for feature_set in feature_sets:
            as_of_slots.append(slot)
            first = slot + _HEADER_SLOTS
            slot = first + len(feature_set.feature_names)
            value_slots.extend(range(first, slot))
        as_of = np.array(as_of_slots, dtype=np.intp)
        return cls(
            feature_sets,
            [fs.record_size for fs in feature_sets],
            slot,
            as_of,
            as_of + 1,
            np.array(value_slots, dtype=np.intp),
            np.array([fs.ttl_us for fs in feature_sets], dtype=np.int64),
            np.array([fs.schema_hash for fs in feature_sets], dtype="<u8").tobytes(),
        )


# Keyed by the sets' ids: hashing the frozen dataclasses (names, bytes and all) on every read
# would cost more than the layout saves. Serving reuses a handful of set lists, so this stays
# small; the bound only guards against callers that build new sets per read.
_LAYOUTS: dict[tuple[int, ...], _RowLayout] = {}
_MAX_LAYOUTS = 256


def _row_layout(feature_sets: Sequence[OnlineFeatureSet]) -> _RowLayout:
    key = tuple(map(id, feature_sets))
    layout = _LAYOUTS.get(key)
    if layout is None:
        if len(_LAYOUTS) >= _MAX_LAYOUTS:
            _LAYOUTS.clear()
        layout = _LAYOUTS[key] = _RowLayout.of(tuple(feature_sets))
    return layout


def _whole_rows(
    records: Sequence[bytes | None],
    entity_count: int,
    feature_sets: Sequence[OnlineFeatureSet],
    now_us: int,
) -> OnlineMatrix | None:
    """The common case in one pass: every record present, of its set's size, fresh and of
    its set's hash. None when any is not; :func:`_per_set` then decides what is missing."""
    layout = _row_layout(feature_sets)
    present = cast("Sequence[bytes]", records)  # until len() meets a None
    try:
        lengths = list(map(len, present))
    except TypeError:  # a None: absent
        return None
    # Per record, not just in total: a short record and a long one would otherwise shift
    # every later header and could pass for valid.
    if lengths != layout.sizes * entity_count:
        return None
    block = np.frombuffer(b"".join(present), _VALUE).reshape(entity_count, layout.row_slots)
    # The same int64 arithmetic as _per_set, so even a wrapped as_of decides alike.
    ages = now_us - block.take(layout.as_of_slots, axis=1).view(np.int64)
    fresh = ages <= layout.ttls_us
    # count_nonzero and a bytes compare: a few hundred ns each where .all() costs over a µs,
    # which would be a good part of this few-µs decode. Equal bytes are equal uint64 hashes.
    if np.count_nonzero(fresh) != fresh.size:
        return None
    if block.take(layout.hash_slots, axis=1).tobytes() != layout.hash_bytes * entity_count:
        return None
    found = np.empty((entity_count, len(feature_sets)), dtype=np.bool_)
    found.fill(True)  # np.ones is Python-level and costs about twice as much
    return OnlineMatrix(block.take(layout.value_slots, axis=1), found)


def _per_set(
    records: Sequence[bytes | None],
    entity_count: int,
    feature_sets: Sequence[OnlineFeatureSet],
    now_us: int,
    warned: set[tuple[str, int]],
) -> OnlineMatrix:
    """The general decode, one set at a time: absent, malformed, expired and other-definition
    records read as NaN and not found, and a changed definition is logged once."""
    set_count = len(feature_sets)
    width = sum(len(fs.feature_names) for fs in feature_sets)
    values = np.full((entity_count, width), np.nan)
    found = np.zeros((entity_count, set_count), dtype=np.bool_)
    start = 0
    for index, feature_set in enumerate(feature_sets):
        stop = start + len(feature_set.feature_names)
        size, missing = feature_set.record_size, feature_set.missing_record
        column = records[index::set_count]
        joined = b"".join([missing if r is None or len(r) != size else r for r in column])
        block = np.frombuffer(joined, _VALUE).reshape(entity_count, size // _VALUE.itemsize)
        hashes = block[:, 1].view(np.uint64)
        fresh = (now_us - block[:, 0].view(np.int64)) <= feature_set.ttl_us
        valid = fresh & (hashes == feature_set.schema_hash)
        if not valid.all():
            _check_definitions(column, feature_set, hashes, warned)
        values[valid, start:stop] = block[valid, _HEADER_SLOTS:]
        found[:, index] = valid
        start = stop
    return OnlineMatrix(values, found)


def _check_definitions(
    column: Sequence[bytes | None],
    feature_set: OnlineFeatureSet,
    hashes: npt.NDArray[np.uint64],
    warned: set[tuple[str, int]],
) -> None:
    # Only reached when something is missing; most often it is just absent or expired.
    stale = {int(h) for h in hashes[hashes != feature_set.schema_hash]}
    size = feature_set.record_size
    stale.update(
        HEADER.unpack_from(r)[1]
        for r in column
        if r is not None and len(r) != size and len(r) >= HEADER.size
    )
    for stored_hash in stale - {feature_set.schema_hash}:
        # Once per store and (set, stored hash): it would otherwise log on every request.
        if (feature_set.name, stored_hash) in warned:
            continue
        warned.add((feature_set.name, stored_hash))
        log.warning(
            "online vectors of feature set %r were written under another definition "
            "(hash %016x, expected %016x); they read as missing until recomputed",
            feature_set.name,
            stored_hash,
            feature_set.schema_hash,
        )


# --------------------------------------------------------------------------- shared read path


class RecordStore(ABC):
    """The read path both backends share; a backend supplies :meth:`_fetch` and writes."""

    def __init__(self, namespace: str) -> None:
        """Keys start with ``namespace``."""
        self._namespace = check_name(namespace, "namespace")
        self._prefixes: dict[tuple[str, str, str], bytes] = {}
        self._warned: set[tuple[str, int]] = set()

    @abstractmethod
    def _fetch(self, keys: list[bytes]) -> Sequence[bytes | None]:
        """The records stored under ``keys`` (None where absent), in order: one round trip."""

    def get_matrix(
        self,
        tenant: str,
        entity_type: EntityType | str,
        entity_ids: Sequence[str],
        feature_sets: Sequence[OnlineFeatureSet],
        now: datetime | None = None,
    ) -> OnlineMatrix:
        """See :meth:`roiml.store.online.OnlineStore.get_matrix`."""
        records = self._records(tenant, entity_type, entity_ids, feature_sets)
        return decode_records(
            records, len(entity_ids), feature_sets, to_epoch_us(now), self._warned
        )

    def get_stamped(
        self,
        tenant: str,
        entity_type: EntityType | str,
        entity_ids: Sequence[str],
        feature_sets: Sequence[OnlineFeatureSet],
        now: datetime | None = None,
    ) -> StampedMatrix:
        """See :meth:`roiml.store.online.OnlineStore.get_stamped`."""
        records = self._records(tenant, entity_type, entity_ids, feature_sets)
        values, found = decode_records(
            records, len(entity_ids), feature_sets, to_epoch_us(now), self._warned
        )
        # The header's first slot of each record, read where the record decoded as found (so
        # it is whole); the stand-in elsewhere is never read.
        heads = b"".join(
            r[:8] if hit and r is not None else bytes(8)
            for r, hit in zip(records, found.ravel().tolist(), strict=True)
        )
        as_of = np.frombuffer(heads, "<i8").reshape(found.shape).astype(np.int64)
        return StampedMatrix(values, found, as_of)

    def get_vectors(
        self,
        tenant: str,
        entity_type: EntityType | str,
        entity_ids: Sequence[str],
        feature_sets: Sequence[OnlineFeatureSet],
        now: datetime | None = None,
    ) -> VectorRows:
        """See :meth:`roiml.store.online.OnlineStore.get_vectors`."""
        values, found = self.get_matrix(tenant, entity_type, entity_ids, feature_sets, now)
        spans = set_spans(feature_sets)
        found_rows = found.tolist()
        return [
            [row[a:b] if hit else None for (a, b), hit in zip(spans, hits, strict=True)]
            for row, hits in zip(values, found_rows, strict=True)
        ]

    def _records(
        self,
        tenant: str,
        entity_type: EntityType | str,
        entity_ids: Sequence[str],
        feature_sets: Sequence[OnlineFeatureSet],
    ) -> Sequence[bytes | None]:
        """Every (entity, set) record, entity-major, in one round trip."""
        prefixes = [self._prefix(tenant, entity_type, fs.name) for fs in feature_sets]
        keys = [prefix + entity for entity in _encoded(entity_ids) for prefix in prefixes]
        return self._fetch(keys) if keys else []

    def _prefix(self, tenant: str, entity_type: EntityType | str, feature_set: str) -> bytes:
        cache_key = (tenant, entity_type, feature_set)
        prefix = self._prefixes.get(cache_key)
        if prefix is None:
            prefix = key_prefix(self._namespace, tenant, entity_type, feature_set).encode()
            self._prefixes[cache_key] = prefix
        return prefix

    def _tenant_prefix(self, tenant: str) -> str:
        return f"{self._namespace}:{KEY_VERSION}:{check_name(tenant, 'tenant')}:"


def _encoded(entity_ids: Sequence[str]) -> list[bytes]:
    return [entity_id.encode() for entity_id in entity_ids]
