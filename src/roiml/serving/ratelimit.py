"""Per-client rate limiting: GCRA on Redis (shared by all API processes) or in process memory.

The limit is ``settings.rate_limit_per_minute`` requests per minute for each (tenant, client),
with ``settings.rate_limit_burst`` requests allowed at once: a fresh client may send ``burst``
requests immediately, then one per ``60 / per_minute`` seconds.

GCRA (the generic cell rate algorithm) is a token bucket stored as one number per client: the
"theoretical arrival time" (TAT) at which the client's bucket is full again. A request is
allowed when ``TAT + interval - burst * interval <= now``. One number means one Redis key, one
atomic Lua script and one round trip per request, and the key's TTL is exactly the time until
the bucket is full again, when the key means nothing and may vanish: idle clients cost nothing.

Wiring (once, where the app is built; close the limiter in the lifespan's shutdown)::

    install_auth(app, settings)
    limiter = install_rate_limiter(app, make_rate_limiter(settings))
    ...
    await limiter.aclose()

and per route, in place of ``require(scope)``::

    async def predict(principal: Annotated[Principal, Depends(limited(Scope.PREDICT))]): ...

Routes open to anyone (``/health``, ``/metrics``) use :func:`limited_public` instead: a request
without a token is charged to its client address, one with a token as above.

The client address is the one uvicorn resolved (``request.client``): the socket's peer, or the
``X-Forwarded-For`` entry only when the peer is one of ``settings.trusted_proxies`` (the server
passes them to uvicorn's ``forwarded_allow_ips``). Nothing here reads forwarding headers: a
client rotating ``X-Forwarded-For`` is still one client.

Why a dependency and not a middleware: the key is the authenticated (tenant, client), so a
middleware would have to find and verify the token itself, outside FastAPI's dependency
system; as one dependency that authenticates, charges and checks the scope, it verifies once
and adds no ASGI layer (and no ``send`` wrapper to inject a header) to every request. Its
429 is an ordinary ``HTTPException``. It is deliberately one dependency, not
``authenticate`` + a limiter + ``require`` chained: FastAPI's resolution costs more per
dependency than a cached token verification and a rate-limit check together.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

import redis.asyncio as aioredis
from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.applications import Starlette

from roiml.serving.security import Principal, Scope, bearer_scheme, check_scope, principal_of
from roiml.settings import Settings

__all__ = [
    "MemoryRateLimiter",
    "RateDecision",
    "RateLimiter",
    "RedisRateLimiter",
    "install_rate_limiter",
    "limited",
    "limited_metrics",
    "limited_public",
    "make_rate_limiter",
    "rate_key",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of one request against its client's budget.

    ``remaining`` is how many more requests could be sent right now; -1 when unknown (the
    limiter failed open because its backend is down).
    """

    allowed: bool
    retry_after_seconds: float
    remaining: int


class RateLimiter(Protocol):
    """Charges one request to ``key``'s budget."""

    per_minute: int
    burst: int

    async def hit(self, key: str) -> RateDecision:
        """Count one request for ``key`` and say whether it may proceed."""
        ...

    async def aclose(self) -> None:
        """Release connections (a no-op for the in-memory limiter)."""
        ...


def rate_key(principal: Principal) -> str:
    """The budget a request is charged to: ``"<tenant>:<client_id>"``."""
    return f"{principal.tenant_id}:{principal.client_id}"


def _address_key(request: Request) -> str:
    # Another namespace than any tenant's: a tenant id cannot contain '!'.
    client = request.client
    return f"!addr:{client.host if client else 'unknown'}"


def _check_limits(per_minute: int, burst: int) -> None:
    if per_minute < 1 or burst < 1:
        raise ValueError(f"per_minute and burst must be >= 1, got {per_minute} and {burst}")


