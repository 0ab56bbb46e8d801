"""The simulated world: determinism, base rates, point-in-time sanity and the ground truth."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from sqlalchemy import Engine, text

from roiml.db import SOURCE_TABLES
from roiml.db.engine import make_engine
from roiml.db.migrate import upgrade
from roiml.errors import WorldError
from roiml.world.config import WorldConfig
from roiml.world.generate import WorldReport, generate_world, truth_dir
from roiml.world.stats import world_stats

START, END = date(2023, 1, 1), date(2025, 1, 1)


def _world(tmp: Path, users: int, seed: int, url: str | None = None) -> tuple[Engine, WorldReport]:
    engine = make_engine(url or f"sqlite:///{tmp / 'world.db'}")
    upgrade(engine)
    config = WorldConfig(users=users, start=START, end=END, seed=seed, tenant_id="w")
    return engine, generate_world(engine, tmp / "data", config)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, Path, WorldReport]:
    tmp = tmp_path_factory.mktemp("world")
    engine, report = _world(tmp, 3000, seed=11)
    return engine, tmp / "data", report


def _fingerprint(engine: Engine, table: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        columns = [
            row[1] for row in conn.execute(text(f"PRAGMA table_info({table})")) if row[1] != "id"
        ]
        order = ", ".join(columns)
        return [
            tuple(row)
            for row in conn.execute(text(f"SELECT {order} FROM {table} ORDER BY {order}"))
        ]


def test_same_seed_same_world_other_seed_other_world(tmp_path: Path) -> None:
    first, _ = _world(tmp_path / "a", 400, seed=5)
    second, _ = _world(tmp_path / "b", 400, seed=5)
    other, _ = _world(tmp_path / "c", 400, seed=6)
    for table in ("users", "properties", "transactions", "email_events", "searches"):
        assert _fingerprint(first, table) == _fingerprint(second, table), table
    assert _fingerprint(first, "email_events") != _fingerprint(other, "email_events")
    truth_a = ds.dataset(tmp_path / "a" / "data" / "world" / "w" / "truth" / "move_daily")
    truth_b = ds.dataset(tmp_path / "b" / "data" / "world" / "w" / "truth" / "move_daily")
    assert truth_a.to_table().equals(truth_b.to_table())


def test_every_source_table_is_filled(world: tuple[Engine, Path, WorldReport]) -> None:
    engine, _, report = world
    assert set(report.rows) == set(SOURCE_TABLES)
    assert all(count > 0 for count in report.rows.values()), report.rows
    with engine.connect() as conn:
        for table in SOURCE_TABLES:
            stored = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            assert stored == report.rows[table], table


def test_base_rates_are_plausible(world: tuple[Engine, Path, WorldReport]) -> None:
    engine, data_dir, _ = world
    stats = world_stats(engine, data_dir, "w")
    rates = stats["rates"]
    assert 0.05 <= rates["movers_per_year"] <= 0.12
    assert 0.06 <= rates["transacting_owners_per_year"] <= 0.16
    assert 0.20 <= rates["email_open_rate"] <= 0.40
    assert 0.85 <= rates["active_users"] <= 0.97
    assert set(stats["transactions_in_window"]) == {"BUY", "SELL", "REFINANCE", "INVESTMENT"}
    assert stats["truth"]["journeys_by_kind"]["MOVE"] > 0


def test_nothing_happens_after_the_world_ends(world: tuple[Engine, Path, WorldReport]) -> None:
    engine, _, _ = world
    checks = {
        "email_events": ["sent_at", "opened_at", "clicked_at"],
        "alerts": ["sent_at", "clicked_at"],
        "platform_sessions": ["started_at"],
        "document_access_events": ["occurred_at"],
        "searches": ["searched_at"],
        "transactions": ["closed_at"],
        "properties": ["purchased_at", "sold_at"],
    }
    with engine.connect() as conn:
        for table, columns in checks.items():
            for column in columns:
                late = conn.execute(
                    text(f"SELECT count(*) FROM {table} WHERE {column} >= :end"),
                    {"end": "2025-01-01 00:00:00"},
                ).scalar_one()
                assert late == 0, f"{table}.{column}"


def test_opens_follow_sends_and_clicks_follow_opens(
    world: tuple[Engine, Path, WorldReport],
) -> None:
    engine, _, _ = world
    with engine.connect() as conn:
        bad = conn.execute(
            text(
                "SELECT count(*) FROM email_events WHERE opened_at < sent_at "
                "OR clicked_at < opened_at OR (clicked_at IS NOT NULL AND opened_at IS NULL)"
            )
        ).scalar_one()
    assert bad == 0


def test_engagement_rises_before_a_move(world: tuple[Engine, Path, WorldReport]) -> None:
    engine, _, _ = world
    with engine.connect() as conn:
        before, baseline = conn.execute(
            text(
                """
                WITH sells AS (
                    SELECT user_id, min(closed_at) AS closed_at FROM transactions
                    WHERE transaction_type = 'SELL' AND closed_at >= '2024-01-01'
                    GROUP BY user_id
                )
                SELECT
                    avg(CASE WHEN s.user_id IS NOT NULL
                        AND q.searched_at BETWEEN datetime(s.closed_at, '-90 days') AND s.closed_at
                        THEN 1.0 ELSE 0 END) * count(*) AS near_move,
                    count(*) AS all_searches
                FROM searches q LEFT JOIN sells s ON s.user_id = q.user_id
                """
            )
        ).one()
        movers = conn.execute(
            text(
                "SELECT count(DISTINCT user_id) FROM transactions "
                "WHERE transaction_type = 'SELL' AND closed_at >= '2024-01-01'"
            )
        ).scalar_one()
        users = conn.execute(text("SELECT count(*) FROM users")).scalar_one()
    # Searches per user-day in the 90 days before selling vs over everyone's two years.
    near_rate = before / (movers * 90)
    base_rate = baseline / (users * 731)
    assert near_rate > 4 * base_rate


def test_true_move_probability_is_calibrated(world: tuple[Engine, Path, WorldReport]) -> None:
    """The oracle's probabilities match the realised 180-day move rate (it is the truth)."""
    engine, data_dir, _ = world
    truth = ds.dataset(truth_dir(data_dir, "w") / "move_daily").to_table()
    probability = truth["p_move_180d"].to_numpy(zero_copy_only=False)
    assert np.nanmin(probability) >= 0.0 and np.nanmax(probability) <= 1.0
    days = truth["day"].to_numpy()
    assert np.isnan(probability[days >= np.datetime64("2024-07-05")]).all()
    with engine.connect() as conn:
        closings = conn.execute(
            text(
                "SELECT user_id, closed_at FROM transactions WHERE transaction_type IN "
                "('SELL', 'BUY') AND closed_at >= '2023-01-01'"
            )
        ).all()
    # Sample monthly as-of days; label = a SELL/BUY closing within (t, t + 180 days].
    users = truth["user_id"].to_numpy(zero_copy_only=False).astype(str)
    closing_days: dict[str, list[np.datetime64]] = {}
    for user, closed in closings:
        closing_days.setdefault(user, []).append(np.datetime64(closed, "D"))
    sample = np.nonzero(
        ((days - days.astype("datetime64[M]")).astype(np.int64) == 0) & ~np.isnan(probability)
    )[0]
    labels = np.array(
        [
            any(
                days[i] < c <= days[i] + np.timedelta64(180, "D")
                for c in closing_days.get(users[i], [])
            )
            for i in sample
        ]
    )
    predicted = probability[sample].mean()
    realised = labels.mean()
    assert realised > 0.01
    assert abs(predicted - realised) / realised < 0.2, (predicted, realised)
    # The oracle ranks: realised rate among its top decile is far above the rest.
    top = probability[sample] >= np.quantile(probability[sample], 0.9)
    assert labels[top].mean() > 5 * labels[~top].mean()


