"""``roiml demo``: the main job end to end on the embedded default (SQLite, local files).

Every part of the product's data flow runs in it, from the world to monitoring, as of one day:
``--today`` (default: ``ROIML_TODAY``, else the real date, UTC). The world ends on it, the
features and the models are as of it, the whole population is scored through the API with the
API's clock on it, monitoring judges it, and the API served at the end answers as of it.
"""

from __future__ import annotations

import logging
import os
import re
import time
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from typing import TYPE_CHECKING

import typer

from roiml.cli.common import (
    console,
    global_overrides,
    handle_errors,
    open_engine,
    progress,
    settings_or_exit,
)
from roiml.errors import ConfigurationError

if TYPE_CHECKING:
    from roiml.settings import Settings
    from roiml.world.config import WorldConfig


@handle_errors
def demo(
    users: int = typer.Option(10_000, "--users", help="Homeowners in the demo world."),
    seed: int = typer.Option(42, "--seed", help="Seed of the demo world."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Serve the API at the end."),
    today_text: str | None = typer.Option(
        None,
        "--today",
        metavar="YYYY-MM-DD",
        help="The demo's today: the world ends on it; features, models, the API's now and "
        "monitoring are as of it (default: ROIML_TODAY, else the real date, UTC).",
    ),
) -> None:
    """Generate a world up to today, compute features, train, register and promote the four
    models, score every homeowner through the API, monitor the day, and serve the API (with its
    monitoring dashboard), all as of one day (--today)."""
    # Each step imports what it runs, so `roiml --help` and `roiml demo --help` load none of it.
    from roiml.db.migrate import upgrade
    from roiml.world.config import WorldConfig
    from roiml.world.generate import generate_world
    from roiml.world.stats import world_stats

    # Pinned in the settings, so every API built from them (the in-process calls and the
    # server at the end) answers as of this day: the world ends on it, its features are fresh.
    settings = _pinned(settings_or_exit(), today_text)
    today = settings.current_date()
    # MLflow announces creating and migrating its SQLite store at INFO on the first
    # registration: the demo's own step line already says the models are registered.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
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
        with progress("world", config.blocks) as report_progress:
            report = generate_world(
                engine,
                settings.data_dir,
                config,
                replace=True,
                on_block=lambda done, total: report_progress(f"{users:,} users", done, total),
            )
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
    shown = _predictions(settings)
    _population(settings, config, shown)
    _monitoring(settings, config)
    if serve:
        from roiml.serving.server import serve as run

        # The supervised workers read their settings afresh from the environment: pin it there
        # (and the root's --data-dir and --tenant).
        os.environ.update(global_overrides())
        os.environ["ROIML_TODAY"] = today.isoformat()
        base = f"http://{settings.api_host}:{settings.api_port}/api/ml"
        console.print(
            f"[bold]8. serving[/bold] {base}/docs, dashboard {base}/dashboard, answering as of "
            f"{today} (Ctrl-C stops)"
        )
        run(settings, settings.api_host, settings.api_port, settings.api_workers)


def _pinned(settings: Settings, text: str | None) -> Settings:
    """``settings`` with today pinned: to ``--today``, else to the settings' own pinned day,
    else to the real UTC date. A malformed or implausible date is a ConfigurationError."""
    from pydantic import ValidationError

    if text is None:
        return settings.model_copy(update={"today": settings.current_date()})
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
            raise ValueError("not of the form YYYY-MM-DD")
        day = date.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigurationError(
            f"--today {text!r} is not a date ({exc}); give YYYY-MM-DD, e.g. 2027-03-01"
        ) from None
    try:
        # Validated as ROIML_TODAY is (the settings' own rule on plausible days).
        return type(settings).model_validate(settings.model_dump() | {"today": day})
    except ValidationError as exc:
        why = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise ConfigurationError(f"--today: {why}") from None


def _models(settings: Settings, config: WorldConfig) -> None:
    """Train the four models, register them and promote each to production."""
    from roiml.db.enums import ModelType
    from roiml.models.train import train_models
    from roiml.registry import ModelRegistry

    until = datetime.combine(config.end, dt_time())
    console.print(
        f"[bold]4. models[/bold] training the four on 14-day snapshots, as of {until} ..."
    )
    with open_engine(settings) as engine:
        # As of today's midnight: the world ends there, and nothing after it is known.
        with progress("train", len(ModelType)) as report_progress:
            reports = train_models(
                settings,
                engine,
                config.tenant_id,
                list(ModelType),
                until=until,
                on_model=report_progress,
            )
        with progress("register", len(reports)) as report_progress:
            report_progress("loading MLflow", 0, len(reports))
            registry = ModelRegistry(settings, engine, config.tenant_id)
            for done, report in enumerate(reports):
                report_progress(report.model_name, done, len(reports))
                version = registry.register_model(
                    report.trained.artifact, tags={"by": "roiml demo"}
                )
                registry.promote_model(report.model_name, version.version, "production", "demo")
                shown = ", ".join(
                    f"{k} {v:.3f}" for k, v in list(report.trained.metrics.items())[:4]
                )
                console.print(
                    f"   {report.model_name} v{version.version} in production "
                    f"({report.seconds:.0f} s): {shown}"
                )


def _predictions(settings: Settings, entity_id: str = "user_1") -> str:
    """Ask the API (in process) for one explained prediction of each model; the homeowner."""
    from prometheus_client import CollectorRegistry

    from roiml.serving.app import asgi
    from roiml.serving.components import registry_components
    from roiml.serving.metrics import ServingMetrics
    from roiml.serving.population import in_process_client

    console.print(f"[bold]5. predictions[/bold] of {entity_id} through the API, in process:")
    # Metrics of its own: the API served at the end registers the process's default set.
    parts = registry_components(settings, metrics=ServingMetrics(CollectorRegistry()))
    with in_process_client()(asgi(settings, parts)) as client:
        for route in ("move-probability", "transaction-type", "contact-timing", "property-value"):
            response = client.post(f"/v1/predict/{route}", json={"entity_id": entity_id})
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
    return entity_id


def _population(settings: Settings, config: WorldConfig, scored: str) -> None:
    """Score every other homeowner with every model through the batch route, as of today, so
    that each model has one prediction per homeowner today (``scored`` had its own above)."""
    from sqlalchemy import select

    from roiml.db.source_models import User
    from roiml.serving.components import serving_clock
    from roiml.serving.population import score_population
    from roiml.serving.schemas import MAX_BATCH

    with open_engine(settings) as engine, engine.connect() as conn:
        population = list(
            conn.scalars(
                select(User.user_id)
                .where(User.tenant_id == config.tenant_id)
                .order_by(User.user_id)
            )
        )
    others = [user for user in population if user != scored]
    now = serving_clock(settings)()
    started = time.perf_counter()
    with progress("population") as report_progress:
        report_progress(f"scoring {len(others):,} homeowners x 4 models", 0, 1)
        counts = score_population(settings, config.tenant_id, others, now)
    seconds = time.perf_counter() - started
    console.print(
        f"[bold]6. population[/bold] {len(population):,} homeowners x {len(counts)} models "
        f"through /v1/predict/batch (chunks of {MAX_BATCH:,}) as of {now:%Y-%m-%d %H:%M} UTC "
        f"in {seconds:.1f} s ({scored} above, the others here):"
    )
    for name, count in counts.items():
        missing = len(others) - count
        note = f", {missing:,} unanswered (see the log)" if missing else ""
        console.print(f"   {name}: {count:,} here{note}")
    console.print("   every answer is in ml_predictions, the prediction log")


def _monitoring(settings: Settings, config: WorldConfig) -> None:
    """Monitor today's predictions: drift against each model's training reference, health."""
    from roiml.monitoring.job import (
        NO_PREDICTIONS,
        NO_REFERENCE,
        TOO_FEW_PREDICTIONS,
        run_monitoring,
    )
    from roiml.serving.components import serving_clock

    today = config.end
    console.print(
        f"[bold]7. monitoring[/bold] {today}'s predictions against each training reference:"
    )
    with open_engine(settings) as engine, progress("monitoring") as report_progress:
        report_progress("drift and performance of the four models", 0, 1)
        results = run_monitoring(
            settings, engine, config.tenant_id, today, now=serving_clock(settings)()
        )
    for result in results:
        if result.status in (NO_PREDICTIONS, TOO_FEW_PREDICTIONS, NO_REFERENCE):
            verdict = f"not judged ({result.status})"
        else:
            verdict = f"verdict {result.status}"
        drifted = ", ".join(result.drifted_features[:3]) or "none"
        more = len(result.drifted_features) - 3
        if more > 0:
            drifted += f" and {more} more"
        console.print(
            f"   {result.model_name} v{result.model_version}: {verdict} on "
            f"{result.prediction_count:,} predictions; drifted features: {drifted}"
        )


def _features(settings: Settings, config: WorldConfig) -> None:
    """Materialize the world's last two days into cold, warm and hot; read them back."""
    from roiml.features.engineer import as_of_midnight
    from roiml.pipeline.runs import record_step
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
            # Recorded as the daily pipeline records a day's run, so the dashboard's freshness
            # shows the features the demo made rather than "no run".
            with record_step(engine, config.tenant_id, as_of_midnight(day), "run", None) as run:
                # Replayed history: as if the nightly run had happened at 02:00 that day.
                with progress(f"features {day}") as report_progress:
                    result = materialize_day(
                        store,
                        day,
                        now=datetime.combine(day, dt_time(2)),
                        on_time=True,
                        on_step=report_progress,
                    )
                run.rows = result.rows
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
