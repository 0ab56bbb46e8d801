"""Redis killed, and Redis hung (SIGSTOP), under a bounded load on the API served on 127.0.0.1.

The online store's reads are bounded (tens of milliseconds) and go through a breaker, so while
Redis is away a prediction is served from the warm store (then computed), never a 500, and
``/health``, ``/metrics`` and the schema answer at once; within 2 s of Redis coming back the
predictions read it again. The database (SQLite here) stays up all along.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from faults.conftest import (
    FAULT_TENANT,
    Answer,
    RedisServer,
    Served,
    build_fault_world,
    figures,
    kinds,
    report,
    rewrite_online,
    run_load,
    serve,
    stop_serving,
)
from roiml.models.train import TrainingReport
from roiml.settings import Settings

pytestmark = [pytest.mark.redis, pytest.mark.slow]

DURING = 3.0


@pytest.fixture(scope="module")
def redis_world(
    own_redis: RedisServer,
    trained_models: dict[str, TrainingReport],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Settings, Served]]:
    data = Path(tmp_path_factory.mktemp("redis_faults")) / "data"
    settings = Settings(
        _env_file=None,
        data_dir=data,
        redis_url=own_redis.url,
        tenant_id=FAULT_TENANT,
        prediction_log_flush_seconds=0.05,
    )
    build_fault_world(settings, settings.resolved_database_url)
    served = serve(settings, trained_models, settings.resolved_database_url)
    try:
        yield settings, served
    finally:
        stop_serving(served)


def _check(answers: list[Answer], restored: float) -> None:
    """What holds whatever Redis does: every request answered, no 5xx but 503, a 503 says when
    to retry, the database's answers unchanged."""
    assert all(a.status for a in answers), [a for a in answers if not a.status][:3]
    bad = [(a.kind, a.status) for a in answers if a.status >= 500 and a.status != 503]
    assert not bad, bad[:5]
    assert all(a.retry_after for a in answers if a.status == 503)
    by_kind: dict[str, list[Answer]] = {}
    for a in answers:
        by_kind.setdefault(a.kind, []).append(a)
    # Redis is not needed to answer these: the database is up.
    for kind in ("online", "warm-only", "given", "as-of", "batch", "metrics", "openapi"):
        assert {a.status for a in by_kind[kind]} == {200}, (kind, by_kind[kind][:3])
    assert {a.status for a in by_kind["unknown"]} == {404}
    for a in by_kind["batch"]:
        assert sorted(a.item_statuses) == [200] * 20 + [404]
    during = [a for a in by_kind["online"] if 0.2 <= a.started < DURING]
    assert during and all(a.sources[0] in ("warm", "computed") for a in during)
    late = [a for a in by_kind["online"] if a.started >= restored + 2.0]
    assert late and all(a.sources == ["online"] for a in late)


def _online_again(a: Answer) -> bool:
    return a.status == 200 and a.sources == ["online"]


def test_redis_killed_serves_from_the_warm_store(
    redis_world: tuple[Settings, Served], own_redis: RedisServer
) -> None:
    settings, served = redis_world

    def restore() -> None:
        own_redis.start()
        # An empty Redis is back: the pipeline's next write fills it (here, at once).
        rewrite_online(settings, settings.resolved_database_url)

    answers, restored = run_load(
        served, kinds(served), own_redis.kill, restore, during=DURING, probe="online"
    )
    row = figures("Redis killed (SIGKILL) 3 s", answers, DURING, restored, _online_again, "online")
    report(row, answers, DURING)
    _check(answers, restored)
    assert row.max_seconds_health_during < 0.5
    assert row.max_seconds_during < 1.0
    assert "down" in row.health_during
    assert row.recover_seconds <= 2.0


def test_redis_hung_serves_from_the_warm_store(
    redis_world: tuple[Settings, Served], own_redis: RedisServer
) -> None:
    _, served = redis_world
    answers, restored = run_load(
        served, kinds(served), own_redis.stop, own_redis.cont, during=DURING, probe="online"
    )
    row = figures("Redis hung (SIGSTOP) 3 s", answers, DURING, restored, _online_again, "online")
    report(row, answers, DURING)
    _check(answers, restored)
    # The longest wait is the rate limiter's own: two tries of 250 ms, once a second
    # (roiml.serving.ratelimit), which every route pays, /health's and /metrics' included;
    # the online read's own is 50 ms.
    assert row.max_seconds_health_during < 1.5
    assert row.max_seconds_during < 1.5
    assert row.recover_seconds <= 2.0
