"""The service fixtures really reach their servers, so a green CI run proves service tests ran."""

from __future__ import annotations

import uuid

import pytest
import redis
from sqlalchemy import Engine, text

from roiml.db.engine import make_engine
from roiml.db.revision import current_revision, head_revision


@pytest.mark.postgres
def test_postgres_admin_url_reaches_the_server(postgres_admin_url: str) -> None:
    engine = make_engine(postgres_admin_url)
    try:
        with engine.connect() as conn:
            version: str = conn.execute(text("SELECT version()")).scalar_one()
            is_super: bool = conn.execute(
                text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            ).scalar_one()
    finally:
        engine.dispose()
    assert version.startswith("PostgreSQL ")
    assert is_super is True  # the fixtures create databases and roles


@pytest.mark.postgres
def test_postgres_engine_is_migrated(postgres_engine: Engine) -> None:
    with postgres_engine.connect() as conn:
        assert conn.execute(text("SELECT version()")).scalar_one().startswith("PostgreSQL ")
        database = conn.execute(text("SELECT current_database()")).scalar_one()
    assert database.startswith("roiml_test_")
    assert current_revision(postgres_engine) == head_revision()


@pytest.mark.postgres
def test_postgres_empty_url_is_a_fresh_database(postgres_empty_url: str) -> None:
    engine = make_engine(postgres_empty_url)
    try:
        with engine.connect() as conn:
            tables: int = conn.execute(
                text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            ).scalar_one()
        assert tables == 0
        assert current_revision(engine) is None
    finally:
        engine.dispose()


@pytest.mark.redis
def test_redis_ping_set_get(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=3)
    key = f"roiml:test:{uuid.uuid4().hex}"
    try:
        assert client.ping() is True
        assert client.set(key, "value", ex=60) is True
        assert client.get(key) == b"value"
    finally:
        client.delete(key)
        client.close()
    check = redis.Redis.from_url(redis_url, socket_connect_timeout=3)
    try:
        assert check.exists(key) == 0
    finally:
        check.close()
