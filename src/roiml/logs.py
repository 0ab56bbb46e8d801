"""How roiml's processes log: plain text for a person at a terminal, or one JSON object per line
for a log shipper (``ROIML_LOG_FORMAT``), each record carrying the id of the request it was
emitted for.

The standard library's logging (a ``logging.Formatter`` subclass, a ``logging.Filter`` and a
context variable) and orjson, which the API already writes its responses with (a line costs
~0.5 µs to serialise instead of ~6 with ``json``): no logging library. The module sits beside
the settings so the API's workers, its supervisor and any job can share it.

* **JSON**: one object per line with stable keys, ``ts`` (ISO-8601, UTC, milliseconds),
  ``level``, ``logger``, ``message``, ``request_id`` (null outside a request), then whatever the
  record was given as ``extra`` (the access log's ``method``, ``route``, ``status``,
  ``duration_ms``, ``tenant``, ``client``), and ``exception`` (the traceback) when one was
  logged: only server errors are logged with a traceback, never a client's mistake.
* **Text**: ``2026-12-07T15:52:56.123Z INFO roiml.access [req 4bf9...]: GET /health 200 1.2 ms``.

The request id is set for the life of one request by the API's outermost layer
(:mod:`roiml.serving.request_context`); :class:`ContextFilter` copies it, and any other
context value it was given a reader for (the tenant), onto every record, so a line logged deep
in the serving step names its request without being handed it.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

__all__ = [
    "ContextFilter",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "current_request_id",
    "reset_request_id",
    "set_request_id",
]

LogFormat = Literal["text", "json"]

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "roiml_request_id", default=None
)

# What every LogRecord has of its own: anything else on a record came from ``extra`` (or from
# the filter) and is written as a key of its own.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
# Extras that are another formatter's business: uvicorn adds an ANSI-coloured copy of its
# message to some records.
_DROPPED = frozenset({"color_message"})
# Keys the JSON line always has, first and in this order.
_FIXED = ("ts", "level", "logger", "message", "request_id")
# The handler configure_logging installs, found again on a second call (idempotent).
_HANDLER_NAME = "roiml"


def current_request_id() -> str | None:
    """The id of the request being served (None outside a request)."""
    return _request_id.get()


def set_request_id(request_id: str | None) -> contextvars.Token[str | None]:
    """Make ``request_id`` the current one; give the token to :func:`reset_request_id`."""
    return _request_id.set(request_id)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    """Undo :func:`set_request_id`."""
    _request_id.reset(token)


class ContextFilter(logging.Filter):
    """Puts ``request_id`` (and each of ``fields``, read by its callable) on every record that
    does not carry it already. Never drops a record."""

    def __init__(self, fields: Mapping[str, Callable[[], str | None]] | None = None) -> None:
        super().__init__()
        self.fields = dict(fields or {})

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the context to ``record``; always True."""
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        for name, read in self.fields.items():
            if not hasattr(record, name):
                value = read()
                if value is not None:
                    setattr(record, name, value)
        return True


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _RECORD_ATTRIBUTES
        and key not in _DROPPED
        and key != "request_id"
        and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, ``request_id``,
    then the record's extras, then ``exception`` if a traceback was logged."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (never a raw newline: they are escaped)."""
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in _extras(record).items():
            if key not in _FIXED:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra that is not JSON (a Path, an exception) is written, not lost.
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """``<ts> <LEVEL> <logger> [req <id>]: <message>``; the request part only inside one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a line (and its traceback's lines, if one was logged)."""
        request_id = getattr(record, "request_id", None)
        where = f" [req {request_id}]" if request_id else ""
        text = (
            f"{_timestamp(record)} {record.levelname} {record.name}{where}: {record.getMessage()}"
        )
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            text += "\n" + record.exc_text
        return text


def configure_logging(
    level: str,
    log_format: LogFormat,
    *,
    fields: Mapping[str, Callable[[], str | None]] | None = None,
) -> logging.Handler:
    """Log everything at ``level`` and above to stderr in ``log_format``, with the request id
    (and ``fields``) on every record; uvicorn's loggers go through the same handler.

    Installs one handler on the root logger, replacing the one an earlier call installed (a
    second call, in tests or the demo, does not double every line); other handlers are left
    alone. uvicorn's access log is turned off: the API writes its own (``roiml.access``).
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(ContextFilter(fields))
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # One line per request is the API's own (with route template, tenant and request id):
    # uvicorn's would repeat it with the raw path.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
    return handler
