"""``roiml models``: the model registry: list, show, promote, history, compare.

MLflow is imported inside each verb, not at module import: it takes seconds, and every other
``roiml`` verb would pay for it.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from roiml.cli import config_cmd
from roiml.cli.common import (
    JSON_OPTION,
    TENANT_OPTION,
    aliases,
    console,
    handle_errors,
    open_engine,
    print_json,
    settings_or_exit,
)
from roiml.errors import RegistryError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from roiml.registry import ModelRegistry
    from roiml.settings import Settings

# Its help is in roiml.cli.main.GROUPS: `roiml --help` lists it without importing this module.
app = typer.Typer(no_args_is_help=True)
app.add_typer(config_cmd.app, name="config", help="Editable copies of the training configs (init).")

_TENANT = TENANT_OPTION
_JSON = JSON_OPTION


def _registry(settings: Settings, engine: Engine, tenant: str | None) -> ModelRegistry:
    from roiml.registry import ModelRegistry

    return ModelRegistry(settings, engine, tenant or settings.tenant_id)


def _print_json(data: Any) -> None:
    print_json(data)


def _moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise RegistryError(f"--date {value!r} is not an ISO date or timestamp") from exc


def _show(value: object) -> str:
    return "-" if value is None else escape(str(value))


@app.command("list")
@handle_errors
def list_cmd(
    tenant: str | None = _TENANT,
    as_json: bool = _JSON,
    from_mlflow: bool = typer.Option(
        False,
        "--from-mlflow",
        help="Ask MLflow itself (slower: seconds to load its client) instead of the database's "
        "mirror of it, e.g. after changing versions or aliases in MLflow's own UI.",
    ),
) -> None:
    """The tenant's registered models with their latest version and stage aliases."""
    settings = settings_or_exit()
    with open_engine(settings) as engine:
        if from_mlflow:
            models = _registry(settings, engine, tenant).list_models()
        else:
            # The mirror the registry writes with every version and alias move: no MLflow
            # import, so the verb answers in about a second.
            from roiml.registry.listing import list_mirrored

            models = list_mirrored(engine, tenant or settings.tenant_id)
    if as_json:
        _print_json([asdict(m) for m in models])
        return
    if not models:
        console.print(
            "no registered models"
            + ("" if from_mlflow else " in the database's mirror (try --from-mlflow)")
        )
        return
    table = Table(
        "model",
        "type",
        "versions",
        "latest",
        "aliases",
        caption=None if from_mlflow else "from the database's mirror; --from-mlflow asks MLflow",
    )
    for model in models:
        aliases = ", ".join(f"{a} -> {v}" for a, v in model.aliases.items())
        table.add_row(
            escape(model.name),
            _show(model.model_type),
            str(model.versions),
            _show(model.latest_version),
            escape(aliases) or "-",
        )
    console.print(table)


@app.command("show")
@handle_errors
def show_cmd(
    name: str = typer.Argument(..., help="Model name, e.g. move_probability_model."),
    tenant: str | None = _TENANT,
    as_json: bool = _JSON,
) -> None:
    """A model's versions, stages, metrics and deployment."""
    settings = settings_or_exit()
    with open_engine(settings) as engine:
        meta = _registry(settings, engine, tenant).get_model_metadata(name)
    if as_json:
        _print_json(meta)
        return
    console.print(
        f"[bold]{escape(meta['name'])}[/bold] ({_show(meta['model_type'])}), "
        f"MLflow name {escape(meta['mlflow_name'])}, latest version {_show(meta['latest_version'])}"
    )
    deployment = meta["deployment"]
    if deployment:
        console.print(
            f"production: version {deployment['version']}, promoted "
            f"{_show(deployment['promoted_at'])} by {_show(deployment['promoted_by'])}"
        )
    else:
        console.print("production: none")
    table = Table("version", "stage", "status", "created", "features", "metrics")
    for version in meta["versions"]:
        metrics = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in sorted(version["metrics"].items())
        )
        table.add_row(
            version["version"],
            version["stage"],
            _show(version["status"]),
            _minute(version["created_at"]),
            str(len(version["feature_names"])),
            escape(metrics) or "-",
        )
    console.print(table)


