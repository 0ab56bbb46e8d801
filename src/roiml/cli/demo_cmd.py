"""``roiml demo``: the main job end to end on the embedded default (SQLite, local files).

Each part of the product joins the demo as it lands; parts not built yet are named, not faked.
"""

from __future__ import annotations

from datetime import date

import typer
from rich.panel import Panel

from roiml.cli.common import console, handle_errors, open_engine, settings_or_exit
from roiml.db.migrate import upgrade
from roiml.world.config import WorldConfig
from roiml.world.generate import generate_world
from roiml.world.stats import world_stats

# What the demo will run once each part exists, and the issue that brings it.
NOT_YET = (
    ("compute features into the three-tier store", "feature store (issue 3)"),
    ("run the daily pipeline", "pipeline and Airflow DAG (issue 4)"),
    ("train and register the four models", "models and MLflow registry (issue 5)"),
    ("serve the API on 127.0.0.1:8000 and print predictions", "prediction API (issue 6)"),
    ("check drift and realised performance", "monitoring (issue 7)"),
)


@handle_errors
def demo(
    users: int = typer.Option(10_000, "--users", help="Homeowners in the demo world."),
    seed: int = typer.Option(42, "--seed", help="Seed of the demo world."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Serve the API at the end."),
) -> None:
    """Generate a world, then run every part that exists; say which parts do not yet."""
    settings = settings_or_exit()
    config = WorldConfig(
        users=users,
        start=date(2023, 1, 1),
        end=date(2025, 1, 1),
        seed=seed,
        tenant_id=settings.tenant_id,
    )
    with open_engine(settings) as engine:
        shown = engine.url.render_as_string(hide_password=True)
        revision = upgrade(engine)
        console.print(f"[bold]1. database[/bold] {shown} at schema revision {revision}")
        console.print(f"[bold]2. world[/bold] generating {users:,} homeowners over 2023-2024 ...")
        report = generate_world(engine, settings.data_dir, config, replace=True)
        console.print(
            f"   {sum(report.rows.values()):,} rows in {report.seconds['total']} s; "
            f"ground truth in {report.truth_dir}"
        )
        stats = world_stats(engine, settings.data_dir, config.tenant_id)
    rates = stats["rates"]
    console.print(
        "   base rates: "
        f"movers/year {rates['movers_per_year']:.1%}, "
        f"transacting/year {rates['transacting_owners_per_year']:.1%}, "
        f"email opens {rates['email_open_rate']:.1%}, "
        f"alert clicks {rates['alert_click_rate']:.1%}"
    )
    console.print(f"   transactions in the window: {stats['transactions_in_window']}")
    pending = "\n".join(f"- {what}: needs the {part}" for what, part in NOT_YET)
    console.print(Panel(pending, title="not built yet", expand=False))
    if serve:
        console.print("Nothing to serve yet: the prediction API is not built. Exiting.")
