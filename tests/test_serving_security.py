"""Bearer-token authentication, scopes and per-client rate limiting of the prediction API.

A tiny FastAPI app uses the real dependencies; requests go through ``TestClient``. Tokens are
signed here: HS256 with a test secret, RS256 / ES256 with key pairs generated per session.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import jwt
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import Depends, FastAPI
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette 1.x asks for httpx2 in TestClient; httpx (a declared dependency) still works
    # and pytest turns warnings into errors.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from roiml.errors import ConfigurationError
from roiml.serving import security
from roiml.serving.ratelimit import (
    MemoryRateLimiter,
    RateDecision,
    RateLimiter,
    RedisRateLimiter,
    install_rate_limiter,
    limited,
    make_rate_limiter,
)
from roiml.serving.security import (
    ALL_SCOPES,
    AuthenticationError,
    Principal,
    Scope,
    TokenVerifier,
    authenticate,
    check_startup,
    install_auth,
    require,
)
from roiml.settings import Environment, Settings

# 64 bytes: enough for HS512 too (RFC 7518 §3.2), which one test signs with.
SECRET = "test-secret-" + "0123456789abcdef" * 3 + "-end"
OTHER_SECRET = "forged-secret-" + "0123456789abcdef" * 3 + "-x"


# --- keys, tokens, settings, app -----------------------------------------------------------------


def _pem_public(private: Any) -> str:
    return str(
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _pem_private(private: Any) -> str:
    return str(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    )


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def forger_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims; an override of None removes the claim."""
    base: dict[str, Any] = {
        "sub": "user-1",
        "tenant_id": "acme",
        "scope": "predict",
        "exp": int(time.time()) + 300,
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def hs256(payload: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, secret, algorithm=algorithm)


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], payload: dict[str, Any], hmac_key: bytes | None) -> str:
    """A token built by hand, for what PyJWT refuses to sign (alg none, a PEM as HMAC key)."""
    signing_input = f"{_b64(header)}.{_b64(payload)}"
    if hmac_key is None:
        return signing_input + "."
    signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"auth_enabled": True, "jwt_secret": SECRET, "redis_url": None}
    values.update(overrides)
    return Settings(_env_file=None, **values)


