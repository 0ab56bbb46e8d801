"""Replay: the daily product run day after day on a generated world, counting false alarms and
how many days an injected fault takes to be caught.

    python -m bench replay [--days 365] [--users 2000] [--fault-days 5] [--repeats 1] [--url URL]

One world of ``--users`` homeowners ends on the replay's last day. The four models are trained
once, on the data stamped before the replay's first day only, registered and promoted to
production. Then, for each consecutive day ``d``, as production runs it:

1. the daily pipeline for ``d`` (extract, compute, the validation gate against the day before,
   store): a gate failure is recorded with its report and nothing of ``d`` is published;
2. a day of predictions: the whole population scored through the API's batch route, in
   process, the API's clock at ``d`` 09:00;
3. the monitoring job for ``d`` (drift of each model's inputs against its training reference),
   the night after.

Faults are replayed on copies of the world (same seed, their own tenant in the same database)
over a short window around the day ``F`` they first reach the pipeline's input: the world's own
shifts (a mortgage-rate shock, a change in email opening habits) and two data faults applied to
the source tables before each day's pipeline runs (half of a day's sessions lost on load, the
30-year mortgage rate delivered as a fraction instead of a percent). A fault is detected on the
first day, at or after ``F``, when the gate fails on, or monitoring flags, a feature computed from
the table the fault touched, or the gate's arrival check fails on that table.

The logic lives in functions a test can import (``tests/test_replay.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from sqlalchemy import Engine, delete, func, select, update

from roiml.db import Base
from roiml.db.engine import make_engine
from roiml.db.enums import ModelType
from roiml.db.migrate import upgrade
from roiml.errors import PipelineError
from roiml.features.catalog import CATALOG
from roiml.features.engine import FeatureEngine
from roiml.features.frame import AS_OF, ENTITY_ID
from roiml.features.validation import validate_frame
from roiml.models.artifact import ModelArtifact
from roiml.models.config import SplitConfig, load_config
from roiml.models.train import TrainingReport, train_models
from roiml.pipeline.steps import PipelineContext, run_day
from roiml.pipeline.workspace import Workspace
from roiml.serving.population import score_population
from roiml.settings import Settings
from roiml.store.materialize import previous_day
from roiml.store.online import open_online_store
from roiml.store.retrieval import FeatureStore
from roiml.world import WorldConfig, generate_world

__all__ = [
    "FAULTS",
    "DayRecord",
    "Fault",
    "Replay",
    "detection",
    "next_survey",
    "prepare",
    "replay_days",
    "replay_faults",
    "summarize",
]

log = logging.getLogger(__name__)

RESULTS = Path(__file__).with_name("results")
CLEAN = "clean"
HISTORY_DAYS = 730  # the world's history before the replay: what the models are trained on
PIPELINE_HOUR = 2  # the nightly run, as the demo replays a day
SERVING_HOUR = 9  # the day's predictions
MONITORING_HOUR = 1  # the night after: monitoring of the day that ended
# Days replayed before a fault reaches the input: the first has no served traffic before it
# (monitoring compares it with the training reference), the second does, as every later day.
PRE_FAULT_DAYS = 2

# --------------------------------------------------------------------------------------------
# faults


@dataclass(frozen=True)
class Fault:
    """One injected fault: a shift of the world itself, or a change to the loaded source rows.

    ``tables`` are the source tables it touches: a feature computed from any of them is
    *related*, and a gate failure or a drift flag on a related feature is its detection.
    ``world`` holds :class:`WorldConfig` shift fields (their ``shift_from`` is filled in);
    ``apply(engine, tenant, day, start)`` changes the source rows before the pipeline of every
    ``day`` at or after ``start``; ``first_day(engine, tenant, nominal)`` says on which pipeline
    day the fault first reaches the input, given the nominal start.
    """

    name: str
    description: str
    tables: tuple[str, ...]
    world: dict[str, float] = field(default_factory=dict)
    apply: Callable[[Engine, str, date, date], None] | None = None
    first_day: Callable[[Engine, str, date], date] | None = None


def _table(name: str) -> Any:
    return Base.metadata.tables[name]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, dt_time())


def next_survey(engine: Engine, tenant: str, since: date) -> date:
    """The first weekly economic survey observed on or after ``since``."""
    econ = _table("economic_indicators")
    with engine.connect() as conn:
        found = conn.execute(
            select(econ.c.observed_on)
            .where(econ.c.tenant_id == tenant, econ.c.observed_on >= since)
            .order_by(econ.c.observed_on)
            .limit(1)
        ).scalar()
    if found is None:
        raise ValueError(f"no economic survey on or after {since} for tenant {tenant!r}")
    return found  # type: ignore[no-any-return]


def _survey_visible(engine: Engine, tenant: str, nominal: date) -> date:
    # A survey observed on day X is known once X is over (ts = X + 1 day) and a feature as of
    # midnight M sees rows with ts < M: the first pipeline day that reads it is X + 2.
    return next_survey(engine, tenant, nominal) + timedelta(days=2)


def _campaign_visible(engine: Engine, tenant: str, nominal: date) -> date:
    """The day after the tenant's first campaign send on or after ``nominal`` (a day on which
    a tenth of the homeowners or more were emailed): opens change with the emails they open,
    and between sends only a few anniversary emails go out."""
    emails, users = _table("email_events"), _table("users")
    with engine.connect() as conn:
        population = conn.execute(
            select(func.count()).select_from(users).where(users.c.tenant_id == tenant)
        ).scalar_one()
        sent: list[datetime] = list(
            conn.execute(
                select(emails.c.sent_at).where(
                    emails.c.tenant_id == tenant,
                    emails.c.sent_at >= _midnight(nominal),
                    emails.c.sent_at < _midnight(nominal + timedelta(days=45)),
                )
            ).scalars()
        )
        per_day: dict[date, int] = {}
        for moment in sent:
            per_day[moment.date()] = per_day.get(moment.date(), 0) + 1
    for day in sorted(per_day):
        if per_day[day] * 10 >= population:
            return day + timedelta(days=1)
    raise ValueError(f"no campaign send on or after {nominal} for tenant {tenant!r}")


def _rows_visible(engine: Engine, tenant: str, nominal: date) -> date:
    del engine, tenant
    # Rows stamped on day X are read first by the pipeline as of X + 1's midnight.
    return nominal + timedelta(days=1)


def _half_sessions(engine: Engine, tenant: str, day: date, start: date) -> None:
    """Half of the sessions that arrive for ``day``'s pipeline (stamped the day before) are
    lost on load: every row with an even id."""
    del start
    sessions = _table("platform_sessions")
    stamped = sessions.c.started_at
    with engine.begin() as conn:
        conn.execute(
            delete(sessions).where(
                sessions.c.tenant_id == tenant,
                stamped >= _midnight(day - timedelta(days=1)),
                stamped < _midnight(day),
                sessions.c.id % 2 == 0,
            )
        )


def _rate_as_fraction(engine: Engine, tenant: str, day: date, start: date) -> None:
    """From the first survey the pipeline of ``start`` reads on, the 30-year rate arrives as a
    fraction (0.065) instead of a percent (6.5). Applied once: later rows are already there."""
    if day != start:
        return
    first = start - timedelta(days=2)
    if next_survey(engine, tenant, first) != first:
        raise ValueError(f"no survey observed on {first}: the fault cannot first appear on {start}")
    econ = _table("economic_indicators")
    with engine.begin() as conn:
        conn.execute(
            update(econ)
            .where(econ.c.tenant_id == tenant, econ.c.observed_on >= first)
            .values(mortgage_rate_30y=econ.c.mortgage_rate_30y / 100.0)
        )


FAULTS: dict[str, Fault] = {
    fault.name: fault
    for fault in (
        Fault(
            "rate_shock",
            "the world's 30-year mortgage rate jumps by 2 points (world shift)",
            ("economic_indicators",),
            world={"rate_shock": 2.0},
            first_day=_survey_visible,
        ),
        Fault(
            "email_open_shift",
            "homeowners open emails at +1.5 log-odds (world shift)",
            ("email_events",),
            world={"email_open_shift": 1.5},
            first_day=_campaign_visible,
        ),
        Fault(
            "half_sessions",
            "half of each day's new platform_sessions rows never arrive",
            ("platform_sessions",),
            apply=_half_sessions,
            first_day=_rows_visible,
        ),
        Fault(
            "rate_as_fraction",
            "economic_indicators.mortgage_rate_30y arrives as a fraction, not a percent",
            ("economic_indicators",),
            apply=_rate_as_fraction,
            first_day=_survey_visible,
        ),
    )
}


def related_features(fault: Fault) -> frozenset[str]:
    """The catalog features computed from any table the fault touches."""
    engine = FeatureEngine()
    return frozenset(
        name for name in CATALOG.features if set(engine.plan([name]).tables) & set(fault.tables)
    )


# --------------------------------------------------------------------------------------------
# the world and the models


@dataclass
class Replay:
    """A prepared replay: the database, the worlds, and the models in production."""

    settings: Settings
    engine: Engine
    first_day: date
    last_day: date
    users: int
    seed: int
    artifacts: dict[str, Path]  # model name -> trained artifact directory
    seconds: dict[str, float] = field(default_factory=dict)
    tenants: dict[str, date | None] = field(default_factory=dict)  # tenant -> shift start

    def for_tenant(self, tenant: str) -> Settings:
        return self.settings.model_copy(update={"tenant_id": tenant})

    def close(self) -> None:
        self.engine.dispose()


def small_configs(target: Path) -> Path:
    """The shipped model configs, sized for a small world and a shared machine (label
    minimums, boosting rounds, one LightGBM thread): the replay judges the daily product,
    not the models' quality."""
    target.mkdir(parents=True, exist_ok=True)
    for model in ModelType:
        name = f"{model.value.lower()}_model"
        config = load_config(name)
        config.min_positive_labels = 3
        config.num_boost_round = 40
        config.early_stopping_rounds = 10
        config.split = SplitConfig(test_days=60, valid_days=28)
        config.max_train_rows = 20_000
        config.events_per_snapshot = 1
        config.lightgbm["num_threads"] = 1
        (target / f"{name}.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return target


def _world(
    users: int, seed: int, first_day: date, last_day: date, tenant: str, **shift: Any
) -> WorldConfig:
    return WorldConfig(
        users=users,
        start=first_day - timedelta(days=HISTORY_DAYS),
        end=last_day,
        seed=seed,
        tenant_id=tenant,
        **shift,
    )


def prepare(
    root: Path,
    *,
    users: int,
    first_day: date,
    last_day: date,
    seed: int = 42,
    database_url: str | None = None,
    every_days: int = 28,
) -> Replay:
    """Generate the undrifted world (tenant ``clean``) ending on the replay's ``last_day`` (its
    rows are stamped before that day's midnight: what the last day's pipeline reads), train the
    four models on its rows before ``first_day``, register them and promote each to
    production."""
    settings = Settings(
        _env_file=None,
        data_dir=root / "data",
        database_url=database_url,
        tenant_id=CLEAN,
        monitoring_webhook_url=None,
        redis_url=None,
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    generate_world(
        engine, settings.data_dir, _world(users, seed, first_day, last_day, CLEAN), replace=True
    )
    seconds["world"] = time.perf_counter() - started
    started = time.perf_counter()
    # As of the first day's midnight: the rows stamped before it, opens and clicks after it
    # unknown, though the world goes on to the last day.
    reports = train_models(
        settings,
        engine,
        CLEAN,
        list(ModelType),
        config_dir=small_configs(root / "config"),
        every_days=every_days,
        until=_midnight(first_day),
    )
    seconds["train"] = time.perf_counter() - started
    replay = Replay(
        settings,
        engine,
        first_day,
        last_day,
        users,
        seed,
        {r.model_name: r.artifact_dir for r in reports},
        seconds,
        {CLEAN: None},
    )
    started = time.perf_counter()
    _promote(replay, CLEAN, reports)
    seconds["register"] = time.perf_counter() - started
    return replay


def _promote(replay: Replay, tenant: str, reports: Sequence[TrainingReport] | None) -> None:
    """Register the trained models for ``tenant`` and promote each to production, with the
    registry's clock just before the replay's first day."""
    from roiml.registry import ModelRegistry  # MLflow imports take seconds

    moment = _midnight(replay.first_day) - timedelta(hours=1)
    registry = ModelRegistry(replay.for_tenant(tenant), replay.engine, tenant, clock=lambda: moment)
    artifacts = (
        [r.trained.artifact for r in reports]
        if reports is not None
        else [ModelArtifact.load(path) for path in replay.artifacts.values()]
    )
    for artifact in artifacts:
        version = registry.register_model(artifact, tags={"by": "bench replay"})
        registry.promote_model(artifact.name, version.version, "production", "bench replay")


@dataclass
class FaultWorld:
    """A copy of the world carrying one or more faults, and the day each first reaches the
    pipeline's input."""

    tenant: str
    faults: list[tuple[Fault, date]]

    def start(self, name: str) -> date:
        return next(start for fault, start in self.faults if fault.name == name)


def add_fault_world(replay: Replay, faults: Sequence[Fault], nominal: date) -> FaultWorld:
    """A copy of the world (its own tenant, the same seed, the same end) carrying ``faults``,
    with the undrifted world's models in production.

    World shifts start on ``nominal`` (and reach the input when their data first does); the
    data faults all start on one day, the first at which each of them can (a fault on a weekly
    table waits for its next row). Several faults share a world only if no feature is computed
    from tables of two of them: each one's detection stays its own.
    """
    seen: set[str] = set()
    for fault in faults:
        related = related_features(fault)
        if seen & related:
            raise ValueError(f"{fault.name} shares features with another fault of the world")
        seen |= related
    tenant = "-".join(f.name.replace("_", "-") for f in faults)[:48] + f"-{nominal:%Y%m%d}"
    shift: dict[str, Any] = {k: v for f in faults for k, v in f.world.items()}
    if shift:
        shift["shift_from"] = nominal
    config = _world(replay.users, replay.seed, replay.first_day, replay.last_day, tenant, **shift)
    generate_world(replay.engine, replay.settings.data_dir, config, replace=True)
    _promote(replay, tenant, None)
    replay.tenants[tenant] = nominal

    def first_day(fault: Fault) -> date:
        return fault.first_day(replay.engine, tenant, nominal) if fault.first_day else nominal

    data = [f for f in faults if f.apply is not None]
    data_start = max((first_day(f) for f in data), default=nominal)
    return FaultWorld(
        tenant, [(f, data_start if f.apply is not None else first_day(f)) for f in faults]
    )


# --------------------------------------------------------------------------------------------
# one day


@dataclass
class GateIssue:
    feature: str
    rule: str
    observed: str


@dataclass
class ModelDay:
    status: str
    predictions: int
    drifted: list[str]
    alerts: list[str]  # "kind:subject"


@dataclass
class DayRecord:
    """What production did on one day."""

    day: date
    gate_passed: bool
    gate_compared: bool  # a previous day was published, so the day-over-day check ran
    issues: list[GateIssue]
    report: str
    # The gate judged without a previous day (the one before failed): what it would have said
    # against that day's unpublished frame. Evidence only; not counted as a failure.
    shadow_issues: list[GateIssue]
    predictions: int
    prediction_errors: int
    models: dict[str, ModelDay]
    seconds: dict[str, float]

    @property
    def drifted(self) -> set[str]:
        return {f for m in self.models.values() for f in m.drifted}

    def flagged(self) -> set[str]:
        """Features the gate failed on or monitoring flagged."""
        return {i.feature for i in self.issues} | self.drifted

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["day"] = self.day.isoformat()
        return out


_ISSUE = re.compile(r"^\s+- (?P<feature>[^:]+): (?P<rule>.+?) - observed (?P<observed>.*), allowed")


def _issues(report: str) -> list[GateIssue]:
    found = []
    for line in report.splitlines():
        match = _ISSUE.match(line)
        if match:
            found.append(GateIssue(match["feature"], match["rule"], match["observed"]))
    return found


def _computed(workspace: Workspace) -> pa.Table | None:
    """A day's computed (validated or not) frame from the pipeline's hand-over folder."""
    joined: pa.Table | None = None
    for feature_set in CATALOG.feature_sets:
        files = sorted(workspace.computed(feature_set).glob("shard-*.parquet"))
        if not files:
            return None
        part = pa.concat_tables([pq.ParquetFile(f).read() for f in files])
        joined = part if joined is None else joined.join(part, [ENTITY_ID, AS_OF])
    return joined


def _population(engine: Engine, tenant: str, day: date) -> list[str]:
    """Every homeowner signed up before ``day``."""
    users = _table("users")
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(users.c.user_id)
                .where(users.c.tenant_id == tenant, users.c.created_at < _midnight(day))
                .order_by(users.c.user_id)
            ).scalars()
        )


