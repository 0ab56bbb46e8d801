"""``roiml train``: train, evaluate on the test period, and register one model or all four."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
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
from roiml.errors import TrainingError

if TYPE_CHECKING:
    from roiml.cli.common import ProgressReporter
    from roiml.models.train import TrainingPlan, TrainingReport
    from roiml.registry import ModelRegistry

__all__ = ["train"]

_PERIODS = ("train", "valid", "test")


def _date(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise TrainingError(f"{flag} {value!r} is not a date; give it as YYYY-MM-DD") from exc


@handle_errors
def train(
    model: str = typer.Option(
        "all",
        "--model",
        "-m",
        help="move_probability_model, ..., or 'all' (every model the recipe trains).",
    ),
    tenant: str | None = TENANT_OPTION,
    recipe: str = RECIPE_OPTION,
    config_dir: Path | None = typer.Option(
        None,
        "--config-dir",
        help="Directory of <model>.yaml files overriding the tenant's own "
        "(<data_dir>/configs/<tenant>/) and the shipped ones.",
    ),
    test_from: str | None = typer.Option(
        None, "--test-from", help="First day of the test period (YYYY-MM-DD)."
    ),
    valid_from: str | None = typer.Option(
        None,
        "--valid-from",
        help="First day of the validation period (YYYY-MM-DD); it runs up to the test period.",
    ),
    every_days: int = typer.Option(
        14, "--every-days", min=1, max=90, help="Days between training snapshots."
    ),
    register: bool = typer.Option(
        True, "--register/--no-register", help="Register each model version in MLflow."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Train from point-in-time snapshots, score the test period against baselines, register.

    The recipe (homeowners' histories or a sales file) is read from the tenant's data unless
    --recipe says it; configs come from --config-dir, else <data_dir>/configs/<tenant>/ (write
    one with `roiml models config init`), else the recipe's shipped defaults. Labels come
    strictly after each snapshot; train, validation and test are cut by date (docs/MODELS.md).
    Each version lands in the registry without a stage: promote it with `roiml models promote`.
    """
    # LightGBM and scikit-learn come with the models package: only when training.
    from roiml.db.enums import ModelType
    from roiml.models.artifact import model_type_of
    from roiml.models.config import Recipe
    from roiml.models.train import plan_training, train_models

    check_recipe(recipe)
    settings = settings_or_exit()
    models: list[ModelType] | None = None if model == "all" else [model_type_of(model)]
    tenant_id = tenant or settings.tenant_id
    with open_engine(settings) as engine:
        plan = plan_training(
            settings,
            engine,
            tenant_id,
            models,
            recipe=None if recipe == "auto" else Recipe(recipe),
            config_dir=config_dir,
            test_from=_date(test_from, "--test-from"),
            valid_from=_date(valid_from, "--valid-from"),
        )
        # With --json the plan goes to stderr: stdout is the JSON a script reads.
        _print_plan(plan, as_json)
        # A model takes from seconds to minutes: a bar on stderr says which one is running.
        with progress("train", len(plan.configs), quiet=as_json) as report_progress:
            reports = train_models(
                settings,
                engine,
                tenant_id,
                plan=plan,
                every_days=every_days,
                on_model=report_progress,
            )
        if register:
            with progress("register", len(reports), quiet=as_json) as report_progress:
                report_progress("loading MLflow", 0, len(reports))
                # MLflow takes seconds to import: only when registering.
                from roiml.registry import ModelRegistry

                registry = ModelRegistry(settings, engine, tenant_id)
                _register(registry, reports, plan, every_days, report_progress)
    if as_json:
        print_json([_as_dict(r, plan) for r in reports])
        return
    for report in reports:
        console.print(_periods_line(report), soft_wrap=True)
        console.print(_table(report))


def _register(
    registry: ModelRegistry,
    reports: list[TrainingReport],
    plan: TrainingPlan,
    every_days: int,
    report_progress: ProgressReporter,
) -> None:
    """Register each trained model as a new version (no stage), noting it in its report."""
    for done, report in enumerate(reports):
        report_progress(report.model_name, done, len(reports))
        version = registry.register_model(
            report.trained.artifact,
            tags={
                "trained_by": "roiml train",
                "every_days": str(every_days),
                "recipe": plan.recipe.recipe.value,
            },
        )
        report.registered_version = str(version.version)


def _print_plan(plan: TrainingPlan, to_stderr: bool) -> None:
    out = err_console if to_stderr else console
    # soft_wrap: a path or a reason cut across lines could not be copied or searched.
    out.print(f"recipe: {plan.recipe.recipe.value} ({escape(plan.recipe.reason)})", soft_wrap=True)
    for model_type, loaded in plan.configs.items():
        name = f"{model_type.value.lower()}_model"
        out.print(f"config of {name}: {escape(loaded.source)}", soft_wrap=True)
    if plan.left_out:
        out.print(
            f"not trained: {', '.join(plan.left_out)} (the {plan.recipe.recipe.value} recipe "
            "has no activity to learn them from)",
            soft_wrap=True,
        )


def _periods(report: TrainingReport) -> dict[str, dict[str, object]]:
    window = report.trained.artifact.training_window
    rows = report.trained.rows
    return {
        part: {
            "start": window.get(f"{part}_start"),
            "end": window.get(f"{part}_end"),
            "rows": rows.get(part),
        }
        for part in _PERIODS
    }


def _periods_line(report: TrainingReport) -> str:
    cells = [
        f"{part} {p['start']} to {p['end']} ({p['rows']:,} rows)"
        for part, p in _periods(report).items()
    ]
    refit = report.trained.rows.get("refit")
    tail = f"; final fit on train + valid ({refit:,} rows)" if refit else ""
    return f"{report.model_name} periods: " + ", ".join(cells) + tail


def _as_dict(report: TrainingReport, plan: TrainingPlan) -> dict[str, object]:
    return {
        "model": report.model_name,
        "version": report.registered_version,
        "recipe": plan.recipe.recipe.value,
        "recipe_reason": plan.recipe.reason,
        "config": report.config_source,
        "artifact": str(report.artifact_dir),
        "metrics": report.trained.metrics,
        "baselines": report.trained.baselines,
        "rows": report.trained.rows,
        "periods": _periods(report),
        "training_window": report.trained.artifact.training_window,
        "seconds": round(report.seconds, 2),
        "snapshot_seconds": round(report.snapshot_seconds, 2),
        "peak_rss_mib": round(report.peak_rss_mib, 1),
    }


def _table(report: TrainingReport) -> Table:
    version = f" version {report.registered_version}" if report.registered_version else ""
    # The rows are in the periods line above the table.
    table = Table(
        title=f"{report.model_name}{version}: {report.seconds:.1f} s", title_justify="left"
    )
    table.add_column("metric (test period)")
    table.add_column("model", justify="right")
    baselines = report.trained.baselines
    for name in baselines:
        table.add_column(name, justify="right")
    metrics = list(report.trained.metrics)
    # A baseline's own figures (its share of the test rows, the model on those rows) too.
    extra = [m for b in baselines.values() for m in b if m not in report.trained.metrics]
    for metric in [*metrics, *dict.fromkeys(extra)]:
        value = report.trained.metrics.get(metric)
        cells = [f"{baselines[b][metric]:.4f}" if metric in baselines[b] else "" for b in baselines]
        table.add_row(metric, "" if value is None else f"{value:.4f}", *cells)
    return table
