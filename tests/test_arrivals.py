"""The gate's arrival check: a source table that received a fraction of a usual day's rows
fails the day; a usual, quiet or new table does not; an operator can vouch for a real quiet
day. Unit tests of the rule, the check over an extract, and the daily pipeline end to end."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from typer.testing import CliRunner

from roiml.cli.main import app
from roiml.db.engine import make_engine
from roiml.db.migrate import upgrade
from roiml.errors import PipelineError
from roiml.features.arrivals import (
    ARRIVAL_HISTORY_DAYS,
    ARRIVAL_RULE,
    check_arrivals,
    judge_arrival,
)
from roiml.features.sources import SourceTables
from roiml.pipeline import PipelineContext, run_day
from roiml.store.online_sqlite import SqliteOnlineStore
from roiml.store.retrieval import FeatureStore
from roiml.world.config import WorldConfig
from roiml.world.generate import generate_world

DAY = date(2025, 3, 12)  # a Wednesday: the rows the pipeline of the 13th reads first
LONG_AGO = date(2024, 1, 1)


def _days(history: list[int], today: int) -> np.ndarray:
    return np.array([*history, today])


def test_half_a_steady_day_fails_and_a_usual_one_passes() -> None:
    rng = np.random.default_rng(3)
    history = list(rng.poisson(80, ARRIVAL_HISTORY_DAYS))
    usual = judge_arrival("platform_sessions", DAY, _days(history, 76), LONG_AGO)
    half = judge_arrival("platform_sessions", DAY, _days(history, 40), LONG_AGO)
    assert usual.judged and usual.passed
    assert half.judged and not half.passed
    issue = half.issue()
    assert (issue.feature, issue.rule) == ("platform_sessions", ARRIVAL_RULE)
    assert f"40 rows stamped {DAY}" in issue.observed and f">= {half.low}" in issue.allowed


def test_a_quiet_weekday_is_judged_against_its_own_weekdays() -> None:
    # Weekends see 45% of a weekday's sessions: a Sunday is short of the 28-day median but
    # usual for a Sunday; half a Wednesday is short of both.
    start = DAY - timedelta(days=ARRIVAL_HISTORY_DAYS)
    history = [
        45 if (start + timedelta(days=i)).weekday() >= 5 else 100
        for i in range(ARRIVAL_HISTORY_DAYS)
    ]
    sunday = DAY + timedelta(days=4)
    shifted = [*history[4:], 100, 100, 100, 45]  # the 28 days before that Sunday
    assert sunday.weekday() == 6
    assert judge_arrival("platform_sessions", sunday, _days(shifted, 44), LONG_AGO).passed
    assert not judge_arrival("platform_sessions", DAY, _days(history, 50), LONG_AGO).passed
    assert judge_arrival("platform_sessions", DAY, _days(history, 97), LONG_AGO).passed


def test_a_surplus_passes_a_short_new_or_sparse_table_is_not_judged() -> None:
    history = [30] * ARRIVAL_HISTORY_DAYS
    # Homeowners reading twice as much (a tax season) is not a fault of the load.
    assert judge_arrival("searches", DAY, _days(history, 70), LONG_AGO).passed
    new = judge_arrival("searches", DAY, _days(history, 0), DAY - timedelta(days=10))
    assert not new.judged and new.passed and "less than 28 days" in new.reason
    sparse = judge_arrival("searches", DAY, _days([5] * ARRIVAL_HISTORY_DAYS, 0), LONG_AGO)
    assert not sparse.judged and "too few" in sparse.reason
    with pytest.raises(ValueError, match="28 history days"):
        judge_arrival("searches", DAY, np.array([1, 2, 3]), LONG_AGO)


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(min_value=20, max_value=5000),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_an_empty_day_always_fails_and_a_median_day_always_passes(rate: float, seed: int) -> None:
    history = list(np.random.default_rng(seed).poisson(rate, ARRIVAL_HISTORY_DAYS))
    median = int(np.median(history))
    if median < 20:
        return  # not judged: below the volume a partial load can be told from chance
    assert not judge_arrival("alerts", DAY, _days(history, 0), LONG_AGO).passed
    assert judge_arrival("alerts", DAY, _days(history, median), LONG_AGO).passed


def _sessions(per_day: dict[date, int]) -> pa.Table:
    stamps = [
        datetime.combine(day, datetime.min.time()) + timedelta(minutes=7 * i)
        for day, count in per_day.items()
        for i in range(count)
    ]
    return pa.table(
        {
            "user_id": [f"u{i}" for i in range(len(stamps))],
            "started_at": pa.array(stamps, pa.timestamp("us")),
        }
    )


def test_check_arrivals_reads_the_extract_counts_missing_days_as_zero_and_obeys_accept() -> None:
    history = {DAY - timedelta(days=d): 60 for d in range(1, 60)}
    history[DAY - timedelta(days=3)] = 0  # an upstream outage two days ago: no rows at all
    as_of = datetime.combine(DAY + timedelta(days=1), datetime.min.time())
    sources = SourceTables(tables={"platform_sessions": _sessions({**history, DAY: 25})})
    verdict = check_arrivals(sources, as_of)["platform_sessions"]
    assert (verdict.day, verdict.rows, verdict.median, verdict.judged) == (DAY, 25, 60, True)
    assert not verdict.passed
    accepted = check_arrivals(sources, as_of, accept={"platform_sessions"})["platform_sessions"]
    assert accepted.passed and accepted.reason == "accepted by the operator"
    # Rows stamped after the day (not yet visible to the pipeline) are not counted.
    late = _sessions({**history, DAY: 60, DAY + timedelta(days=1): 5})
    assert check_arrivals(SourceTables(tables={"platform_sessions": late}), as_of)[
        "platform_sessions"
    ].passed


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("arrivals")
    engine = make_engine(f"sqlite:///{root / 'world.db'}")
    upgrade(engine)
    config = WorldConfig(
        users=1000, start=date(2024, 1, 1), end=DAY + timedelta(days=2), seed=11, tenant_id="a"
    )
    generate_world(engine, root / "seed", config)
    engine.dispose()
    return root


def _run(root: Path, data: str, accept: frozenset[str] = frozenset()) -> PipelineContext:
    engine = make_engine(f"sqlite:///{root / 'world.db'}")
    store = FeatureStore(engine, "a", root / data, SqliteOnlineStore(root / data / "online.db"))
    day = DAY + timedelta(days=1)
    ctx = PipelineContext(
        store,
        day,
        now=datetime.combine(day, datetime.min.time()) + timedelta(hours=3),
        on_time=True,
        accept_arrivals=accept,
    )
    try:
        run_day(ctx)
    finally:
        store.online.close()
        engine.dispose()
    return ctx


@pytest.mark.slow
def test_the_pipeline_fails_a_half_loaded_day_and_publishes_it_once_vouched_for(
    world: Path,
) -> None:
    ctx = _run(world, "before")
    report = json.loads(ctx.workspace.validation.read_text())
    assert report["passed"] and report["arrivals"]["platform_sessions"]["judged"]
    engine = make_engine(f"sqlite:///{world / 'world.db'}")
    with engine.begin() as conn:
        conn.execute(
            text(
                "DELETE FROM platform_sessions WHERE tenant_id = 'a' AND started_at >= :day "
                "AND started_at < :next AND id % 2 = 0"
            ),
            {"day": DAY, "next": DAY + timedelta(days=1)},
        )
    engine.dispose()
    with pytest.raises(PipelineError) as failed:
        _run(world, "after")
    message = str(failed.value)
    assert f"platform_sessions: {ARRIVAL_RULE}" in message
    assert "nothing is published" in message and "--accept-arrivals platform_sessions" in message
    ctx = _run(world, "after", frozenset({"platform_sessions"}))
    report = json.loads(ctx.workspace.validation.read_text())
    assert report["passed"]
    assert report["arrivals"]["platform_sessions"]["reason"] == "accepted by the operator"


def test_accept_arrivals_names_a_checked_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROIML_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ROIML_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    result = CliRunner().invoke(
        app, ["pipeline", "run", "--date", "2025-03-13", "--accept-arrivals", "sesions"]
    )
    assert result.exit_code != 0
    assert "--accept-arrivals sesions: not a table whose arrivals are checked" in result.output
    assert "platform_sessions" in result.output and "Traceback" not in result.output