def _artifact_loader(replay: Replay, settings: Settings) -> Callable[[str, str], ModelArtifact]:
    """Monitoring's artifact loader, from the registry, each version loaded once per run."""
    from roiml.registry import ModelRegistry

    registry = ModelRegistry(settings, replay.engine, settings.tenant_id)
    cache: dict[tuple[str, str], ModelArtifact] = {}

    def load(name: str, version: str) -> ModelArtifact:
        if (name, version) not in cache:
            cache[name, version] = registry.load_model(name, version)
        return cache[name, version]

    return load


def run_one_day(
    replay: Replay,
    tenant: str,
    day: date,
    load_artifact: Callable[[str, str], ModelArtifact],
    faults: Sequence[tuple[Fault, date]] = (),
) -> DayRecord:
    """The pipeline, a day of predictions and monitoring for ``day``."""
    from roiml.monitoring.job import run_monitoring

    # The product's today pinned to the replayed day (the API's clock follows it).
    settings = replay.for_tenant(tenant).model_copy(update={"today": day})
    seconds: dict[str, float] = {}
    for fault, start in faults:
        if fault.apply is not None and day >= start:
            fault.apply(replay.engine, tenant, day, start)
    started = time.perf_counter()
    store = FeatureStore(replay.engine, tenant, settings.data_dir, open_online_store(settings))
    ctx = PipelineContext(
        store=store, day=day, now=_midnight(day) + timedelta(hours=PIPELINE_HOUR), on_time=True
    )
    before = day - timedelta(days=1)
    compared = previous_day(store, day) is not None
    try:
        run_day(ctx)
        passed, report = True, json.loads(ctx.workspace.validation.read_text())["report"]
    except PipelineError as exc:
        if not ctx.workspace.validation.exists():
            raise
        verdict = json.loads(ctx.workspace.validation.read_text())
        if verdict["passed"]:
            raise  # a failure after the gate: not the gate's
        passed, report = False, str(exc)
    finally:
        store.online.close()
    seconds["pipeline"] = time.perf_counter() - started
    issues = _issues(report)
    shadow: list[GateIssue] = []
    if not compared:
        yesterday = _computed(Workspace.of(settings.data_dir, tenant, before))
        today = _computed(ctx.workspace)
        if yesterday is not None and today is not None:
            shadow = _issues(validate_frame(today, yesterday).render())

    started = time.perf_counter()
    population = _population(replay.engine, tenant, day)
    counts = score_population(
        settings, tenant, population, _midnight(day) + timedelta(hours=SERVING_HOUR)
    )
    answered = sum(counts.values())
    errors = len(counts) * len(population) - answered
    seconds["predictions"] = time.perf_counter() - started

    started = time.perf_counter()
    results = run_monitoring(
        settings,
        replay.engine,
        tenant,
        day,
        load_artifact=load_artifact,
        now=_midnight(day + timedelta(days=1)) + timedelta(hours=MONITORING_HOUR),
    )
    seconds["monitoring"] = time.perf_counter() - started
    models = {
        r.model_name: ModelDay(
            r.status,
            r.prediction_count,
            sorted(r.drifted_features),
            [f"{a.get('kind')}:{a.get('subject')}" for a in r.alerts],
        )
        for r in results
    }
    return DayRecord(
        day, passed, compared, issues, report, shadow, answered, errors, models, seconds
    )


