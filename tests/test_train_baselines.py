"""The value model's baselines: neighbourhood medians and the indexed repeat sale, each from
sales known strictly before the row's sale, scored on the rows they cover."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roiml.features.sources import SourceTables
from roiml.models.value_baselines import score_baselines, value_baselines

T = datetime(2021, 6, 1)


def _sales() -> SourceTables:
    """Market m: five homes of 1,000 sqft sold in 2020 at 100..140 per sqft (median 120);
    home r sold at 100,000 in 2020-03 and again on T (the row). The market's index doubles
    between the two sales: every 2021 sale is at twice the 2020 price per sqft."""
    ids = ["h1", "h2", "h3", "h4", "h5", "r", "k1", "k2", "k3", "k4", "k5", "r"]
    early = [100e3, 110e3, 120e3, 130e3, 140e3, 100e3]
    prices = [*early, 200e3, 220e3, 240e3, 260e3, 280e3, 333e3]  # 333e3: the row's own sale
    closed = [datetime(2020, 3, 1) + timedelta(days=i) for i in range(6)]
    closed += [T - timedelta(days=60 - i) for i in range(5)] + [T + timedelta(hours=10)]
    homes = [*{i: None for i in ids}, "n"]  # n: a home never sold before
    properties = pa.table(
        {
            "property_id": homes,
            "market_id": ["m"] * len(homes),
            "sqft": [1000] * (len(homes) - 1) + [2000],
            "latitude": [47.601] * 5 + [47.605] + [47.602] * 5 + [47.625],
            "longitude": [-122.301] * len(homes),
        }
    )
    transactions = pa.table(
        {
            "property_id": ids,
            "transaction_type": ["BUY"] * len(ids),
            "closed_at": pa.array(closed, pa.timestamp("us")),
            "price": prices,
        }
    )
    return SourceTables(tables={"properties": properties, "transactions": transactions})


def _row(property_id: str, sold: datetime) -> pa.Table:
    as_of = datetime(sold.year, sold.month, sold.day) + timedelta(days=1)
    return pa.table(
        {
            "property_id": [property_id],
            "as_of": pa.array([as_of], pa.timestamp("us")),
            "sold_at": pa.array([sold], pa.timestamp("us")),
        }
    )


def test_each_baseline_from_earlier_sales_only() -> None:
    estimates = value_baselines(_row("r", T + timedelta(hours=10)), _sales())
    # The year before T's day holds the five 2021 sales (the 2020 ones are older): median 240
    # a sqft; all eleven homes share one 0.01-degree cell.
    assert estimates["market_median"][0] == pytest.approx(240.0 * 1000)
    assert estimates["area_median"][0] == pytest.approx(240.0 * 1000)
    # r's earlier sale: 100,000 on 2020-03-06, when the 180 days before held the five March
    # sales (median 120 a sqft; under ten, so the tenant's index, the same sales here); the
    # 180 days before T hold the 2021 five (240): 100,000 x 240 / 120.
    assert estimates["repeat_sale"][0] == pytest.approx(200_000.0)
    assert 333e3 not in {estimates[n][0] for n in estimates}


def test_a_home_without_an_earlier_sale_has_no_repeat_sale_estimate() -> None:
    estimates = value_baselines(_row("n", T + timedelta(hours=10)), _sales())
    assert np.isnan(estimates["repeat_sale"][0])
    assert estimates["market_median"][0] == pytest.approx(240.0 * 2000)
    # Its cell (47.62 N) holds no earlier sale.
    assert np.isnan(estimates["area_median"][0])


def test_too_few_neighbours_is_no_estimate() -> None:
    sales = _sales()
    estimates = value_baselines(_row("h5", datetime(2020, 3, 5, 12)), sales)
    # Four earlier sales in the market: fewer than five.
    assert np.isnan(estimates["market_median"][0])


def test_scores_cover_only_the_rows_a_baseline_estimates() -> None:
    actual = np.array([100.0, 200.0, 300.0, 400.0] * 10)
    estimate = actual * 1.1
    estimate[-5:] = np.nan
    model = actual * 0.9
    calibrate, test = np.arange(0, 30), np.arange(30, 40)
    scores = score_baselines(
        {"x": estimate, "none": np.full(40, np.nan)}, actual, model, calibrate, test, (0.1, 0.9)
    )
    assert scores["x"]["test_rows_covered"] == 0.5
    assert scores["x"]["mape"] == pytest.approx(0.1)
    assert scores["x"]["model_mape_same_rows"] == pytest.approx(0.1)
    assert scores["x"]["interval_coverage"] == pytest.approx(1.0)
    assert scores["none"] == {"test_rows_covered": 0.0}


@st.composite
def _histories(draw: st.DrawFn) -> tuple[SourceTables, pa.Table, datetime]:
    """Random sales of eight homes in two markets over two years, and one row's sale."""
    count = draw(st.integers(5, 60))
    day = st.integers(0, 730)
    homes = [f"h{i}" for i in range(8)]
    sales = pa.table(
        {
            "property_id": draw(st.lists(st.sampled_from(homes), min_size=count, max_size=count)),
            "transaction_type": ["BUY"] * count,
            "closed_at": pa.array(
                [
                    T - timedelta(days=d)
                    for d in draw(st.lists(day, min_size=count, max_size=count))
                ],
                pa.timestamp("us"),
            ),
            "price": draw(st.lists(st.floats(5e4, 2e6), min_size=count, max_size=count)),
        }
    )
    properties = pa.table(
        {
            "property_id": homes,
            "market_id": ["a", "b"] * 4,
            "sqft": [800, 1000, 1200, 1500, 1800, 2000, 2500, 3000],
            "latitude": [47.60, 47.60, 47.61, 47.61, 47.60, 47.60, 47.61, 47.61],
            "longitude": [-122.30] * 8,
        }
    )
    sold = T - timedelta(days=draw(st.integers(0, 730)), hours=draw(st.integers(0, 23)))
    row = _row(draw(st.sampled_from(homes)), sold)
    return SourceTables(tables={"properties": properties, "transactions": sales}), row, sold


@settings(max_examples=60, deadline=None)
@given(history=_histories(), factor=st.floats(0.2, 5.0))
def test_no_sale_on_or_after_the_rows_day_moves_its_baselines(
    history: tuple[SourceTables, pa.Table, datetime], factor: float
) -> None:
    sources, row, sold = history
    before = value_baselines(row, sources)
    sales = sources.tables["transactions"]
    day = datetime(sold.year, sold.month, sold.day)
    later = pc.greater_equal(sales["closed_at"], pa.scalar(day, pa.timestamp("us")))
    changed = sales.set_column(
        3, "price", pc.if_else(later, pc.multiply(sales["price"], factor), sales["price"])
    )
    after = value_baselines(row, SourceTables(tables={**sources.tables, "transactions": changed}))
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])
