"""The limits a column's converted values must keep: ranges, and a declared column's values.

Built-in columns take their ranges from ``Column.info`` (see :mod:`roiml.db.source_models`),
declared columns from the tenant's contract; both arrive here as a :class:`ColumnContract`.
Each rule is one vectorised comparison yielding a mask of offending cells.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from roiml.ingest.contract import ColumnContract, Kind
from roiml.ingest.parse import Check

__all__ = ["describe_limits", "limit_checks"]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def describe_limits(spec: ColumnContract) -> str:
    """The limits of ``spec`` in words, e.g. ``0 to 50`` or ``> 0``; empty when there are none."""
    parts: list[str] = []
    if spec.greater_than is not None:
        parts.append(f"> {_number(spec.greater_than)}")
    if spec.minimum is not None and spec.maximum is not None:
        parts.append(f"{_number(spec.minimum)} to {_number(spec.maximum)}")
    elif spec.minimum is not None:
        parts.append(f">= {_number(spec.minimum)}")
    elif spec.maximum is not None:
        parts.append(f"<= {_number(spec.maximum)}")
    return ", ".join(parts)


def limit_checks(values: pa.Array, spec: ColumnContract) -> list[Check]:
    """Cells of ``values`` (converted, null where empty or unreadable) outside ``spec``'s limits."""
    checks: list[Check] = []
    if spec.kind in (Kind.INTEGER, Kind.FLOAT):
        wide = pc.cast(values, pa.float64())
        if spec.minimum is not None:
            reason = f"is below the minimum {_number(spec.minimum)}"
            checks.append(_outside(pc.less(wide, spec.minimum), reason))
        if spec.maximum is not None:
            reason = f"is above the maximum {_number(spec.maximum)}"
            checks.append(_outside(pc.greater(wide, spec.maximum), reason))
        if spec.greater_than is not None:
            reason = f"must be greater than {_number(spec.greater_than)}"
            checks.append(_outside(pc.less_equal(wide, spec.greater_than), reason))
    if spec.kind is Kind.INTEGER and spec.enum_values:
        allowed = pa.array(spec.enum_values, pa.string())
        text = pc.cast(values, pa.string())
        unknown = pc.and_(pc.is_valid(values), pc.invert(pc.is_in(text, value_set=allowed)))
        checks.append(_outside(unknown, f"is not one of {', '.join(spec.enum_values)}"))
    return checks


def _outside(mask: pa.Array, reason: str) -> Check:
    return Check(pc.fill_null(mask, False), reason)
