"""Hyper-parameter search with Optuna, scored on the validation period only.

Each trial trains the model through its own trainer (same labels, split and features as
``roiml train``) with LightGBM parameters drawn from :data:`SEARCH_SPACE`, and is scored by the
main booster's loss on the validation period at its early-stopped iteration. The test period
never steers the search: its metrics are reported for the best trial only, as a check. The
result is a config file ``roiml train --config-dir`` reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from roiml.db.enums import ModelType
from roiml.errors import ConfigurationError, TrainingError
from roiml.models.artifact import MODEL_NAMES
from roiml.models.boosting import validation_loss
from roiml.models.config import TrainingConfig
from roiml.models.dataset import Snapshots
from roiml.models.trainers import TRAINERS, TrainedModel

try:
    import optuna
except ModuleNotFoundError as exc:  # an optional extra: the API's image does not carry it
    raise ConfigurationError(
        "tuning needs Optuna, which roiml installs only with its `tune` extra: "
        "pip install 'roiml[tune]'"
    ) from exc

__all__ = ["SEARCH_SPACE", "TuningResult", "tune_model"]

# name -> (low, high, log scale); integers where the bounds are ints.
SEARCH_SPACE: dict[str, tuple[float, float, bool]] = {
    "learning_rate": (0.02, 0.2, True),
    "num_leaves": (7, 63, True),
    "max_depth": (3, 8, False),
    "min_data_in_leaf": (20, 400, True),
    "feature_fraction": (0.5, 1.0, False),
    "lambda_l2": (1e-3, 10.0, True),
}


@dataclass
class Trial:
    """One trial: its parameters, validation loss and seconds."""

    number: int
    parameters: dict[str, Any]
    validation_loss: float
    seconds: float


@dataclass
class TuningResult:
    """The search's trials, the best config, and that config's test-period metrics."""

    model_name: str
    trials: list[Trial] = field(default_factory=list)
    best: TrainingConfig | None = None
    best_loss: float = float("inf")
    baseline_loss: float = float("inf")
    best_trained: TrainedModel | None = None

    def write(self, directory: Path) -> Path:
        """Write the best config as ``<directory>/<model>.yaml`` (for ``--config-dir``)."""
        if self.best is None:
            raise TrainingError(f"{self.model_name}: no trial finished; nothing to write")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.model_name}.yaml"
        header = (
            f"# {self.model_name}: tuned by `roiml tune` over {len(self.trials)} trials; "
            f"validation loss {self.best_loss:.6g} (shipped config {self.baseline_loss:.6g}).\n"
        )
        path.write_text(header + yaml.safe_dump(self.best.model_dump(mode="json"), sort_keys=False))
        return path


def _loss(trained: TrainedModel) -> float:
    """The main booster's validation loss; models of two boosters (contact timing) add theirs."""
    boosters = trained.artifact.boosters
    if "main" in boosters:
        return validation_loss(boosters["main"])
    return sum(validation_loss(b) for b in boosters.values())


def _draw(trial: optuna.Trial) -> dict[str, Any]:
    drawn: dict[str, Any] = {}
    for name, (low, high, log) in SEARCH_SPACE.items():
        if isinstance(low, int) and isinstance(high, int):
            drawn[name] = trial.suggest_int(name, low, high, log=log)
        else:
            drawn[name] = trial.suggest_float(name, low, high, log=log)
    return drawn


def tune_model(
    model: ModelType,
    snapshots: Snapshots,
    config: TrainingConfig,
    trials: int,
    *,
    timeout_seconds: float | None = None,
    seed: int = 42,
    on_trial: Callable[[Trial], None] | None = None,
) -> TuningResult:
    """Search ``trials`` parameter sets (TPE, seeded) starting from the shipped ``config``.

    The shipped config is trial 0, so the result is never worse than it on validation.
    """
    if trials < 1:
        raise TrainingError("--trials must be at least 1")
    trainer = TRAINERS[model]
    result = TuningResult(MODEL_NAMES[model])

    def objective(trial: optuna.Trial) -> float:
        drawn = {} if trial.number == 0 else _draw(trial)
        candidate = config.model_copy(update={"lightgbm": {**config.lightgbm, **drawn}})
        began = time.perf_counter()
        trained = trainer(snapshots, candidate, None)
        loss = _loss(trained)
        record = Trial(trial.number, drawn, loss, time.perf_counter() - began)
        result.trials.append(record)
        if trial.number == 0:
            result.baseline_loss = loss
        if loss < result.best_loss:
            result.best_loss, result.best, result.best_trained = loss, candidate, trained
        if on_trial is not None:
            on_trial(record)
        return loss

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials, timeout=timeout_seconds)
    return result
