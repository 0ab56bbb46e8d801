"""Who is calling the API: bearer-token (JWT) verification, scopes, and the FastAPI dependencies.

Every request resolves to a :class:`Principal`: the tenant all its reads and writes belong to,
the subject, the client (for rate limiting) and its scopes. With ``settings.auth_enabled`` off
(the embedded default) every request is the default tenant with all scopes; with it on, the
request must carry ``Authorization: Bearer <JWT>`` signed with the one configured key.

Wiring (once, where the app is built)::

    install_auth(app, settings)            # check_startup + TokenVerifier on app.state

and per route (or ``limited(scope)`` from :mod:`roiml.serving.ratelimit`, which also charges
the client's rate limit)::

    @router.post("/predict")
    async def predict(principal: Annotated[Principal, Depends(require(Scope.PREDICT))]): ...

Failures are ``HTTPException``s FastAPI renders as ``{"detail": "..."}``: 401 with an RFC 6750
``WWW-Authenticate`` header for a missing or bad token, 403 for a good token without the scope.
"""

from __future__ import annotations

import contextvars
import functools
import hmac
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jwt.types import Options
from starlette.applications import Starlette

from roiml.errors import ConfigurationError, RoimlError
from roiml.settings import Environment, Settings

__all__ = [
    "ALL_SCOPES",
    "SUPPORTED_ALGORITHMS",
    "AuthenticationError",
    "Principal",
    "Scope",
    "TokenVerifier",
    "authenticate",
    "bearer_scheme",
    "check_scope",
    "check_startup",
    "current_tenant",
    "install_auth",
    "principal_of",
    "require",
]


class Scope(StrEnum):
    """What a token may do. ``admin`` implies every other scope."""

    PREDICT = "predict"
    FEEDBACK = "feedback"
    ADMIN = "admin"


ALL_SCOPES: frozenset[Scope] = frozenset(Scope)
_SCOPE_BY_NAME: dict[str, Scope] = {scope.value: scope for scope in Scope}

_HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}
SUPPORTED_ALGORITHMS: frozenset[str] = (
    _HMAC_ALGORITHMS | _RSA_ALGORITHMS | frozenset(_EC_CURVES) | frozenset({"EdDSA"})
)

# A tenant id is used in keys, paths and SQL session settings: the same slug rule as settings.
_TENANT_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Subjects and client ids name the caller in rate-limit keys, logs and error messages: one
# printable token, bounded, so a claim cannot smuggle spaces, newlines or a megabyte into them.
_MAX_ID_CHARS = 256
# RFC 7519 §2 NumericDate claims: numbers of seconds, never strings (PyJWT would int() them).
_TIME_CLAIMS = ("exp", "nbf", "iat")
# Real tokens are well under 2 KiB. The cap bounds the work (and the cache memory) an attacker
# can make one request cost before the signature is even checked.
_MAX_TOKEN_CHARS = 8192
_REALM = "roiml"

# The tenant of the request being served, for what counts per tenant without being handed the
# principal (the prediction metrics, counted deep in the serving step). Set by principal_of;
# each request runs in its own task, and threads started with run_in_threadpool copy it.
_request_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "roiml_request_tenant", default=None
)


