"""PostgreSQL killed, and PostgreSQL hung, under a bounded load on the API served on 127.0.0.1.

The API reaches the machine's PostgreSQL through a proxy of the test's own (never the server
itself): ``kill`` closes every connection and refuses new ones, ``hang`` accepts and forwards
nothing. Redis (the test's own server) stays up, so what the online store holds is served all
along; what needs the database (an unknown id, a warm-only user, a past date, feedback) is a
503 with ``Retry-After``, per item in a batch; nothing is a 500, and the service's routes
answer. Within 2 s of the database coming back, it is used again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from conftest import create_database, drop_database
from faults.conftest import (
    FAULT_TENANT,
    Answer,
    RedisServer,
    Served,
    build_fault_world,
    figures,
    kinds,
    report,
    run_load,
    serve,
    stop_serving,
)
from faults.proxy import TcpProxy
from roiml.db.engine import make_engine
from roiml.models.train import TrainingReport
from roiml.settings import Settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

DURING = 3.0
# Answered without the database: the online store and given features, the process's own.
WITHOUT_DATABASE = ("online", "given", "metrics", "openapi")
# Need it: 503 while it is away, their usual answer otherwise.
NEED_DATABASE = {"unknown": 404, "warm-only": 200, "as-of": 200, "feedback": 200}


@pytest.fixture(scope="module")
def postgres_world(
    postgres_admin_url: str,
    own_redis: RedisServer,
    trained_models: dict[str, TrainingReport],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TcpProxy, Served, str]]:
    direct = create_database(postgres_admin_url)
    parsed = make_url(make_engine(direct).url)
    proxy = TcpProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
    through_proxy = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(
        hide_password=False
    )
    settings = Settings(
        _env_file=None,
        data_dir=Path(tmp_path_factory.mktemp("postgres_faults")) / "data",
        database_url=through_proxy,
        redis_url=own_redis.url,
        tenant_id=FAULT_TENANT,
        prediction_log_flush_seconds=0.05,
    )
    served: Served | None = None
    try:
        build_fault_world(settings, direct)
        served = serve(settings, trained_models, through_proxy)
        yield proxy, served, _logged_prediction(served, direct)
    finally:
        if served is not None:
            stop_serving(served)
        proxy.close()
        drop_database(postgres_admin_url, direct)


def _logged_prediction(served: Served, url: str) -> str:
    """A prediction's id, once the log has written it (feedback needs the row)."""
    response = httpx.post(
        f"{served.base}/v1/predict/move-probability", json={"entity_id": "user_40"}
    )
    assert response.status_code == 200, response.text
    prediction_id: str = response.json()["prediction_id"]
    engine = make_engine(url)
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                found = conn.execute(
                    text("SELECT 1 FROM ml_predictions WHERE prediction_id = :p"),
                    {"p": prediction_id},
                ).first()
            if found:
                return prediction_id
            time.sleep(0.1)
    finally:
        engine.dispose()
    raise AssertionError("the prediction was never logged")


def _check(answers: list[Answer], restored: float) -> None:
    assert all(a.status for a in answers), [a for a in answers if not a.status][:3]
    bad = [(a.kind, a.status) for a in answers if a.status >= 500 and a.status != 503]
    assert not bad, bad[:5]
    assert all(a.retry_after for a in answers if a.status == 503)
    for a in answers:
        if a.kind in WITHOUT_DATABASE:
            assert a.status == 200, a
        if a.kind == "online":
            assert a.sources == ["online"], a
    # Done before the fault, or begun 2 s after the restore: the usual answers.
    calm = [a for a in answers if a.started + a.seconds < 0 or a.started >= restored + 2.0]
    for a in calm:
        if a.kind in NEED_DATABASE:
            assert a.status == NEED_DATABASE[a.kind], a
        if a.kind == "batch":
            assert sorted(a.item_statuses) == [200] * 20 + [404], a
    assert any(a.kind == "warm-only" and a.started >= restored + 2.0 for a in calm)
    # In the fault (once the first timeouts have opened the breaker; a probe still waiting on
    # the hung server when it comes back is answered): 503, per item.
    settled = [a for a in answers if a.started >= 0.5 and a.started + a.seconds < restored]
    for a in settled:
        if a.kind in NEED_DATABASE:
            assert a.status == 503, a
        if a.kind == "batch":
            assert a.status == 200 and sorted(a.item_statuses) == [200] * 20 + [503], a
    assert any(a.kind == "warm-only" for a in settled)


def _warm_again(a: Answer) -> bool:
    return a.status == 200


def test_postgres_killed(postgres_world: tuple[TcpProxy, Served, str]) -> None:
    proxy, served, prediction_id = postgres_world
    requests = kinds(served, prediction_id=prediction_id)
    answers, restored = run_load(
        served, requests, proxy.kill, proxy.restore, during=DURING, probe="warm-only"
    )
    row = figures("PostgreSQL killed 3 s", answers, DURING, restored, _warm_again, "warm-only")
    report(row, answers, DURING)
    _check(answers, restored)
    assert row.max_seconds_during < 1.0
    assert row.max_seconds_health_during < 1.0
    assert row.recover_seconds <= 2.0


def test_postgres_hung(postgres_world: tuple[TcpProxy, Served, str]) -> None:
    proxy, served, prediction_id = postgres_world
    requests = kinds(served, prediction_id=prediction_id)
    answers, restored = run_load(
        served, requests, proxy.hang, proxy.restore, during=DURING, probe="warm-only"
    )
    row = figures("PostgreSQL hung 3 s", answers, DURING, restored, _warm_again, "warm-only")
    report(row, answers, DURING)
    _check(answers, restored)
    # A hung server costs the first calls their timeout (a connect: libpq's 2 s at least, a
    # statement: 2.25 s) until the breaker opens; a prediction's reads give up after 0.35 s.
    assert row.max_seconds_during < 3.0
    metrics = [a for a in answers if a.kind in ("metrics", "openapi") and 0 <= a.started < DURING]
    assert max(a.seconds for a in metrics) < 1.0
    assert row.recover_seconds <= 2.0


def test_postgres_restarted_costs_no_request(postgres_world: tuple[TcpProxy, Served, str]) -> None:
    """A restart drops every pooled connection; the engine does not pre-ping (its ping could
    hang unbounded), so the first read meets a dead connection: it is read again on a fresh
    one, not answered 503."""
    proxy, served, _ = postgres_world
    requests = kinds(served)
    with httpx.Client(base_url=served.base, timeout=10) as client:
        deadline = time.monotonic() + 10
        while requests["warm-only"](client).status_code != 200:  # the pool holds connections
            assert time.monotonic() < deadline, "the database was not used again"
            time.sleep(0.1)
        for _ in range(3):
            assert requests["warm-only"](client).status_code == 200
        proxy.kill()
        proxy.restore()
        statuses = [requests[kind](client).status_code for kind in ("warm-only", "as-of") * 3]
    assert statuses == [200] * 6, statuses
