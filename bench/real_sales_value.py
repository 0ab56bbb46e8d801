"""The value model on a real sales file, through the CLI only, beside plain LightGBM fits.

    python -m bench real-sales [--source kc-house-sales|seattle-sales] [--limit N]
                               [--test-from DATE] [--valid-from DATE]

1. roiml, through the documented path and nothing else: ``roiml data real-sales`` (the file
   conversion), ``roiml db upgrade``, ``roiml data import`` of the three files (after ``roiml
   data contract add --file`` when the converter writes a contract for the file's extra
   columns), then ``roiml train --test-from --valid-from`` with no ``--config-dir`` and no
   ``--recipe``: the recipe is read from the data. Its report carries the baselines
   (neighbourhood medians, the indexed repeat sale).
2. A plain LightGBM (default parameters, log price, early stopping on the same validation
   period, then refit on train + validation with the rounds scaled as roiml does, quantile
   boosters at 10 % and 90 % for the interval) fit twice on the same date split:
   * ``plain_all_columns``: every column of the source file but the ids and the price;
   * ``plain_roiml_columns``: the columns of the converted ``properties`` file roiml imports.

Prints RMSLE, MAPE and 80 % interval coverage on the test period side by side, with each
one's ratio to the plain LightGBM on all columns; writes ``bench/results/real_sales_<source>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bench._child import Measured, run_measured
from roiml.ingest.real_sales import SEATTLE_SALES_MEMBER, RealSalesSource, default_input
from roiml.models.boosting import refit_rounds
from roiml.models.metrics import regression_metrics

RESULTS = Path(__file__).with_name("results")

# The test period: the last year where the file holds several (Seattle, 2010-2016); King
# County's file spans thirteen months, so its last three are the test and the two before them
# the validation.
PERIODS: dict[str, tuple[str, str]] = {
    "kc-house-sales": ("2015-01-01", "2015-03-01"),
    "seattle-sales": ("2015-07-01", "2016-01-01"),
}
# Per source file: its sale date and price columns, and the ids that are no feature.
_RAW = {
    "kc-house-sales": ("date", "price", ("id",)),
    "seattle-sales": ("sale_date", "sale_price", ("pinx", "sale_id")),
}
# Columns of the converted properties file that are not the home's description.
_NOT_FEATURES = {
    "property_id",
    "owner_user_id",
    "tenant_id",
    "purchased_at",
    "purchase_price",
    "sold_at",
}
_PLAIN = {"objective": "regression", "verbose": -1, "seed": 42, "num_threads": 2}


def _cli(env: dict[str, str], *args: str) -> Measured:
    return run_measured([sys.executable, "-m", "roiml.cli.main", *args], env)


def _roiml(env: dict[str, str], *args: str) -> str:
    return _cli(env, *args).stdout


def _raw_sales(source: str) -> pd.DataFrame:
    """The source file as published, every column."""
    path = default_input(RealSalesSource(source), Path(os.environ.get("ROIML_DATA_DIR", "data")))
    if source == "kc-house-sales":
        return pq.read_table(path).to_pandas()
    with zipfile.ZipFile(path) as wheel, wheel.open(SEATTLE_SALES_MEMBER) as member:
        return pacsv.read_csv(member).to_pandas()


def _encode(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers as they are; text and booleans as category codes; dates as days."""
    out = pd.DataFrame(index=frame.index)
    for name, column in frame.items():
        if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            out[name] = column.astype(float)
        elif pd.api.types.is_datetime64_any_dtype(column):
            out[name] = (column - pd.Timestamp("2000-01-01")).dt.days.astype(float)
        else:
            out[name] = column.astype("category").cat.codes.astype(float)
    return out


def _sold(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).dt.tz_localize(None)


