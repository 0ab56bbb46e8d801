"""The API's bound on request bodies: a body over ``ROIML_API_MAX_BODY_BYTES`` is a 413 before
it is parsed.

Pure ASGI (a ``BaseHTTPMiddleware`` would cost more than a prediction): a declared
``Content-Length`` over the bound is answered at once, without reading the body; a body
streamed without one (chunked) is counted as it arrives and refused at the first chunk past
the bound, before the app has parsed any of it.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimit", "BodyTooLarge"]

# Methods whose requests carry a body the app reads.
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class BodyTooLarge(HTTPException):
    """A request body past the bound (raised from ``receive`` while the app reads it)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _detail(limit))


def _detail(limit: int) -> str:
    return (
        f"the request body is larger than {limit:,} bytes; send a smaller one (split a "
        "batch, or leave features out to have them read from the feature store), or raise "
        "ROIML_API_MAX_BODY_BYTES"
    )


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` with a 413 (``{"detail": ...}``)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self._body = json.dumps({"detail": _detail(max_bytes)}, separators=(",", ":")).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve ``scope``, refusing its body if it is over the bound."""
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit():
                if int(value) > limit:
                    await self._refuse(send)
                    return
                # The server delivers no more than the declared length (the rest would be the
                # next request): nothing to count, nothing added to the hot path.
                await self.app(scope, receive, send)
                return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI re-raises an HTTPException met while reading the body, so the
                    # app's own handler answers it; anything else answers it below.
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        # The connection stays open: the server discards the unread rest of the body, so a
        # client that sends it all before reading gets its 413 and may go on. With
        # "Connection: close" the server reset the socket under such a client's upload.
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(self._body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self._body})
