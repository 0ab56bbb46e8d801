"""After a 500 the client's connection still serves its next request.

Starlette's error middleware sends the 500 and then re-raises; uvicorn closes the connection of
an app that raised, so a client's next request on it was reset (issue 18, item 5). The app's
outermost layer keeps it once the 500 has gone out whole.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from roiml.serving.app import _Edge
from roiml.serving.metrics import ServingMetrics


@pytest.fixture
def live_failing_app() -> Iterator[tuple[str, int]]:
    app = FastAPI()

    @app.get("/api/ml/v1/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    @app.get("/api/ml/v1/fine")
    async def fine() -> dict[str, str]:
        return {"status": "ok"}

    edge = _Edge(app, ServingMetrics(CollectorRegistry()))
    server = uvicorn.Server(
        uvicorn.Config(edge, host="127.0.0.1", port=0, log_level="critical", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    yield "127.0.0.1", server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    thread.join(timeout=10)


def test_the_connection_outlives_a_500(
    live_failing_app: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    connection = http.client.HTTPConnection(*live_failing_app, timeout=10)
    try:
        connection.request("GET", "/v1/boom")
        answer = connection.getresponse()
        assert answer.status == 500
        assert b"a bug" not in answer.read()  # no internals in the body
        connection.request("GET", "/v1/fine")  # the same socket: reset before
        answer = connection.getresponse()
        assert answer.status == 200 and answer.read() == b'{"status":"ok"}'
    finally:
        connection.close()
    # The error is not swallowed: it is logged with its traceback.
    assert any(r.exc_info and "a bug" in str(r.exc_info[1]) for r in caplog.records)
