"""How roiml writes JSON: timestamps as RFC 3339 in UTC, NaN as null, NumPy values as numbers.

The schema's timestamps are naive UTC (``roiml.db.base.utcnow``); in JSON they say so with an
explicit ``+00:00``, since OpenAPI's ``date-time`` (RFC 3339) requires an offset. Pydantic
models declare such fields as :data:`UtcDatetime`; hot paths that skip pydantic write through
:func:`dumps`, which gives the same bytes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final

import orjson
from pydantic import PlainSerializer, WithJsonSchema

__all__ = ["JSON_OPTIONS", "UtcDatetime", "dumps", "dumps_text", "rfc3339"]

# Naive datetimes are UTC here; non-string keys and NumPy scalars or arrays occur in feature
# dictionaries and would otherwise raise.
JSON_OPTIONS: Final = orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def rfc3339(moment: datetime) -> str:
    """``moment`` (naive means UTC) in RFC 3339 with its offset, as ISO 8601 writes it."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


UtcDatetime = Annotated[
    datetime,
    PlainSerializer(rfc3339, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def dumps(value: Any) -> bytes:
    """``value`` as compact JSON bytes; NaN and infinities become null (JSON has neither)."""
    return orjson.dumps(value, option=JSON_OPTIONS)


def dumps_text(value: Any) -> str:
    """:func:`dumps` as text, for APIs that take a ``str`` (SQLAlchemy's JSON serializer)."""
    return dumps(value).decode()
