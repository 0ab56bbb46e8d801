"""Attacks on the rate limits, each refused: a client rotating ``X-Forwarded-For`` to look
like many (uvicorn believed the header from 127.0.0.1), and routes nobody charged (health,
metrics, model health) used to take the API's capacity.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from serving_stubs import make_api, make_parts, migrated_engine
from tests.test_serving_security import bearer, claims, hs256, make_app, make_settings

from roiml.serving import app as app_module
from roiml.serving import ratelimit
from roiml.serving.ratelimit import MemoryRateLimiter, limited
from roiml.serving.routes import ROUTERS
from roiml.serving.security import Scope
from roiml.serving.server import _config
from roiml.settings import Settings

BURST = 5


def _served_by_uvicorn(
    settings: Settings, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> uvicorn.Config:
    """The uvicorn config ``roiml serve`` builds (server._config), serving ``app``."""
    monkeypatch.setattr(app_module, "asgi", lambda *args, **kwargs: app)
    config = _config(settings)
    config.load()
    return config


def _statuses(
    config: uvicorn.Config, peer: str, headers: Callable[[int], dict[str, str]]
) -> list[int]:
    """Twenty requests from ``peer``, each with ``headers(i)``, through the app as loaded
    (uvicorn's proxy-headers middleware included when configured)."""

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=config.loaded_app, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return [
                (await client.get("/predict", headers=headers(i))).status_code for i in range(20)
            ]

    return asyncio.run(run())


def _limited_app(settings: Settings) -> FastAPI:
    app = make_app(settings)
    # The lifespan does not run under ASGITransport: install the limiter now.
    ratelimit.install_rate_limiter(app, MemoryRateLimiter(60, BURST))
    return app


def _rotating(i: int) -> dict[str, str]:
    return {"X-Forwarded-For": f"203.0.113.{i}"}


def test_rotating_forwarded_for_is_one_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit's attack: auth off, a new X-Forwarded-For per request from 127.0.0.1 had
    20 of 20 answered where 5 pass without it."""
    settings = make_settings(auth_enabled=False, jwt_secret=None)
    config = _served_by_uvicorn(settings, _limited_app(settings), monkeypatch)
    assert config.proxy_headers is False
    statuses = _statuses(config, "127.0.0.1", _rotating)
    assert statuses.count(200) == BURST and statuses.count(429) == 20 - BURST


def test_a_live_server_counts_a_rotating_header_as_one_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same attack on a real socket: uvicorn serving ``roiml serve``'s config."""
    settings = make_settings(auth_enabled=False, jwt_secret=None)
    app = make_app(settings, lambda: MemoryRateLimiter(60, BURST))
    monkeypatch.setattr(app_module, "asgi", lambda *args, **kwargs: app)
    config = _config(settings)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        config.host, config.port = probe.getsockname()
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started, "the server did not start"
        with httpx.Client(base_url=f"http://127.0.0.1:{config.port}", timeout=10) as client:
            statuses = [client.get("/predict", headers=_rotating(i)).status_code for i in range(20)]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert statuses.count(200) == BURST and statuses.count(429) == 20 - BURST


def test_no_proxy_is_trusted_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _served_by_uvicorn(make_settings(), FastAPI(), monkeypatch)
    assert config.proxy_headers is False
    assert config.forwarded_allow_ips == []


def test_a_configured_proxy_is_believed_and_no_one_else(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(
        auth_enabled=False, jwt_secret=None, trusted_proxies="10.0.0.5, 10.1.0.0/16"
    )
    config = _served_by_uvicorn(settings, _limited_app(settings), monkeypatch)
    assert config.proxy_headers is True
    assert config.forwarded_allow_ips == ["10.0.0.5", "10.1.0.0/16"]
    # Behind the proxy, each forwarded address is its own client: all twenty pass.
    assert _statuses(config, "10.1.2.3", _rotating).count(200) == 20
    # The same header from anyone else is ignored: one client, one budget.
    assert _statuses(config, "127.0.0.1", _rotating).count(200) == BURST


def test_trusted_proxies_must_be_addresses() -> None:
    with pytest.raises(ValueError, match="not an IP address or network"):
        make_settings(trusted_proxies="10.0.0.5,proxy.internal")


# --- every route is charged ------------------------------------------------------------------


def _calls(dependant: Dependant) -> set[Any]:
    found = {dependant.call}
    for sub in dependant.dependencies:
        found |= _calls(sub)
    return found


def test_every_route_charges_a_rate_limit() -> None:
    chargers = {limited(scope) for scope in Scope} | {
        ratelimit.limited_public,
        ratelimit.limited_metrics,
    }
    routes = [route for router in ROUTERS for route in router.routes]
    assert {
        "/health",
        "/metrics",
        "/api/ml/dashboard",
        "/api/ml/v1/models/{model_name}/health",
    } <= {getattr(route, "path", "") for route in routes}
    for route in routes:
        assert isinstance(route, APIRoute)
        assert _calls(route.dependant) & chargers, f"{route.path} is not rate limited"


@pytest.fixture
def tight_api(tmp_path: Path) -> Any:
    settings = make_settings()  # auth on
    parts = make_parts(settings, migrated_engine(tmp_path), MemoryRateLimiter(60, BURST), ["acme"])
    from fastapi.testclient import TestClient

    with TestClient(make_api(settings, parts)) as client:
        yield client
    parts.engine.dispose()


@pytest.mark.parametrize(
    "path", ["/health", "/metrics", "/api/ml/v1/models/move_probability_model/health"]
)
def test_health_metrics_and_model_health_are_rate_limited(tight_api: Any, path: str) -> None:
    token = bearer(hs256(claims(scope="predict")))
    statuses = [tight_api.get(path, headers=token).status_code for _ in range(BURST + 3)]
    assert statuses[:BURST] == [200] * BURST, statuses
    assert statuses[BURST:] == [429] * 3
    refused = tight_api.get(path, headers=token)
    assert refused.headers["Retry-After"].isdigit()
    assert "too many requests" in refused.json()["detail"]


@pytest.mark.parametrize("path", ["/health", "/metrics"])
def test_public_routes_charge_the_address_without_a_token(tight_api: Any, path: str) -> None:
    statuses = [tight_api.get(path).status_code for _ in range(BURST + 2)]
    assert statuses == [200] * BURST + [429] * 2
    assert "address testclient" in tight_api.get(path).json()["detail"]
    # A token's budget is its own: the address's spent budget does not refuse it.
    assert tight_api.get(path, headers=bearer(hs256(claims()))).status_code == 200


def test_a_bad_token_on_a_public_route_is_401(tight_api: Any) -> None:
    response = tight_api.get("/health", headers=bearer("not-a-jwt"))
    assert response.status_code == 401


def test_a_hung_redis_costs_one_probe_not_every_request() -> None:
    """A Redis that accepts connections and never answers (stopped): a request waits one
    timeout (no retry on a timeout), requests in the next second go unchecked at once, then one
    request probes again while the others arriving during it go unchecked too. (Requests sent
    before the first failure was known each wait their own timeout: nothing could tell them.)"""
    import asyncio
    import socket

    from roiml.serving.ratelimit import RedisRateLimiter

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)  # the kernel completes connects; nobody ever reads
    port = hung.getsockname()[1]

    async def scenario() -> tuple[float, list[float], float]:
        limiter = RedisRateLimiter(
            f"redis://127.0.0.1:{port}/0", 600, 10, timeout_seconds=0.2, retry_seconds=0.5
        )

        async def timed(key: str) -> float:
            started = time.perf_counter()
            decision = await limiter.hit(key)
            assert decision.allowed  # fail open
            return time.perf_counter() - started

        try:
            first_seconds = await timed("t:a")
            # Within the second after a failure: nobody waits on Redis.
            meanwhile = await asyncio.gather(*(timed(f"t:{i}") for i in range(20)))
            await asyncio.sleep(0.6)
            # After it, one request probes; those arriving during the probe do not queue on it.
            probe = asyncio.create_task(timed("t:b"))
            await asyncio.sleep(0.02)
            meanwhile += await asyncio.gather(*(timed(f"u:{i}") for i in range(20)))
            probe_seconds = await probe
        finally:
            await limiter.aclose()
        return first_seconds, meanwhile, probe_seconds

    try:
        first_seconds, meanwhile, probe = asyncio.run(scenario())
    finally:
        hung.close()
    assert 0.15 < first_seconds < 0.39  # one 0.2 s timeout, not two
    assert max(meanwhile) < 0.1  # none waited on the hung server
    assert 0.15 < probe < 0.39  # after the skip window, one request probes again
