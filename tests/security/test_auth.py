"""Attacks on authentication, each refused: auth silently off beside a configured key, and
tokens whose claims have the wrong type or shape (a string ``exp`` was accepted).

The token attacks that already held (forged signatures, ``alg: none``, HS256 signed with the
RS256 public key, expired or exp-less tokens, bad tenants and scopes, wrong audience or issuer)
are in ``tests/test_serving_security.py``.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from pydantic import ValidationError
from tests.test_serving_security import (
    SECRET,
    TestClient,
    assert_401,
    bearer,
    claims,
    hs256,
    make_app,
    make_settings,
)
from typer.testing import CliRunner

from roiml.cli.main import app as cli
from roiml.settings import Settings, get_settings

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No ROIML_* variable of the caller's shell and no stray .env: only what a test sets."""
    for name in list(os.environ):
        if name.startswith("ROIML_") and not name.startswith("ROIML_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


# --- auth is on whenever a key is configured -----------------------------------------------------


@pytest.mark.parametrize("variable", ["ROIML_JWT_SECRET", "ROIML_JWT_PUBLIC_KEY"])
def test_a_configured_key_turns_auth_on(env: pytest.MonkeyPatch, variable: str) -> None:
    env.setenv(variable, SECRET)
    assert Settings().auth_enabled is True


def test_the_api_of_a_key_without_the_flag_wants_tokens(env: pytest.MonkeyPatch) -> None:
    """The audit's case: ROIML_JWT_SECRET set, ROIML_AUTH_ENABLED not: served without tokens."""
    env.setenv("ROIML_JWT_SECRET", SECRET)
    with TestClient(make_app(Settings(redis_url=None))) as client:
        assert_401(client.get("/predict"), "bearer token", error=None)
        assert client.get("/predict", headers=bearer(hs256(claims()))).status_code == 200


@pytest.mark.parametrize("variable", ["ROIML_JWT_SECRET", "ROIML_JWT_PUBLIC_KEY"])
def test_auth_disabled_beside_a_key_refuses_to_start(
    env: pytest.MonkeyPatch, variable: str
) -> None:
    env.setenv(variable, SECRET)
    env.setenv("ROIML_AUTH_ENABLED", "false")
    with pytest.raises(ValidationError) as info:
        Settings()
    message = str(info.value)
    for phrase in ("ROIML_AUTH_ENABLED=false", "ROIML_JWT_SECRET", "ROIML_JWT_PUBLIC_KEY"):
        assert phrase in message
    assert "remove ROIML_AUTH_ENABLED=false" in message and "unset the key" in message
    assert SECRET[:8] not in message, "the error must not echo the secret"


def test_roiml_serve_refuses_the_contradiction(env: pytest.MonkeyPatch) -> None:
    env.setenv("ROIML_JWT_SECRET", SECRET)
    env.setenv("ROIML_AUTH_ENABLED", "false")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["serve"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert "ROIML_AUTH_ENABLED=false" in result.output
    assert "auth off" not in result.output
    assert SECRET[:8] not in result.output


def test_no_key_and_no_flag_is_the_embedded_default(env: pytest.MonkeyPatch) -> None:
    assert Settings().auth_enabled is False
    env.setenv("ROIML_JWT_SECRET", "")  # an empty line in .env is no key
    assert Settings().auth_enabled is False


def test_the_readme_names_the_auth_and_proxy_settings() -> None:
    text = README.read_text(encoding="utf-8")
    configuration = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for name in ("ROIML_AUTH_ENABLED", "ROIML_TRUSTED_PROXIES", "ROIML_JWT_SECRET"):
        assert f"`{name}`" in configuration, name


# --- claims are checked by type --------------------------------------------------------------


def _raw(payload: dict[str, Any]) -> str:
    """``payload`` signed with the secret as JSON exactly as given (Infinity included)."""
    return jwt.api_jws.encode(json.dumps(payload).encode(), SECRET, algorithm="HS256")


FAR = int(time.time()) + 3600
WRONG_TYPES = [
    ({"exp": str(FAR)}, "'exp' claim is a str"),  # the audit's "9999999999"
    ({"exp": "9999999999"}, "'exp' claim is a str"),
    ({"exp": True}, "'exp' claim is a bool"),
    ({"exp": [FAR]}, "'exp' claim is a list"),
    ({"exp": float("inf")}, "'exp' claim is not finite"),
    ({"nbf": "0"}, "'nbf' claim is a str"),
    ({"iat": "0"}, "'iat' claim is a str"),
    ({"iat": {"t": 0}}, "'iat' claim is a dict"),
    ({"sub": 42}, "'sub' claim must be a string"),
    ({"sub": "two words"}, "'sub' claim must be a string"),
    ({"sub": "x" * 300}, "'sub' claim must be a string"),
    ({"sub": "line\nbreak"}, "'sub' claim must be a string"),
    ({"sub": None, "azp": ["client"]}, "'azp' claim must be a string"),
    ({"tenant_id": 7}, "'tenant_id' claim is not a tenant id"),
    ({"tenant_id": ["acme"]}, "'tenant_id' claim is not a tenant id"),
    ({"tenant_id": "acme corp"}, "'tenant_id' claim is not a tenant id"),
    ({"scope": 5}, "'scope' claim must be a space-separated string"),
    ({"scope": ["predict", 3]}, "'scope' claim must be a space-separated string"),
    ({"scope": ["predict admin"]}, "'scope' claim must be a space-separated string"),
    ({"jti": 12}, "'jti' claim must be a string"),
]


@pytest.mark.parametrize(("overrides", "phrase"), WRONG_TYPES)
def test_a_claim_of_the_wrong_type_is_401(overrides: dict[str, Any], phrase: str) -> None:
    # claims() drops a None override (sub: None leaves azp to name the client).
    token = _raw(claims(**overrides))
    with TestClient(make_app(make_settings())) as client:
        response = client.get("/predict", headers=bearer(token))
    assert_401(response, phrase)
    assert "fix the claim" in response.json()["detail"]


def test_a_fractional_numeric_date_is_accepted() -> None:
    """RFC 7519 NumericDate may be non-integer: a float exp is a number, not an attack."""
    with TestClient(make_app(make_settings())) as client:
        token = hs256(claims(exp=time.time() + 600.5, iat=time.time() - 1.25))
        assert client.get("/predict", headers=bearer(token)).status_code == 200


def test_a_string_time_claim_is_refused_even_when_cached_elsewhere() -> None:
    """The type check runs before anything is cached: a string exp is never vouched for."""
    with TestClient(make_app(make_settings())) as client:
        token = _raw(claims(exp="9999999999"))
        for _ in range(2):
            response = client.get("/predict", headers=bearer(token))
            assert response.status_code == 401
            assert re.search(r"'exp' claim is a str", response.json()["detail"])
