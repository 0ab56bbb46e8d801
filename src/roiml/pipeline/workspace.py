"""Where a day's steps leave their files: ``<data_dir>/pipeline/tenant=<t>/date=<d>/``."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["Workspace", "replace_folder", "write_parquet_atomically"]


@dataclass(frozen=True)
class Workspace:
    """The hand-over folder of one tenant's day."""

    root: Path

    @classmethod
    def of(cls, data_dir: Path, tenant_id: str, day: date) -> Workspace:
        return cls(data_dir / "pipeline" / f"tenant={tenant_id}" / f"date={day.isoformat()}")

    @property
    def extract(self) -> Path:
        """One Parquet file per source table."""
        return self.root / "extract"

    def computed(self, feature_set: str) -> Path:
        """One Parquet file per shard of a feature set."""
        return self.root / "compute" / feature_set

    @property
    def validation(self) -> Path:
        """The validation report; present and passed means the day may be stored."""
        return self.root / "validation.json"


def write_parquet_atomically(table: pa.Table, target: Path) -> None:
    """Write ``target`` so that readers see the old file or the new one, never half of one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, temporary, compression="zstd")
        temporary.replace(target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def replace_folder(staged: Path, target: Path) -> None:
    """Swap ``staged`` in for ``target`` (the old one is removed after the rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
    if target.exists():
        target.replace(old)
    staged.replace(target)
    shutil.rmtree(old, ignore_errors=True)
