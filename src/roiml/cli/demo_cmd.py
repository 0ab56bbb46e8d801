"""``roiml demo``: the main job end to end on the embedded default (SQLite, local files).

Every part of the product's data flow runs in it, from the world to monitoring.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time

import typer

from roiml.cli.common import console, handle_errors, open_engine, settings_or_exit
from roiml.db.migrate import upgrade
from roiml.settings import Settings
from roiml.world.config import WorldConfig
from roiml.world.generate import generate_world
from roiml.world.stats import world_stats


@handle_errors
def demo(
    users: int = typer.Option(10_000, "--users", help="Homeowners in the demo world."),
    seed: int = typer.Option(42, "--seed", help="Seed of the demo world."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Serve the API at the end."),
) -> None:
    """Generate a world up to today, compute features, train, register and promote the four
    models, predict, monitor, and serve the API (with its monitoring dashboard)."""
    settings = settings_or_exit()
    # The world ends today, so the API's "now" lands on fresh features.
    today = datetime.now(UTC).date()
    config = WorldConfig(
        users=users,
        start=today - timedelta(days=730),
        end=today,
        seed=seed,
        tenant_id=settings.tenant_id,
    )
    with open_engine(settings, require_schema=False) as engine:
        shown = engine.url.render_as_string(hide_password=True)
        revision = upgrade(engine)
        console.print(f"[bold]1. database[/bold] {shown} at schema revision {revision}")
        console.print(
            f"[bold]2. world[/bold] generating {users:,} homeowners, {config.start} to {today} ..."
        )
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
    _models(settings, config)
    _predictions(settings)
    _monitoring(settings, config)
    if serve:
        from roiml.serving.server import serve as run

        base = f"http://{settings.api_host}:{settings.api_port}/api/ml"
        console.print(
            f"[bold]8. serving[/bold] {base}/docs, dashboard {base}/dashboard (Ctrl-C stops)"
        )
        run(settings, settings.api_host, settings.api_port, settings.api_workers)


def _models(settings: Settings, config: WorldConfig) -> None:
    """Train the four models, register them and promote each to production."""
    from roiml.db.enums import ModelType
    from roiml.models.train import train_models
    from roiml.registry import ModelRegistry

    console.print("[bold]4. models[/bold] training the four on 14-day snapshots ...")
    with open_engine(settings) as engine:
        reports = train_models(settings, engine, config.tenant_id, list(ModelType))
        registry = ModelRegistry(settings, engine, config.tenant_id)
        for report in reports:
            version = registry.register_model(report.trained.artifact, tags={"by": "roiml demo"})
            registry.promote_model(report.model_name, version.version, "production", "demo")
            shown = ", ".join(f"{k} {v:.3f}" for k, v in list(report.trained.metrics.items())[:4])
            console.print(
                f"   {report.model_name} v{version.version} in production "
                f"({report.seconds:.0f} s): {shown}"
            )


def _predictions(settings: Settings) -> None:
    """Ask the API (in process) for one explained prediction of each model."""
    from fastapi.testclient import TestClient

    from roiml.serving.app import asgi

    console.print("[bold]5. predictions[/bold] through the API, in process:")
    with TestClient(asgi(settings)) as client:
        for route in ("move-probability", "transaction-type", "contact-timing", "property-value"):
            response = client.post(f"/v1/predict/{route}", json={"entity_id": "user_1"})
            body = response.json()
            if response.status_code != 200:
                console.print(f"   {route}: {response.status_code} {body.get('detail')}")
                continue
            top = ", ".join(
                f"{f['feature_name']} {f['contribution']:+.3f}" for f in body["top_features"][:3]
            )
            console.print(
                f"   {route}: {body['predicted_value']:.3f} {body['predicted_class'] or ''} "
                f"({body['feature_source']}, {body['latency_ms']:.1f} ms) because {top}"
            )
    console.print("[bold]6. prediction log[/bold] every answer above is in ml_predictions")


def _monitoring(settings: Settings, config: WorldConfig) -> None:
    """Monitor today's predictions: drift against each model's training reference, health."""
    from roiml.monitoring.job import run_monitoring

    console.print("[bold]7. monitoring[/bold] today's predictions against each training reference:")
    with open_engine(settings) as engine:
        results = run_monitoring(settings, engine, config.tenant_id, datetime.now(UTC).date())
    for result in results:
        drifted = ", ".join(result.drifted_features[:3]) or "none"
        console.print(
            f"   {result.model_name} v{result.model_version}: {result.status}, "
            f"{result.prediction_count} predictions, drifted features: {drifted}"
        )


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
