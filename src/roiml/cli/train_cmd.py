"""``roiml train``: train, evaluate on the test period, and register one model or all four."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from roiml.cli.common import console, handle_errors, open_engine, settings_or_exit

if TYPE_CHECKING:
    from roiml.models.train import TrainingReport

__all__ = ["train"]


@handle_errors
def train(
    model: str = typer.Option(
        "all", "--model", "-m", help="move_probability_model, ..., or 'all' for the four."
    ),
    tenant: str | None = typer.Option(None, "--tenant"),
    config_dir: Path | None = typer.Option(
        None, "--config-dir", help="Directory of <model>.yaml files overriding the shipped ones."
    ),
    every_days: int = typer.Option(
        14, "--every-days", min=1, max=90, help="Days between training snapshots."
    ),
    register: bool = typer.Option(
        True, "--register/--no-register", help="Register each model version in MLflow."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the reports as JSON."),
) -> None:
    """Train from point-in-time snapshots, score the test period against baselines, register.

    Labels come strictly after each snapshot; train, validation and test are cut by date with a
    purge gap (docs/MODELS.md). Each version lands in the registry without a stage: promote it
    with `roiml models promote`.
    """
    # LightGBM and scikit-learn come with the models package: only when training.
    from roiml.db.enums import ModelType
    from roiml.models.artifact import model_type_of
    from roiml.models.train import train_models

    settings = settings_or_exit()
    models = list(ModelType) if model == "all" else [model_type_of(model)]
    tenant_id = tenant or settings.tenant_id
    with open_engine(settings) as engine:
        reports = train_models(
            settings, engine, tenant_id, models, config_dir=config_dir, every_days=every_days
        )
        if register:
            # MLflow takes seconds to import: only when registering.
            from roiml.registry import ModelRegistry

            registry = ModelRegistry(settings, engine, tenant_id)
            for report in reports:
                version = registry.register_model(
                    report.trained.artifact,
                    tags={"trained_by": "roiml train", "every_days": str(every_days)},
                )
                report.registered_version = str(version.version)
    if as_json:
        console.print_json(json.dumps([_as_dict(r) for r in reports]))
        return
    for report in reports:
        console.print(_table(report))


def _as_dict(report: TrainingReport) -> dict[str, object]:
    return {
        "model": report.model_name,
        "version": report.registered_version,
        "artifact": str(report.artifact_dir),
        "metrics": report.trained.metrics,
        "baselines": report.trained.baselines,
        "rows": report.trained.rows,
        "training_window": report.trained.artifact.training_window,
        "seconds": round(report.seconds, 2),
        "snapshot_seconds": round(report.snapshot_seconds, 2),
        "peak_rss_mib": round(report.peak_rss_mib, 1),
    }


def _table(report: TrainingReport) -> Table:
    version = f" version {report.registered_version}" if report.registered_version else ""
    table = Table(
        title=f"{report.model_name}{version}: {report.seconds:.1f} s, rows {report.trained.rows}",
        title_justify="left",
    )
    table.add_column("metric (test period)")
    table.add_column("model", justify="right")
    baselines = report.trained.baselines
    for name in baselines:
        table.add_column(name, justify="right")
    for metric, value in report.trained.metrics.items():
        cells = [f"{baselines[b][metric]:.4f}" if metric in baselines[b] else "" for b in baselines]
        table.add_row(metric, f"{value:.4f}", *cells)
    return table