def replay_days(
    replay: Replay,
    tenant: str,
    first: date,
    last: date,
    *,
    faults: Sequence[tuple[Fault, date]] = (),
    warm_up: bool = True,
    progress: Callable[[DayRecord], None] | None = None,
) -> list[DayRecord]:
    """Run ``first`` to ``last`` (inclusive) day after day for ``tenant``. With ``warm_up``,
    the pipeline of the day before ``first`` runs first (not recorded), so that ``first`` is
    gated against a published day as every later day is."""
    settings = replay.for_tenant(tenant)
    if warm_up:
        day = first - timedelta(days=1)
        store = FeatureStore(replay.engine, tenant, settings.data_dir, open_online_store(settings))
        ctx = PipelineContext(
            store=store,
            day=day,
            now=_midnight(day) + timedelta(hours=PIPELINE_HOUR),
            on_time=True,
        )
        try:
            run_day(ctx)
        finally:
            store.online.close()
    records = []
    load = _artifact_loader(replay, settings)
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        record = run_one_day(replay, tenant, day, load, faults)
        records.append(record)
        if progress is not None:
            progress(record)
    return records


# --------------------------------------------------------------------------------------------
# verdicts


def detection(
    records: Sequence[DayRecord],
    fault: Fault,
    start: date,
    control: Sequence[DayRecord] = (),
) -> dict[str, Any]:
    """When ``fault`` (first in the input on ``start``) was caught: the first day at or after
    ``start`` with a gate failure or a drift flag on a related feature (or a failed arrival
    check of a table the fault touched), and the delay in days.

    With ``control`` (the undrifted world's records of the same days), a flag the undrifted
    world raised too that day is not counted: it is a false alarm that happened to land on a
    related feature, not the fault's detection. ``raw_day`` is the first day with any related
    flag. ``before`` lists related flags (beyond the control's) on days before ``start``.
    """
    # The arrival check names the source table itself, not a feature.
    related = related_features(fault) | set(fault.tables)
    twin = {r.day: r for r in control}

    def net(record: DayRecord) -> tuple[list[str], list[str]]:
        same = twin.get(record.day)
        gate = {i.feature for i in record.issues} & related
        drift = record.drifted & related
        if same is not None:
            gate -= {i.feature for i in same.issues}
            drift -= same.drifted
        return sorted(gate), sorted(drift)

    found: dict[str, Any] = {
        "fault": fault.name,
        "start": start.isoformat(),
        "day": None,
        "delay_days": None,
        "raw_day": None,
        "controlled": bool(control),
        "before": [],
    }
    for record in records:
        gate, drift = net(record)
        if record.day < start:
            if gate or drift:
                found["before"].append(
                    {"day": record.day.isoformat(), "gate": gate, "drift": drift}
                )
            continue
        if found["raw_day"] is None and record.flagged() & related:
            found["raw_day"] = record.day.isoformat()
        if (gate or drift) and found["day"] is None:
            found.update(
                day=record.day.isoformat(),
                delay_days=(record.day - start).days,
                gate=gate,
                drift=drift,
            )
    found["days_replayed"] = [records[0].day.isoformat(), records[-1].day.isoformat()]
    return found