def make_app(
    settings: Settings,
    limiter: RateLimiter | Callable[[], RateLimiter] | None = None,
) -> FastAPI:
    """The test app: /predict (rate-limited, scope predict), /admin, /whoami (any scope).

    ``limiter`` may be a factory, called in the lifespan so a Redis client lives on the
    TestClient's event loop.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        made = limiter() if callable(limiter) else limiter
        if made is None:
            made = MemoryRateLimiter(600, 100)
        install_rate_limiter(app, made)
        yield
        await made.aclose()

    app = FastAPI(lifespan=lifespan)
    install_auth(app, settings)

    def body(principal: Principal) -> dict[str, Any]:
        return {
            "tenant_id": principal.tenant_id,
            "subject": principal.subject,
            "client_id": principal.client_id,
            "scopes": sorted(principal.scopes),
        }

    @app.get("/predict")
    async def predict(
        principal: Annotated[Principal, Depends(limited(Scope.PREDICT))],
    ) -> dict[str, Any]:
        return body(principal)

    @app.get("/admin")
    async def admin(principal: Annotated[Principal, Depends(require(Scope.ADMIN))]) -> Any:
        return body(principal)

    @app.get("/whoami")
    async def whoami(principal: Annotated[Principal, Depends(authenticate)]) -> Any:
        return body(principal)

    return app


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(make_app(make_settings())) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_401(response: Any, *phrases: str, error: str | None = "invalid_token") -> None:
    assert response.status_code == 401, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    for phrase in phrases:
        assert phrase in detail, detail
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="roiml"')
    if error is None:
        assert "error=" not in challenge
    else:
        assert f'error="{error}"' in challenge
        assert 'error_description="' in challenge
    assert "Traceback" not in response.text


# --- 401 and 403 ---------------------------------------------------------------------------------


def test_missing_token_is_401_without_error_code(client: TestClient) -> None:
    # RFC 6750 §3.1: no credentials at all -> a challenge with no error code.
    assert_401(client.get("/predict"), "Authorization: Bearer <token>", error=None)


def test_other_auth_scheme_is_401(client: TestClient) -> None:
    response = client.get("/predict", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_401(response, "'Basic' scheme", error=None)


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "e30.e30", "x" * 9000])
def test_malformed_token_is_401(client: TestClient, token: str) -> None:
    response = client.get("/predict", headers=bearer(token))
    assert_401(response, "bearer token")


def test_expired_token_is_401(client: TestClient) -> None:
    token = hs256(claims(exp=int(time.time()) - 3600))
    assert_401(client.get("/predict", headers=bearer(token)), "expired", "new token")


def test_expiry_within_leeway_is_accepted(client: TestClient) -> None:
    token = hs256(claims(exp=int(time.time()) - 5))  # leeway is 30 s by default
    assert client.get("/predict", headers=bearer(token)).status_code == 200


def test_token_without_exp_is_401(client: TestClient) -> None:
    token = hs256(claims(exp=None))
    assert_401(client.get("/predict", headers=bearer(token)), "'exp' claim")


def test_forged_signature_is_401(client: TestClient) -> None:
    token = hs256(claims(), secret=OTHER_SECRET)
    assert_401(client.get("/predict", headers=bearer(token)), "signature does not verify")


def test_alg_none_is_401(client: TestClient) -> None:
    token = raw_token({"alg": "none", "typ": "JWT"}, claims(), hmac_key=None)
    assert_401(client.get("/predict", headers=bearer(token)), "'none'", "only HS256")


def test_other_hmac_algorithm_is_401(client: TestClient) -> None:
    # The right secret but HS512: the algorithm is pinned by settings, not chosen by the token.
    token = hs256(claims(), algorithm="HS512")
    assert_401(client.get("/predict", headers=bearer(token)), "'HS512'")


def test_hs256_token_signed_with_the_public_key_is_401_when_rs256(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    public_pem = _pem_public(rsa_key)
    settings = make_settings(jwt_secret=None, jwt_public_key=public_pem, jwt_algorithm="RS256")
    # The classic algorithm-confusion forgery: HMAC keyed with the (public) verification key.
    token = raw_token({"alg": "HS256", "typ": "JWT"}, claims(), public_pem.encode())
    with TestClient(make_app(settings)) as test_client:
        response = test_client.get("/predict", headers=bearer(token))
    assert_401(response, "'HS256'", "only RS256")


def test_missing_tenant_claim_is_401(client: TestClient) -> None:
    token = hs256(claims(tenant_id=None))
    assert_401(client.get("/predict", headers=bearer(token)), "no 'tenant_id' claim")


@pytest.mark.parametrize("tenant", ["", "acme corp", "a" * 65, "ünïcode", "../x", 42, ["acme"]])
def test_bad_tenant_slug_is_401(client: TestClient, tenant: Any) -> None:
    token = hs256(claims(tenant_id=tenant))
    assert_401(client.get("/predict", headers=bearer(token)), "'tenant_id' claim is not")


def test_tenant_claim_name_comes_from_settings() -> None:
    settings = make_settings(jwt_tenant_claim="https://roiml.example/tenant")
    token = hs256(claims(tenant_id=None, **{"https://roiml.example/tenant": "beta-co"}))
    with TestClient(make_app(settings)) as test_client:
        response = test_client.get("/whoami", headers=bearer(token))
    assert response.json()["tenant_id"] == "beta-co"


def test_bad_scope_claim_type_is_401(client: TestClient) -> None:
    token = hs256(claims(scope={"predict": True}))
    assert_401(client.get("/predict", headers=bearer(token)), "'scope' claim must be")


def test_missing_scope_is_403(client: TestClient) -> None:
    token = hs256(claims(scope="feedback other:thing", azp="crm-sync"))
    response = client.get("/predict", headers=bearer(token))
    assert response.status_code == 403
    detail = response.json()["detail"]
    assert "lacks the 'predict' scope" in detail
    assert "crm-sync" in detail
    challenge = response.headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="predict"' in challenge
    assert client.get("/admin", headers=bearer(token)).status_code == 403


def test_wrong_audience_or_issuer_is_401() -> None:
    settings = make_settings(jwt_audience="roiml-api", jwt_issuer="https://idp.example")
    good = claims(aud="roiml-api", iss="https://idp.example")
    with TestClient(make_app(settings)) as test_client:
        assert test_client.get("/predict", headers=bearer(hs256(good))).status_code == 200
        for bad, phrase in [
            ({**good, "aud": "other-api"}, "not meant for this API"),
            ({**good, "iss": "https://evil.example"}, "not issued by"),
            (claims(iss="https://idp.example"), "'aud' claim"),
        ]:
            response = test_client.get("/predict", headers=bearer(hs256(bad)))
            assert_401(response, phrase)


# --- 200 -----------------------------------------------------------------------------------------


def test_valid_hs256_token(client: TestClient) -> None:
    token = hs256(claims(scope="predict feedback", azp="web-app"))
    response = client.get("/predict", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "tenant_id": "acme",
        "subject": "user-1",
        "client_id": "web-app",
        "scopes": ["feedback", "predict"],
    }


def test_scopes_list_and_admin_implies_all(client: TestClient) -> None:
    token = hs256(claims(scope=None, scopes=["admin"], client_id="ops-console"))
    response = client.get("/predict", headers=bearer(token))
    assert response.status_code == 200
    assert response.json()["scopes"] == sorted(ALL_SCOPES)
    assert response.json()["client_id"] == "ops-console"
    assert client.get("/admin", headers=bearer(token)).status_code == 200


def test_client_token_without_sub_uses_client_id(client: TestClient) -> None:
    token = hs256(claims(sub=None, client_id="batch-job"))
    body = client.get("/whoami", headers=bearer(token)).json()
    assert body["subject"] == body["client_id"] == "batch-job"


def test_valid_rs256_token(rsa_key: rsa.RSAPrivateKey, forger_rsa_key: rsa.RSAPrivateKey) -> None:
    settings = make_settings(
        jwt_secret=None, jwt_public_key=_pem_public(rsa_key), jwt_algorithm="RS256"
    )
    token = jwt.encode(claims(tenant_id="rs-tenant"), rsa_key, algorithm="RS256")
    with TestClient(make_app(settings)) as test_client:
        response = test_client.get("/predict", headers=bearer(token))
        assert response.status_code == 200, response.text
        assert response.json()["tenant_id"] == "rs-tenant"
        assert response.json()["client_id"] == "user-1"
        forged = jwt.encode(claims(), forger_rsa_key, algorithm="RS256")
        assert_401(test_client.get("/predict", headers=bearer(forged)), "signature")


def test_valid_es256_token_and_one_line_pem(ec_key: ec.EllipticCurvePrivateKey) -> None:
    one_line = _pem_public(ec_key).replace("\n", "\\n")  # as an env var often carries it
    settings = make_settings(jwt_secret=None, jwt_public_key=one_line, jwt_algorithm="ES256")
    token = jwt.encode(claims(), ec_key, algorithm="ES256")
    with TestClient(make_app(settings)) as test_client:
        assert test_client.get("/predict", headers=bearer(token)).status_code == 200


def test_auth_off_is_default_tenant_with_all_scopes() -> None:
    settings = make_settings(auth_enabled=False, jwt_secret=None, tenant_id="home_office")
    with TestClient(make_app(settings)) as test_client:
        for headers in ({}, bearer("ignored-when-auth-is-off")):
            response = test_client.get("/admin", headers=headers)
            assert response.status_code == 200
            assert response.json() == {
                "tenant_id": "home_office",
                "subject": "anonymous",
                "client_id": "testclient",
                "scopes": sorted(ALL_SCOPES),
            }


def test_openapi_shows_the_bearer_scheme(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": security.bearer_scheme.model.description,
    }
    assert schema["paths"]["/predict"]["get"]["security"] == [{"bearer": []}]


def test_app_without_install_auth_fails_loudly() -> None:
    app = FastAPI()

    @app.get("/whoami")
    async def whoami(principal: Annotated[Principal, Depends(authenticate)]) -> str:
        return principal.tenant_id

    with pytest.raises(RuntimeError, match="install_auth"):
        TestClient(app).get("/whoami")


# --- the verifier and its cache ------------------------------------------------------------------


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(security.jwt, "decode", counting)
    return calls


def test_cache_returns_the_verified_principal(decode_calls: list[str]) -> None:
    verifier = TokenVerifier(make_settings())
    token = hs256(claims())
    first = verifier.verify(token)
    assert verifier.verify(token) is first
    assert len(decode_calls) == 1
    # A forged variant of a cached token is a different string: verified in full, rejected.
    with pytest.raises(AuthenticationError, match="signature"):
        verifier.verify(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))


def test_cache_honours_expiry_and_its_own_bound(decode_calls: list[str]) -> None:
    now = [time.time()]
    verifier = TokenVerifier(make_settings(), cache_seconds=60, clock=lambda: now[0])
    token = hs256(claims(exp=int(now[0]) + 3600))
    verifier.verify(token)
    now[0] += 59
    verifier.verify(token)
    assert len(decode_calls) == 1
    now[0] += 2  # past cache_seconds: verified again
    verifier.verify(token)
    assert len(decode_calls) == 2

    short = hs256(claims(exp=int(time.time()) + 10))
    now[0] = time.time()
    verifier.verify(short)
    now[0] += 10 + 30 + 1  # past exp + leeway: the cache must not vouch for it any more
    verifier.verify(short)  # PyJWT's real clock still accepts it, but it was re-checked
    assert decode_calls.count(short) == 2


def test_cache_is_bounded_lru(decode_calls: list[str]) -> None:
    verifier = TokenVerifier(make_settings(), cache_size=2)
    one, two, three = (hs256(claims(sub=f"user-{i}")) for i in range(3))
    verifier.verify(one)
    verifier.verify(two)
    verifier.verify(one)  # one is now the most recent
    verifier.verify(three)  # evicts two
    verifier.verify(one)
    assert decode_calls == [one, two, three]
    verifier.verify(two)
    assert decode_calls == [one, two, three, two]


def test_principal_is_frozen() -> None:
    principal = TokenVerifier(make_settings()).verify(hs256(claims()))
    with pytest.raises(AttributeError):
        principal.tenant_id = "other"  # type: ignore[misc]
    assert require(Scope.PREDICT) is require("predict")
    assert limited(Scope.FEEDBACK) is limited("feedback")


# --- start-up checks -----------------------------------------------------------------------------


def test_check_startup_accepts_good_settings(rsa_key: rsa.RSAPrivateKey) -> None:
    check_startup(make_settings())
    check_startup(make_settings(auth_enabled=False, jwt_secret=None))
    check_startup(
        make_settings(jwt_secret=None, jwt_public_key=_pem_public(rsa_key), jwt_algorithm="RS256")
    )


def test_production_without_auth_refuses_to_start() -> None:
    settings = make_settings(environment=Environment.PRODUCTION)
    assert settings.auth_enabled
    # Settings forces auth on in production; check_startup still refuses a copy that is not.
    with pytest.raises(ConfigurationError, match="production mode requires authentication"):
        check_startup(settings.model_copy(update={"auth_enabled": False}))


@pytest.mark.parametrize(
    ("overrides", "phrase"),
    [
        ({"jwt_secret": None}, "ROIML_JWT_SECRET is unset"),
        ({"jwt_secret": "short"}, "too weak"),
        ({"jwt_algorithm": "RS256"}, "ROIML_JWT_PUBLIC_KEY is unset"),
        ({"jwt_algorithm": "none"}, "not supported"),
        ({"jwt_algorithm": "RS256", "jwt_public_key": "garbage"}, "not a PEM public key"),
    ],
)
def test_check_startup_refuses_bad_keys(overrides: dict[str, Any], phrase: str) -> None:
    settings = make_settings(**overrides)
    with pytest.raises(ConfigurationError, match=phrase):
        check_startup(settings)
    with pytest.raises(ConfigurationError, match=phrase):
        install_auth(FastAPI(), settings)


def test_check_startup_refuses_wrong_key_kinds(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    rs256 = {"jwt_secret": None, "jwt_algorithm": "RS256"}
    cases = [
        (make_settings(**rs256, jwt_public_key=_pem_private(rsa_key)), "private key"),
        (make_settings(**rs256, jwt_public_key=_pem_public(ec_key)), "cannot verify RS256"),
        (
            make_settings(
                jwt_secret=None, jwt_algorithm="ES384", jwt_public_key=_pem_public(ec_key)
            ),
            "cannot verify ES384",
        ),
        (make_settings(jwt_secret=_pem_public(rsa_key)), "holds a PEM key"),
        (
            make_settings(
                **rs256,
                jwt_public_key=_pem_public(rsa.generate_private_key(65537, 1024)),
            ),
            "too weak",
        ),
    ]
    for settings, phrase in cases:
        with pytest.raises(ConfigurationError, match=phrase):
            check_startup(settings)


# --- rate limiting -------------------------------------------------------------------------------


def test_memory_limiter_allows_burst_then_429() -> None:
    settings = make_settings(auth_enabled=False, jwt_secret=None)
    # A stopped clock: on a slow machine a second between requests would refill one, and the
    # fourth request would pass.
    limiter = MemoryRateLimiter(per_minute=60, burst=3, clock_ns=lambda: 10**12)
    with TestClient(make_app(settings, limiter)) as test_client:
        remaining = []
        for _ in range(3):
            response = test_client.get("/predict")
            assert response.status_code == 200
            remaining.append(response.headers["X-RateLimit-Remaining"])
        assert remaining == ["2", "1", "0"]
        refused = test_client.get("/predict")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert "too many requests from client 'testclient'" in refused.json()["detail"]
    assert "retry after 1 s" in refused.json()["detail"]


def test_memory_limiter_refills_at_the_rate_and_keys_are_independent() -> None:
    now = [10**12]
    limiter = MemoryRateLimiter(per_minute=120, burst=2, clock_ns=lambda: now[0])
    assert [limiter.hit_now("t:a").allowed for _ in range(3)] == [True, True, False]
    denied = limiter.hit_now("t:a")
    assert denied.retry_after_seconds == pytest.approx(0.5)
    assert limiter.hit_now("t:b").allowed
    now[0] += 500_000_000  # one interval (0.5 s) refills one request
    assert limiter.hit_now("t:a") == RateDecision(True, 0.0, 0)
    assert not limiter.hit_now("t:a").allowed
    now[0] += 10**9 * 60  # a long idle: back to a full burst
    assert limiter.hit_now("t:a").remaining == 1


def test_memory_limiter_forgets_idle_clients() -> None:
    now = [0]
    limiter = MemoryRateLimiter(per_minute=60, burst=5, clock_ns=lambda: now[0])
    for i in range(1023):
        limiter.hit_now(f"t:{i}")
    now[0] += 2 * 10**9  # every bucket is full again
    limiter.hit_now("t:new")  # the 1024th key triggers a sweep
    assert len(limiter._tat) == 1


def test_make_rate_limiter_picks_the_backend() -> None:
    memory = make_rate_limiter(make_settings(rate_limit_per_minute=100, rate_limit_burst=7))
    assert isinstance(memory, MemoryRateLimiter)
    assert (memory.per_minute, memory.burst) == (100, 7)
    remote = make_rate_limiter(make_settings(redis_url="redis://127.0.0.1:1/0"))
    assert isinstance(remote, RedisRateLimiter)
    asyncio.run(remote.aclose())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_redis_down_fails_open_and_counts_the_error() -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0"

    async def scenario() -> RedisRateLimiter:
        limiter = RedisRateLimiter(url, per_minute=60, burst=1)
        try:
            first = await limiter.hit("t:a")
            second = await limiter.hit("t:a")  # within retry_seconds: Redis is not even tried
        finally:
            await limiter.aclose()
        assert first.allowed and second.allowed
        assert first.remaining == -1
        return limiter

    limiter = asyncio.run(scenario())
    # How fast it fails open (the unit tests do not time it): python -m bench fail-fast.
    assert limiter.errors == 1
    assert not limiter.healthy
    assert limiter.last_error is not None and "ConnectionError" in limiter.last_error

    settings = make_settings(auth_enabled=False, jwt_secret=None)
    app = make_app(settings, lambda: RedisRateLimiter(url, per_minute=60, burst=1))
    with TestClient(app) as test_client:
        for _ in range(3):  # burst is 1, but the limiter cannot count: all allowed
            response = test_client.get("/predict")
            assert response.status_code == 200
            assert "X-RateLimit-Remaining" not in response.headers


@pytest.mark.redis
def test_redis_limiter_instances_share_one_budget(redis_url: str) -> None:
    prefix = f"roiml-test:{uuid.uuid4().hex}:"

    async def scenario() -> list[tuple[bool, int, float]]:
        # Two limiters = two API processes, each with its own connection pool.
        first = RedisRateLimiter(redis_url, per_minute=60, burst=5, prefix=prefix)
        second = RedisRateLimiter(redis_url, per_minute=60, burst=5, prefix=prefix)
        try:
            decisions = []
            for i in range(8):
                limiter = first if i % 2 == 0 else second
                decision = await limiter.hit("acme:web-app")
                decisions.append(
                    (decision.allowed, decision.remaining, decision.retry_after_seconds)
                )
            other = await second.hit("acme:other-client")
            assert other.allowed and other.remaining == 4
            assert first.errors == second.errors == 0
            return decisions
        finally:
            await first.aclose()
            await second.aclose()

    sync_client = redis.Redis.from_url(redis_url)
    try:
        decisions = asyncio.run(scenario())
        assert [allowed for allowed, _, _ in decisions] == [True] * 5 + [False] * 3
        assert [remaining for _, remaining, _ in decisions[:5]] == [4, 3, 2, 1, 0]
        for _, _, retry_after in decisions[5:]:
            assert 0 < retry_after <= 1.0
        # The key lives only until the bucket is full again (5 requests at 1 a second).
        ttl = sync_client.pttl(prefix + "acme:web-app")
        assert 0 < ttl <= 5000
    finally:
        keys = list(sync_client.scan_iter(match=prefix + "*"))
        if keys:
            sync_client.delete(*keys)
        sync_client.close()
