"""The model registry on both backends: the embedded SQLite store and a real ``mlflow server``
on PostgreSQL. Tiny real LightGBM boosters, one tenant per test (tenants never see each other's
models), one MLflow store and one roiml database per backend for the whole module."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from conftest import IN_CI, application_role, create_database, drop_database
from roiml.cli.main import app
from roiml.db import MLExperiment, MLModel, ModelAliasEvent
from roiml.db.engine import make_engine, tenant_session
from roiml.db.enums import ModelStatus, ModelType
from roiml.db.migrate import upgrade
from roiml.errors import ModelError, RegistryError
from roiml.models.artifact import ModelArtifact
from roiml.registry import ModelRegistry, Stage, lower_is_better, parse_stage
from roiml.registry.compare import compare_metric
from roiml.registry.history import OUTSIDE_ACTOR
from roiml.registry.listing import list_mirrored
from roiml.registry.stages import AliasMove, plan_promotion
from roiml.settings import Settings, get_settings

FEATURES = ["tenure_days", "equity_ratio", "email_opens_30d"]
NAME = "move_probability_model"
WINDOW = {"train_start": "2024-01-01", "train_end": "2024-09-30", "test_end": "2024-12-31"}
T0 = datetime(2025, 1, 1, 9, 0, 0)


# --------------------------------------------------------------------------- tiny models


def tiny_model(
    seed: int = 0,
    *,
    features: list[str] | None = None,
    booster_features: list[str] | None = None,
    metrics: dict[str, float] | None = None,
) -> ModelArtifact:
    """A real three-tree LightGBM binary model on random data (milliseconds to train)."""
    names = list(features if features is not None else FEATURES)
    trained_on = booster_features or names or ["x"]
    rng = np.random.default_rng(seed)
    x = rng.random((300, len(trained_on)))
    y = (x[:, 0] + 0.3 * rng.random(300) > 0.6).astype(int)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 4, "min_data_in_leaf": 5, "verbose": -1},
        lgb.Dataset(x, y, feature_name=trained_on),
        num_boost_round=3,
    )
    return ModelArtifact(
        name=NAME,
        model_type=ModelType.MOVE_PROBABILITY,
        feature_names=names,
        boosters={"main": booster},
        classes=["stay", "move"],
        parameters={"num_leaves": 4, "objective": "binary", "seed": seed},
        metrics=metrics
        if metrics is not None
        else {"roc_auc": 0.70 + seed / 100, "brier": 0.20 - seed / 100, "macro_f1": 0.5},
        training_window=dict(WINDOW),
        reference=pa.table({f: x[:40, i] for i, f in enumerate(trained_on)}),
    )


def inputs(seed: int = 99) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({f: rng.random(25) for f in FEATURES})


def predict(model: ModelArtifact, rows: pa.Table) -> np.ndarray:
    return np.asarray(model.boosters["main"].predict(model.matrix(rows)))


# --------------------------------------------------------------------------- mlflow server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class _Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    database_url: str


@pytest.fixture(scope="session")
def mlflow_server_launch(
    postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_Server]:
    """Start ``mlflow server`` (PostgreSQL backend store, proxied artifacts in a temp dir) and
    return without waiting, so the SQLite tests run while it boots; stopped at session end."""
    root = tmp_path_factory.mktemp("mlflow_server")
    database_url = create_database(postgres_admin_url)
    backend = "postgresql+psycopg://" + database_url.split("://", 1)[1]
    port = _free_port()
    log = root / "server.log"
    # The job runner (huey consumers) is not needed for a registry and costs two cores' worth
    # of start-up on a small machine.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                backend,
                "--artifacts-destination",
                str(root / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own process group: the server's uvicorn child is stopped with it.
            start_new_session=True,
        )
    server = _Server(process, f"http://127.0.0.1:{port}", log, database_url)
    yield server
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    drop_database(postgres_admin_url, database_url)


@pytest.fixture(scope="session")
def mlflow_server(mlflow_server_launch: _Server) -> str:
    """The URL of the running server, once /health answers (fail under CI=true if never)."""
    server = mlflow_server_launch
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:
                if response.status == 200:
                    return server.url
        except OSError:
            time.sleep(0.5)
    tail = server.log.read_text(errors="replace")[-2000:]
    message = f"mlflow server did not start at {server.url}; its log ends:\n{tail}"
    if IN_CI:
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module", autouse=True)
def _boot_mlflow_server_early(request: pytest.FixtureRequest) -> None:
    # Only starts the process, and only when server tests were selected; a PostgreSQL skip
    # here must not skip the SQLite tests.
    selected = any(
        getattr(item, "callspec", None) is not None
        and item.callspec.params.get("backend") == "server"
        for item in request.session.items
    )
    if selected and os.environ.get("ROIML_TEST_POSTGRES_URL"):
        with contextlib.suppress(pytest.skip.Exception):
            request.getfixturevalue("mlflow_server_launch")


# --------------------------------------------------------------------------- backends


@dataclass
class Backend:
    """One MLflow store plus one roiml database, shared by the module's tests."""

    kind: str
    settings: Settings
    engine: Engine
    database_url: str

    def registry(self, tenant: str, clock: Callable[[], datetime] | None = None) -> ModelRegistry:
        if clock is None:
            return ModelRegistry(self.settings, self.engine, tenant)
        return ModelRegistry(self.settings, self.engine, tenant, clock=clock)


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("server", marks=pytest.mark.postgres)],
)
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    data_dir = tmp_path_factory.mktemp(f"registry_{request.param}") / "data"
    if request.param == "sqlite":
        settings = Settings(_env_file=None, data_dir=data_dir)
        database_url = settings.resolved_database_url
    else:
        url: str = request.getfixturevalue("mlflow_server")
        database_url = request.getfixturevalue("postgres_url")
        settings = Settings(
            _env_file=None, data_dir=data_dir, database_url=database_url, mlflow_tracking_uri=url
        )
    engine = make_engine(database_url)
    upgrade(engine)
    yield Backend(request.param, settings, engine, database_url)
    engine.dispose()


