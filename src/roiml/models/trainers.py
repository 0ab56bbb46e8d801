"""The four models: each turns snapshots and labels into a :class:`ModelArtifact` with test metrics.

Every trainer follows the same steps: label the snapshots, join the features, split by date
(:func:`roiml.models.dataset.split_by_time`), fit with early stopping on validation, then score
the test period against baselines (and, in the simulated world, the oracle).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from sklearn.metrics import roc_auc_score

from roiml.db.enums import ModelType
from roiml.errors import TrainingError
from roiml.features.catalog import Catalog
from roiml.features.engine import FeatureEngine
from roiml.features.frame import AS_OF, ENTITY_ID
from roiml.features.sources import SourceTables
from roiml.models.artifact import (
    HORIZON_FEATURE,
    MODEL_NAMES,
    REFERENCE_LATEST,
    REFERENCE_PART,
    REFERENCE_TRAIN,
    ModelArtifact,
)
from roiml.models.boosting import fit_booster, refit_booster, refit_rounds, sample_rows
from roiml.models.config import TrainingConfig
from roiml.models.dataset import Snapshots, Split, sale_periods, split_by_time
from roiml.models.labels import (
    TRANSACTION_CLASSES,
    engagement_labels,
    move_labels,
    next_transaction_labels,
    purchase_labels,
    sale_labels,
)
from roiml.models.metrics import binary_metrics, hit_rate, multiclass_metrics, regression_metrics
from roiml.models.ownership import purchase_history
from roiml.models.predict import value_interval
from roiml.models.value_baselines import score_baselines, value_baselines
from roiml.world.truth import MOVE_DAILY, P_MOVE

__all__ = ["TRAINERS", "TrainedModel", "Trainer"]

_REFERENCE_ROWS = 20_000
WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


@dataclass
class TrainedModel:
    """A trained artifact and the figures of its evaluation."""

    artifact: ModelArtifact
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)


Trainer = Callable[[Snapshots, TrainingConfig, Path | None], TrainedModel]


def _features_of(config: TrainingConfig, catalog: Catalog) -> list[str]:
    names = catalog.expand(config.feature_sets)
    unknown = sorted(set(config.exclude_features) - set(names))
    if unknown:
        raise TrainingError(
            f"exclude_features names {unknown}, which are not in the feature sets "
            f"{config.feature_sets}; see docs/FEATURE_CATALOG.md"
        )
    return [n for n in names if n not in config.exclude_features]


def _compute_join(
    labels: pa.Table, sources: SourceTables, names: list[str], catalog: Catalog
) -> pa.Table:
    """``labels`` plus features computed as of each row's own ``as_of`` (off the grid)."""
    engine = FeatureEngine(catalog, threads=2)
    features = engine.compute(labels.select([ENTITY_ID, AS_OF]), names, sources)
    for name in names:
        labels = labels.append_column(name, features[name])
    return labels


def _join(labels: pa.Table, snapshots: Snapshots, names: list[str]) -> pa.Table:
    """``labels`` (with entity_id, as_of) plus the snapshot features, in ``labels`` order."""
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.register("labels", labels)
    con.register("features", snapshots.features.select([ENTITY_ID, AS_OF, *names]))
    selected = ", ".join(f'f."{n}"' for n in names)
    joined = con.execute(
        f"SELECT l.*, {selected} FROM labels l JOIN features f "
        f"ON f.{ENTITY_ID} = l.{ENTITY_ID} AND f.{AS_OF} = l.{AS_OF} "
        f"ORDER BY l.{AS_OF}, l.{ENTITY_ID}"
    ).to_arrow_table()
    con.close()
    return joined


def _matrix(rows: pa.Table, names: list[str]) -> np.ndarray:
    if rows.num_rows == 0:
        return np.empty((0, len(names)))
    return np.column_stack(
        [rows[n].cast(pa.float64()).to_numpy(zero_copy_only=False) for n in names]
    )


def _parts(rows: pa.Table, split: Split, column: str = AS_OF) -> dict[str, np.ndarray]:
    part = split.part_of(rows[column])
    return {name: np.flatnonzero(part == name) for name in ("train", "valid", "test")}


