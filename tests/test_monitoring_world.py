"""End to end: a world with an injected shift, served, monitored: the shifted features flag.

Three small worlds share one seed: ``a`` without a shift (its features are the model's training
reference), ``b`` with a rate shock and a change in email habits from May 1st, ``c`` with the
email change alone. The features of b and c as of June 20th are logged as served predictions
and monitored; the flags must follow the injected causes and leave the stable features alone.
"""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import Engine

from monitoring_fixtures import log_predictions, move_artifact, register
from roiml.db.engine import make_engine
from roiml.db.migrate import upgrade
from roiml.features.catalog import CATALOG
from roiml.features.engineer import FeatureEngineer
from roiml.monitoring.job import ModelPeriodResult, run_monitoring
from roiml.settings import Settings
from roiml.world import WorldConfig, generate_world

START, END, SHIFT = date(2023, 1, 1), date(2023, 7, 1), date(2023, 5, 1)
AS_OF = datetime(2023, 6, 20)
EMAIL = {"email_open_rate_30d", "email_open_rate_90d", "days_since_last_email_open"}
RATES = {"mortgage_rate_30y", "mortgage_rate_gap", "market_heat_score"}
STABLE = {
    "property_sqft",
    "property_bedrooms",
    "property_age_years",
    "property_has_pool",
    "purchase_price",
    "doc_access_count_30d",
    "session_count_30d",
    "page_views_30d",
    "search_count_30d",
    "emails_received_30d",
    "ownership_years",
    "transaction_count_total",
}


def _features(engine: Engine, tenant: str) -> pa.Table:
    return FeatureEngineer(engine, tenant).compute_batch(list(CATALOG.feature_sets), None, AS_OF)


def _matrix(table: pa.Table, names: list[str]) -> np.ndarray:
    return np.column_stack(
        [table[n].cast(pa.float64()).to_numpy(zero_copy_only=False) for n in names]
    )


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelPeriodResult]:
    root = tmp_path_factory.mktemp("monitoring_world")
    settings = Settings(_env_file=None, data_dir=root / "data")
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    shifts = {
        "a": {},
        "b": {"shift_from": SHIFT, "rate_shock": 2.0, "email_open_shift": -1.5},
        "c": {"shift_from": SHIFT, "email_open_shift": -1.5},
    }
    for tenant, shift in shifts.items():
        config = WorldConfig(users=400, start=START, end=END, seed=5, tenant_id=tenant, **shift)
        generate_world(engine, settings.data_dir, config)  # type: ignore[arg-type]
    reference = _features(engine, "a")
    names = reference.column_names[2:]
    artifact = move_artifact(_matrix(reference, names), names, as_of=AS_OF)
    results = {}
    for tenant in ("b", "c"):
        register(engine, tenant)
        log_predictions(engine, tenant, artifact, _matrix(_features(engine, tenant), names), AS_OF)
        (results[tenant],) = run_monitoring(
            settings,
            engine,
            tenant,
            AS_OF.date(),
            load_artifact=lambda n, v: artifact,
            now=datetime(2023, 6, 25),
        )
    engine.dispose()
    return results


def test_a_rate_shock_and_fewer_opens_flag_rates_and_email_not_the_stable(
    monitored: dict[str, ModelPeriodResult],
) -> None:
    shocked = monitored["b"]
    flagged = set(shocked.drifted_features)
    assert shocked.status.startswith("DRIFT")
    assert flagged >= EMAIL | RATES
    assert not flagged & STABLE
    assert {a["subject"] for a in shocked.alerts if a["kind"] == "feature_drift"} == flagged


def test_email_habits_alone_flag_email_features_and_not_rates(
    monitored: dict[str, ModelPeriodResult],
) -> None:
    flagged = set(monitored["c"].drifted_features)
    assert flagged >= EMAIL
    assert not flagged & (RATES | STABLE)
