"""Shards: entities split by a stable hash, so N workers together compute exactly one run."""

from __future__ import annotations

import re
from dataclasses import dataclass

from roiml.errors import PipelineError

__all__ = ["ALL", "Shard", "parse_shard"]

_SPEC = re.compile(r"^(\d+)/(\d+)$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based). ``md5(entity_id) mod count`` picks the entities:
    stable across processes, machines and DuckDB versions, unlike a process-seeded hash."""

    index: int
    count: int

    @property
    def label(self) -> str:
        """``i-of-N``, for file names."""
        return f"{self.index}-of-{self.count}"

    def predicate(self, column: str) -> str:
        """DuckDB condition selecting this shard's rows of ``column``."""
        return f"md5_number({column}) % {self.count} = {self.index}"


ALL = Shard(0, 1)


def parse_shard(spec: str | None) -> Shard:
    """``"i/N"`` (0 <= i < N) as a :class:`Shard`; None means everything."""
    if spec is None:
        return ALL
    match = _SPEC.match(spec.strip())
    if not match:
        raise PipelineError(f"shard {spec!r} is not of the form i/N, e.g. 0/4")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise PipelineError(
            f"shard {spec!r}: the index must be in 0..{max(count - 1, 0)} of {count}"
        )
    return Shard(index, count)