def _reference(
    matrix: np.ndarray,
    names: list[str],
    seed: int,
    as_of: pa.ChunkedArray,
    snapshots: Snapshots,
) -> pa.Table:
    """The drift reference: a sample of the training inputs (``part`` "train") and of the
    population as of the data's end (``part`` "latest"; the grid's last snapshot when that was
    not computed), each row with the instant it is as of. Training rows end a purge gap or more
    before the data does; the latest rows are the population the model meets on its first
    served day (see roiml.monitoring.reference). A model input they lack (a request parameter
    such as a horizon) takes values drawn from the training rows."""
    index = sample_rows(len(matrix), _REFERENCE_ROWS, seed)
    train = matrix[index]
    frame = snapshots.features
    latest_rows = (
        snapshots.latest
        if snapshots.latest is not None
        else frame.filter(pc.equal(frame[AS_OF], pc.max(frame[AS_OF])))
    )
    latest_rows = latest_rows.take(
        pa.array(sample_rows(latest_rows.num_rows, _REFERENCE_ROWS, seed))
    )
    size = latest_rows.num_rows
    draw = np.random.default_rng(seed).integers(0, max(len(train), 1), size)
    latest = np.empty((size, len(names)))
    for i, name in enumerate(names):  # columns, not rows
        if name in latest_rows.column_names:
            latest[:, i] = latest_rows[name].cast(pa.float64()).to_numpy(zero_copy_only=False)
        else:
            latest[:, i] = train[draw, i] if len(train) else np.nan
    stamps = pa.concat_arrays(
        [
            as_of.take(pa.array(index)).combine_chunks().cast(pa.timestamp("us")),
            latest_rows[AS_OF].combine_chunks().cast(pa.timestamp("us")),
        ]
    )
    values = np.concatenate([train, latest])
    parts = pa.array([REFERENCE_TRAIN] * len(train) + [REFERENCE_LATEST] * size)
    columns = {n: pa.array(values[:, i], pa.float64()) for i, n in enumerate(names)}
    return pa.table({AS_OF: stamps, REFERENCE_PART: parts, **columns})


def _season(snapshots: Snapshots, names: list[str]) -> pa.Table | None:
    """The seasonal profile's columns of the model's features (roiml.models.season)."""
    season = snapshots.season
    if season is None:
        return None
    return season.select([AS_OF, *(n for n in names if n in season.column_names)])


def _seed(config: TrainingConfig) -> int:
    return int(config.lightgbm.get("seed", 42))


def _train_index(parts: dict[str, np.ndarray], config: TrainingConfig) -> np.ndarray:
    train = parts["train"]
    return train[sample_rows(len(train), config.max_train_rows, _seed(config))]


def _check_counts(parts: dict[str, np.ndarray], what: str) -> None:
    for name, index in parts.items():
        if len(index) == 0:
            raise TrainingError(f"no {what} rows fall in the {name} period; see the split config")


# --- move probability -------------------------------------------------------------------------


