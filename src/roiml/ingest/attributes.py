"""The ``attributes`` JSON of each row: the values of the tenant's declared columns.

One JSON object per row, keyed by column name, built for the whole file at once with Arrow
string kernels: each column becomes a ``"name":value,`` fragment (empty where the cell is empty),
and the fragments are concatenated, so an empty cell is left out of the object rather
than stored as null, and a row without any declared value gets no object at all (NULL).

Values keep their JSON type: integers and floats are numbers, booleans ``true``/``false``,
strings are strings; dates are ``"YYYY-MM-DD"`` and datetimes ``"YYYY-MM-DDTHH:MM:SS.ffffff"``
(naive UTC) strings, since JSON has no time type.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from roiml.ingest.contract import ColumnContract, Kind

__all__ = ["CONTROL_CHARACTER", "attributes_json"]

# JSON escapes the control characters; the common ones are escaped here, the rest refused at
# validation (no sane categorical value holds them).
CONTROL_CHARACTER = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"
_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))


def _json_text(values: pa.Array, spec: ColumnContract) -> pa.Array:
    """Each value as JSON text, null where the value is null."""
    if spec.kind in (Kind.STRING, Kind.ENUM):
        text = pc.cast(values, pa.string())
        for plain, escaped in _ESCAPES:
            text = pc.replace_substring(text, plain, escaped)
        return pc.binary_join_element_wise('"', text, '"', "")
    if spec.kind is Kind.BOOLEAN:
        return pc.if_else(values, "true", "false")
    if spec.kind is Kind.DATE:
        text = pc.strftime(pc.cast(values, pa.timestamp("s")), format="%Y-%m-%d")
        return pc.binary_join_element_wise('"', text, '"', "")
    if spec.kind is Kind.DATETIME:
        # %S carries the six-digit fraction for microsecond timestamps.
        text = pc.strftime(values, format="%Y-%m-%dT%H:%M:%S")
        return pc.binary_join_element_wise('"', text, '"', "")
    if spec.kind is Kind.FLOAT:
        text = pc.cast(values, pa.string())
        # Arrow writes 3.0 as "3"; keep the decimal point so a float stays a float when read.
        whole = pc.invert(pc.fill_null(pc.match_substring_regex(text, r"[.eE]|inf|nan"), True))
        return pc.if_else(whole, pc.binary_join_element_wise(text, ".0", ""), text)
    return pc.cast(values, pa.string())


def attributes_json(columns: dict[str, tuple[ColumnContract, pa.Array]], n: int) -> pa.Array:
    """The ``attributes`` column for ``n`` rows from the declared ``columns`` (name: spec, values).

    Null for rows where every declared value is null.
    """
    # Each present value as '"name":value,', empty where absent; joined, the last comma dropped.
    # (Arrow's own null_handling="skip" join loses rows whose inputs are all null.)
    fragments = [
        pc.fill_null(
            pc.binary_join_element_wise(f'"{name}":', _json_text(values, spec), ",", ""), ""
        )
        for name, (spec, values) in columns.items()
    ]
    if not fragments:
        return pa.nulls(n, pa.string())
    body = pc.utf8_rtrim(pc.binary_join_element_wise(*fragments, ""), ",")
    joined = pc.binary_join_element_wise("{", body, "}", "")
    return pc.if_else(pc.equal(pc.utf8_length(body), 0), pa.scalar(None, pa.string()), joined)