def summarize(records: Sequence[DayRecord]) -> dict[str, Any]:
    """False gate failures and drift alerts of an undrifted replay, per date and feature."""
    failures = [
        {
            "day": r.day.isoformat(),
            "features": sorted({i.feature for i in r.issues}),
            "issues": [asdict(i) for i in r.issues],
        }
        for r in records
        if not r.gate_passed
    ]
    alerts = [
        {
            "day": r.day.isoformat(),
            "models": {name: m.drifted for name, m in r.models.items() if m.drifted},
        }
        for r in records
        if r.drifted
    ]
    shadow = [
        {"day": r.day.isoformat(), "features": sorted({i.feature for i in r.shadow_issues})}
        for r in records
        if r.shadow_issues
    ]
    gate_by_feature: dict[str, list[str]] = {}
    for record in records:
        for issue in record.issues:
            gate_by_feature.setdefault(issue.feature, []).append(record.day.isoformat())
    drift_by_feature: dict[str, dict[str, list[str]]] = {}
    for record in records:
        for name, model in record.models.items():
            for feature in model.drifted:
                days = drift_by_feature.setdefault(feature, {})
                days.setdefault(record.day.isoformat(), []).append(name)
    # Alerts other than drift (performance decay, judged on the estimate before labels come).
    other_alerts: list[dict[str, Any]] = []
    for record in records:
        found = {
            name: [a for a in m.alerts if not a.startswith(("feature_drift:", "prediction"))]
            for name, m in record.models.items()
        }
        if any(found.values()):
            other_alerts.append({"day": record.day.isoformat(), "alerts": found})
    per_day = [sum(r.seconds.values()) for r in records]
    statuses: dict[str, dict[str, int]] = {}
    for record in records:
        for name, model in record.models.items():
            counts = statuses.setdefault(name, {})
            counts[model.status] = counts.get(model.status, 0) + 1
    return {
        "days": len(records),
        "gate_failures": len(failures),
        "gate_failures_by_day": failures,
        "gate_failures_by_feature": gate_by_feature,
        "hidden_gate_failures": shadow,
        "drift_alert_days": len(alerts),
        "drift_alerts_by_day": alerts,
        "drift_alerts_by_feature": {
            feature: {"days": len(days), "first": min(days), "last": max(days), "by_day": days}
            for feature, days in sorted(drift_by_feature.items())
        },
        "other_alert_days": len(other_alerts),
        "other_alerts_by_day": other_alerts,
        "statuses": statuses,
        "predictions": sum(r.predictions for r in records),
        "prediction_errors": sum(r.prediction_errors for r in records),
        "seconds_per_day_median": round(statistics.median(per_day), 2) if per_day else None,
        "seconds_per_phase_median": {
            phase: round(statistics.median(r.seconds[phase] for r in records), 2)
            for phase in ("pipeline", "predictions", "monitoring")
        }
        if records
        else {},
    }


