"""Vectorised conversion of one file column to its table column's Arrow type.

Every converter works on whole arrays with ``pyarrow.compute``: it returns the converted values
(null where a cell is empty or bad) together with boolean masks that mark the bad cells, so the
validator can name the first offending row and count the rest without a per-row Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from roiml.ingest.contract import ColumnContract, Kind, Precision

__all__ = ["Check", "Parsed", "parse_column"]

_INTEGER = r"^[+-]?\d+$"
_FLOAT = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
_DATE = r"^\d{4}-\d{2}-\d{2}$"
_MONTH = r"^\d{4}-\d{2}$"
_DATETIME = (
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[Tt ](?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?)?"
    r"(?P<offset>[Zz]|[+-]\d{2}(?::?\d{2})?)?$"
)
_TRUE = pa.array(["true", "1", "yes"])
_BOOLEAN = pa.array(["true", "false", "1", "0", "yes", "no"])
# int64 holds every 18-digit number; longer ones are out of range for any column we have.
_MAX_INTEGER_DIGITS = 18
_MICROS = 1_000_000
_DAY_SECONDS = 86_400
_DAY_MICROS = _DAY_SECONDS * _MICROS

DATETIME_EXPECTED = (
    "is not an ISO-8601 timestamp (e.g. 2024-03-01T12:30:00, 2024-03-01 12:30:00.5 "
    "or 2024-03-01T12:30:00+02:00)"
)


@dataclass(frozen=True)
class Check:
    """Cells that fail one rule: ``mask`` is true (never null) where the value is bad."""

    mask: pa.Array
    reason: str


@dataclass(frozen=True)
class Parsed:
    """A converted column: values, which cells were empty, and which broke which rule."""

    values: pa.Array
    missing: pa.Array
    checks: list[Check] = field(default_factory=list)


def parse_column(column: pa.ChunkedArray | pa.Array, spec: ColumnContract) -> Parsed:
    """Convert ``column`` (strings from a CSV, or any Parquet type) to ``spec.arrow_type``."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if spec.kind is Kind.DATETIME and spec.precision is not Precision.SECOND:
        return _parse_coarse(array, spec.precision)
    if not _is_text(array.type):
        native = _parse_native(array, spec)
        if native is not None:
            return native
        try:
            array = pc.cast(array, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            missing = pc.is_null(array)
            bad = pc.invert(missing)
            return Parsed(
                pa.nulls(len(array), spec.arrow_type),
                missing,
                [Check(bad, f"has Parquet type {array.type}, which cannot be read as {spec.kind}")],
            )
    return _parse_text(pc.cast(array, pa.string()), spec)


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind)) or (
        str(kind) == "string_view"
    )