@app.command("promote")
@handle_errors
def promote_cmd(
    name: str = typer.Argument(..., help="Model name."),
    version: str = typer.Argument(..., help="Version number, 'latest' or an alias."),
    stage: str = typer.Argument(
        ..., help="None, Staging, Production or Archived, in any case (e.g. production)."
    ),
    actor: str | None = typer.Option(None, "--actor", help="Who promotes (default: OS user)."),
    tenant: str | None = _TENANT,
    as_json: bool = _JSON,
) -> None:
    """Move a version into a stage; entering Production archives the previous one."""
    settings = settings_or_exit()
    with open_engine(settings) as engine:
        events = _registry(settings, engine, tenant).promote_model(name, version, stage, actor)
    if as_json:
        _print_json(
            {
                "model": name,
                "version": version,
                "stage": stage,
                "events": [asdict(e) for e in events],
            }
        )
        return
    if not events:
        console.print(f"{escape(name)} version {escape(version)} is already in {escape(stage)}")
        return
    for event in events:
        if event.to_version is None:
            change = f"{event.alias} removed from version {event.from_version}"
        else:
            was = f" (was {event.from_version})" if event.from_version else ""
            change = f"{event.alias} -> {event.to_version}{was}"
        console.print(f"{escape(name)}: {change}")


# --at was the moment's name here before issue 21 gave every verb --date.
@app.command("history", cls=aliases({"--at": "--date"}))
@handle_errors
def history_cmd(
    name: str = typer.Argument(..., help="Model name."),
    at: str | None = typer.Option(
        None,
        "--date",
        help="Only moves up to this day's midnight (YYYY-MM-DD) or moment (ISO timestamp, UTC), "
        "and who held each stage then.",
    ),
    tenant: str | None = _TENANT,
    as_json: bool = _JSON,
) -> None:
    """Every stage alias move of a model: when, from which version to which, by whom."""
    from roiml.registry import STAGE_ALIASES

    settings = settings_or_exit()
    moment = _moment(at)
    with open_engine(settings) as engine:
        registry = _registry(settings, engine, tenant)
        events = registry.history(name, at=moment)
        holders = (
            {alias: registry.version_at(name, alias, at=moment) for alias in STAGE_ALIASES.values()}
            if moment is not None
            else None
        )
    if as_json:
        _print_json({"events": [asdict(e) for e in events], "at": at, "holders": holders})
        return
    table = Table("moved at (UTC)", "alias", "from", "to", "actor")
    for event in events:
        table.add_row(
            event.moved_at.isoformat(sep=" ", timespec="seconds"),
            event.alias,
            _show(event.from_version),
            _show(event.to_version),
            escape(event.actor),
        )
    console.print(table if events else f"no alias moves for {escape(name)}")
    if holders is not None:
        held = ", ".join(f"{alias} -> {_show(version)}" for alias, version in holders.items())
        console.print(f"at {escape(str(at))}: {held}")


@app.command("compare")
@handle_errors
def compare_cmd(
    name: str = typer.Argument(..., help="Model name."),
    version1: str = typer.Argument(..., help="First version (number, 'latest' or alias)."),
    version2: str = typer.Argument(..., help="Second version."),
    metrics: str | None = typer.Option(
        None, "--metrics", help="Comma-separated metrics (default: all either version logged)."
    ),
    tenant: str | None = _TENANT,
    as_json: bool = _JSON,
) -> None:
    """Two versions side by side, metric by metric, with which one is better."""
    wanted = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    settings = settings_or_exit()
    with open_engine(settings) as engine:
        result = _registry(settings, engine, tenant).compare_models(
            name, version1, version2, wanted
        )
    if as_json:
        _print_json(result.as_dict())
        return
    table = Table("metric", f"v{result.version1}", f"v{result.version2}", "difference", "better")
    for row in result.metrics.values():
        better = {"v1": f"v{result.version1}", "v2": f"v{result.version2}"}.get(
            str(row.better), _show(row.better)
        )
        table.add_row(
            escape(row.metric) + (" (lower is better)" if row.lower_is_better else ""),
            _number(row.v1),
            _number(row.v2),
            _number(row.difference, signed=True),
            better,
        )
    console.print(table)


def _minute(iso: str | None) -> str:
    # Seconds and microseconds only widen the table.
    return "-" if iso is None else iso[:16].replace("T", " ")


def _number(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4g}" if signed else f"{value:.4g}"
