"""What the route modules share: the base path, the documented error bodies and the fast
JSON response."""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response
from starlette.background import BackgroundTask

from roiml.jsonformat import dumps
from roiml.serving.schemas import ErrorBody

__all__ = ["BASE", "ERRORS", "json_response"]

# The seed's base URL; the app also answers /v1/... (roiml.serving.app rewrites it).
BASE = "/api/ml"
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (401, 403, 404, 413, 422, 429, 503)
}


def json_response(
    body: Any, headers_from: Response, background: BackgroundTask | None = None
) -> Response:
    """``body`` (the shape of the route's response model) written by orjson, with the headers
    the route's dependencies set on ``headers_from`` (FastAPI copies those only onto responses
    it builds itself)."""
    response = Response(dumps(body), media_type="application/json", background=background)
    response.raw_headers.extend(
        (key, value)
        for key, value in headers_from.raw_headers
        if key not in (b"content-length", b"content-type")
    )
    return response