@pytest.fixture(scope="module")
def shared(backend: Backend) -> tuple[ModelRegistry, ModelArtifact, ModelArtifact]:
    """A tenant with two versions of NAME, for tests that only read."""
    registry = backend.registry(f"shared_{uuid.uuid4().hex[:8]}")
    first, second = tiny_model(1), tiny_model(2)
    registry.register_model(first, tags={"purpose": "test"})
    registry.register_model(second, metrics={"mae": 0.3, "r2": 0.4})
    return registry, first, second


@pytest.fixture
def registry(backend: Backend, tenant: str) -> ModelRegistry:
    return backend.registry(tenant)


def state(registry: ModelRegistry, name: str = NAME) -> dict[str, Any]:
    """Everything a refused operation must leave alone, in MLflow and in the database."""
    client = registry.client
    mlflow_name = registry.mlflow_name(name)
    models = client.search_registered_models(f"name = '{mlflow_name}'")
    experiment = client.get_experiment_by_name(mlflow_name)
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    with tenant_session(registry.engine, registry.tenant_id) as session:
        rows = sorted(
            (r.version, r.status.value, r.deployed_at)
            for r in session.scalars(select(MLModel).where(MLModel.name == name))
        )
        experiments = session.scalar(select(func.count()).select_from(MLExperiment))
        events = session.scalar(select(func.count()).select_from(ModelAliasEvent))
    return {
        "versions": sorted(
            str(v.version) for v in client.search_model_versions(f"name = '{mlflow_name}'")
        ),
        "aliases": {a: str(v) for a, v in models[0].aliases.items()} if models else None,
        "runs": len(runs),
        "rows": rows,
        "experiments": experiments,
        "events": events,
    }


def aliases(registry: ModelRegistry, name: str = NAME) -> dict[str, str]:
    registered = registry.client.get_registered_model(registry.mlflow_name(name))
    return {alias: str(version) for alias, version in registered.aliases.items()}


def statuses(registry: ModelRegistry, name: str = NAME) -> dict[str, ModelStatus]:
    with tenant_session(registry.engine, registry.tenant_id) as session:
        return {
            r.version: r.status
            for r in session.scalars(select(MLModel).where(MLModel.name == name))
        }


# --------------------------------------------------------------------------- register / load