class MemoryRateLimiter:
    """GCRA in this process's memory: the embedded default, with no server to run.

    The budget is per process: with N API workers a client may send N times the limit. Use
    Redis (``settings.redis_url``) to share one budget across processes and hosts.
    """

    def __init__(
        self,
        per_minute: int,
        burst: int,
        *,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        """Allow ``burst`` requests at once, then ``per_minute`` a minute, per key."""
        _check_limits(per_minute, burst)
        self.per_minute = per_minute
        self.burst = burst
        # Integer nanoseconds: with floats, ``burst`` additions of the interval can land a hair
        # above the tolerance and refuse the last request of a burst.
        self._interval = max(1, round(60e9 / per_minute))
        self._tolerance = burst * self._interval
        self._clock_ns = clock_ns
        self._tat: dict[str, int] = {}
        self._sweep_at = 1024

    async def hit(self, key: str) -> RateDecision:
        """See :meth:`RateLimiter.hit`. Never awaits: safe on the event loop, ~1 µs."""
        return self.hit_now(key)

    def hit_now(self, key: str) -> RateDecision:
        """:meth:`hit` without the coroutine, for synchronous callers."""
        now = self._clock_ns()
        tat = max(self._tat.get(key, now), now)
        allow_at = tat + self._interval - self._tolerance
        if allow_at > now:
            return RateDecision(False, (allow_at - now) / 1e9, 0)
        self._tat[key] = tat + self._interval
        if len(self._tat) >= self._sweep_at:
            self._sweep(now)
        return RateDecision(True, 0.0, (now - allow_at) // self._interval)

    def _sweep(self, now: int) -> None:
        # A key whose TAT has passed is a full bucket, the same as no key: drop it. Sweeping
        # when the table doubles keeps memory at most twice the active clients, amortised O(1).
        self._tat = {key: tat for key, tat in self._tat.items() if tat > now}
        self._sweep_at = max(1024, 2 * len(self._tat))

    async def aclose(self) -> None:
        """Nothing to release."""


# KEYS[1]: the client's TAT key. ARGV: interval and burst tolerance, in microseconds.
# Returns {allowed 0/1, retry-after µs, remaining}. The clock is Redis's own TIME, so API
# processes on different hosts (and clocks) share one consistent budget.
_GCRA = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat + interval - tonumber(ARGV[2])
if allow_at > now then
    return {0, allow_at - now, 0}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, 0, math.floor((now - allow_at) / interval)}
"""


class RedisRateLimiter:
    """GCRA in Redis: one budget per key shared by every API process using the same Redis.

    One ``EVALSHA`` round trip per request. If Redis fails, requests are **allowed** (fail
    open) and the failure is counted in :attr:`errors` / :attr:`last_error`, for the health
    route to report. Fail-open because the limiter protects capacity, not data: every request
    is still authenticated and tenant-scoped, and refusing all traffic because the limiter's
    store is down would turn a Redis outage into a full API outage. After a failure Redis is
    not tried again for ``retry_seconds``, then one request probes it while the others go
    unchecked, so an outage adds no latency to each request: a hung Redis costs one probe's
    timeout a second, paid by one request, not by every request that arrives meanwhile.
    """

    def __init__(
        self,
        redis_url: str,
        per_minute: int,
        burst: int,
        *,
        prefix: str = "roiml:ratelimit:",
        timeout_seconds: float = 0.25,
        connect_timeout_seconds: float | None = None,
        retry_seconds: float = 1.0,
    ) -> None:
        """Connect lazily to ``redis_url``; keys are ``<prefix><tenant>:<client>``."""
        _check_limits(per_minute, burst)
        self.per_minute = per_minute
        self.burst = burst
        self.errors = 0
        self.last_error: str | None = None
        self._prefix = prefix
        self._retry_ns = int(retry_seconds * 1e9)
        self._skip_until = 0
        self._probing = False
        interval_us = max(1, round(60e6 / per_minute))
        self._args = [interval_us, burst * interval_us]
        # A short timeout and a single immediate retry on a closed connection (a pooled one the
        # server dropped), none on a timeout: a server that did not answer in time will not
        # answer the retry either (redis-py's default, 3 retries with backoff, stalled requests
        # for seconds; a retry on timeout doubled each probe of a hung Redis).
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            redis_url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=connect_timeout_seconds or timeout_seconds,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._script = self._client.register_script(_GCRA)

    @property
    def healthy(self) -> bool:
        """False while Redis is failing (since the last error, until a call succeeds)."""
        return self.last_error is None

    async def hit(self, key: str) -> RateDecision:
        """See :meth:`RateLimiter.hit`; allows the request if Redis cannot be reached."""
        probe = bool(self._skip_until)
        if probe and (self._probing or time.monotonic_ns() < self._skip_until):
            return RateDecision(True, 0.0, -1)
        # One event loop per process: the flag needs no lock.
        self._probing = probe
        try:
            result: Any = await self._script(keys=[self._prefix + key], args=self._args)
        except Exception as exc:  # any Redis failure: fail open, see the class docstring
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._skip_until = time.monotonic_ns() + self._retry_ns
            log.warning("rate limiter allows requests unchecked, Redis failed: %s", exc)
            return RateDecision(True, 0.0, -1)
        finally:
            self._probing = False
        if self.last_error is not None:
            log.info("rate limiter: Redis is back")
            self.last_error = None
        self._skip_until = 0
        allowed, retry_us, remaining = result
        return RateDecision(bool(allowed), int(retry_us) / 1e6, int(remaining))

    async def aclose(self) -> None:
        """Close the connection pool (call on the same event loop that used it)."""
        await self._client.aclose()


def make_rate_limiter(settings: Settings) -> RateLimiter:
    """Redis when ``settings.redis_url`` is set (one budget across processes), else memory."""
    if settings.redis_url:
        return RedisRateLimiter(
            settings.redis_url,
            settings.rate_limit_per_minute,
            settings.rate_limit_burst,
            # Not the online read's 50 ms: a late answer here only lets one request through
            # unchecked, then skips Redis for a second, so a busy Redis must not trip it.
            timeout_seconds=0.25,
            connect_timeout_seconds=settings.redis_connect_timeout_ms / 1000,
        )
    return MemoryRateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)


def install_rate_limiter(app: Starlette, limiter: RateLimiter) -> RateLimiter:
    """Put ``limiter`` on ``app.state`` for :func:`rate_limit`; returns it."""
    app.state.rate_limiter = limiter
    return limiter


def limited(scope: Scope | str) -> Callable[..., Awaitable[Principal]]:
    """Dependency factory: authenticate, charge the rate limit, check ``scope``; the Principal.

    Use as ``principal: Annotated[Principal, Depends(limited(Scope.PREDICT))]`` in place of
    :func:`~roiml.serving.security.require`. Raises HTTP 401 / 429 / 403, in that order: a
    request refused for its scope still counts against the client's budget. Sets
    ``X-RateLimit-Remaining``, which FastAPI copies onto the response only when the route
    returns data rather than a ``Response`` object of its own.
    """
    # Normalised before the cache: functools keys "predict" and Scope.PREDICT apart.
    return _limited(Scope(scope))


@functools.cache
def _limited(wanted: Scope) -> Callable[..., Awaitable[Principal]]:
    async def dependency(
        request: Request,
        response: Response,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    ) -> Principal:
        principal = principal_of(request, credentials)
        await _charge(request, response, rate_key(principal), principal)
        check_scope(principal, wanted)
        return principal

    dependency.__name__ = dependency.__qualname__ = f"limited_{wanted.value}"
    return dependency


async def limited_public(
    request: Request,
    response: Response,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal | None:
    """Dependency of the routes anyone may call: the Principal if the request carries a token
    (or auth is off), else None; either way the request is charged to a rate-limit budget.

    Without a token the budget is the client address's; a bad token is still a 401, so a
    caller who meant to authenticate learns why it did not work.
    """
    verifier = getattr(request.app.state, "token_verifier", None)
    if verifier is not None and verifier.enabled and credentials is None:
        await _charge(request, response, _address_key(request), None)
        return None
    principal = principal_of(request, credentials)
    await _charge(request, response, rate_key(principal), principal)
    return principal


async def limited_metrics(
    request: Request,
    response: Response,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal | Literal["scraper"] | None:
    """Dependency of ``/metrics``: ``"scraper"`` for the bearer of ``ROIML_METRICS_TOKEN``
    (every tenant's series), else what :func:`limited_public` gives (the caller's own)."""
    verifier = getattr(request.app.state, "token_verifier", None)
    if (
        credentials is not None
        and verifier is not None
        and verifier.is_scraper(credentials.credentials)
    ):
        await _charge(request, response, "metrics-scraper", None)
        return "scraper"
    return await limited_public(request, response, credentials)


async def _charge(
    request: Request, response: Response, key: str, principal: Principal | None
) -> None:
    """Charge one request to ``key``; HTTP 429 when its budget is spent."""
    try:
        limiter: RateLimiter = request.app.state.rate_limiter
    except AttributeError:
        raise RuntimeError(
            "no rate limiter on app.state: call "
            "install_rate_limiter(app, make_rate_limiter(settings)) when building the app"
        ) from None
    decision = await limiter.hit(key)
    if not decision.allowed:
        raise _too_many(principal, request, limiter, decision)
    if decision.remaining >= 0:
        response.headers["X-RateLimit-Remaining"] = str(decision.remaining)


def _too_many(
    principal: Principal | None, request: Request, limiter: RateLimiter, decision: RateDecision
) -> HTTPException:
    retry_after = max(1, math.ceil(decision.retry_after_seconds))  # RFC 9110: whole seconds
    if principal is not None:
        who = f"client '{principal.client_id}' of tenant '{principal.tenant_id}'"
    else:
        who = f"address {request.client.host if request.client else 'unknown'}"
    return HTTPException(
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        detail=(
            f"too many requests from {who}: the limit is {limiter.per_minute} a minute with "
            f"bursts of {limiter.burst}; retry after {retry_after} s"
        ),
        headers={"Retry-After": str(retry_after), "X-RateLimit-Remaining": "0"},
    )