def current_tenant() -> str | None:
    """The tenant of the request this code serves (None outside a request)."""
    return _request_tenant.get()


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request, as established by its token (or the embedded default).

    ``scopes`` is already expanded: a token with ``admin`` holds every scope, so routes can test
    ``Scope.PREDICT in principal.scopes`` directly.
    """

    tenant_id: str
    subject: str
    scopes: frozenset[Scope]
    client_id: str


class AuthenticationError(RoimlError):
    """A bearer token was rejected (HTTP 401). The message says why and what to do."""

    exit_code = 2


def _header_safe(text: str) -> str:
    # RFC 6750 §3: error_description allows %x20-21 / %x23-5B / %x5D-7E only; a quote,
    # backslash or control character (say, an echoed header value) must not reach the header.
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)


def _unauthorized(description: str, *, error: str | None = "invalid_token") -> HTTPException:
    challenge = f'Bearer realm="{_REALM}"'
    if error is not None:
        # RFC 6750 §3.1: a request without any credentials gets no error code, only the realm.
        challenge += f', error="{error}", error_description="{_header_safe(description)}"'
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=description,
        headers={"WWW-Authenticate": challenge},
    )


def _forbidden(principal: Principal, scope: Scope) -> HTTPException:
    description = (
        f"the token of client '{principal.client_id}' (tenant '{principal.tenant_id}') lacks the "
        f"'{scope}' scope; ask your identity provider for a token with scope '{scope}' "
        "(or 'admin')"
    )
    challenge = (
        f'Bearer realm="{_REALM}", error="insufficient_scope", scope="{scope}", '
        f'error_description="{_header_safe(description)}"'
    )
    return HTTPException(
        status_code=status.HTTP_403_FORBIDDEN,
        detail=description,
        headers={"WWW-Authenticate": challenge},
    )


# --- keys and start-up checks ------------------------------------------------------------------


def _load_public_key(pem: str, algorithm: str) -> Any:
    # Environment variables often carry a PEM on one line with literal "\n" separators.
    data = pem.strip().replace("\\n", "\n").encode()
    if b"PRIVATE KEY-----" in data:
        raise ConfigurationError(
            "ROIML_JWT_PUBLIC_KEY holds a private key; the API only verifies tokens, so give it "
            "the public key (e.g. `openssl pkey -in key.pem -pubout`) and keep the private key "
            "with the token issuer"
        )
    public: Any
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            public = x509.load_pem_x509_certificate(data).public_key()
        else:
            public = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigurationError(
            f"ROIML_JWT_PUBLIC_KEY is not a PEM public key or certificate ({exc}); set it to the "
            "issuer's key, starting with -----BEGIN PUBLIC KEY-----"
        ) from None

    if algorithm in _RSA_ALGORITHMS:
        ok = isinstance(public, rsa.RSAPublicKey)
    elif algorithm in _EC_CURVES:
        ok = isinstance(public, ec.EllipticCurvePublicKey) and isinstance(
            public.curve, _EC_CURVES[algorithm]
        )
    else:  # EdDSA
        ok = isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    if not ok:
        raise ConfigurationError(
            f"ROIML_JWT_PUBLIC_KEY is a {type(public).__name__.lstrip('_')}, which cannot verify "
            f"{algorithm} tokens; set ROIML_JWT_ALGORITHM to the algorithm the issuer signs with "
            "or give the matching key"
        )
    return public


def _load_key(settings: Settings) -> Any:
    """The verification key for ``settings.jwt_algorithm``, prepared once; ConfigurationError."""
    algorithm = settings.jwt_algorithm
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise ConfigurationError(
            f"ROIML_JWT_ALGORITHM={algorithm!r} is not supported; use one of "
            f"{', '.join(sorted(SUPPORTED_ALGORITHMS))} ('none' is never accepted)"
        )
    verifier = jwt.get_algorithm_by_name(algorithm)
    if algorithm in _HMAC_ALGORITHMS:
        if settings.jwt_secret is None:
            raise ConfigurationError(
                f"authentication is on with ROIML_JWT_ALGORITHM={algorithm} but ROIML_JWT_SECRET "
                "is unset; set it to a random secret (e.g. `openssl rand -base64 48`), or set "
                "ROIML_JWT_PUBLIC_KEY and ROIML_JWT_ALGORITHM=RS256"
            )
        try:
            key = verifier.prepare_key(settings.jwt_secret.get_secret_value())
        except jwt.InvalidKeyError:
            # PyJWT refuses a PEM key as an HMAC secret: that is the algorithm-confusion attack.
            raise ConfigurationError(
                "ROIML_JWT_SECRET holds a PEM key; for public-key tokens set ROIML_JWT_PUBLIC_KEY "
                "and ROIML_JWT_ALGORITHM=RS256 (or ES256) instead"
            ) from None
    else:
        if not settings.jwt_public_key:
            raise ConfigurationError(
                f"authentication is on with ROIML_JWT_ALGORITHM={algorithm} but "
                "ROIML_JWT_PUBLIC_KEY is unset; set it to the token issuer's PEM public key"
            )
        key = _load_public_key(settings.jwt_public_key, algorithm)
    # RFC 7518 §3.2 (HMAC keys at least the hash size), NIST SP 800-131A (RSA >= 2048 bits).
    # Checked here once: PyJWT would otherwise warn on every single verification.
    too_short = verifier.check_key_length(key)
    if too_short:
        raise ConfigurationError(f"the JWT key is too weak: {too_short}")
    return key


def check_startup(settings: Settings) -> None:
    """Refuse to serve with unsafe security settings; call before the API accepts requests.

    Raises :class:`~roiml.errors.ConfigurationError` when production runs without
    authentication, or authentication is on without a usable key (missing, malformed, a private
    key, the wrong type for ``jwt_algorithm``, or too short).
    """
    if settings.environment is Environment.PRODUCTION and not settings.auth_enabled:
        # Settings forces auth on in production; this guards settings built without validation.
        raise ConfigurationError(
            "production mode requires authentication; set ROIML_AUTH_ENABLED=true with "
            "ROIML_JWT_SECRET or ROIML_JWT_PUBLIC_KEY"
        )
    if settings.auth_enabled:
        _load_key(settings)


# --- verification ------------------------------------------------------------------------------


def _string_claim(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value
        or len(value) > _MAX_ID_CHARS
        or not value.isprintable()
        or any(c.isspace() for c in value)
    ):
        raise AuthenticationError(
            f"the bearer token's '{name}' claim must be a string of 1-{_MAX_ID_CHARS} printable "
            "characters without spaces; fix the claim at the identity provider"
        )
    return value


def _time_claims(claims: Mapping[str, Any]) -> dict[str, float]:
    """The NumericDate claims present, each checked to be a finite number (not a string, not a
    boolean, which Python counts as an int); AuthenticationError naming the claim otherwise."""
    times: dict[str, float] = {}
    for name in _TIME_CLAIMS:
        if name not in claims:
            continue
        value = claims[name]
        if type(value) not in (int, float) or not math.isfinite(value):
            what = "not finite" if type(value) is float else f"a {type(value).__name__}"
            raise AuthenticationError(
                f"the bearer token's '{name}' claim is {what}, not a number of seconds since "
                "the epoch (RFC 7519 NumericDate); fix the claim at the identity provider"
            )
        times[name] = float(value)
    return times


def _scopes_of(claims: Mapping[str, Any]) -> frozenset[Scope]:
    names: list[str] = []
    for claim in ("scope", "scopes"):
        value = claims.get(claim)
        if value is None:
            continue
        if isinstance(value, str):
            names.extend(value.split())  # OAuth 2 (RFC 8693 §4.2): space-separated
        elif isinstance(value, list) and all(
            isinstance(item, str) and item and not any(c.isspace() for c in item) for item in value
        ):
            names.extend(value)
        else:
            raise AuthenticationError(
                f"the bearer token's '{claim}' claim must be a space-separated string or a "
                "list of strings without spaces; fix the claim at the identity provider"
            )
    # Scopes of other services are ignored: they grant nothing here.
    granted = frozenset(_SCOPE_BY_NAME[name] for name in names if name in _SCOPE_BY_NAME)
    return ALL_SCOPES if Scope.ADMIN in granted else granted


class TokenVerifier:
    """Turns bearer tokens into :class:`Principal` s with the one key and algorithm configured.

    The algorithm comes from settings, never from the token's header, so ``alg: none`` and
    HS256-signed-with-the-public-key tokens fail. ``exp`` is required; ``aud`` and ``iss`` are
    checked when configured. Verified tokens are kept in a bounded LRU cache until the earlier
    of their expiry (plus leeway) and ``cache_seconds``: a repeat costs a dict lookup instead of
    a signature check. Only successes are cached, keyed by the whole token string (signature
    included), so a forged token can never hit an entry.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        cache_size: int = 4096,
        cache_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Load and check the key (ConfigurationError); ``cache_size=0`` disables the cache."""
        self.enabled = settings.auth_enabled
        self.algorithm = settings.jwt_algorithm
        self.default_tenant = settings.tenant_id
        self._key: Any = _load_key(settings) if settings.auth_enabled else None
        scraper = settings.metrics_token
        self._scraper = None if scraper is None else scraper.get_secret_value().encode()
        self._algorithms = [settings.jwt_algorithm]
        self._tenant_claim = settings.jwt_tenant_claim
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._leeway = settings.jwt_leeway_seconds
        required = ["exp"]
        if self._audience is not None:
            required.append("aud")
        if self._issuer is not None:
            required.append("iss")
        self._options: Options = {
            "require": required,
            # Without a configured audience, an ``aud`` claim is the issuer's business.
            "verify_aud": self._audience is not None,
            # Times are checked here after their types: PyJWT int()s a string "exp" and
            # accepts it, where a NumericDate must be a number.
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            # sub too, so that its wrong type gets the same reason as azp's and client_id's.
            "verify_sub": False,
            "enforce_minimum_key_length": True,
        }
        self._cache_size = cache_size
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    def is_scraper(self, token: str) -> bool:
        """Whether ``token`` is ``ROIML_METRICS_TOKEN`` (compared in constant time)."""
        return self._scraper is not None and hmac.compare_digest(token.encode(), self._scraper)

    def anonymous(self, client_host: str | None) -> Principal:
        """The principal of every request when authentication is off: default tenant, all scopes."""
        return Principal(
            tenant_id=self.default_tenant,
            subject="anonymous",
            scopes=ALL_SCOPES,
            client_id=client_host or "unknown",
        )

    def verify(self, token: str) -> Principal:
        """The principal ``token`` proves, or :class:`AuthenticationError` saying what is wrong."""
        now = self._clock()
        if self._cache_size:
            entry = self._cache.get(token)
            if entry is not None:
                if entry[0] > now:
                    # A bare try, not contextlib.suppress: this is the hot path (~10x cheaper).
                    try:  # noqa: SIM105
                        self._cache.move_to_end(token)
                    except KeyError:  # evicted by another thread since the get
                        pass
                    return entry[1]
                with self._lock:
                    self._cache.pop(token, None)
        principal, expires = self._decode(token)
        if self._cache_size:
            with self._lock:
                self._cache[token] = (min(expires, now + self._cache_seconds), principal)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return principal

    def clear_cache(self) -> None:
        """Forget every cached token (the next use of each is verified in full)."""
        with self._lock:
            self._cache.clear()

    def _decode(self, token: str) -> tuple[Principal, float]:
        if self._key is None:
            raise ConfigurationError(
                "authentication is off (ROIML_AUTH_ENABLED=false); there is no key to verify "
                "tokens with"
            )
        if len(token) > _MAX_TOKEN_CHARS:
            raise AuthenticationError(
                f"the bearer token is longer than {_MAX_TOKEN_CHARS} characters; send the "
                "token exactly as your identity provider issued it"
            )
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                options=self._options,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
            )
        except jwt.PyJWTError as exc:
            raise AuthenticationError(self._explain(token, exc)) from None
        except (ValueError, TypeError):
            # A hostile token must never become a 500; PyJWT maps nearly all of these itself.
            raise AuthenticationError(self._explain(token, jwt.DecodeError())) from None
        times = _time_claims(claims)
        self._check_times(times)
        return self._principal(claims), times["exp"] + self._leeway

    def _check_times(self, times: Mapping[str, float]) -> None:
        # PyJWT's rules and leeway (exp is past at exp itself), on the real clock as PyJWT's
        # were: the injectable clock only ages cache entries.
        now = time.time()
        if times["exp"] <= now - self._leeway:
            raise AuthenticationError(self._explain("", jwt.ExpiredSignatureError()))
        for name in ("nbf", "iat"):
            if name in times and times[name] > now + self._leeway:
                raise AuthenticationError(self._explain("", jwt.ImmatureSignatureError()))

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        name = self._tenant_claim
        tenant = claims.get(name)
        if tenant is None:
            raise AuthenticationError(
                f"the bearer token has no '{name}' claim; every token must name the tenant it "
                "acts for, so ask your identity provider to add it"
            )
        if not isinstance(tenant, str) or not _TENANT_RE.fullmatch(tenant):
            raise AuthenticationError(
                f"the bearer token's '{name}' claim is not a tenant id (1-64 letters, digits, "
                "'-' or '_'); fix the claim at the identity provider"
            )
        subject = _string_claim(claims, "sub")
        client = _string_claim(claims, "azp") or _string_claim(claims, "client_id") or subject
        if client is None:
            raise AuthenticationError(
                "the bearer token names neither a subject (sub) nor a client (azp, client_id); "
                "ask your identity provider for a token that does"
            )
        return Principal(
            tenant_id=tenant,
            subject=subject or client,
            scopes=_scopes_of(claims),
            client_id=client,
        )

    def _explain(self, token: str, exc: jwt.PyJWTError) -> str:
        # Our own wording rather than PyJWT's: each says what is wrong and what to do.
        if isinstance(exc, jwt.ExpiredSignatureError):
            return "the bearer token has expired; get a new token from your identity provider"
        if isinstance(exc, jwt.ImmatureSignatureError):
            return (
                "the bearer token is not valid yet (nbf or iat in the future); check the "
                "issuer's clock, or retry later"
            )
        if isinstance(exc, jwt.MissingRequiredClaimError):
            return (
                f"the bearer token has no '{exc.claim}' claim, which this API requires; ask "
                "your identity provider for a token that has it"
            )
        if isinstance(exc, jwt.InvalidAudienceError):
            return (
                f"the bearer token is not meant for this API (its aud is not "
                f"'{self._audience}'); request a token for audience '{self._audience}'"
            )
        if isinstance(exc, jwt.InvalidIssuerError):
            return (
                f"the bearer token was not issued by '{self._issuer}'; get a token from that issuer"
            )
        if isinstance(exc, jwt.InvalidAlgorithmError):
            try:
                used = str(jwt.get_unverified_header(token).get("alg"))[:16]
            except jwt.PyJWTError:
                used = "an unknown algorithm"
            return (
                f"the bearer token is signed with '{_header_safe(used)}'; this API accepts only "
                f"{self.algorithm}-signed tokens"
            )
        if isinstance(exc, jwt.InvalidSignatureError):
            return (
                "the bearer token's signature does not verify: it was not signed with this "
                "API's key; get a token from the configured identity provider"
            )
        if isinstance(exc, jwt.exceptions.InvalidJTIError):
            return (
                "the bearer token's 'jti' claim must be a string; fix the claim at the identity "
                "provider"
            )
        if isinstance(exc, jwt.DecodeError):
            return (
                "the bearer token is not a well-formed JWT (three base64url parts separated by "
                "dots); send the token exactly as issued"
            )
        return f"the bearer token is invalid ({type(exc).__name__}); get a new token"


# --- FastAPI dependencies ----------------------------------------------------------------------

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="JWT",
    description="A JWT from the identity provider, naming the tenant and carrying scopes.",
)


def install_auth(app: Starlette, settings: Settings) -> TokenVerifier:
    """Run :func:`check_startup` and put a :class:`TokenVerifier` on ``app.state``.

    Call it where the app is built, before serving: a bad configuration then stops start-up
    with a :class:`~roiml.errors.ConfigurationError` instead of failing requests.
    """
    check_startup(settings)
    verifier = TokenVerifier(settings)
    app.state.token_verifier = verifier
    return verifier


def principal_of(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """The request's :class:`Principal` (no scope check); HTTPException 401 on a bad token.

    The logic of :func:`authenticate`, callable from other dependencies so that they need not
    add a dependency layer (FastAPI spends more per layer than a cached verification costs).
    The principal is also left on ``request.state.principal`` for logging, and its tenant as
    :func:`current_tenant` for the metrics counted while serving the request.
    """
    try:
        verifier: TokenVerifier = request.app.state.token_verifier
    except AttributeError:
        raise RuntimeError(
            "no TokenVerifier on app.state: call install_auth(app, settings) when building the app"
        ) from None
    if not verifier.enabled:
        client = request.client
        principal = verifier.anonymous(client.host if client else None)
    elif credentials is None:
        scheme = request.headers.get("authorization", "").partition(" ")[0]
        if scheme:
            message = (
                f"the Authorization header uses the '{scheme[:16]}' scheme; this API needs "
                "'Authorization: Bearer <token>' with a token from your identity provider"
            )
        else:
            message = (
                "this endpoint needs a bearer token: send 'Authorization: Bearer <token>' "
                "with a token from your identity provider"
            )
        raise _unauthorized(message, error=None)
    else:
        try:
            principal = verifier.verify(credentials.credentials)
        except AuthenticationError as exc:
            raise _unauthorized(str(exc)) from None
    request.state.principal = principal
    _request_tenant.set(principal.tenant_id)
    return principal


def check_scope(principal: Principal, scope: Scope) -> None:
    """HTTPException 403 (RFC 6750 ``insufficient_scope``) unless ``principal`` holds ``scope``."""
    if scope not in principal.scopes:
        raise _forbidden(principal, scope)


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """Dependency: the request's :class:`Principal`, any scope; HTTP 401 on a bad token."""
    # async on purpose: FastAPI sends a sync dependency to the thread pool, which costs more
    # than the (cached) verification itself.
    return principal_of(request, credentials)


def require(scope: Scope | str) -> Callable[..., Awaitable[Principal]]:
    """Dependency factory: the request's :class:`Principal` if it holds ``scope``, else HTTP 403.

    Use as ``principal: Annotated[Principal, Depends(require(Scope.PREDICT))]``. The factory
    returns the same function per scope, so FastAPI resolves each once per request.
    """
    # Normalised before the cache: functools keys "predict" and Scope.PREDICT apart.
    return _require(Scope(scope))


@functools.cache
def _require(wanted: Scope) -> Callable[..., Awaitable[Principal]]:
    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    ) -> Principal:
        principal = principal_of(request, credentials)
        check_scope(principal, wanted)
        return principal

    dependency.__name__ = dependency.__qualname__ = f"require_{wanted.value}"
    return dependency
