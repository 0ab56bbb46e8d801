"""What a simulated world is asked to be: size, span, seed, tenant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from roiml.errors import WorldError

__all__ = ["BLOCK_USERS", "WorldConfig"]

# Users are generated in blocks of this size, each with its own seed, so the world depends only
# on (seed, users, dates) and never on how many blocks are written per transaction.
BLOCK_USERS = 1000


@dataclass(frozen=True)
class WorldConfig:
    """Parameters of one generated world."""

    users: int
    start: date
    end: date
    seed: int = 42
    tenant_id: str = "demo"
    markets: int = 12

    def __post_init__(self) -> None:
        if self.users < 1:
            raise WorldError(f"--users must be at least 1, got {self.users}")
        if self.users > 50_000_000:
            raise WorldError(f"--users {self.users} is beyond what one tenant is sized for (50M)")
        if self.end <= self.start:
            raise WorldError(f"--end {self.end} must be after --start {self.start}")
        if (self.end - self.start).days < 28:
            raise WorldError("the world must span at least 28 days (--start to --end)")
        if (self.end - self.start).days > 3660:
            raise WorldError("the world may span at most 10 years")
        if not 1 <= self.markets <= 500:
            raise WorldError("markets must be between 1 and 500")
        if self.seed < 0:
            raise WorldError("--seed must be a non-negative integer")

    @property
    def days(self) -> int:
        """Number of simulated days, ``start`` inclusive, ``end`` exclusive."""
        return (self.end - self.start).days

    @property
    def blocks(self) -> int:
        """Number of user blocks."""
        return -(-self.users // BLOCK_USERS)