def test_register_then_load_predicts_the_same(
    shared: tuple[ModelRegistry, ModelArtifact, ModelArtifact],
) -> None:
    registry, first, second = shared
    rows = inputs()
    for version, original in (("1", first), (1, first), ("latest", second), ("2", second)):
        loaded = registry.load_model(NAME, version)
        np.testing.assert_array_equal(predict(loaded, rows), predict(original, rows))
        assert loaded.feature_names == FEATURES
        assert loaded.training_window == WINDOW
        assert loaded.model_type is ModelType.MOVE_PROBABILITY
        assert loaded.reference is not None
        assert loaded.reference.equals(original.reference)
    assert registry.load_model(NAME, "latest").metrics == second.metrics


def test_the_mlflow_side_of_a_version(
    shared: tuple[ModelRegistry, ModelArtifact, ModelArtifact],
) -> None:
    registry, _first, _second = shared
    client = registry.client
    mlflow_name = registry.mlflow_name(NAME)
    assert mlflow_name == f"{registry.tenant_id}.{NAME}"
    version = client.get_model_version(mlflow_name, "1")
    assert version.tags["roiml.tenant"] == registry.tenant_id
    assert json.loads(version.tags["roiml.feature_names"]) == FEATURES
    assert version.tags["purpose"] == "test"
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["roc_auc"] == pytest.approx(0.71)
    assert run.data.params["num_leaves"] == "4"
    assert run.data.tags["roiml.tenant"] == registry.tenant_id
    assert json.loads(run.data.tags["roiml.training_window"]) == WINDOW
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == mlflow_name
    if registry.tracking_uri.startswith("sqlite"):
        # The embedded store keeps artifacts under data_dir, never in the working directory.
        assert experiment.artifact_location.startswith(
            (registry.settings.data_dir / "mlruns").resolve().as_uri()
        )


def test_pyfunc_model_serves_the_main_booster(
    shared: tuple[ModelRegistry, ModelArtifact, ModelArtifact], tmp_path: Path
) -> None:
    # What `mlflow models serve` loads: the pyfunc flavour, its signature and the artifact.
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.artifacts import download_artifacts

    registry, first, _second = shared
    uri = registry.client.get_model_version_download_uri(registry.mlflow_name(NAME), "1")
    local = download_artifacts(
        artifact_uri=uri, dst_path=str(tmp_path), tracking_uri=registry.tracking_uri
    )
    assert (Path(local) / "artifacts" / "roiml_model" / "reference.parquet").exists()
    pyfunc = mlflow.pyfunc.load_model(local)
    signature = pyfunc.metadata.signature
    assert signature.inputs.input_names() == FEATURES
    assert {str(t) for t in signature.inputs.input_types()} == {"DataType.double"}
    frame = pd.DataFrame(inputs().to_pydict())
    np.testing.assert_allclose(pyfunc.predict(frame), predict(first, inputs()))


def test_mirror_rows(
    shared: tuple[ModelRegistry, ModelArtifact, ModelArtifact],
) -> None:
    registry, _first, _second = shared
    with tenant_session(registry.engine, registry.tenant_id) as session:
        rows = {r.version: r for r in session.scalars(select(MLModel))}
        runs = {r.mlflow_run_id: r for r in session.scalars(select(MLExperiment))}
    assert set(rows) == {"1", "2"}
    first, second = rows["1"], rows["2"]
    assert first.status is ModelStatus.TRAINED
    assert first.model_type is ModelType.MOVE_PROBABILITY
    assert first.feature_names == FEATURES
    assert first.metrics == {"roc_auc": pytest.approx(0.71), "brier": 0.19, "macro_f1": 0.5}
    assert first.parameters == {"num_leaves": 4, "objective": "binary", "seed": 1}
    assert first.auc == pytest.approx(0.71)
    assert first.f1_score == 0.5
    assert first.mae is None and first.r2 is None
    assert (second.mae, second.r2) == (0.3, 0.4)
    assert first.training_start == datetime(2024, 1, 1)
    assert first.training_end == datetime(2024, 12, 31)
    assert first.mlflow_model_uri == f"models:/{registry.mlflow_name(NAME)}/1"
    assert first.deployed_at is None
    assert set(runs) == {first.mlflow_run_id, second.mlflow_run_id}
    run = runs[first.mlflow_run_id]
    assert run.name == NAME and run.status == "FINISHED"
    assert run.metrics == first.metrics
    assert run.artifacts["model_uri"] == first.mlflow_model_uri
    assert run.ended_at is not None and run.ended_at >= run.started_at


