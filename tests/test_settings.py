"""Settings: ROIML_* variables and .env are read, defaults need no server, production is strict."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from roiml.settings import Environment, Settings, get_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ROIML_* variable of the caller's shell, and no stray .env in the working directory."""
    for name in list(os.environ):
        if name.startswith("ROIML_") and not name.startswith("ROIML_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def make(**kwargs: object) -> Settings:
    return Settings(_env_file=None, **kwargs)  # type: ignore[arg-type]


def test_defaults_need_no_server(tmp_path: Path) -> None:
    settings = make(data_dir=tmp_path / "d")
    assert settings.environment is Environment.DEVELOPMENT
    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.auth_enabled is False
    db = (tmp_path / "d" / "roiml.db").resolve()
    assert settings.resolved_database_url == f"sqlite:///{db}"
    mlflow = (tmp_path / "d" / "mlflow.db").resolve()
    assert settings.resolved_mlflow_tracking_uri == f"sqlite:///{mlflow}"
    assert settings.world_dir == tmp_path / "d" / "world"


def test_default_data_dir_is_relative_data() -> None:
    settings = make()
    assert settings.data_dir == Path("data")
    assert settings.resolved_database_url.startswith("sqlite:///")
    assert settings.resolved_database_url.endswith("/data/roiml.db")


def test_env_vars_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROIML_DATABASE_URL", "postgresql://u@db.example:5432/roiml")
    monkeypatch.setenv("ROIML_REDIS_URL", "redis://cache:6379/2")
    monkeypatch.setenv("ROIML_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("ROIML_TENANT_ID", "acme-realty_1")
    monkeypatch.setenv("ROIML_APP_ROLE", "api_role")
    monkeypatch.setenv("ROIML_AUTH_ENABLED", "true")
    monkeypatch.setenv("ROIML_CORS_ORIGINS", '["https://a.example", "https://b.example"]')
    monkeypatch.setenv("ROIML_WORLD_CHUNK_USERS", "1000")
    monkeypatch.setenv("ROIML_ENVIRONMENT", "test")
    settings = make()
    assert settings.database_url == "postgresql://u@db.example:5432/roiml"
    assert settings.resolved_database_url == "postgresql://u@db.example:5432/roiml"
    assert settings.redis_url == "redis://cache:6379/2"
    assert settings.data_dir == tmp_path / "elsewhere"
    assert settings.tenant_id == "acme-realty_1"
    assert settings.app_role == "api_role"
    assert settings.auth_enabled is True
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.world_chunk_users == 1000
    assert settings.environment is Environment.TEST


def test_unprefixed_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nope@nowhere/nope")
    monkeypatch.setenv("TENANT_ID", "other")
    settings = make()
    assert settings.database_url is None
    assert settings.tenant_id == "demo"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text(
        "ROIML_DATABASE_URL=sqlite:///from-dotenv.db\n"
        "ROIML_TENANT_ID=dotenv_tenant\n"
        "# a comment\n"
        "ROIML_LOG_LEVEL=DEBUG\n"
        "UNRELATED=1\n",
        encoding="utf-8",
    )
    settings = Settings(_env_file=env_file)
    assert settings.database_url == "sqlite:///from-dotenv.db"
    assert settings.tenant_id == "dotenv_tenant"
    assert settings.log_level == "DEBUG"


def test_env_var_beats_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("ROIML_TENANT_ID=from_file\n", encoding="utf-8")
    monkeypatch.setenv("ROIML_TENANT_ID", "from_env")
    assert Settings(_env_file=env_file).tenant_id == "from_env"


def test_dotenv_in_working_directory_is_the_default(tmp_path: Path) -> None:
    # The autouse fixture made tmp_path the working directory.
    (tmp_path / ".env").write_text("ROIML_TENANT_ID=cwd_tenant\n", encoding="utf-8")
    assert Settings().tenant_id == "cwd_tenant"


def test_production_without_jwt_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROIML_ENVIRONMENT", "production")
    with pytest.raises(ValidationError) as info:
        make()
    message = str(info.value)
    assert "ROIML_JWT_SECRET" in message
    assert "ROIML_JWT_PUBLIC_KEY" in message


@pytest.mark.parametrize(
    "key", [{"jwt_secret": "s3cret-value"}, {"jwt_public_key": "-----BEGIN PUBLIC KEY-----"}]
)
def test_a_key_with_auth_switched_off_is_refused(key: dict[str, str]) -> None:
    # A contradiction is not settled silently either way: the operator is told which two
    # settings disagree. Without the flag, the key turns auth on.
    with pytest.raises(ValidationError, match="ROIML_AUTH_ENABLED=false"):
        make(environment="production", auth_enabled=False, **key)
    settings = make(environment="production", **key)
    assert settings.environment is Environment.PRODUCTION
    assert settings.auth_enabled is True


def test_jwt_secret_is_not_printed() -> None:
    settings = make(jwt_secret="very-secret-value")
    assert "very-secret-value" not in repr(settings)
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == "very-secret-value"


@pytest.mark.parametrize("tenant", ["", "has space", "semi;colon", "quote'", "x" * 65, "a/b"])
def test_invalid_tenant_id_is_rejected(tenant: str) -> None:
    with pytest.raises(ValidationError, match="tenant_id"):
        make(tenant_id=tenant)


def test_invalid_tenant_id_from_env_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROIML_TENANT_ID", "drop table;")
    with pytest.raises(ValidationError, match="tenant_id"):
        make()


@pytest.mark.parametrize("tenant", ["a", "demo", "Acme-Realty_2", "x" * 64])
def test_valid_tenant_ids(tenant: str) -> None:
    assert make(tenant_id=tenant).tenant_id == tenant


@pytest.mark.parametrize("chunk", [0, 99, 200_001])
def test_world_chunk_bounds(chunk: int) -> None:
    with pytest.raises(ValidationError, match="world_chunk_users"):
        make(world_chunk_users=chunk)


def test_unknown_environment_is_rejected() -> None:
    with pytest.raises(ValidationError, match="environment"):
        make(environment="staging")


def test_get_settings_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    try:
        monkeypatch.setenv("ROIML_TENANT_ID", "first")
        first = get_settings()
        monkeypatch.setenv("ROIML_TENANT_ID", "second")
        assert get_settings() is first
        assert first.tenant_id == "first"
        get_settings.cache_clear()
        assert get_settings().tenant_id == "second"
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("pinned", "yesterday"),
    [
        ("2027-03-01", "2027-02-28"),
        ("2026-12-07", "2026-12-06"),
        ("2026-12-14", "2026-12-13"),
        ("2027-01-31", "2027-01-30"),
        ("2028-02-29", "2028-02-28"),
        ("2028-03-01", "2028-02-29"),
    ],
)
def test_the_products_today_is_the_pinned_day_and_monitoring_defaults_to_the_day_before(
    monkeypatch: pytest.MonkeyPatch, pinned: str, yesterday: str
) -> None:
    from roiml.cli.monitor_cmd import _period

    monkeypatch.setenv("ROIML_TODAY", pinned)
    settings = Settings(_env_file=None)
    assert settings.current_date() == date.fromisoformat(pinned)
    assert _period(None, settings.current_date()) == date.fromisoformat(yesterday)


def test_the_products_today_is_the_utc_date_when_not_pinned() -> None:
    before = datetime.now(UTC).date()
    today = Settings(_env_file=None).current_date()
    assert before <= today <= datetime.now(UTC).date()
