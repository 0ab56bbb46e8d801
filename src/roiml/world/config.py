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
    # A shift injected from ``shift_from`` on (to test drift monitoring): mortgage rates jump by
    # ``rate_shock`` percentage points, and the log-odds of opening an email change by
    # ``email_open_shift``. Zero shifts leave the world bit-for-bit as without them.
    shift_from: date | None = None
    rate_shock: float = 0.0
    email_open_shift: float = 0.0

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
        shifted = self.rate_shock != 0.0 or self.email_open_shift != 0.0
        if shifted and self.shift_from is None:
            raise WorldError("--rate-shock and --email-open-shift need --shift-from (a date)")
        if self.shift_from is not None and not self.start <= self.shift_from < self.end:
            raise WorldError(
                f"--shift-from {self.shift_from} must fall in the world, {self.start} to {self.end}"
            )
        if not -5.0 <= self.rate_shock <= 10.0:
            raise WorldError("--rate-shock must be between -5 and 10 percentage points")
        if not -6.0 <= self.email_open_shift <= 6.0:
            raise WorldError("--email-open-shift must be between -6 and 6 (log-odds)")

    @property
    def days(self) -> int:
        """Number of simulated days, ``start`` inclusive, ``end`` exclusive."""
        return (self.end - self.start).days

    @property
    def shift_day(self) -> int | None:
        """Offset of ``shift_from`` from ``start`` (None without a shift)."""
        return None if self.shift_from is None else (self.shift_from - self.start).days

    @property
    def blocks(self) -> int:
        """Number of user blocks."""
        return -(-self.users // BLOCK_USERS)
