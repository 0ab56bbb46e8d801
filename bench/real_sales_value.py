"""The value model on real sales records, against a plain LightGBM fit on the same columns.

    python -m bench real-sales [--source kc-house-sales|seattle-sales] [--limit N]

1. ``roiml data real-sales`` converts the public data set into users, properties and
   transactions files; ``roiml data import`` loads them into a scratch SQLite database.
2. ``roiml train --model property_value_model --config-dir <real_sales config>`` trains and
   scores it through the product's path (importer, feature engine, trainer).
3. A plain LightGBM (default parameters, log price) is fit directly on the raw columns the
   product sees (size, rooms, age, lot, type, sale date) with the same date split.

Prints both metric sets and their ratios; writes ``bench/results/real_sales_<source>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from datetime import timedelta
from importlib import resources
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pyarrow.parquet as pq

from bench._child import run_measured
from roiml.models.metrics import regression_metrics

RESULTS = Path(__file__).with_name("results")


def _roiml(env: dict[str, str], *args: str) -> str:
    return run_measured([sys.executable, "-m", "roiml.cli.main", *args], env).stdout


def _plain(files: Path, test_days: int, valid_days: int) -> dict[str, float]:
    properties = pq.read_table(files / "properties.parquet").to_pandas()
    sales = pq.read_table(files / "transactions.parquet").to_pandas()
    sales = sales[sales["price"] > 0].merge(
        properties[
            [
                "property_id",
                "sqft",
                "bedrooms",
                "bathrooms",
                "year_built",
                "lot_sqft",
                "property_type",
            ]
        ],
        on="property_id",
    )
    sold = sales["closed_at"]
    sales["age"] = sold.dt.year - sales["year_built"]
    sales["sale_day"] = (sold - sold.min()).dt.days
    sales["type_code"] = sales["property_type"].astype("category").cat.codes
    columns = ["sqft", "bedrooms", "bathrooms", "age", "lot_sqft", "type_code", "sale_day"]
    end = sold.max().normalize() + timedelta(days=1)
    test_start = end - timedelta(days=test_days)
    valid_start = test_start - timedelta(days=valid_days)
    train = sales[sold < valid_start]
    valid = sales[(sold >= valid_start) & (sold < test_start)]
    test = sales[sold >= test_start]
    booster = lgb.train(
        {"objective": "regression", "verbose": -1, "seed": 42, "num_threads": 2},
        lgb.Dataset(train[columns], np.log(train["price"])),
        num_boost_round=2000,
        valid_sets=[lgb.Dataset(valid[columns], np.log(valid["price"]))],
        callbacks=[lgb.early_stopping(100, verbose=False)],
    )
    predicted = np.exp(booster.predict(test[columns]))
    metrics = regression_metrics(test["price"].to_numpy(), predicted)
    metrics["rows_train"] = float(len(train))
    metrics["rows_test"] = float(len(test))
    return metrics


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench real-sales")
    parser.add_argument("--source", default="kc-house-sales")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="roiml-real-sales-"))
    tenant = "realsales"
    env = dict(
        os.environ,
        ROIML_DATA_DIR=str(scratch / "data"),
        ROIML_DATABASE_URL=f"sqlite:///{scratch / 'real.db'}",
        ROIML_TENANT_ID=tenant,
    )
    config_dir = Path(str(resources.files("roiml.models") / "configs" / "real_sales"))
    try:
        files = scratch / "files"
        limit = ["--limit", str(args.limit)] if args.limit else []
        _roiml(env, "data", "real-sales", "--source", args.source, "--output", str(files), *limit)
        _roiml(env, "db", "upgrade")
        for table in ("users", "properties", "transactions"):
            _roiml(env, "data", "import", table, str(files / f"{table}.parquet"))
        report = json.loads(
            _roiml(
                env,
                "train",
                "--model",
                "property_value_model",
                "--config-dir",
                str(config_dir),
                "--no-register",
                "--json",
                "--every-days",
                "90",
            )
        )[0]
        plain = _plain(files, test_days=60, valid_days=45)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ours = report["metrics"]
    result = {
        "source": args.source,
        "roiml": ours,
        "roiml_rows": report["rows"],
        "roiml_seconds": report["seconds"],
        "plain_lightgbm": plain,
        "ratio_mape_roiml_over_plain": ours["mape"] / plain["mape"],
        "ratio_rmsle_roiml_over_plain": ours["rmsle"] / plain["rmsle"],
    }
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"real_sales_{args.source}.json").write_text(json.dumps(result, indent=2))