def _plain(
    features: pd.DataFrame, price: pd.Series, sold: pd.Series, valid_from: str, test_from: str
) -> dict[str, float]:
    """A default LightGBM on ``features``: early stopping on validation, refit on train +
    validation with the rounds scaled, 10 % / 90 % quantile boosters for the interval."""
    x = _encode(features)
    x["sale_day"] = (sold - pd.Timestamp("2000-01-01")).dt.days.astype(float)
    y = np.log(price.to_numpy(dtype=float))
    valid_at, test_at = pd.Timestamp(valid_from), pd.Timestamp(test_from)
    train = (sold < valid_at).to_numpy()
    valid = ((sold >= valid_at) & (sold < test_at)).to_numpy()
    test = (sold >= test_at).to_numpy()
    both = train | valid
    predictions = {}
    for part, extra in (
        ("main", {}),
        ("low", {"objective": "quantile", "alpha": 0.1}),
        ("high", {"objective": "quantile", "alpha": 0.9}),
    ):
        params = {**_PLAIN, **extra}
        stopped = lgb.train(
            params,
            lgb.Dataset(x[train], y[train]),
            num_boost_round=2000,
            valid_sets=[lgb.Dataset(x[valid], y[valid])],
            callbacks=[lgb.early_stopping(100, verbose=False)],
        )
        rounds = refit_rounds(stopped.best_iteration, int(train.sum()), int(valid.sum()))
        final = lgb.train(params, lgb.Dataset(x[both], y[both]), num_boost_round=rounds)
        predictions[part] = np.exp(final.predict(x[test]))
    low = np.minimum(predictions["low"], predictions["main"])
    high = np.maximum(predictions["high"], predictions["main"])
    metrics = regression_metrics(price.to_numpy(dtype=float)[test], predictions["main"], low, high)
    metrics.update(
        rows_train=float(train.sum()),
        rows_valid=float(valid.sum()),
        rows_test=float(test.sum()),
        columns=float(x.shape[1]),
    )
    return metrics


def _plain_all_columns(
    source: str, limit: int | None, valid_from: str, test_from: str
) -> dict[str, float]:
    raw = _raw_sales(source)
    if limit:
        raw = raw.head(limit)  # the converter's --limit keeps the file's first rows too
    date_column, price_column, ids = _RAW[source]
    sold = _sold(raw[date_column])
    features = raw.drop(columns=[date_column, price_column, *ids])
    return _plain(features, raw[price_column], sold, valid_from, test_from)


def _plain_roiml_columns(files: Path, valid_from: str, test_from: str) -> dict[str, float]:
    properties = pq.read_table(files / "properties.parquet").to_pandas()
    sales = pq.read_table(files / "transactions.parquet").to_pandas()
    sales = sales[sales["price"] > 0][["property_id", "closed_at", "price"]]
    sales = sales.merge(properties, on="property_id")
    columns = [c for c in properties.columns if c not in _NOT_FEATURES]
    # Nested or JSON columns (declared attributes) are flattened into their own columns.
    frame = pd.json_normalize(sales[columns].to_dict("records")).set_index(sales.index)
    return _plain(frame, sales["price"], _sold(sales["closed_at"]), valid_from, test_from)


def _contract(env: dict[str, str], files: Path) -> list[str]:
    """``roiml data contract add --file`` for each contract file the converter wrote."""
    added = []
    for path in sorted(files.glob("*contract*.y*ml")):
        _roiml(env, "data", "contract", "add", "--file", str(path))
        added.append(path.name)
    return added