def train_move_probability(
    snapshots: Snapshots, config: TrainingConfig, truth_dir: Path | None
) -> TrainedModel:
    """Binary: a SELL or BUY closes within the horizon."""
    names = _features_of(config, snapshots.catalog)
    split = split_by_time(snapshots.data_end, snapshots.grid[0], config.horizon_days, config.split)
    con = snapshots.connection()
    labels = move_labels(con, config.horizon_days)
    con.close()
    rows = _join(labels.filter(pc.equal(labels["mid_move"], 0)), snapshots, names)
    parts = _parts(rows, split)
    _check_counts(parts, "labelled")
    label = rows["label"].to_numpy()
    matrix = _matrix(rows, names)
    train = _train_index(parts, config)
    positives = int(label[train].sum())
    if positives < config.min_positive_labels:
        raise TrainingError(
            f"move_probability_model: {positives} positive labels in the training period, "
            f"fewer than the {config.min_positive_labels} the config requires; use more users "
            "or a longer history"
        )
    booster = fit_booster(
        config.lightgbm,
        names,
        (matrix[train], label[train]),
        (matrix[parts["valid"]], label[parts["valid"]]),
        config.num_boost_round,
        config.early_stopping_rounds,
    )
    valid_p = booster.predict(matrix[parts["valid"]])
    high = float(np.quantile(valid_p, 1 - config.classes.high_top_share))
    medium = float(np.quantile(valid_p, 1 - config.classes.medium_top_share))
    test = parts["test"]
    test_p = np.asarray(booster.predict(matrix[test]))
    metrics = binary_metrics(label[test], test_p)
    metrics["high_precision"] = (
        float(np.mean(label[test][test_p >= high])) if (test_p >= high).any() else 0.0
    )
    baselines = {
        "base_rate": binary_metrics(label[test], np.full(len(test), label[train].mean())),
        "doc_access_count_30d": {
            "roc_auc": float(
                roc_auc_score(
                    label[test], np.nan_to_num(matrix[test, names.index("doc_access_count_30d")])
                )
            )
        },
    }
    oracle = _oracle_auc(rows.take(pa.array(test)), truth_dir)
    if oracle is not None:
        metrics["oracle_roc_auc"] = oracle
        metrics["oracle_auc_ratio"] = metrics["roc_auc"] / oracle
    artifact = ModelArtifact(
        name=MODEL_NAMES[ModelType.MOVE_PROBABILITY],
        model_type=ModelType.MOVE_PROBABILITY,
        feature_names=names,
        boosters={"main": booster},
        classes=["LOW", "MEDIUM", "HIGH"],
        parameters=_parameters(config, booster),
        metrics=metrics,
        training_window=split.as_dict(),
        extra={"horizon_days": config.horizon_days, "thresholds": {"HIGH": high, "MEDIUM": medium}},
        season=_season(snapshots, names),
        reference=_reference(
            matrix[train], names, _seed(config), rows[AS_OF].take(train), snapshots
        ),
    )
    return TrainedModel(artifact, metrics, baselines, _row_counts(parts, len(train)))


def _oracle_auc(test_rows: pa.Table, truth_dir: Path | None) -> float | None:
    """AUC of the world's true P(move within 180 d) on the same test rows and labels."""
    if truth_dir is None or not (truth_dir / MOVE_DAILY).is_dir():
        return None
    truth = pads.dataset(str(truth_dir / MOVE_DAILY), format="parquet").to_table(
        columns=["user_id", "day", P_MOVE]
    )
    con = duckdb.connect()
    con.register("truth", truth)
    con.register("rows", test_rows.select([ENTITY_ID, AS_OF, "label"]))
    joined = con.execute(
        f"SELECT r.label, t.{P_MOVE} AS p_move FROM rows r JOIN truth t "
        "ON CAST(t.user_id AS VARCHAR) = r.entity_id "
        # The oracle of day d knows day d's decisions and counts closings from day d + 1; a
        # snapshot at midnight knows the day before it and counts closings from that midnight.
        "AND t.day = CAST(r.as_of - INTERVAL 1 DAY AS DATE) "
        f"WHERE t.{P_MOVE} IS NOT NULL"
    ).fetchnumpy()
    con.close()
    if len(joined["label"]) < test_rows.num_rows * 0.9 or len(set(joined["label"])) < 2:
        return None
    return float(roc_auc_score(joined["label"], joined["p_move"]))


# --- transaction type -------------------------------------------------------------------------