# --------------------------------------------------------------------------------------------
# the benchmark


def _quiet() -> None:
    for name in ("mlflow", "alembic", "roiml", "httpx", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench replay")
    parser.add_argument("--days", type=int, default=365, help="Consecutive undrifted days.")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--first-day", default="2024-11-01", help="The replay's first day.")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--fault-days",
        type=int,
        default=10,
        help=f"Days replayed per fault: {PRE_FAULT_DAYS} before it reaches the input, the rest on.",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="Fault starts per fault, spread over the span."
    )
    parser.add_argument("--faults", default=",".join(FAULTS), help="Comma-separated names.")
    parser.add_argument("--url", default=None, help="Database URL (default: SQLite, scratch).")
    parser.add_argument("--keep", action="store_true", help="Keep the scratch directory.")
    args = parser.parse_args(argv)
    _quiet()
    first = date.fromisoformat(args.first_day)
    last = first + timedelta(days=args.days - 1)
    scratch = Path(tempfile.mkdtemp(prefix="roiml-replay-bench-"))
    out: dict[str, Any] = {"users": args.users, "first_day": str(first), "last_day": str(last)}
    try:
        replay = prepare(
            scratch,
            users=args.users,
            first_day=first,
            last_day=last,
            seed=args.seed,
            database_url=args.url,
        )
        print(json.dumps({"prepared": {k: round(v, 1) for k, v in replay.seconds.items()}}))

        def show(record: DayRecord) -> None:
            print(
                json.dumps(
                    {
                        "day": record.day.isoformat(),
                        "gate": "pass" if record.gate_passed else "FAIL",
                        "gate_features": sorted({i.feature for i in record.issues}),
                        "drifted": sorted(record.drifted),
                        # decay and score alerts: the day's line shows every page, so a run
                        # cut short still says what it raised
                        "other_alerts": sorted(
                            {
                                f"{name}: {a}"
                                for name, m in record.models.items()
                                for a in m.alerts
                                if not a.startswith("feature_drift:")
                            }
                        ),
                        "seconds": {k: round(v, 1) for k, v in record.seconds.items()},
                    }
                ),
                flush=True,
            )

        records = replay_days(replay, CLEAN, first, last, progress=show)
        out["undrifted"] = summarize(records)
        out["faults"] = _faults(replay, args, records, show)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"replay_{args.users}_{args.days}.json").write_text(
        json.dumps(out, indent=2, default=str)
    )
    print(json.dumps({"undrifted": {k: v for k, v in out["undrifted"].items()}}, indent=1))
    print(json.dumps({"faults": out["faults"]}, indent=1))