def _run_roiml(
    source: str, limit: int | None, valid_from: str, test_from: str, scratch: Path
) -> tuple[dict[str, Any], Path, dict[str, Any]]:
    env = dict(
        os.environ,
        ROIML_DATA_DIR=str(scratch / "data"),
        ROIML_DATABASE_URL=f"sqlite:///{scratch / 'real.db'}",
        ROIML_TENANT_ID="realsales",
    )
    # The Seattle wheel is where the fetch script put it, not in the scratch data directory.
    real_sales = Path(os.environ.get("ROIML_DATA_DIR", "data")) / "real_sales"
    if real_sales.is_dir():
        shutil.copytree(real_sales, scratch / "data" / "real_sales")
    files = scratch / "files"
    head = ["--limit", str(limit)] if limit else []
    converted = _cli(env, "data", "real-sales", "--source", source, "--output", str(files), *head)
    _roiml(env, "db", "upgrade")
    contracts = _contract(env, files)
    imports = {}
    for table in ("users", "properties", "transactions"):
        imports[table] = _cli(env, "data", "import", table, str(files / f"{table}.parquet")).seconds
    dates = ["--test-from", test_from, "--valid-from", valid_from]
    trained = _cli(env, "train", "--no-register", "--json", "--every-days", "90", *dates)
    [report] = json.loads(trained.stdout)
    cost = {
        "convert_seconds": converted.seconds,
        "import_seconds": imports,
        "train_process_seconds": trained.seconds,
        "train_peak_rss_mib": trained.peak_rss_mib,
        "contracts_added": contracts,
    }
    return report, files, cost


def _row(metrics: dict[str, float], reference: dict[str, float]) -> dict[str, float | None]:
    coverage = metrics.get("interval_coverage")
    return {
        "rmsle": metrics["rmsle"],
        "mape": metrics["mape"],
        "interval_coverage": coverage,
        "rmsle_ratio_to_plain_all": metrics["rmsle"] / reference["rmsle"],
        "mape_ratio_to_plain_all": metrics["mape"] / reference["mape"],
        "test_rows_covered": metrics.get("test_rows_covered", 1.0),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench real-sales")
    parser.add_argument("--source", default="kc-house-sales", choices=sorted(PERIODS))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--valid-from", default=None)
    parser.add_argument("--test-from", default=None)
    args = parser.parse_args(argv)
    valid_from = args.valid_from or PERIODS[args.source][0]
    test_from = args.test_from or PERIODS[args.source][1]
    for day in (valid_from, test_from):
        date.fromisoformat(day)  # a malformed date fails here, before minutes of work
    scratch = Path(tempfile.mkdtemp(prefix="roiml-real-sales-"))
    try:
        report, files, cost = _run_roiml(args.source, args.limit, valid_from, test_from, scratch)
        plain_roiml = _plain_roiml_columns(files, valid_from, test_from)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    plain_all = _plain_all_columns(args.source, args.limit, valid_from, test_from)
    table = {
        "roiml": _row(report["metrics"], plain_all),
        "plain_all_columns": _row(plain_all, plain_all),
        "plain_roiml_columns": _row(plain_roiml, plain_all),
    }
    for name, figures in report["baselines"].items():
        if "rmsle" in figures:
            table[name] = _row(figures, plain_all)
    result = {
        "source": args.source,
        "valid_from": valid_from,
        "test_from": test_from,
        "recipe": report["recipe"],
        "recipe_reason": report["recipe_reason"],
        "periods": report["periods"],
        "table": table,
        "roiml_metrics": report["metrics"],
        "roiml_baselines": report["baselines"],
        "roiml_rows": report["rows"],
        "roiml_cost": cost,
        "plain_all_columns": plain_all,
        "plain_roiml_columns": plain_roiml,
    }
    _print(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"real_sales_{args.source}.json").write_text(json.dumps(result, indent=2))


def _print(result: dict[str, Any]) -> None:
    periods = result["periods"]
    print(
        f"{result['source']}: recipe {result['recipe']} ({result['recipe_reason']}); "
        + ", ".join(
            f"{p} {v['start']}..{v['end']} ({v['rows']:,} rows)" for p, v in periods.items()
        )
    )
    print(f"{'':24} {'RMSLE':>8} {'MAPE':>8} {'cover80':>8} {'RMSLE/all':>10} {'rows':>6}")
    for name, row in result["table"].items():
        coverage = row["interval_coverage"]
        print(
            f"{name:24} {row['rmsle']:8.4f} {row['mape']:8.4f} "
            f"{'' if coverage is None else f'{coverage:.3f}':>8} "
            f"{row['rmsle_ratio_to_plain_all']:10.3f} {row['test_rows_covered']:6.2f}"
        )