def train_transaction_type(
    snapshots: Snapshots, config: TrainingConfig, truth_dir: Path | None
) -> TrainedModel:
    """Multiclass: type of the first closing within the horizon (BUY/SELL/REFINANCE/INVESTMENT)."""
    names = _features_of(config, snapshots.catalog)
    classes = list(TRANSACTION_CLASSES)
    split = split_by_time(snapshots.data_end, snapshots.grid[0], config.horizon_days, config.split)
    con = snapshots.connection()
    rows = _join(next_transaction_labels(con, config.horizon_days), snapshots, names)
    con.close()
    parts = _parts(rows, split)
    _check_counts(parts, "transaction")
    label = rows["label"].to_numpy().astype(np.int64)
    matrix = _matrix(rows, names)
    train = _train_index(parts, config)
    counts = np.bincount(label[train], minlength=len(classes))
    if counts.min() < config.min_positive_labels:
        rare = classes[int(np.argmin(counts))]
        raise TrainingError(
            f"transaction_type_model: only {counts.min()} {rare} labels in the training period "
            f"(the config requires {config.min_positive_labels} per class)"
        )
    params = {**config.lightgbm, "num_class": len(classes)}
    booster = fit_booster(
        params,
        names,
        (matrix[train], label[train]),
        (matrix[parts["valid"]], label[parts["valid"]]),
        config.num_boost_round,
        config.early_stopping_rounds,
    )
    # Probabilities stay calibrated; the decision reweights them for macro-F1, with per-class
    # weights chosen on the validation period.
    valid_p = np.asarray(booster.predict(matrix[parts["valid"]]))
    weights = _decision_weights(valid_p, label[parts["valid"]], len(classes))
    test = parts["test"]
    test_p = np.asarray(booster.predict(matrix[test]))
    predicted = np.argmax(test_p * weights, axis=1)
    metrics = multiclass_metrics(label[test], predicted, test_p, classes)
    metrics["macro_f1_argmax"] = multiclass_metrics(
        label[test], np.argmax(test_p, axis=1), None, classes
    )["macro_f1"]
    prior = counts / counts.sum()
    rng = np.random.default_rng(_seed(config))
    baselines = {
        "majority_class": multiclass_metrics(
            label[test], np.full(len(test), int(np.argmax(counts))), None, classes
        ),
        "prior": multiclass_metrics(
            label[test], rng.choice(len(classes), size=len(test), p=prior), None, classes
        ),
    }
    artifact = ModelArtifact(
        name=MODEL_NAMES[ModelType.TRANSACTION_TYPE],
        model_type=ModelType.TRANSACTION_TYPE,
        feature_names=names,
        boosters={"main": booster},
        classes=classes,
        parameters=_parameters(config, booster),
        metrics=metrics,
        training_window=split.as_dict(),
        extra={"horizon_days": config.horizon_days, "decision_weights": weights.tolist()},
        season=_season(snapshots, names),
        reference=_reference(
            matrix[train], names, _seed(config), rows[AS_OF].take(train), snapshots
        ),
    )
    return TrainedModel(artifact, metrics, baselines, _row_counts(parts, len(train)))


def _decision_weights(probabilities: np.ndarray, label: np.ndarray, classes: int) -> np.ndarray:
    """Per-class multipliers of the probabilities that maximise validation macro-F1.

    Coordinate ascent over a log grid, class by class, twice: cheap, deterministic, and enough
    to lift rare classes a plain argmax never predicts.
    """
    weights = np.ones(classes)
    grid = np.exp(np.linspace(np.log(0.25), np.log(16), 25))

    def score(w: np.ndarray) -> float:
        return multiclass_metrics(
            label, np.argmax(probabilities * w, axis=1), None, [str(i) for i in range(classes)]
        )["macro_f1"]

    best = score(weights)
    for _ in range(2):
        for k in range(1, classes):
            for value in grid:
                trial = weights.copy()
                trial[k] = value
                trial_score = score(trial)
                if trial_score > best + 1e-9:
                    best, weights = trial_score, trial
    return weights


# --- contact timing ---------------------------------------------------------------------------


