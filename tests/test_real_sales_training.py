"""A sales file through the documented path only: `roiml data real-sales`, `roiml data import`,
`roiml models config init`, `roiml train` with dates. No --config-dir, no --recipe."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from roiml.cli.main import app
from roiml.settings import get_settings

TENANT = "kc"
SALES = 3000


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliRunner]:
    """The CLI on a fresh data directory and SQLite database, the KC file's first sales in."""
    for name in list(os.environ):
        if name.startswith("ROIML_") and not name.startswith("ROIML_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ROIML_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    runner = CliRunner()
    out = tmp_path / "files"
    for args in (
        ["db", "upgrade"],
        ["data", "real-sales", "--output", str(out), "--limit", str(SALES)],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    # The columns the file adds beyond the built-in ones, declared as the converter says.
    contracts = [
        ["data", "contract", "add", "--file", str(p), "--tenant", TENANT]
        for p in sorted(out.glob("contract*.yaml"))
    ]
    imports = [
        ["data", "import", table, str(out / f"{table}.parquet"), "--tenant", TENANT]
        for table in ("users", "properties", "transactions")
    ]
    for args in (*contracts, *imports):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    yield runner
    get_settings.cache_clear()


def test_a_sales_file_trains_by_dates_with_baselines_and_a_refit(
    cli: CliRunner, tmp_path: Path
) -> None:
    result = cli.invoke(app, ["models", "config", "init", "--tenant", TENANT])
    assert result.exit_code == 0, result.output
    own = tmp_path / "data" / "configs" / TENANT / "property_value_model.yaml"
    assert "recipe: sales-records" in result.stdout and str(own) in result.stdout
    assert sorted(p.name for p in own.parent.iterdir()) == ["property_value_model.yaml"]
    again = cli.invoke(app, ["models", "config", "init", "--tenant", TENANT])
    assert again.exit_code == 7 and "--force" in _line(again.stderr)

    # The user's edit (fewer rounds: this is a test) is what training reads.
    config = yaml.safe_load(own.read_text())
    config.update(num_boost_round=300, early_stopping_rounds=30)
    own.write_text(yaml.safe_dump(config))

    args = ["train", "--tenant", TENANT, "--no-register", "--json", "--every-days", "90"]
    dates = ["--test-from", "2015-03-01", "--valid-from", "2015-01-01"]
    result = cli.invoke(app, [*args, *dates])
    assert result.exit_code == 0, result.output
    assert "recipe: sales-records (3,000 priced purchases" in result.stderr
    assert f"config of property_value_model: {own}" in result.stderr
    assert "not trained: move_probability_model" in result.stderr
    [report] = json.loads(result.stdout)
    assert report["recipe"] == "sales-records" and report["config"] == str(own)
    periods = report["periods"]
    assert (periods["valid"]["start"], periods["valid"]["end"]) == ("2015-01-01", "2015-02-28")
    assert periods["test"]["start"] == "2015-03-01" and periods["train"]["end"] == "2014-12-31"
    rows = report["rows"]
    # Every priced sale is a row (repeat sales included), in exactly one period.
    assert rows["train"] + rows["valid"] + rows["test"] == SALES
    assert rows["refit"] == rows["train"] + rows["valid"]
    assert all(periods[p]["rows"] == rows[p] for p in ("train", "valid", "test"))
    # The rows are the purchases: no snapshot grid of every buyer was computed for them (the
    # latest population and the season, monitoring's, were).
    cached = sorted(
        p.name.split("-")[0] for p in (tmp_path / "data" / "training").rglob("*.parquet")
    )
    assert cached == ["latest", "season"], cached

    metrics, baselines = report["metrics"], report["baselines"]
    assert 0.7 <= metrics["interval_coverage"] <= 0.95
    assert {"market_median", "area_median", "repeat_sale", "before_refit"} <= set(baselines)
    market = baselines["market_median"]
    assert market["test_rows_covered"] > 0.9
    assert {"rmsle", "mape", "interval_coverage", "model_rmsle_same_rows"} <= set(market)
    assert 0 <= baselines["repeat_sale"]["test_rows_covered"] < 0.1
    assert baselines["before_refit"]["rmsle"] > 0

    # Bad dates: one line each, with the fix, no traceback, the training error's exit code.
    late = cli.invoke(app, [*args, "--test-from", "2016-01-01"])
    assert late.exit_code == 7 and "pick an earlier date" in _line(late.stderr)
    assert "Traceback" not in late.output
    garbled = cli.invoke(app, [*args, "--test-from", "2015-13-01"])
    assert garbled.exit_code == 7 and "YYYY-MM-DD" in garbled.stderr
    reversed_ = cli.invoke(app, [*args, "--test-from", "2015-01-01", "--valid-from", "2015-02-01"])
    assert reversed_.exit_code == 7 and "not before" in _line(reversed_.stderr)


def test_tune_reads_the_recipe_and_features_training_reads(cli: CliRunner, tmp_path: Path) -> None:
    """`roiml tune` on a sales file starts from the sales-records recipe's config and its
    tenant's declared features, as `roiml train` does (it once read the homeowners' config,
    whose value model has no priced purchases to learn from here)."""
    output = tmp_path / "tuned"
    args = ["tune", "--model", "property_value_model", "--trials", "1", "--tenant", TENANT]
    result = cli.invoke(app, [*args, "--every-days", "90", "--output", str(output), "--json"])
    assert result.exit_code == 0, result.output
    assert "recipe: sales-records" in _line(result.stderr)
    report = json.loads(result.stdout)
    assert report["best_loss"] <= report["baseline_loss"]
    tuned = yaml.safe_load((output / "property_value_model.yaml").read_text())
    assert tuned["sale_rows"] == "buyers"  # the sales-records recipe's, carried into the file
    wrong = cli.invoke(app, [*args, "--recipe", "nonsense"])
    assert wrong.exit_code == 7 and "--recipe" in _line(wrong.stderr)


def _line(text: str) -> str:
    """An error as one line (the console wraps it at the terminal's width)."""
    return " ".join(text.split())


def test_a_homeowners_model_on_a_sales_file_names_the_flag(cli: CliRunner) -> None:
    result = cli.invoke(
        app,
        [
            "train",
            "--tenant",
            TENANT,
            "--model",
            "move_probability_model",
            "--no-register",
        ],
    )
    # A sales file has no activity to learn moves from: the recipe says so, naming the flag.
    assert result.exit_code == 7
    assert "sales-records recipe has no move_probability_model" in _line(result.stderr)
    assert "--recipe homeowners" in _line(result.stderr)
