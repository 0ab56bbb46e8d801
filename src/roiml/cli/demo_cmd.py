"""``roiml demo``: the main job end to end on the embedded default (SQLite, local files).

Each part of the product joins the demo as it lands; parts not built yet are named, not faked.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from datetime import time as dt_time

import typer
from rich.panel import Panel

from roiml.cli.common import console, handle_errors, open_engine, settings_or_exit
from roiml.db.migrate import upgrade
from roiml.settings import Settings
from roiml.world.config import WorldConfig
from roiml.world.generate import generate_world
from roiml.world.stats import world_stats

# What the demo will run once each part exists, and the issue that brings it.
NOT_YET = (
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
    with open_engine(settings, require_schema=False) as engine:
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
    _features(settings, config)
    pending = "\n".join(f"- {what}: needs the {part}" for what, part in NOT_YET)
    console.print(Panel(pending, title="not built yet", expand=False))
    if serve:
        console.print("Nothing to serve yet: the prediction API is not built. Exiting.")


def _features(settings: Settings, config: WorldConfig) -> None:
    """Materialize the world's last two days into cold, warm and hot; read them back."""
    from roiml.store.materialize import materialize_day
    from roiml.store.online import open_online_store
    from roiml.store.retrieval import FeatureStore

    last = config.end - timedelta(days=1)
    with open_engine(settings) as engine:
        store = FeatureStore(
            engine, config.tenant_id, settings.data_dir, open_online_store(settings)
        )
        store.clear()  # the world was just replaced: features of the old one are meaningless
        for day in (last - timedelta(days=1), last):
            started = time.perf_counter()
            # Replayed history: as if the nightly run had happened at 02:00 that day.
            result = materialize_day(
                store, day, now=datetime.combine(day, dt_time(2)), on_time=True
            )
            console.print(
                f"[bold]3. features[/bold] {day}: {result.rows:,} users x "
                f"{len(store.catalog.features)} features, {result.report.render()}, "
                "stored cold+warm+hot in "
                f"{time.perf_counter() - started:.1f} s"
            )
        morning = datetime.combine(last, dt_time(9))
        vector = store.create_prediction_features("user_1", "MOVE_PROBABILITY", now=morning)
        shown = {k: vector.values[k] for k in list(vector.values)[:4]}
        console.print(
            f"   user_1 at {morning}: {len(vector.values)} features from the "
            f"{vector.feature_source} store, e.g. {shown}"
        )
        users = [f"user_{i}" for i in range(min(config.users, 1000))]
        dataset = store.create_training_dataset(users, list(store.catalog.feature_sets), morning)
        console.print(
            f"   training set (point in time, from cold): {dataset.num_rows:,} rows x "
            f"{dataset.num_columns - 2} features"
        )
        store.online.close()
