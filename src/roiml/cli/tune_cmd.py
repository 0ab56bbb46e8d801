"""``roiml tune``: Optuna search of one model's LightGBM parameters on the validation period."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from roiml.cli.common import (
    JSON_OPTION,
    TENANT_OPTION,
    console,
    err_console,
    handle_errors,
    open_engine,
    print_json,
    progress,
    settings_or_exit,
)
from roiml.cli.config_cmd import RECIPE_OPTION, check_recipe

if TYPE_CHECKING:
    from roiml.models.tune import Trial

__all__ = ["tune"]


@handle_errors
def tune(
    model: str = typer.Option(..., "--model", "-m", help="move_probability_model, ..."),
    trials: int = typer.Option(20, "--trials", min=1, max=1000, help="Number of trials."),
    timeout: float | None = typer.Option(
        None, "--timeout", min=1, help="Stop starting trials after this many seconds."
    ),
    tenant: str | None = TENANT_OPTION,
    config_dir: Path | None = typer.Option(
        None, "--config-dir", help="Start from these <model>.yaml files instead of the shipped."
    ),
    output: Path | None = typer.Option(
        None, "--output", help="Directory for the tuned <model>.yaml [default: DATA_DIR/tuning]."
    ),
    every_days: int = typer.Option(
        14, "--every-days", min=1, max=90, help="Days between training snapshots."
    ),
    seed: int = typer.Option(42, "--seed", help="Sampler seed: same seed, same trials."),
    recipe: str = RECIPE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Search LightGBM parameters (TPE) scored on the validation period, never the test one.

    Trial 0 is the starting config: --config-dir's, else the tenant's own (<data_dir>/configs/
    <tenant>/), else the recipe's shipped one, the recipe read from the data as `roiml train`
    reads it. The best config is written as <model>.yaml; train with it through
    `roiml train --model NAME --config-dir DIR`.
    """
    # Optuna, LightGBM and scikit-learn take seconds to import: only for this verb.
    from roiml.features.declared import load_tenant_catalog
    from roiml.models.artifact import model_type_of
    from roiml.models.config import Recipe
    from roiml.models.dataset import load_snapshots
    from roiml.models.train import needs_grid, plan_training
    from roiml.models.tune import tune_model

    check_recipe(recipe)
    settings = settings_or_exit()
    model_type = model_type_of(model)
    tenant_id = tenant or settings.tenant_id
    with progress(f"tune {model}", trials, quiet=as_json) as report:
        report("loading snapshots", 0, trials)
        with open_engine(settings) as engine:
            # The same recipe, config and features as `roiml train` (a sales file's value model,
            # a tenant's declared columns), so the tuned config is one training can take.
            plan = plan_training(
                settings,
                engine,
                tenant_id,
                [model_type],
                recipe=None if recipe == "auto" else Recipe(recipe),
                config_dir=config_dir,
            )
            loaded = plan.configs[model_type]
            err_console.print(
                f"recipe: {plan.recipe.recipe.value} ({plan.recipe.reason}); "
                f"starting config: {loaded.source}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            snapshots = load_snapshots(
                engine,
                tenant_id,
                settings.data_dir / "training" / tenant_id,
                every_days,
                catalog=load_tenant_catalog(settings.data_dir, tenant_id),
                grid=needs_grid(plan),
            )
        config = loaded.config
        report("trial 0 (the starting config)", 0, trials)

        def show(trial: Trial) -> None:
            report(f"trial {trial.number + 1}", trial.number + 1, trials)
            if not as_json:
                console.print(
                    f"trial {trial.number:>3}: validation loss {trial.validation_loss:.6g} "
                    f"({trial.seconds:.1f} s) {trial.parameters or '(starting config)'}"
                )

        result = tune_model(
            model_type,
            snapshots,
            config,
            trials,
            timeout_seconds=timeout,
            seed=seed,
            on_trial=show,
        )
    path = result.write(output or settings.data_dir / "tuning")
    if as_json:
        print_json(
            {
                "model": model,
                "written": str(path),
                "baseline_loss": result.baseline_loss,
                "best_loss": result.best_loss,
                "trials": [asdict(t) for t in result.trials],
                "best_test_metrics": (
                    result.best_trained.metrics if result.best_trained is not None else None
                ),
            }
        )
        return
    table = Table(title=f"{model}: best of {len(result.trials)} trials", title_justify="left")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("validation loss, starting config", f"{result.baseline_loss:.6g}")
    table.add_row("validation loss, best", f"{result.best_loss:.6g}")
    if result.best_trained is not None:
        for metric, value in result.best_trained.metrics.items():
            table.add_row(f"test {metric} (best, a check only)", f"{value:.4f}")
    console.print(table)
    console.print(f"written: {path}  (roiml train --model {model} --config-dir {path.parent})")