def test_nothing_is_written_to_the_working_directory(
    backend: Backend, tenant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    backend.registry(tenant).register_model(tiny_model(3))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- stages


def test_promote_through_every_stage(registry: ModelRegistry) -> None:
    registry.register_model(tiny_model(1))
    expected = [
        ("Staging", {"staging": "1"}, ModelStatus.STAGING),
        ("production", {"production": "1"}, ModelStatus.DEPLOYED),
        ("ARCHIVED", {"archived": "1"}, ModelStatus.ARCHIVED),
        ("None", {}, ModelStatus.TRAINED),
    ]
    for stage, now, status in expected:
        registry.promote_model(NAME, "1", stage, actor="ci")
        assert aliases(registry) == now
        assert statuses(registry) == {"1": status}
    history = [(e.alias, e.from_version, e.to_version) for e in registry.history(NAME)]
    assert history == [
        ("staging", None, "1"),
        ("staging", "1", None),
        ("production", None, "1"),
        ("production", "1", None),
        ("archived", None, "1"),
        ("archived", "1", None),
    ]
    assert {e.actor for e in registry.history(NAME)} == {"ci"}
    # Already there: nothing moves, nothing is recorded.
    assert registry.promote_model(NAME, "1", "None") == []
    assert len(registry.history(NAME)) == 6


def test_production_move_archives_the_previous_version(registry: ModelRegistry) -> None:
    registry.register_model(tiny_model(1))
    registry.register_model(tiny_model(2))
    registry.promote_model(NAME, 1, "Production")
    registry.promote_model(NAME, "latest", "Staging")
    assert aliases(registry) == {"production": "1", "staging": "2"}

    events = registry.promote_model(NAME, 2, "Production", actor="alice")
    assert [(e.alias, e.from_version, e.to_version) for e in events] == [
        ("staging", "2", None),
        ("production", "1", "2"),
        ("archived", None, "1"),
    ]
    assert aliases(registry) == {"production": "2", "archived": "1"}
    assert registry.current_version(NAME) == "2"
    assert registry.current_version(NAME, "Archived") == "1"
    assert registry.current_version(NAME, "staging") is None
    assert registry.current_version("never_registered") is None
    assert statuses(registry) == {"1": ModelStatus.ARCHIVED, "2": ModelStatus.DEPLOYED}
    assert registry.load_model(NAME, "production").metrics == tiny_model(2).metrics
    assert registry.load_model(NAME, "Archived").metrics == tiny_model(1).metrics
    meta = registry.get_model_metadata(NAME)
    assert meta["deployment"]["version"] == "2"
    assert meta["deployment"]["promoted_by"] == "alice"
    assert meta["deployment"]["deployed_at"] is not None
    assert meta["stages"] == {"Staging": None, "Production": "2", "Archived": "1"}


def test_version_at_answers_for_past_moments(backend: Backend, tenant: str) -> None:
    now = [T0]
    registry = backend.registry(tenant, clock=lambda: now[0])
    registry.register_model(tiny_model(1))
    registry.register_model(tiny_model(2))

    def at(hour: int, minute: int = 0) -> datetime:
        return T0.replace(hour=hour, minute=minute)

    for hour, version in ((11, 1), (12, 2), (13, 1)):  # the 13:00 move is a rollback
        now[0] = at(hour)
        registry.promote_model(NAME, version, "Production")

    assert registry.version_at(NAME, at=at(10, 59)) is None
    assert registry.version_at(NAME, at=at(11)) == "1"
    assert registry.version_at(NAME, "production", at=at(11, 30)) == "1"
    assert registry.version_at(NAME, "Production", at=at(12, 30)) == "2"
    assert registry.version_at(NAME, "archived", at=at(12, 30)) == "1"
    assert registry.version_at(NAME, at=at(14)) == "1"
    assert registry.version_at(NAME, "archived", at=at(14)) == "2"
    assert registry.version_at(NAME, "staging", at=at(14)) is None
    assert registry.version_at(NAME) == "1"  # now, by the registry's clock
    # An aware moment is converted to UTC: 14:30 at UTC+2 is 12:30 UTC.
    assert (
        registry.version_at(NAME, at=at(14, 30).replace(tzinfo=timezone(timedelta(hours=2)))) == "2"
    )
    assert [e.moved_at for e in registry.history(NAME, at=at(12))] == [at(11), at(12), at(12)]
    assert len(registry.history(NAME)) == 6


# --------------------------------------------------------------------------- moves made in MLflow


def plain_client(registry: ModelRegistry) -> Any:
    """A client of MLflow's own, as a user of ``mlflow ui`` or a notebook would hold one."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.registry_uri)


def moves(registry: ModelRegistry) -> list[tuple[str, str | None, str | None, str]]:
    return [(e.alias, e.from_version, e.to_version, e.actor) for e in registry.history(NAME)]


def test_an_alias_moved_in_mlflow_directly_enters_the_history(
    backend: Backend, tenant: str
) -> None:
    now = [T0]
    registry = backend.registry(tenant, clock=lambda: now[0])
    registry.register_model(tiny_model(1))
    registry.register_model(tiny_model(2))
    registry.promote_model(NAME, 1, "Production", actor="ci")
    mlflow_name = registry.mlflow_name(NAME)

    # Promoted in MLflow's UI (here its client): production to 2, and an alias of its own.
    client = plain_client(registry)
    client.set_registered_model_alias(mlflow_name, "production", "2")
    client.set_registered_model_alias(mlflow_name, "champion", "2")
    now[0] = T0 + timedelta(hours=1)
    history = registry.history(NAME)
    assert moves(registry) == [
        ("production", None, "1", "ci"),
        ("champion", None, "2", OUTSIDE_ACTOR),
        ("production", "1", "2", OUTSIDE_ACTOR),
    ]
    # Stamped when roiml saw it: MLflow does not say when an alias moved.
    assert [e.moved_at for e in history[1:]] == [now[0], now[0]]
    assert [e.outside_roiml for e in history] == [False, True, True]

    # Reading again, by this registry or a fresh one (another process), records nothing more.
    now[0] = T0 + timedelta(hours=2)
    assert len(registry.history(NAME)) == 3
    assert backend.registry(tenant).reconcile_aliases() == []
    assert len(registry.history(NAME)) == 3
    # The database's mirror and the history's questions agree with MLflow now.
    [listed] = list_mirrored(registry.engine, tenant)
    assert listed.aliases == {"champion": "2", "production": "2"}
    assert registry.version_at(NAME) == "2"
    assert registry.version_at(NAME, at=T0 + timedelta(minutes=30)) == "1"
    assert registry.get_model_metadata(NAME)["deployment"]["promoted_by"] == OUTSIDE_ACTOR

    # The API's poll (current_version) records a removal made in MLflow.
    client.delete_registered_model_alias(mlflow_name, "champion")
    now[0] = T0 + timedelta(hours=3)
    assert registry.current_version(NAME) == "2"
    assert moves(registry)[-1] == ("champion", "2", None, OUTSIDE_ACTOR)

    # A promotion after an outside move follows on from where MLflow really was.
    client.set_registered_model_alias(mlflow_name, "production", "1")
    now[0] = T0 + timedelta(hours=4)
    registry.promote_model(NAME, 2, "Production", actor="ci")
    assert moves(registry)[-3:] == [
        ("production", "2", "1", OUTSIDE_ACTOR),
        ("production", "1", "2", "ci"),
        ("archived", None, "1", "ci"),
    ]
    assert len(registry.history(NAME)) == 7
    assert aliases(registry) == {"production": "2", "archived": "1"}
    # Another tenant on the same MLflow and database sees none of it.
    assert backend.registry(f"{tenant}_other").history(NAME) == []


def race_to_reconcile(settings: Settings, engine: Engine, tenant: str) -> list[int]:
    """Four registries (the API's workers) reconcile NAME at the same moment: how many moves
    each recorded, sorted."""
    import threading

    readers = [ModelRegistry(settings, engine, tenant) for _ in range(4)]
    for reader in readers:
        assert reader.client  # MLflow's store opened one at a time, before the race
    start = threading.Barrier(len(readers))
    found: list[int] = []

    def read(reader: ModelRegistry) -> None:
        start.wait()
        found.append(len(reader.reconcile_aliases(NAME)))

    threads = [threading.Thread(target=read, args=(r,)) for r in readers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return sorted(found)


def test_concurrent_readers_record_an_outside_move_once_on_sqlite(
    tmp_path: Path, tenant: str
) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    try:
        registry = ModelRegistry(settings, engine, tenant)
        registry.register_model(tiny_model(1))
        plain_client(registry).set_registered_model_alias(
            registry.mlflow_name(NAME), "production", "1"
        )
        assert race_to_reconcile(settings, engine, tenant) == [0, 0, 0, 1]
        assert moves(registry) == [("production", None, "1", OUTSIDE_ACTOR)]
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_moves_made_in_mlflow_are_recorded_as_the_application_role(
    postgres_url: str, tmp_path: Path, tenant: str
) -> None:
    """Row-level security applies: the API's role records the outside move under its tenant,
    once even when several readers see it at the same moment (the API's workers polling)."""
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", database_url=postgres_url)
    with application_role(postgres_url) as (app_engine, _role):
        registry = ModelRegistry(settings, app_engine, tenant)
        registry.register_model(tiny_model(1))
        registry.register_model(tiny_model(2))
        registry.promote_model(NAME, 1, "Staging", actor="ci")
        plain_client(registry).set_registered_model_alias(
            registry.mlflow_name(NAME), "staging", "2"
        )
        assert race_to_reconcile(settings, app_engine, tenant) == [0, 0, 0, 1]
        assert moves(registry) == [
            ("staging", None, "1", "ci"),
            ("staging", "1", "2", OUTSIDE_ACTOR),
        ]
        assert ModelRegistry(settings, app_engine, f"{tenant}_b").history(NAME) == []
    owner = make_engine(postgres_url)
    try:
        with owner.connect() as conn:
            rows = conn.execute(
                select(ModelAliasEvent.tenant_id, ModelAliasEvent.actor).where(
                    ModelAliasEvent.tenant_id.in_([tenant, f"{tenant}_b"])
                )
            ).all()
    finally:
        owner.dispose()
    assert sorted(rows) == [(tenant, "ci"), (tenant, OUTSIDE_ACTOR)]


# --------------------------------------------------------------------------- refusals


def test_refusals_leave_the_registry_unchanged(
    shared: tuple[ModelRegistry, ModelArtifact, ModelArtifact],
) -> None:
    registry, _first, _second = shared
    before = state(registry)

    with pytest.raises(RegistryError, match=r"no version 7; versions: 1, 2"):
        registry.promote_model(NAME, 7, "Production")
    with pytest.raises(RegistryError, match=r"unknown stage 'Live'.*None, Staging"):
        registry.promote_model(NAME, 1, "Live")
    with pytest.raises(RegistryError, match="longer than 128 characters"):
        registry.promote_model(NAME, 1, "Staging", actor="x" * 200)
    with pytest.raises(RegistryError, match=r"'mlflow' is reserved.*name the person"):
        registry.promote_model(NAME, 1, "Staging", actor=OUTSIDE_ACTOR)
    with pytest.raises(RegistryError, match=rf"no model 'nope'.*registered models: {NAME}"):
        registry.load_model("nope")
    with pytest.raises(RegistryError, match=r"no version with alias 'production'.*versions: 1, 2"):
        registry.load_model(NAME, "production")
    with pytest.raises(ModelError, match=r"missing from the model: new_feature; not expected: "):
        registry.load_model(NAME, 1, expected_features=[*FEATURES[1:], "new_feature"])
    with pytest.raises(RegistryError, match=r"booster 'main'.*only in the booster: other"):
        registry.register_model(
            tiny_model(5, booster_features=[*FEATURES[:2], "other"]), model_name=NAME
        )
    with pytest.raises(RegistryError, match="no features"):
        registry.register_model(tiny_model(5, features=[]))
    with pytest.raises(RegistryError, match="'accuracy' is 'high', not a number"):
        registry.register_model(tiny_model(5), metrics={"accuracy": "high"})  # type: ignore
    with pytest.raises(RegistryError, match="not an ISO date"):
        model = tiny_model(5)
        model.training_window = {"train_start": "last spring"}
        registry.register_model(model)
    with pytest.raises(RegistryError, match="neither version logged nope"):
        registry.compare_models(NAME, 1, 2, ["nope"])

    assert state(registry) == before
    # The same order of features is no refusal.
    assert registry.load_model(NAME, 1, expected_features=FEATURES[::-1]).feature_names == FEATURES


# --------------------------------------------------------------------------- read views


def test_compare_knows_losses(
    shared: tuple[ModelRegistry, ModelArtifact, ModelArtifact],
) -> None:
    registry, _first, _second = shared
    result = registry.compare_models(NAME, 1, "latest")
    assert (result.version1, result.version2) == ("1", "2")
    assert set(result.metrics) == {"roc_auc", "brier", "macro_f1", "mae", "r2"}
    auc, brier = result.metrics["roc_auc"], result.metrics["brier"]
    assert (auc.v1, auc.v2) == (pytest.approx(0.71), pytest.approx(0.72))
    assert auc.difference == pytest.approx(0.01) and auc.better == "v2"
    assert brier.lower_is_better and brier.difference == pytest.approx(-0.01)
    assert brier.better == "v2"
    assert result.metrics["macro_f1"].better == "equal"
    assert result.metrics["mae"].v1 is None and result.metrics["mae"].better is None
    only = registry.compare_models(NAME, 2, 1, metrics=["brier"])
    assert list(only.metrics) == ["brier"] and only.metrics["brier"].better == "v1"


def test_metadata_and_listing(
    shared: tuple[ModelRegistry, ModelArtifact, ModelArtifact], backend: Backend, tenant: str
) -> None:
    registry, _first, _second = shared
    meta = registry.get_model_metadata(NAME)
    assert meta["latest_version"] == "2"
    assert meta["model_type"] == "MOVE_PROBABILITY"
    assert meta["deployment"] is None
    first, second = meta["versions"]
    assert first["version"] == "1" and first["stage"] == "None" and first["status"] == "TRAINED"
    assert first["feature_names"] == FEATURES
    assert first["training_window"] == WINDOW
    assert first["tags"]["purpose"] == "test"
    assert second["metrics"]["mae"] == 0.3
    assert datetime.fromisoformat(first["created_at"]) <= datetime.fromisoformat(
        second["created_at"]
    )
    json.dumps(meta)  # plain data

    [summary] = registry.list_models()
    assert (summary.name, summary.latest_version, summary.versions) == (NAME, "2", 2)
    # Another tenant on the same MLflow sees none of it, and numbers its own versions.
    other = backend.registry(tenant)
    assert other.list_models() == []
    assert other.register_model(tiny_model(4)).version == "1"
    assert [m.latest_version for m in registry.list_models()] == ["2"]


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_env(backend: Backend, tenant: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("ROIML_DATA_DIR", str(backend.settings.data_dir))
    monkeypatch.setenv("ROIML_DATABASE_URL", backend.database_url)
    monkeypatch.setenv("ROIML_MLFLOW_TRACKING_URI", backend.settings.resolved_mlflow_tracking_uri)
    monkeypatch.setenv("ROIML_TENANT_ID", tenant)
    get_settings.cache_clear()
    yield tenant
    get_settings.cache_clear()


def test_cli(backend: Backend, cli_env: str) -> None:
    registry = backend.registry(cli_env)
    registry.register_model(tiny_model(1))
    registry.register_model(tiny_model(2))
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, ["models", *args])
        assert result.exit_code == code, result.output
        return result.output

    assert NAME in run("list")
    assert json.loads(run("list", "--json"))[0]["latest_version"] == "2"
    assert "production -> 1" in run("promote", NAME, "1", "Production", "--actor", "bob")
    moved = run("promote", NAME, "2", "production")
    assert "production -> 2 (was 1)" in moved and "archived -> 1\n" in moved
    shown = json.loads(run("show", NAME, "--json"))
    assert shown["aliases"] == {"archived": "1", "production": "2"}
    assert "Production" in run("show", NAME)

    events = registry.history(NAME)
    middle = events[0].moved_at + (events[-1].moved_at - events[0].moved_at) / 2
    history = json.loads(run("history", NAME, "--date", middle.isoformat(), "--json"))
    assert history["holders"]["production"] == "1"
    assert [e["actor"] for e in history["events"]] == ["bob"]
    assert "bob" in run("history", NAME)

    # The default listing reads the database's mirror; it agrees with MLflow's own.
    mirrored = json.loads(run("list", "--json"))
    from_mlflow = json.loads(run("list", "--from-mlflow", "--json"))
    assert [{k: v for k, v in m.items() if k != "updated_at"} for m in mirrored] == [
        {k: v for k, v in m.items() if k != "updated_at"} for m in from_mlflow
    ]
    assert mirrored[0]["aliases"] == {"archived": "1", "production": "2"}
    assert mirrored[0]["versions"] == 2 and mirrored[0]["updated_at"]
    assert "mirror" in run("list") and "mirror" not in run("list", "--from-mlflow")

    compared = json.loads(run("compare", NAME, "1", "2", "--metrics", "brier,roc_auc", "--json"))
    assert compared["metrics"]["brier"]["better"] == "v2"
    assert "lower is better" in run("compare", NAME, "1", "2")

    # Errors: one line on stderr, the registry's exit code, nothing changed.
    before = state(registry)
    result = runner.invoke(app, ["models", "promote", NAME, "9", "Production"])
    assert result.exit_code == RegistryError.exit_code
    assert "no version 9" in result.output and "Traceback" not in result.output
    assert runner.invoke(app, ["models", "promote", NAME, "1", "Gone"]).exit_code == 8
    assert runner.invoke(app, ["models", "history", NAME, "--at", "yesterday"]).exit_code == 8
    assert runner.invoke(app, ["models", "show", "missing_model"]).exit_code == 8
    assert state(registry) == before


def test_an_unreachable_server_is_refused_at_once(
    sqlite_engine: Engine, settings: Settings, tenant: str
) -> None:
    dead = f"http://user:secret@127.0.0.1:{_free_port()}"
    offline = settings.model_copy(update={"mlflow_tracking_uri": dead})
    with pytest.raises(RegistryError, match=r"cannot reach the MLflow server at http://127"):
        ModelRegistry(offline, sqlite_engine, tenant).list_models()
    # "At once" (no retries against a closed port) is measured by python -m bench fail-fast.


# --------------------------------------------------------------------------- pure logic


def test_plan_promotion() -> None:
    assert plan_promotion({}, "1", Stage.STAGING) == [AliasMove("staging", None, "1")]
    assert plan_promotion({"staging": "1"}, "1", Stage.STAGING) == []
    assert plan_promotion({"production": "1", "archived": "0"}, "2", Stage.PRODUCTION) == [
        AliasMove("production", "1", "2"),
        AliasMove("archived", "0", "1"),
    ]
    # Re-promoting the archived version: it leaves 'archived', which then takes the old one.
    assert plan_promotion({"production": "2", "archived": "1"}, "1", Stage.PRODUCTION) == [
        AliasMove("archived", "1", None),
        AliasMove("production", "2", "1"),
        AliasMove("archived", None, "2"),
    ]
    assert plan_promotion({"production": "1"}, "1", Stage.NONE) == [
        AliasMove("production", "1", None)
    ]


def test_stage_names_and_losses() -> None:
    assert parse_stage(" production ") is Stage.PRODUCTION
    assert parse_stage("none") is Stage.NONE
    with pytest.raises(RegistryError, match="the stages are: None, Staging, Production"):
        parse_stage("prod")
    for loss in ("brier", "log_loss", "test_mae", "val-rmse", "binary_logloss", "mape", "rmsle"):
        assert lower_is_better(loss), loss
    for gain in ("auc", "roc_auc", "r2", "accuracy", "macro_f1", "maeve", "msex"):
        assert not lower_is_better(gain), gain
    assert compare_metric("auc", 0.5, float("nan")).better is None


def test_the_pyfunc_code_stands_alone() -> None:
    # MLflow copies registry/pyfunc.py beside every registered model and runs it where roiml
    # may not be installed (tests/test_portable_model.py): it must import nothing of roiml,
    # and its copy of the artifact format must be the artifact's.
    import ast

    from roiml.models import artifact
    from roiml.registry import pyfunc

    tree = ast.parse(Path(pyfunc.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert sorted(m for m in imported if m.split(".")[0] == "roiml") == []
    assert pyfunc.ARTIFACT_FORMAT_VERSION == artifact.FORMAT_VERSION