def _faults(
    replay: Replay,
    args: argparse.Namespace,
    control: Sequence[DayRecord],
    show: Callable[[DayRecord], None],
) -> dict[str, Any]:
    names = [n for n in args.faults.split(",") if n]
    after = max(args.fault_days - PRE_FAULT_DAYS - 1, 0)
    # Room at the end for the fault's window and for a weekly table's wait (up to 7 days).
    span = (replay.last_day - replay.first_day).days - PRE_FAULT_DAYS - after - 10
    if span < 0:
        raise SystemExit(f"--days is too short for --fault-days {args.fault_days}")
    found: dict[str, Any] = {}
    for name in names:
        runs = []
        for repeat in range(args.repeats):
            offset = PRE_FAULT_DAYS + 1 + span * repeat // max(args.repeats - 1, 1)
            nominal = replay.first_day + timedelta(days=min(offset, PRE_FAULT_DAYS + 1 + span))
            runs += replay_faults(
                replay, [FAULTS[name]], nominal, after, control=control, progress=show
            )
        delays = [r["delay_days"] for r in runs if r["day"] is not None]
        found[name] = {
            "runs": runs,
            "detected": f"{len(delays)}/{len(runs)}",
            "delay_days_median": statistics.median(delays) if delays else None,
        }
    return found


def replay_faults(
    replay: Replay,
    faults: Sequence[Fault],
    nominal: date,
    after: int,
    *,
    control: Sequence[DayRecord] = (),
    progress: Callable[[DayRecord], None] | None = None,
) -> list[dict[str, Any]]:
    """A world carrying ``faults`` (starting at ``nominal``), replayed from
    ``PRE_FAULT_DAYS`` days before the first fault reaches the input to ``after`` days after
    the last does; each fault's :func:`detection`, against the undrifted ``control``."""
    world = add_fault_world(replay, faults, nominal)
    starts = [start for _, start in world.faults]
    first = min(starts) - timedelta(days=PRE_FAULT_DAYS)
    last = min(max(starts) + timedelta(days=after), replay.last_day)
    records = replay_days(replay, world.tenant, first, last, faults=world.faults, progress=progress)
    # The first day's monitoring has no served traffic before it and judges against the
    # training reference (the undrifted replay's first day measures what that does): it
    # starts the served history and is not judged for the fault.
    return [detection(records[1:], fault, start, control) for fault, start in world.faults]
