"""Shared fixtures: embedded settings on a temp dir, and real PostgreSQL / Redis when configured.

Service tests use ``ROIML_TEST_POSTGRES_URL`` / ``ROIML_TEST_REDIS_URL``. Unset, they are
skipped; set but unreachable, they are skipped locally and *fail* under ``CI=true``, so CI can
never go green without having talked to the real servers.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from model_world import World, build_world, train_all
from roiml.db.engine import make_engine
from roiml.db.migrate import upgrade
from roiml.db.roles import grant_app_role
from roiml.models.train import TrainingReport
from roiml.settings import Settings, get_settings
from service_markers import markers_needed

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test ``postgres`` / ``redis`` / ``slow`` by the fixtures and backend parameters
    it uses (see ``service_markers``), before ``-m`` selects: a marker cannot be forgotten."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        for name in sorted(markers_needed(getattr(item, "fixturenames", ()), params)):
            if item.get_closest_marker(name) is None:
                item.add_marker(name)


def _unreachable(what: str, url: str, exc: Exception) -> None:
    message = f"{what} at {url} is unreachable: {exc}"
    if IN_CI:
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded-default settings rooted in a fresh temporary directory."""
    return Settings(_env_file=None, data_dir=tmp_path / "data")


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """No setting from the caller: every ``ROIML_*`` variable unset (the ``ROIML_TEST_*`` service
    URLs kept), the working directory the test's own (so no stray ``.env`` is read), and the
    cached settings cleared before and after. Set what the test needs on the monkeypatch given."""
    for name in list(os.environ):
        if name.startswith("ROIML_") and not name.startswith("ROIML_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.fixture
def sqlite_engine(settings: Settings) -> Iterator[Engine]:
    """A migrated SQLite database in the test's temporary directory."""
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The configured PostgreSQL URL (a superuser), checked reachable."""
    url = os.environ.get("ROIML_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("ROIML_TEST_POSTGRES_URL is not set")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        _unreachable("PostgreSQL", url, exc)
    finally:
        engine.dispose()
    return url


def create_database(admin_url: str) -> str:
    """Create an empty, uniquely named database next to ``admin_url``'s and return its URL."""
    name = f"roiml_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    parsed = make_url(make_engine(admin_url).url)
    return parsed.set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    """Drop the database behind ``url`` (created by :func:`create_database`)."""
    name = make_url(url).database
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def postgres_empty_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test, dropped afterwards."""
    url = create_database(postgres_admin_url)
    yield url
    drop_database(postgres_admin_url, url)


@pytest.fixture(scope="session")
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A migrated PostgreSQL database shared by the session; tests isolate by tenant id."""
    url = create_database(postgres_admin_url)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    drop_database(postgres_admin_url, url)


@pytest.fixture
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


@contextlib.contextmanager
def application_role(postgres_url: str, **engine_options: object) -> Iterator[tuple[Engine, str]]:
    """A fresh application role on ``postgres_url``'s database (row-level security applies to
    it), as an engine and the role's name; the role is dropped afterwards."""
    owner = make_engine(postgres_url)
    role = f"roiml_test_app_{uuid.uuid4().hex[:10]}"
    grant_app_role(owner, role)
    url = make_url(owner.url).set(username=role, password=None)
    app = make_engine(url.render_as_string(hide_password=False), **engine_options)
    try:
        yield app, role
    finally:
        app.dispose()
        with owner.begin() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))
        owner.dispose()


@pytest.fixture(scope="module")
def app_engine(postgres_url: str) -> Iterator[Engine]:
    """The shared PostgreSQL database as a fresh application role, to which RLS applies."""
    with application_role(postgres_url, pool_size=1, max_overflow=0) as (app, _):
        yield app


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The configured Redis URL, checked reachable."""
    url = os.environ.get("ROIML_TEST_REDIS_URL")
    if not url:
        pytest.skip("ROIML_TEST_REDIS_URL is not set")
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except Exception as exc:
        _unreachable("Redis", url, exc)
    finally:
        client.close()
    return url


@pytest.fixture
def tenant() -> str:
    """A tenant id unique to the test, so tests sharing a database never see each other."""
    return f"t_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def model_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """A 1,500-homeowner world with its training snapshots (shared by the session)."""
    return build_world(tmp_path_factory.mktemp("model_world"))


@pytest.fixture(scope="session")
def trained_models(model_world: World) -> dict[str, TrainingReport]:
    """The four models trained once on :func:`model_world`."""
    return train_all(model_world)