def train_contact_timing(
    snapshots: Snapshots, config: TrainingConfig, truth_dir: Path | None
) -> TrainedModel:
    """Two multiclass boosters, weekday and hour of the next engagements; best slot = argmaxes."""
    names = _features_of(config, snapshots.catalog)
    split = split_by_time(snapshots.data_end, snapshots.grid[0], config.horizon_days, config.split)
    con = snapshots.connection()
    events, slots = engagement_labels(con, config.horizon_days, config.events_per_snapshot)
    con.close()
    rows = _join(events, snapshots, names)
    parts = _parts(rows, split)
    _check_counts(parts, "engagement")
    matrix = _matrix(rows, names)
    train = _train_index(parts, config)
    if len(train) < config.min_positive_labels:
        raise TrainingError(
            f"contact_timing_model: {len(train)} engagements in the training period, fewer than "
            f"{config.min_positive_labels}"
        )
    weekday = rows["weekday"].to_numpy().astype(np.int64)
    hour = rows["hour"].to_numpy().astype(np.int64)
    valid = parts["valid"]
    boosters = {}
    for part, target, count in (("weekday", weekday, 7), ("hour", hour, 24)):
        boosters[part] = fit_booster(
            {**config.lightgbm, "num_class": count},
            names,
            (matrix[train], target[train]),
            (matrix[valid], target[valid]),
            config.num_boost_round,
            config.early_stopping_rounds,
        )
    # Score on test snapshots: every engagement of the horizon counts, not only the sample.
    test_rows = _join(slots, snapshots, names)
    test_index = _parts(test_rows, split)["test"]
    test_rows = test_rows.take(pa.array(test_index))
    test_matrix = _matrix(test_rows, names)
    p_day = np.asarray(boosters["weekday"].predict(test_matrix))
    p_hour = np.asarray(boosters["hour"].predict(test_matrix))
    best_day, best_hour = np.argmax(p_day, axis=1), np.argmax(p_hour, axis=1)
    predicted = best_day * 24 + best_hour
    test_slots = test_rows["slots"].to_pylist()
    expected = p_day.max(axis=1) * p_hour.max(axis=1)
    global_best = int(np.argmax(np.bincount(weekday[train] * 24 + hour[train], minlength=168)))
    model_hits = hit_rate(predicted, test_slots)
    global_hits = hit_rate(np.full(len(test_slots), global_best), test_slots)
    own_day = np.nan_to_num(
        test_matrix[:, names.index("engagement_top_weekday_90d")], nan=global_best // 24
    )
    own_hour = np.nan_to_num(
        test_matrix[:, names.index("engagement_top_hour_90d")], nan=global_best % 24
    )
    own_hits = hit_rate((own_day * 24 + own_hour).astype(np.int64), test_slots)
    metrics = {
        "hit_rate": model_hits,
        "hit_rate_vs_global_best_slot": model_hits / global_hits if global_hits else float("nan"),
        "expected_response_rate_mean": float(np.mean(expected)),
        "weekday_accuracy": _slot_accuracy(best_day, test_slots, lambda s: s // 24),
        "hour_accuracy": _slot_accuracy(best_hour, test_slots, lambda s: s % 24),
    }
    baselines = {
        "global_best_slot": {"hit_rate": global_hits, "slot": float(global_best)},
        "own_top_slot_90d": {"hit_rate": own_hits},
    }
    artifact = ModelArtifact(
        name=MODEL_NAMES[ModelType.CONTACT_TIMING],
        model_type=ModelType.CONTACT_TIMING,
        feature_names=names,
        boosters=boosters,
        classes=[f"{d}-{h:02d}" for d in WEEKDAYS for h in range(24)],
        parameters=_parameters(config, boosters["weekday"]),
        metrics=metrics,
        training_window=split.as_dict(),
        extra={"horizon_days": config.horizon_days, "global_best_slot": global_best},
        season=_season(snapshots, names),
        reference=_reference(
            matrix[train], names, _seed(config), rows[AS_OF].take(train), snapshots
        ),
    )
    counts = _row_counts(parts, len(train))
    counts["test_snapshots"] = len(test_slots)
    return TrainedModel(artifact, metrics, baselines, counts)


def _slot_accuracy(
    predicted: np.ndarray, slots: list[list[int]], part: Callable[[int], int]
) -> float:
    """Share of engagements whose weekday (or hour) is the predicted one, per snapshot, averaged."""
    return hit_rate(predicted, [[part(s) for s in row] for row in slots])


# --- property value ---------------------------------------------------------------------------


def train_property_value(
    snapshots: Snapshots, config: TrainingConfig, truth_dir: Path | None
) -> TrainedModel:
    """Log sale price ``horizon_months`` ahead, with quantile boosters for the interval."""
    names = [*_features_of(config, snapshots.catalog), HORIZON_FEATURE]
    con = snapshots.connection()
    sources = snapshots.sources
    if config.sale_rows == "buyers":
        sources = purchase_history(snapshots.sources)
        rows = _compute_join(purchase_labels(con), sources, names[:-1], snapshots.catalog)
    else:
        rows = _join(sale_labels(con, config.horizon_days), snapshots, names[:-1])
    con.close()
    if rows.num_rows == 0:
        kind = (
            "priced purchases" if config.sale_rows == "buyers" else "sales of a primary residence"
        )
        raise TrainingError(
            f"property_value_model: there are no {kind}; for a sales file pass "
            "--recipe sales-records, for homeowners' sales --recipe homeowners"
        )
    # Split by the sale's date for training (no sale of the test period is learnt from) and by
    # the snapshot's date too for testing (every test input is as of the test period).
    valid_start, test_start = sale_periods(snapshots.data_end, config.split)
    sold = np.asarray(rows["sold_at"].to_numpy(zero_copy_only=False), dtype="datetime64[us]")
    as_of = np.asarray(rows[AS_OF].to_numpy(zero_copy_only=False), dtype="datetime64[us]")
    valid_at, test_at = np.datetime64(valid_start, "us"), np.datetime64(test_start, "us")
    parts = {
        "train": np.flatnonzero(sold < valid_at),
        "valid": np.flatnonzero((sold >= valid_at) & (sold < test_at)),
        "test": np.flatnonzero((as_of >= test_at) & (sold >= test_at)),
    }
    day = timedelta(days=1)  # the periods' ends are their last days, as the snapshot models'
    window = {
        "train_start": _day(sold[parts["train"]].min()) if len(parts["train"]) else "",
        "train_end": str((valid_start - day).date()),
        "valid_start": str(valid_start.date()),
        "valid_end": str((test_start - day).date()),
        "test_start": str(test_start.date()),
        "test_end": str((snapshots.data_end - day).date()),
    }
    _check_periods(parts, window)
    sales_in_train = len(pc.unique(rows.take(pa.array(parts["train"]))["property_id"]))
    if sales_in_train < config.min_positive_labels:
        raise TrainingError(
            f"property_value_model: {sales_in_train} sales in the training period, fewer than "
            f"the {config.min_positive_labels} the config requires; move --valid-from later"
        )
    matrix = _matrix(rows, names)
    price = rows["price"].to_numpy()
    target = np.log(price)
    train = _train_index(parts, config)
    valid, test = parts["valid"], parts["test"]
    low_q, high_q = config.interval
    objectives: dict[str, dict[str, Any]] = {
        "main": {},
        "low": {"objective": "quantile", "alpha": low_q},
        "high": {"objective": "quantile", "alpha": high_q},
    }
    boosters = {
        part: fit_booster(
            {**config.lightgbm, **extra},
            names,
            (matrix[train], target[train]),
            (matrix[valid], target[valid]),
            config.num_boost_round,
            config.early_stopping_rounds,
        )
        for part, extra in objectives.items()
    }
    # The margin is measured on validation sales the boosters have not seen: after a refit they
    # have, so it is kept from this first fit.
    margin = _conformal_margin(boosters, matrix[valid], target[valid], high_q - low_q)
    actual = price[test]
    before = _value_metrics(boosters, matrix[test], actual, margin)
    counts = _row_counts(parts, len(train))
    if config.refit_with_valid:
        both = np.concatenate([train, valid])
        boosters = {
            part: refit_booster(
                {**config.lightgbm, **objectives[part]},
                names,
                (matrix[both], target[both]),
                refit_rounds(booster.current_iteration(), len(train), len(valid)),
                booster,
            )
            for part, booster in boosters.items()
        }
        counts["refit"] = len(both)
    metrics = _value_metrics(boosters, matrix[test], actual, margin)
    predicted = np.full(rows.num_rows, np.nan)
    predicted[test] = np.exp(boosters["main"].predict(matrix[test]))
    baselines = score_baselines(
        value_baselines(rows, sources), price, predicted, train, test, config.interval
    )
    baselines.update(
        {
            name: m
            for name in ("estimated_value", "purchase_price")
            if name in names and (m := _column_baseline(actual, matrix[test], names, name))
        }
    )
    if config.refit_with_valid:
        baselines["before_refit"] = before
    artifact = ModelArtifact(
        name=MODEL_NAMES[ModelType.PROPERTY_VALUE],
        model_type=ModelType.PROPERTY_VALUE,
        feature_names=names,
        boosters=boosters,
        parameters=_parameters(config, boosters["main"]),
        # The baselines go to the registry with the model's own figures (MLflow's metrics).
        metrics={**metrics, **_flat(baselines)},
        training_window=window,
        extra={
            "horizon_days": config.horizon_days,
            "interval": list(config.interval),
            "interval_margin": margin,
            "target": "log_price",
            "sale_rows": config.sale_rows,
        },
        season=_season(snapshots, names),
        reference=_reference(
            matrix[train], names, _seed(config), rows[AS_OF].take(train), snapshots
        ),
    )
    return TrainedModel(artifact, metrics, baselines, counts)


def _day(moment: np.datetime64) -> str:
    return str(moment.astype("datetime64[D]"))


def _check_periods(parts: dict[str, np.ndarray], window: dict[str, str]) -> None:
    """An empty period is an error naming its dates and the flag that moves it."""
    flags = {"train": "--valid-from later", "valid": "--valid-from earlier", "test": "--test-from"}
    for part, index in parts.items():
        if len(index) == 0:
            start = window[f"{part}_start"] or "the data's start"
            raise TrainingError(
                f"no sale falls in the {part} period ({start} to {window[f'{part}_end']}); "
                f"move {flags[part]} (or shorten the split's days in the config)"
            )


def _value_metrics(
    boosters: dict[str, lgb.Booster], matrix: np.ndarray, actual: np.ndarray, margin: float
) -> dict[str, float]:
    predicted = np.exp(boosters["main"].predict(matrix))
    low, high = value_interval(boosters, matrix, predicted, margin)
    return regression_metrics(actual, predicted, low, high)


def _flat(baselines: dict[str, dict[str, float]]) -> dict[str, float]:
    """``baseline_<name>_<metric>`` for every baseline figure."""
    return {
        f"baseline_{name}_{metric}": value
        for name, figures in baselines.items()
        for metric, value in figures.items()
    }


def _conformal_margin(
    boosters: dict[str, lgb.Booster], matrix: np.ndarray, target: np.ndarray, coverage: float
) -> float:
    """Conformalised quantile regression (Romano et al., 2019) on the validation sales.

    Quantile boosters under-cover out of sample (0.68 for a nominal 0.8 on a 3,000-user
    world); the margin is the conformity score's finite-sample quantile, added on both sides
    in log price. The validation sales also chose the boosting rounds, a small optimism
    documented in docs/MODELS.md. Zero when the boosters already cover (never narrows).
    """
    if len(target) == 0:
        return 0.0
    scores = np.maximum(
        boosters["low"].predict(matrix) - target, target - boosters["high"].predict(matrix)
    )
    level = min(1.0, np.ceil((len(scores) + 1) * coverage) / len(scores))
    return max(0.0, float(np.quantile(scores, level, method="higher")))


def _column_baseline(
    actual: np.ndarray, matrix: np.ndarray, names: list[str], name: str
) -> dict[str, float]:
    """An input used as the prediction itself (e.g. the market-scaled estimate), where known."""
    values = matrix[:, names.index(name)]
    known = ~np.isnan(values) & (values > 0)
    if not known.any():
        return {}
    return regression_metrics(actual[known], values[known])


# --- shared -----------------------------------------------------------------------------------


def _parameters(config: TrainingConfig, booster: lgb.Booster) -> dict[str, Any]:
    return {
        **config.lightgbm,
        "num_boost_round": config.num_boost_round,
        "best_iteration": booster.current_iteration(),
        "horizon_days": config.horizon_days,
        "feature_sets": ",".join(config.feature_sets),
    }


def _row_counts(parts: dict[str, np.ndarray], trained: int) -> dict[str, int]:
    return {
        "train": int(trained),
        "valid": len(parts["valid"]),
        "test": len(parts["test"]),
    }


TRAINERS: dict[ModelType, Trainer] = {
    ModelType.MOVE_PROBABILITY: train_move_probability,
    ModelType.TRANSACTION_TYPE: train_transaction_type,
    ModelType.CONTACT_TIMING: train_contact_timing,
    ModelType.PROPERTY_VALUE: train_property_value,
}