def test_second_world_for_a_tenant_needs_replace(tmp_path: Path) -> None:
    engine, _ = _world(tmp_path, 150, seed=1)
    config = WorldConfig(users=120, start=START, end=END, seed=2, tenant_id="w")
    with pytest.raises(WorldError, match="--replace"):
        generate_world(engine, tmp_path / "data", config)
    report = generate_world(engine, tmp_path / "data", config, replace=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 120
    assert report.rows["users"] == 120


def test_truth_stays_out_of_the_database(world: tuple[Engine, Path, WorldReport]) -> None:
    engine, data_dir, _ = world
    folder = truth_dir(data_dir, "w")
    assert {p.name for p in folder.iterdir()} >= {
        "users.parquet",
        "journeys.parquet",
        "property_values.parquet",
        "move_daily",
        "world.json",
    }
    users = ds.dataset(folder / "users.parquet").to_table()
    assert users.num_rows == 3000
    assert pc.min(users["best_hour"]).as_py() >= 0 and pc.max(users["best_hour"]).as_py() <= 23
    with engine.connect() as conn:
        columns = {row[1] for row in conn.execute(text("PRAGMA table_info(users)"))}
    assert not columns & {"propensity", "engagement", "best_hour", "pref_hour"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"users": 0}, "at least 1"),
        ({"start": date(2024, 1, 1), "end": date(2023, 1, 1)}, "must be after"),
        ({"start": date(2024, 1, 1), "end": date(2024, 1, 10)}, "at least 28 days"),
        ({"seed": -1}, "non-negative"),
    ],
)
def test_bad_world_requests_are_refused(kwargs: dict[str, object], message: str) -> None:
    params: dict[str, object] = {"users": 10, "start": START, "end": END} | kwargs
    with pytest.raises(WorldError, match=message):
        WorldConfig(**params)  # type: ignore[arg-type]


@pytest.mark.postgres
def test_postgres_gets_the_same_world_by_copy(postgres_empty_url: str, tmp_path: Path) -> None:
    pg_engine, pg_report = _world(tmp_path / "pg", 300, seed=3, url=postgres_empty_url)
    sqlite_engine, sqlite_report = _world(tmp_path / "lite", 300, seed=3)
    assert pg_report.rows == sqlite_report.rows
    query = text(
        "SELECT count(*), count(opened_at), sum(CASE WHEN unsubscribed THEN 1 ELSE 0 END) "
        "FROM email_events"
    )
    with pg_engine.connect() as pg, sqlite_engine.connect() as lite:
        assert tuple(pg.execute(query).one()) == tuple(lite.execute(query).one())
        price = text("SELECT round(sum(purchase_price)) FROM properties")
        assert pg.execute(price).scalar_one() == lite.execute(price).scalar_one()
    pg_engine.dispose()