def _parse_native(array: pa.Array, spec: ColumnContract) -> Parsed | None:
    """Typed Parquet columns of a compatible type, cast directly; None to fall back to text."""
    kind = array.type
    compatible = {
        Kind.INTEGER: pa.types.is_integer(kind) or pa.types.is_floating(kind),
        Kind.FLOAT: pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_decimal(kind),
        Kind.BOOLEAN: pa.types.is_boolean(kind),
        Kind.DATETIME: pa.types.is_timestamp(kind) or pa.types.is_date(kind),
        Kind.DATE: pa.types.is_date(kind),
    }
    missing = pc.is_null(array)
    if spec.kind is Kind.DATE and pa.types.is_timestamp(kind):
        # Writers often store dates as midnight timestamps; any other time of day is an error.
        naive = pc.cast(array, pa.timestamp("us"))
        days = pc.cast(naive, pa.date32(), safe=False)
        bad = pc.fill_null(pc.not_equal(pc.cast(days, pa.timestamp("us")), naive), False)
        return Parsed(days, missing, [Check(bad, "has a time of day; expected a date")])
    if not compatible.get(spec.kind, False):
        return None
    try:
        # Timezone-aware timestamps hold UTC instants, so dropping the zone yields naive UTC.
        values = pc.cast(array, spec.arrow_type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return Parsed(values, missing)


def _parse_text(text: pa.Array, spec: ColumnContract) -> Parsed:
    if spec.kind in (Kind.STRING, Kind.ENUM):
        missing = pc.fill_null(pc.equal(pc.utf8_length(text), 0), True)
        present = pc.invert(missing)
        values = _keep(present, text)
        if spec.kind is Kind.ENUM:
            ok = pc.is_in(values, value_set=pa.array(spec.enum_values, pa.string()))
            reason = f"is not one of {', '.join(spec.enum_values)}"
            return Parsed(values, missing, [Check(_bad(present, ok), reason)])
        checks = []
        if spec.max_length is not None:
            fits = pc.less_equal(pc.utf8_length(values), spec.max_length)
            checks.append(
                Check(_bad(present, fits), f"is longer than {spec.max_length} characters")
            )
        return Parsed(values, missing, checks)
    trimmed = pc.utf8_trim_whitespace(text)
    missing = pc.fill_null(pc.equal(pc.utf8_length(trimmed), 0), True)
    present = pc.invert(missing)
    candidate = _keep(present, trimmed)
    parsers = {
        Kind.INTEGER: _parse_integer,
        Kind.FLOAT: _parse_float,
        Kind.BOOLEAN: _parse_boolean,
        Kind.DATETIME: _parse_datetime,
        Kind.DATE: _parse_date,
    }
    values, checks = parsers[spec.kind](candidate, present, spec)
    return Parsed(values, missing, checks)


def _keep(mask: pa.Array, values: pa.Array) -> pa.Array:
    """``values`` where ``mask``, null elsewhere."""
    return pc.if_else(mask, values, pa.scalar(None, values.type))


def _bad(present: pa.Array, ok: pa.Array) -> pa.Array:
    """Present cells that are not ok; never null."""
    return pc.and_(present, pc.invert(pc.fill_null(ok, False)))


def _parse_integer(
    candidate: pa.Array, present: pa.Array, spec: ColumnContract
) -> tuple[pa.Array, list[Check]]:
    syntax = pc.fill_null(pc.match_substring_regex(candidate, _INTEGER), False)
    # Arrow's integer parser rejects a leading '+'.
    unsigned = pc.utf8_ltrim(candidate, "+")
    digits = pc.utf8_ltrim(pc.utf8_ltrim(unsigned, "-"), "0")
    fits64 = pc.fill_null(pc.less_equal(pc.utf8_length(digits), _MAX_INTEGER_DIGITS), False)
    wide = pc.cast(_keep(pc.and_(syntax, fits64), unsigned), pa.int64())
    bits = spec.arrow_type.bit_width
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    in_range = pc.and_(pc.greater_equal(wide, lo), pc.less_equal(wide, hi))
    values = pc.cast(_keep(pc.fill_null(in_range, False), wide), spec.arrow_type)
    checks = [
        Check(_bad(present, syntax), "is not an integer"),
        Check(
            pc.and_(syntax, pc.invert(pc.fill_null(in_range, False))),
            f"is out of range for this column ({lo} to {hi})",
        ),
    ]
    return values, checks


def _parse_float(
    candidate: pa.Array, present: pa.Array, spec: ColumnContract
) -> tuple[pa.Array, list[Check]]:
    syntax = pc.fill_null(pc.match_substring_regex(candidate, _FLOAT), False)
    wide = pc.cast(_keep(syntax, candidate), pa.float64())
    # '1e999' parses to infinity, which no column means.
    ok = pc.fill_null(pc.is_finite(wide), False)
    return _keep(ok, wide), [Check(_bad(present, ok), "is not a number")]


def _parse_boolean(
    candidate: pa.Array, present: pa.Array, spec: ColumnContract
) -> tuple[pa.Array, list[Check]]:
    lower = pc.utf8_lower(candidate)
    ok = pc.is_in(lower, value_set=_BOOLEAN)
    values = _keep(ok, pc.is_in(lower, value_set=_TRUE))
    return values, [Check(_bad(present, ok), "is not a boolean (true/false, 1/0 or yes/no)")]


def _seconds(text: pa.Array, layout: str) -> tuple[pa.Array, pa.Array]:
    """Whole-second timestamps of ``text`` and whether each is a real calendar date and time.

    ``strptime`` rolls 2024-02-30 over to March 1st, so formatting back and comparing is what
    catches impossible dates.
    """
    parsed = pc.strptime(text, format=layout, unit="s", error_is_null=True)
    real = pc.fill_null(pc.equal(pc.strftime(parsed, format=layout), text), False)
    return parsed, real


def _parse_date(
    candidate: pa.Array, present: pa.Array, spec: ColumnContract
) -> tuple[pa.Array, list[Check]]:
    syntax = pc.fill_null(pc.match_substring_regex(candidate, _DATE), False)
    parsed, real = _seconds(_keep(syntax, candidate), "%Y-%m-%d")
    ok = pc.and_(syntax, real)
    values = pc.cast(_keep(ok, parsed), pa.date32())
    return values, [Check(_bad(present, ok), "is not a valid date (YYYY-MM-DD)")]


def _parse_datetime(
    candidate: pa.Array, present: pa.Array, spec: ColumnContract
) -> tuple[pa.Array, list[Check]]:
    parts = pc.extract_regex(candidate, _DATETIME)
    syntax = pc.is_valid(parts)

    def part(name: str, default: str) -> pa.Array:
        value = pc.struct_field(parts, name)
        return pc.if_else(pc.equal(value, ""), default, value)

    text = pc.binary_join_element_wise(
        part("date", ""),
        "T",
        part("hour", "00"),
        ":",
        part("minute", "00"),
        ":",
        part("second", "00"),
        "",
    )
    parsed, real = _seconds(_keep(syntax, text), "%Y-%m-%dT%H:%M:%S")
    # Fractions beyond microseconds are truncated: the columns hold microseconds.
    fraction = pc.cast(
        pc.utf8_slice_codeunits(pc.utf8_rpad(part("fraction", ""), 6, "0"), 0, 6), pa.int64()
    )
    offset = pc.utf8_rpad(pc.replace_substring(part("offset", "+00:00"), ":", ""), 5, "0")
    offset = pc.if_else(pc.is_in(offset, value_set=pa.array(["Z0000", "z0000"])), "+0000", offset)
    hours = pc.cast(pc.utf8_slice_codeunits(offset, 1, 3), pa.int64())
    minutes = pc.cast(pc.utf8_slice_codeunits(offset, 3, 5), pa.int64())
    sign = pc.if_else(pc.starts_with(offset, "-"), -1, 1)
    offset_ok = pc.and_(pc.less_equal(hours, 23), pc.less_equal(minutes, 59))
    offset_micros = pc.multiply(
        pc.multiply(sign, pc.add(pc.multiply(hours, 3600), pc.multiply(minutes, 60))), _MICROS
    )
    local_micros = pc.add(pc.multiply(pc.cast(parsed, pa.int64()), _MICROS), fraction)
    # Local time minus its UTC offset is UTC.
    utc = pc.cast(pc.subtract(local_micros, offset_micros), pa.timestamp("us"))
    ok = pc.and_(pc.and_(syntax, real), pc.fill_null(offset_ok, False))
    return _keep(ok, utc), [Check(_bad(present, ok), DATETIME_EXPECTED)]


def _parse_coarse(array: pa.Array, precision: Precision) -> Parsed:
    """A datetime known only to the day or the month, stored as the period's last microsecond.

    The event happened at some unknown moment of the period; its last microsecond is the first
    moment it is certainly over, so a feature computed at any earlier time cannot count it.
    """
    if precision is Precision.DAY and (
        pa.types.is_date(array.type) or pa.types.is_timestamp(array.type)
    ):
        missing = pc.is_null(array)
        naive = pc.cast(array, pa.timestamp("us"))
        days = pc.cast(naive, pa.date32(), safe=False)
        bad = pc.fill_null(pc.not_equal(pc.cast(days, pa.timestamp("us")), naive), False)
        reason = "has a time of day, but this column is known to the day (precision day)"
        return Parsed(_last_micro(days, 1), missing, [Check(bad, reason)])
    if not _is_text(array.type):
        try:
            array = pc.cast(array, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            # Unreadable as text: every present cell fails the syntax check below.
            array = _keep(pc.is_valid(array), pa.repeat(pa.scalar("?"), len(array)))
    trimmed = pc.utf8_trim_whitespace(pc.cast(array, pa.string()))
    missing = pc.fill_null(pc.equal(pc.utf8_length(trimmed), 0), True)
    present = pc.invert(missing)
    candidate = _keep(present, trimmed)
    if precision is Precision.DAY:
        syntax = pc.fill_null(pc.match_substring_regex(candidate, _DATE), False)
        parsed, real = _seconds(_keep(syntax, candidate), "%Y-%m-%d")
        ok = pc.and_(syntax, real)
        values = _last_micro(pc.cast(_keep(ok, parsed), pa.date32()), 1)
        reason = "is not a date (YYYY-MM-DD); this column is known to the day (precision day)"
        return Parsed(values, missing, [Check(_bad(present, ok), reason)])
    syntax = pc.fill_null(pc.match_substring_regex(candidate, _MONTH), False)
    first_text = pc.binary_join_element_wise(_keep(syntax, candidate), "01", "-")
    first, real = _seconds(first_text, "%Y-%m-%d")
    ok = pc.and_(syntax, real)
    # Day 1 plus 32 days is always in the next month; its first day ends this one.
    later = pc.cast(
        pc.add(pc.cast(_keep(ok, first), pa.int64()), 32 * _DAY_SECONDS), pa.timestamp("s")
    )
    next_first = pc.strptime(
        pc.binary_join_element_wise(pc.strftime(later, format="%Y-%m"), "01", "-"),
        format="%Y-%m-%d",
        unit="s",
    )
    days = pc.cast(pc.divide(pc.cast(next_first, pa.int64()), _DAY_SECONDS), pa.int32())
    values = _last_micro(pc.cast(days, pa.date32()), 0)
    reason = "is not a month (YYYY-MM); this column is known to the month (precision month)"
    return Parsed(values, missing, [Check(_bad(present, ok), reason)])


def _last_micro(days: pa.Array, after: int) -> pa.Array:
    """The microsecond before midnight starting day ``days + after`` (date32), as timestamps."""
    micros = pc.multiply(pc.add(pc.cast(pc.cast(days, pa.int32()), pa.int64()), after), _DAY_MICROS)
    return pc.cast(pc.subtract(micros, 1), pa.timestamp("us"))
