"""A request's id and its access-log line.

**The id.** A caller's ``X-Request-ID`` is kept when it is sane: 1 to 128 characters of
letters, digits and ``.``, ``_``, ``:``, ``-`` (UUIDs, ULIDs, a proxy's hex ids). Anything
else (too long, a space, a quote, a newline, bytes that are not ASCII) is replaced by an id of
our own, 32 hex characters, so no caller can write arbitrary text into the logs. The id answers
in the response's ``X-Request-ID`` header and is on every log record emitted while the request
is served (:func:`roiml.logs.current_request_id`, copied by :class:`roiml.logs.ContextFilter`).

**The access log.** One line per request on the ``roiml.access`` logger, at INFO: the method,
the route *template* (``/api/ml/v1/models/{model_name}/features``; a path that matched no route
is ``unmatched``), the status, the duration in milliseconds, the request id, the tenant when
the request was authenticated, and the client address uvicorn resolved. Never the query string,
the headers or the body: a token or an entity id does not reach the log through it.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable

from roiml.serving.security import current_tenant

__all__ = ["ACCESS_LOGGER", "HEADER", "log_access", "request_id_of"]

HEADER = b"x-request-id"
ACCESS_LOGGER = "roiml.access"
_SANE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_access = logging.getLogger(ACCESS_LOGGER)


def request_id_of(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The caller's ``X-Request-ID`` if it is sane, else a new id (32 hex characters)."""
    for name, value in headers:
        # ASGI header names are lower-case bytes.
        if name == HEADER:
            if _SANE.fullmatch(value):
                return value.decode("ascii")
            break
    return uuid.uuid4().hex


def log_access(
    *,
    method: str,
    route: str,
    status: int,
    seconds: float,
    request_id: str,
    tenant: str | None,
    client: str | None,
) -> None:
    """Write the request's access-log line (if the ``roiml.access`` logger takes INFO)."""
    if not _access.isEnabledFor(logging.INFO):
        return
    duration_ms = round(seconds * 1000, 3)
    _access.info(
        "%s %s %d %.1f ms",
        method,
        route,
        status,
        duration_ms,
        extra={
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": duration_ms,
            "request_id": request_id,
            "tenant": tenant if tenant is not None else current_tenant(),
            "client": client,
        },
    )
