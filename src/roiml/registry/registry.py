"""The model registry: MLflow runs, versions and aliases, mirrored into ``ml_models``.

MLflow is the source of truth for versions, artifacts and where each alias points now; the
tenant's database mirrors every version (``ml_models``), every training run
(``ml_experiments``) and every alias move (``model_alias_events``). Every MLflow call goes
through one :class:`mlflow.MlflowClient` built from the settings, never the process-global
tracking URI, so two registries with different backends can live in one process.

MLflow's names are shared by every tenant of a server, so a tenant's model ``name`` is
registered (and its experiment named) ``<tenant>.<name>``; every method takes the plain name.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from mlflow import MlflowClient
from mlflow.entities import (
    LoggedModel,
    LoggedModelOutput,
    LoggedModelStatus,
    Metric,
    Param,
    RunTag,
)
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
from mlflow.exceptions import MlflowException
from sqlalchemy import Engine, select

from roiml.db import MLExperiment, MLModel
from roiml.db.base import as_naive_utc, utcnow
from roiml.db.engine import tenant_session
from roiml.db.enums import ModelStatus
from roiml.errors import ModelError, RegistryError, RoimlError
from roiml.registry.history import (
    OUTSIDE_ACTOR,
    AliasEvent,
    alias_events,
    default_actor,
    lock_aliases,
    reconcile,
    record_moves,
    recorded_aliases,
)
from roiml.registry.history import version_at as history_version_at
from roiml.registry.listing import RegisteredModelSummary, mlflow_name
from roiml.registry.stages import (
    STAGE_ALIASES,
    AliasMove,
    Stage,
    parse_stage,
    plan_promotion,
    stage_of,
    status_of,
)
from roiml.settings import Settings

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.models import ModelSignature

    from roiml.models.artifact import ModelArtifact
    from roiml.registry.compare import ModelComparison

# Registering, loading and comparing models import what they need when they run: the model
# artifact and the pyfunc wrapper (LightGBM, scikit-learn, SciPy), pandas, MLflow's model and
# pyfunc modules, and the metric definitions (scikit-learn) cost seconds that listing the
# registry or reading its history never needs (issue 17).

__all__ = ["ModelRegistry", "ModelVersionInfo", "RegisteredModelSummary"]

log = logging.getLogger(__name__)


def _drop_input_example_note(record: logging.LogRecord) -> bool:
    """A logging filter: False (drop) for MLflow's per-model note that it validates the input
    example against the signature, True for every other record."""
    return not record.getMessage().startswith("Validating input example against model signature")


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_TENANT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# MLflow's rule for param, metric and tag keys, checked here so a bad key is refused before
# anything is written rather than half-way through a run.
_KEY = re.compile(r"^[\w./ :-]{1,250}$")
_MAX_PARAM_VALUE = 6000
_MAX_RUN_TAG_VALUE = 8000
_BATCH = 100
_PROBE_SECONDS = 5
_MAX_ACTOR = 128  # model_alias_events.actor
_REMOTE_SCHEMES = frozenset({"http", "https", "databricks", "databricks-uc"})
_NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"
_ALREADY_EXISTS = frozenset({"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"})
_PRODUCTION = STAGE_ALIASES[Stage.PRODUCTION]

# ml_models column <- the metric keys that fill it, first match wins.
_METRIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "accuracy": ("accuracy",),
    "precision": ("precision", "macro_precision"),
    "recall": ("recall", "macro_recall"),
    "f1_score": ("f1", "f1_score", "macro_f1"),
    "auc": ("auc", "roc_auc"),
    "mse": ("mse",),
    "mae": ("mae",),
    "r2": ("r2",),
}


@dataclass(frozen=True)
class ModelVersionInfo:
    """A registered model version, as :meth:`ModelRegistry.register_model` returns it."""

    name: str
    version: str
    mlflow_name: str
    model_uri: str
    run_id: str
    experiment_id: str
    logged_model_id: str
    artifact_uri: str
    feature_names: list[str]
    metrics: dict[str, float]
    parameters: dict[str, Any]
    tags: dict[str, str]
    created_at: datetime


class ModelRegistry:
    """A tenant's view of the MLflow model registry, mirrored into its database.

    ``settings`` gives the MLflow URIs (default: SQLite under ``data_dir``, artifacts under
    ``data_dir/mlruns``); ``engine`` is the roiml database holding the mirror tables.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        tenant_id: str | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        tenant = tenant_id or settings.tenant_id
        if not _TENANT.match(tenant):
            raise RegistryError(f"tenant id {tenant!r} must be 1-64 letters, digits, '-' or '_'")
        self.settings = settings
        self.engine = engine
        self.tenant_id = tenant
        self.tracking_uri = settings.resolved_mlflow_tracking_uri
        self.registry_uri = settings.mlflow_registry_uri or self.tracking_uri
        # Injected so tests can promote at chosen moments; naive UTC like every schema time.
        self._clock = clock
        self._client: MlflowClient | None = None
        # Per model, MLflow's aliases when this registry last found the history agreeing with
        # them: a read that sees the same aliases again (the API's poll, every 30 s) skips the
        # database; only a change costs a reconciliation.
        self._agreed: dict[str, dict[str, str]] = {}
        # MLflow draws a progress bar on stderr for every model download: noise in a server's
        # log and in the demo. A user who set the variable explicitly keeps their choice.
        if not MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.defined:
            MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.set(False)  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------ plumbing

    @property
    def client(self) -> MlflowClient:
        """The MLflow client on this registry's URIs (created on first use)."""
        if self._client is None:
            for uri in {self.tracking_uri, self.registry_uri}:
                # SQLite will not create the directory of its database file.
                if uri.startswith("sqlite:///"):
                    Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
                if urlparse(uri).scheme in ("http", "https"):
                    _check_server(uri)
            self._client = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.registry_uri
            )
        return self._client

    def mlflow_name(self, name: str) -> str:
        """The name ``name`` has in MLflow (registered model and experiment) for this tenant."""
        _check_name(name)
        return mlflow_name(self.tenant_id, name)

    def _artifact_location(self, name: str) -> str | None:
        # A tracking server decides where artifacts go; an embedded store would otherwise
        # write ./mlruns in whatever directory the process started in.
        if urlparse(self.tracking_uri).scheme in _REMOTE_SCHEMES:
            return None
        return (self.settings.data_dir / "mlruns" / self.tenant_id / name).resolve().as_uri()

    # ------------------------------------------------------------------ register

    def register_model(
        self,
        model: ModelArtifact,
        model_name: str | None = None,
        metrics: Mapping[str, float] | None = None,
        parameters: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersionInfo:
        """Log ``model`` as a run and a pyfunc model, register it as the next version of
        ``model_name`` (default ``model.name``) and mirror it into ``ml_models`` and
        ``ml_experiments``.

        The model is checked first (features present, every booster on exactly the model's
        features, metric, parameter and tag keys valid, training window parseable); a refused
        model leaves MLflow and the database untouched.
        """
        name = model_name or model.name
        mlflow_name = self.mlflow_name(name)
        _check_features(model)
        all_metrics = _clean_metrics({**model.metrics, **(metrics or {})})
        all_parameters = {**model.parameters, **(parameters or {})}
        run_params = _clean_params(all_parameters)
        user_tags = _clean_tags(tags or {})
        training_start, training_end = _training_bounds(model.training_window)
        features_json = json.dumps(model.feature_names)
        window_json = json.dumps(model.training_window, sort_keys=True)
        roiml_tags = {
            "roiml.tenant": self.tenant_id,
            "roiml.model_name": name,
            "roiml.model_type": model.model_type.value,
            "roiml.feature_count": str(len(model.feature_names)),
            "roiml.training_window": window_json,
        }
        run_tags = {**user_tags, **roiml_tags}
        if len(features_json) <= _MAX_RUN_TAG_VALUE:
            run_tags["roiml.feature_names"] = features_json
        # Version tags allow long values; the full feature list always goes there.
        version_tags = {**user_tags, **roiml_tags, "roiml.feature_names": features_json}

        client = self.client
        with _mlflow_errors(f"registering {name}"):
            experiment_id = self._experiment_id(name, mlflow_name)
            run = client.create_run(
                experiment_id,
                run_name=f"{name}-{self._clock():%Y%m%dT%H%M%S}",
                tags=run_tags,
            )
        run_id: str = run.info.run_id
        try:
            with _mlflow_errors(f"logging the run of {name}"):
                logged = client.create_logged_model(
                    experiment_id,
                    name="model",
                    source_run_id=run_id,
                    params=run_params,
                    model_type=model.model_type.value,
                )
                self._log_run_data(run_id, logged.model_id, all_metrics, run_params)
                with tempfile.TemporaryDirectory(prefix="roiml-register-") as tmp:
                    local = self._save_pyfunc(model, Path(tmp), logged)
                    client.log_model_artifacts(logged.model_id, str(local))
                client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
                client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
                client.set_terminated(run_id, "FINISHED")
                self._ensure_registered_model(name, mlflow_name, model)
                # The logged model's storage location, not "models:/<id>": MLflow's SQL
                # registry resolves that form through the global tracking URI.
                version = client.create_model_version(
                    mlflow_name,
                    source=logged.artifact_location,
                    run_id=run_id,
                    tags=version_tags,
                    model_id=logged.model_id,
                )
        except Exception as exc:
            _quietly(lambda: client.set_terminated(run_id, "FAILED"))
            if isinstance(exc, RoimlError):
                raise
            # Saving the pyfunc model or uploading it can fail outside MLflow's own errors
            # (disk full, a dropped connection); the user gets one line, not a traceback.
            raise RegistryError(
                f"registering {name} failed; run {run_id} is marked FAILED: {_one_line(exc)}"
            ) from exc

        info = ModelVersionInfo(
            name=name,
            version=_num(version),
            mlflow_name=mlflow_name,
            model_uri=f"models:/{mlflow_name}/{_num(version)}",
            run_id=run_id,
            experiment_id=experiment_id,
            logged_model_id=logged.model_id,
            artifact_uri=logged.artifact_location,
            feature_names=list(model.feature_names),
            metrics=all_metrics,
            parameters=all_parameters,
            tags=version_tags,
            created_at=_from_millis(version.creation_timestamp) or self._clock(),
        )
        try:
            self._mirror(
                info,
                model,
                training_start,
                training_end,
                started_at=_from_millis(run.info.start_time) or self._clock(),
                ended_at=self._clock(),
            )
        except Exception as exc:
            # A version the tenant's database does not know would be invisible to serving;
            # take it back out of MLflow rather than leave the two disagreeing.
            _quietly(lambda: client.delete_model_version(mlflow_name, info.version))
            _quietly(lambda: client.set_terminated(run_id, "FAILED"))
            raise RegistryError(
                f"registering {name}: the database mirror failed ({_one_line(exc)}); "
                f"version {info.version} was removed from MLflow again"
            ) from exc
        return info

    def _experiment_id(self, name: str, mlflow_name: str) -> str:
        client = self.client
        experiment = client.get_experiment_by_name(mlflow_name)
        if experiment is None:
            try:
                experiment_id: str = client.create_experiment(
                    mlflow_name,
                    artifact_location=self._artifact_location(name),
                    tags={"roiml.tenant": self.tenant_id, "roiml.model_name": name},
                )
                return experiment_id
            except MlflowException as exc:
                # Another process created it between our look-up and create.
                if exc.error_code not in _ALREADY_EXISTS:
                    raise
                experiment = client.get_experiment_by_name(mlflow_name)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)

    def _log_run_data(
        self, run_id: str, model_id: str, metrics: dict[str, float], params: dict[str, str]
    ) -> None:
        millis = int(self._clock().replace(tzinfo=UTC).timestamp() * 1000)
        metric_rows = [
            Metric(key, value, millis, 0, model_id=model_id) for key, value in metrics.items()
        ]
        param_rows = [Param(key, value) for key, value in params.items()]
        # MLflow caps one batch at 100 params and 1000 metrics.
        for start in range(0, max(len(metric_rows), len(param_rows)), _BATCH):
            self.client.log_batch(
                run_id,
                metrics=metric_rows[start : start + _BATCH],
                params=param_rows[start : start + _BATCH],
                tags=[RunTag("roiml.registered_by", default_actor())] if start == 0 else [],
            )

    def _save_pyfunc(self, model: ModelArtifact, tmp: Path, logged: LoggedModel) -> Path:
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema

        from roiml.registry.pyfunc import ARTIFACT_KEY

        artifact_dir = model.save(tmp / ARTIFACT_KEY)
        signature = ModelSignature(
            inputs=Schema([ColSpec("double", feature) for feature in model.feature_names])
        )
        local = tmp / "mlflow_model"
        # MLflow logs "Validating input example against model signature" at INFO for every
        # model it saves (a failed validation still raises or warns): only that line is dropped.
        pyfunc_log = logging.getLogger("mlflow.pyfunc")
        pyfunc_log.addFilter(_drop_input_example_note)
        try:
            self._save_pyfunc_files(model, local, artifact_dir, signature, logged)
        finally:
            pyfunc_log.removeFilter(_drop_input_example_note)
        return local

    def _save_pyfunc_files(
        self,
        model: ModelArtifact,
        local: Path,
        artifact_dir: Path,
        signature: ModelSignature,
        logged: LoggedModel,
    ) -> None:
        from mlflow.models import Model
        from mlflow.pyfunc import save_model as save_pyfunc_model

        from roiml.registry.pyfunc import ARTIFACT_KEY

        save_pyfunc_model(
            str(local),
            # Models from code: MLflow keeps this file (self-contained: no roiml import) and
            # runs it to load the model, rather than pickling the object with CloudPickle (and
            # warning about it every time). So the model loads where roiml is not installed.
            python_model=str(Path(__file__).with_name("pyfunc.py")),
            artifacts={ARTIFACT_KEY: str(artifact_dir)},
            signature=signature,
            input_example=_input_example(model),
            # Listed, not inferred: inference loads the model in a subprocess (seconds).
            pip_requirements=_pip_requirements(),
            mlflow_model=Model(
                artifact_path=logged.artifact_location,
                model_uuid=logged.model_id,
                model_id=logged.model_id,
                run_id=logged.source_run_id,
            ),
            metadata={"roiml_model": model.name, "roiml_model_type": model.model_type.value},
        )

    def _ensure_registered_model(self, name: str, mlflow_name: str, model: ModelArtifact) -> None:
        try:
            self.client.create_registered_model(
                mlflow_name,
                tags={
                    "roiml.tenant": self.tenant_id,
                    "roiml.model_name": name,
                    "roiml.model_type": model.model_type.value,
                },
                description=f"roiml {model.model_type.value} model of tenant {self.tenant_id}",
            )
        except MlflowException as exc:
            if exc.error_code not in _ALREADY_EXISTS:
                raise

    def _mirror(
        self,
        info: ModelVersionInfo,
        model: ModelArtifact,
        training_start: datetime | None,
        training_end: datetime | None,
        *,
        started_at: datetime,
        ended_at: datetime,
    ) -> None:
        finite = {k: v for k, v in info.metrics.items() if math.isfinite(v)}
        # JSON columns: NaN is not JSON (PostgreSQL's JSONB refuses it), so it is stored as null.
        stored_metrics: dict[str, float | None] = {
            k: (v if math.isfinite(v) else None) for k, v in info.metrics.items()
        }
        parameters = json.loads(json.dumps(info.parameters, default=str))
        columns = {
            column: next((finite[key] for key in keys if key in finite), None)
            for column, keys in _METRIC_COLUMNS.items()
        }
        with tenant_session(self.engine, self.tenant_id) as session:
            row = session.scalars(
                select(MLModel).where(MLModel.name == info.name, MLModel.version == info.version)
            ).one_or_none()
            if row is None:
                # A row left over from a wiped MLflow store is overwritten below, not duplicated.
                row = MLModel(tenant_id=self.tenant_id, name=info.name, version=info.version)
                session.add(row)
            row.model_type = model.model_type
            row.status = ModelStatus.TRAINED
            row.algorithm = "lightgbm"
            row.mlflow_run_id = info.run_id
            row.mlflow_model_uri = info.model_uri
            row.parameters = parameters
            row.metrics = stored_metrics
            row.feature_names = list(info.feature_names)
            for column, value in columns.items():
                setattr(row, column, value)
            row.training_start = training_start
            row.training_end = training_end
            row.deployed_at = None
            session.add(
                MLExperiment(
                    tenant_id=self.tenant_id,
                    name=info.name,
                    model_type=model.model_type,
                    mlflow_experiment_id=info.experiment_id,
                    mlflow_run_id=info.run_id,
                    status="FINISHED",
                    parameters=parameters,
                    metrics=stored_metrics,
                    artifacts={
                        "model_uri": info.model_uri,
                        "artifact_uri": info.artifact_uri,
                        "logged_model_id": info.logged_model_id,
                    },
                    started_at=started_at,
                    ended_at=ended_at,
                )
            )

    # ------------------------------------------------------------------ look-ups

    def _registered(self, name: str) -> RegisteredModel:
        mlflow_name = self.mlflow_name(name)
        try:
            registered: RegisteredModel = self.client.get_registered_model(mlflow_name)
            return registered
        except MlflowException as exc:
            if exc.error_code != _NOT_FOUND:
                raise RegistryError(f"reading model {name}: {_one_line(exc)}") from exc
        known = ", ".join(m.name for m in self.list_models()) or "none"
        raise RegistryError(
            f"no model {name!r} in the registry of tenant {self.tenant_id}; "
            f"registered models: {known}"
        )

    def _versions(self, name: str) -> list[ModelVersion]:
        mlflow_name = self.mlflow_name(name)
        found: list[ModelVersion] = []
        token: str | None = None
        with _mlflow_errors(f"listing the versions of {name}"):
            while True:
                page = self.client.search_model_versions(
                    f"name = '{mlflow_name}'", page_token=token
                )
                found.extend(page)
                token = page.token
                if not token:
                    break
        return sorted(found, key=lambda v: int(v.version))

    def _resolve(self, name: str, version: str | int) -> tuple[RegisteredModel, ModelVersion]:
        """The model and the version ``version`` names: a number, ``latest``, a stage or alias."""
        registered = self._registered(name)
        versions = self._versions(name)
        aliases = _aliases(registered)
        listing = f"versions: {', '.join(_num(v) for v in versions) or 'none'}; aliases: " + (
            ", ".join(f"{a} -> {v}" for a, v in sorted(aliases.items())) or "none"
        )
        if not versions:
            raise RegistryError(f"model {name!r} has no versions")
        ref = str(version).strip()
        if ref.isdigit():
            for candidate in versions:
                if _num(candidate) == str(int(ref)):
                    return registered, candidate
            raise RegistryError(f"model {name!r} has no version {ref}; {listing}")
        if ref.lower() == "latest":
            return registered, versions[-1]
        target = aliases.get(_alias_name(ref))
        if target is None:
            raise RegistryError(f"model {name!r} has no version with alias {ref!r}; {listing}")
        for candidate in versions:
            if _num(candidate) == target:
                return registered, candidate
        raise RegistryError(f"alias {ref!r} of {name!r} points at a missing version {target}")

    # ------------------------------------------------------------------ load

    def load_model(
        self,
        name: str,
        version: str | int = "latest",
        expected_features: Sequence[str] | None = None,
    ) -> ModelArtifact:
        """Download and load version ``version`` (a number, ``latest``, or a stage / alias such
        as ``production``) of model ``name``.

        With ``expected_features`` the model must use exactly those features (in any order:
        :meth:`ModelArtifact.matrix` selects columns by name); otherwise :class:`ModelError`
        names what is missing and what is extra.
        """
        from mlflow.artifacts import download_artifacts

        from roiml.models.artifact import ModelArtifact

        _registered, model_version = self._resolve(name, version)
        mlflow_name = self.mlflow_name(name)
        with _mlflow_errors(f"downloading {name} version {_num(model_version)}"):
            uri = self.client.get_model_version_download_uri(mlflow_name, _num(model_version))
            with tempfile.TemporaryDirectory(prefix="roiml-load-") as tmp:
                local = Path(
                    download_artifacts(
                        artifact_uri=uri,
                        dst_path=tmp,
                        tracking_uri=self.tracking_uri,
                        registry_uri=self.registry_uri,
                    )
                )
                artifact_dir = _artifact_dir(local)
                # The artifact is read whole (boosters and reference), so the download can go.
                model = ModelArtifact.load(artifact_dir)
        if expected_features is not None:
            _check_expected(name, _num(model_version), model, expected_features)
        return model

    # ------------------------------------------------------------------ stages

    def promote_model(
        self, name: str, version: str | int, stage: str, actor: str | None = None
    ) -> list[AliasEvent]:
        """Put ``version`` of ``name`` into ``stage`` (None, Staging, Production, Archived;
        any case) by moving the stage aliases; returns the recorded moves (none: already there).

        Entering Production archives the previous production version. Every move is recorded
        in ``model_alias_events`` and the versions' ``ml_models.status`` follow. A refused
        promotion (unknown version or stage) or a failure part-way changes nothing.
        """
        target_stage = parse_stage(stage)
        if actor is not None and len(actor) > _MAX_ACTOR:
            raise RegistryError(f"actor {actor[:20]!r}... is longer than {_MAX_ACTOR} characters")
        if actor == OUTSIDE_ACTOR:
            raise RegistryError(
                f"actor {OUTSIDE_ACTOR!r} is reserved for alias moves roiml found made in MLflow "
                "directly; name the person or job promoting (or leave --actor out)"
            )
        registered, model_version = self._resolve(name, version)
        number = _num(model_version)
        aliases = _aliases(registered)
        # A move made in MLflow since roiml last looked goes into the history first, so this
        # promotion's moves follow on from where the aliases really were.
        self._reconcile_quietly(name, aliases)
        moves = plan_promotion(aliases, number, target_stage)
        if not moves:
            return []
        who = actor or default_actor()
        now = self._clock()
        mlflow_name = self.mlflow_name(name)
        statuses = {number: status_of(target_stage)}
        previous = aliases.get(_PRODUCTION)
        if target_stage is Stage.PRODUCTION and previous not in (None, number):
            statuses[str(previous)] = ModelStatus.ARCHIVED
        applied: list[AliasMove] = []
        try:
            with tenant_session(self.engine, self.tenant_id) as session:
                # Until commit: a reconciliation must not see MLflow moved and the moves not
                # yet recorded (it would record them again, as made outside roiml).
                lock_aliases(session, self.tenant_id, name)
                events = record_moves(session, self.tenant_id, name, moves, who, now)
                rows = session.scalars(
                    select(MLModel).where(MLModel.name == name, MLModel.version.in_(list(statuses)))
                ).all()
                for row in rows:
                    row.status = statuses[row.version]
                    if row.version == number and target_stage is Stage.PRODUCTION:
                        row.deployed_at = now
                # Database errors surface here, before MLflow is touched.
                session.flush()
                for move in moves:
                    self._apply(mlflow_name, move.alias, move.to_version)
                    applied.append(move)
        except Exception as exc:
            for move in reversed(applied):
                _quietly(partial(self._apply, mlflow_name, move.alias, move.from_version))
            if isinstance(exc, RoimlError):
                raise
            raise RegistryError(
                f"promoting {name} version {number} to {target_stage.value} failed and was "
                f"rolled back: {_one_line(exc)}"
            ) from exc
        return events

    def _apply(self, mlflow_name: str, alias: str, version: str | None) -> None:
        if version is None:
            self.client.delete_registered_model_alias(mlflow_name, alias)
        else:
            self.client.set_registered_model_alias(mlflow_name, alias, version)

    def current_version(self, name: str, alias: str = _PRODUCTION) -> str | None:
        """The version ``alias`` (a stage or alias name) points at now; None when the model or
        the alias does not exist. One MLflow call: what serving asks before loading."""
        try:
            registered = self.client.get_registered_model(self.mlflow_name(name))
        except MlflowException as exc:
            if exc.error_code == _NOT_FOUND:
                return None
            raise RegistryError(f"reading model {name}: {_one_line(exc)}") from exc
        aliases = _aliases(registered)
        self._reconcile_quietly(name, aliases)
        return aliases.get(_alias_name(alias))

    def history(self, name: str, at: datetime | None = None) -> list[AliasEvent]:
        """Every alias move of ``name`` in order, up to and including ``at`` (default: all).

        MLflow is asked first, and a move made there directly is recorded (see
        :meth:`reconcile_aliases`); when MLflow cannot be read the history is answered as
        recorded, with a warning."""
        _check_name(name)
        try:
            self.reconcile_aliases(name)
        except RoimlError as exc:
            log.warning("alias history of %s as recorded; MLflow was not compared: %s", name, exc)
        return alias_events(self.engine, self.tenant_id, name, at=at)

    def reconcile_aliases(self, name: str | None = None) -> list[AliasEvent]:
        """Record the alias moves made in MLflow directly (its UI, ``MlflowClient``) of model
        ``name`` (default: every model of the tenant) since roiml last looked; returns them.

        For each alias, where MLflow points it now is compared with the last recorded move;
        a difference is recorded as one move by ``"mlflow"`` (:data:`OUTSIDE_ACTOR`) at the
        moment it was observed: MLflow does not say when an alias moved. Reading twice records
        once; a move undone before roiml looked is never seen. A model missing from MLflow
        is left alone. Every registry read that asks MLflow for aliases does this too."""
        if name is not None:
            _check_name(name)
            names = [name]
        else:
            prefix = f"{self.tenant_id}."
            names = [m.name.removeprefix(prefix) for m in self._search_models()]
        events: list[AliasEvent] = []
        for model in names:
            registered = self._registered_or_none(model)
            if registered is not None:
                events.extend(self._reconcile(model, _aliases(registered)))
        return events

    def _registered_or_none(self, name: str) -> RegisteredModel | None:
        try:
            registered: RegisteredModel = self.client.get_registered_model(self.mlflow_name(name))
            return registered
        except MlflowException as exc:
            if exc.error_code == _NOT_FOUND:
                return None
            raise RegistryError(f"reading model {name}: {_one_line(exc)}") from exc

    def _reconcile(self, name: str, aliases: dict[str, str]) -> list[AliasEvent]:
        """Bring ``name``'s history up to ``aliases`` (MLflow's, just read)."""
        if self._agreed.get(name) == aliases:
            return []
        # Compared without the lock first: agreeing is the usual answer (a fresh API process's
        # first poll), and on SQLite the lock is the database's write lock, which a batch job
        # may hold for a while.
        with tenant_session(self.engine, self.tenant_id) as session:
            agree = recorded_aliases(session, name) == aliases
        events: list[AliasEvent] = []
        if agree:
            self._agreed[name] = dict(aliases)
            return events
        with tenant_session(self.engine, self.tenant_id) as session:
            lock_aliases(session, self.tenant_id, name)
            if recorded_aliases(session, name) != aliases:
                # Read again under the lock: ``aliases`` may predate a promotion that has
                # since moved MLflow and recorded its moves; those are not outside moves.
                registered = self._registered_or_none(name)
                if registered is None:
                    return []
                aliases = _aliases(registered)
                events = reconcile(session, self.tenant_id, name, aliases, self._clock())
        self._agreed[name] = dict(aliases)
        if events:
            log.info(
                "%s: %d alias move(s) made in MLflow directly recorded: %s",
                name,
                len(events),
                ", ".join(f"{e.alias} {e.from_version} -> {e.to_version}" for e in events),
            )
        return events

    def _reconcile_quietly(self, name: str, aliases: dict[str, str]) -> None:
        """:meth:`_reconcile` for a read whose answer must not depend on it (serving's poll,
        a listing): a failure is logged and tried again at the next read."""
        try:
            self._reconcile(name, aliases)
        except Exception as exc:  # the history is secondary to the read that triggered it
            log.warning(
                "could not record alias moves of %s made in MLflow directly: %s",
                name,
                _one_line(exc),
            )

    def version_at(
        self, name: str, alias: str = _PRODUCTION, at: datetime | None = None
    ) -> str | None:
        """The version ``alias`` (a stage or alias name) pointed at, at ``at`` (default: now);
        None if it pointed nowhere. Naive ``at`` is UTC."""
        _check_name(name)
        alias = _alias_name(alias)
        moment = self._clock() if at is None else as_naive_utc(at)
        return history_version_at(self.engine, self.tenant_id, name, alias, moment)

    # ------------------------------------------------------------------ metadata

    def get_model_metadata(self, name: str) -> dict[str, Any]:
        """Everything known about ``name``: latest version, aliases (the current holder of each
        stage), deployment, and per version its metrics, parameters, tags, aliases, features,
        training window, status and creation time. Plain data (times as ISO strings)."""
        registered = self._registered(name)
        versions = self._versions(name)
        aliases = _aliases(registered)
        self._reconcile_quietly(name, aliases)
        with tenant_session(self.engine, self.tenant_id) as session:
            mirror = {
                row.version: row
                for row in session.scalars(select(MLModel).where(MLModel.name == name)).all()
            }
        described = []
        for model_version in versions:
            described.append(
                self._describe(model_version, aliases, mirror.get(_num(model_version)))
            )
        production = aliases.get(_PRODUCTION)
        deployment: dict[str, Any] | None = None
        if production is not None:
            moves = [
                e
                for e in alias_events(self.engine, self.tenant_id, name, alias=_PRODUCTION)
                if e.to_version == production
            ]
            row = mirror.get(production)
            deployment = {
                "version": production,
                "deployed_at": _iso(row.deployed_at if row else None),
                "promoted_by": moves[-1].actor if moves else None,
                "promoted_at": _iso(moves[-1].moved_at) if moves else None,
                "model_uri": f"models:/{registered.name}@{_PRODUCTION}",
            }
        return {
            "name": name,
            "mlflow_name": registered.name,
            "tenant": self.tenant_id,
            "model_type": registered.tags.get("roiml.model_type"),
            "description": registered.description,
            "latest_version": _num(versions[-1]) if versions else None,
            "aliases": dict(sorted(aliases.items())),
            "stages": {stage.value: aliases.get(alias) for stage, alias in STAGE_ALIASES.items()},
            "deployment": deployment,
            "versions": described,
        }

    def _describe(
        self, model_version: ModelVersion, aliases: dict[str, str], row: MLModel | None
    ) -> dict[str, Any]:
        tags = dict(model_version.tags or {})
        run_metrics: dict[str, float] = {}
        run_params: dict[str, Any] = {}
        if row is None and model_version.run_id:
            # Registered outside roiml (no mirror row): the run is all there is.
            with _mlflow_errors(f"reading run {model_version.run_id}"):
                data = self.client.get_run(model_version.run_id).data
            run_metrics, run_params = dict(data.metrics), dict(data.params)
        window = _json_tag(tags.get("roiml.training_window"), {})
        features = row.feature_names if row else _json_tag(tags.get("roiml.feature_names"), [])
        return {
            "version": _num(model_version),
            "stage": stage_of(_num(model_version), aliases).value,
            # From the registered model: version searches leave ModelVersion.aliases empty.
            "aliases": sorted(a for a, v in aliases.items() if v == _num(model_version)),
            "status": row.status.value if row else None,
            "created_at": _iso(_from_millis(model_version.creation_timestamp)),
            "run_id": model_version.run_id,
            "source": model_version.source,
            "metrics": dict(row.metrics) if row else run_metrics,
            "parameters": dict(row.parameters) if row else run_params,
            "tags": {k: v for k, v in sorted(tags.items()) if k != "roiml.feature_names"},
            "feature_names": list(features),
            "training_window": window,
            "deployed_at": _iso(row.deployed_at) if row else None,
        }

    def compare_models(
        self,
        name: str,
        version1: str | int,
        version2: str | int,
        metrics: Sequence[str] | None = None,
    ) -> ModelComparison:
        """Compare two versions' run metrics: each metric's values, ``difference`` = v2 - v1 and
        which is better (lower for losses such as mae, rmse, log_loss, brier). Default metrics:
        every metric either version logged."""
        from roiml.registry.compare import ModelComparison, compare_metric

        _registered, first = self._resolve(name, version1)
        _registered, second = self._resolve(name, version2)
        values = [self._run_metrics(v) for v in (first, second)]
        available = sorted(set(values[0]) | set(values[1]))
        wanted = list(metrics) if metrics else available
        unknown = [m for m in wanted if m not in available]
        if unknown:
            raise RegistryError(
                f"neither version logged {', '.join(unknown)}; "
                f"their metrics: {', '.join(available) or 'none'}"
            )
        return ModelComparison(
            name=name,
            version1=_num(first),
            version2=_num(second),
            metrics={m: compare_metric(m, values[0].get(m), values[1].get(m)) for m in wanted},
        )

    def _run_metrics(self, model_version: ModelVersion) -> dict[str, float]:
        if not model_version.run_id:
            return {}
        with _mlflow_errors(f"reading run {model_version.run_id}"):
            return dict(self.client.get_run(model_version.run_id).data.metrics)

    def list_models(self) -> list[RegisteredModelSummary]:
        """The tenant's registered models, by name, as MLflow has them (alias moves made in
        MLflow directly are recorded in the history on the way)."""
        prefix = f"{self.tenant_id}."
        summaries = []
        for registered in self._search_models():
            name = registered.name.removeprefix(prefix)
            versions = self._versions(name)
            aliases = _aliases(registered)
            self._reconcile_quietly(name, aliases)
            summaries.append(
                RegisteredModelSummary(
                    name=name,
                    mlflow_name=registered.name,
                    model_type=registered.tags.get("roiml.model_type"),
                    latest_version=_num(versions[-1]) if versions else None,
                    versions=len(versions),
                    aliases=dict(sorted(aliases.items())),
                    updated_at=_from_millis(registered.last_updated_timestamp),
                )
            )
        return summaries

    def _search_models(self) -> list[RegisteredModel]:
        """The tenant's registered models in MLflow, by name."""
        prefix = f"{self.tenant_id}."
        found: list[RegisteredModel] = []
        token: str | None = None
        with _mlflow_errors("listing registered models"):
            while True:
                # LIKE would also match other tenants ('_' is a wildcard); filtered again below.
                page = self.client.search_registered_models(
                    f"name LIKE '{prefix}%'", page_token=token
                )
                found.extend(m for m in page if m.name.startswith(prefix))
                token = page.token
                if not token:
                    break
        return sorted(found, key=lambda m: m.name)


# ---------------------------------------------------------------------- helpers


def _check_server(uri: str) -> None:
    """Refuse at once when nothing answers at ``uri``: MLflow's client retries a dead server
    for minutes before it gives up."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=_PROBE_SECONDS):
            pass
    except urllib.error.HTTPError:
        # Something answered (a proxy's 401, a prefix's 404): MLflow will say the rest.
        return
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        parsed = urlparse(uri)
        shown = parsed._replace(netloc=parsed.netloc.rpartition("@")[2]).geturl()
        raise RegistryError(
            f"cannot reach the MLflow server at {shown}: {reason}. Start it, or point "
            "ROIML_MLFLOW_TRACKING_URI at a running server (unset: the embedded store)."
        ) from exc


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise RegistryError(
            f"model name {name!r} must be 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )


def _check_features(model: ModelArtifact) -> None:
    if not model.feature_names:
        raise RegistryError(f"{model.name} has no features; a model without inputs is a bug")
    duplicates = sorted({f for f in model.feature_names if model.feature_names.count(f) > 1})
    if duplicates:
        raise RegistryError(f"{model.name} lists features twice: {', '.join(duplicates)}")
    if not model.boosters:
        raise RegistryError(f"{model.name} has no booster")
    for part, booster in sorted(model.boosters.items()):
        booster_features = list(booster.feature_name())
        if booster_features != model.feature_names:
            missing = [f for f in model.feature_names if f not in booster_features]
            extra = [f for f in booster_features if f not in model.feature_names]
            detail = (
                f"not in the booster: {_few(missing)}; only in the booster: {_few(extra)}"
                if missing or extra
                else "same names in another order"
            )
            raise RegistryError(
                f"{model.name}: booster {part!r} was trained on other features than the "
                f"model lists ({detail}); retrain or fix feature_names"
            )


def _check_expected(name: str, version: str, model: ModelArtifact, expected: Sequence[str]) -> None:
    missing = [f for f in expected if f not in model.feature_names]
    extra = [f for f in model.feature_names if f not in set(expected)]
    if missing or extra:
        raise ModelError(
            f"{name} version {version} does not match the expected features: "
            f"missing from the model: {_few(missing)}; not expected: {_few(extra)}"
        )


def _clean_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    cleaned: dict[str, float] = {}
    for key, value in metrics.items():
        _check_key("metric", key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RegistryError(f"metric {key!r} is {value!r}, not a number")
        cleaned[key] = float(value)
    return cleaned


def _clean_params(parameters: Mapping[str, Any]) -> dict[str, str]:
    cleaned: dict[str, str] = {}
    for key, value in parameters.items():
        _check_key("parameter", key)
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        # MLflow caps a parameter at 6000 characters; the full value stays in ml_models.
        cleaned[key] = (
            text if len(text) <= _MAX_PARAM_VALUE else text[: _MAX_PARAM_VALUE - 3] + "..."
        )
    return cleaned


def _clean_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    cleaned: dict[str, str] = {}
    for key, value in tags.items():
        _check_key("tag", key)
        if key.startswith(("roiml.", "mlflow.")):
            raise RegistryError(f"tag {key!r}: the roiml. and mlflow. prefixes are reserved")
        text = str(value)
        if len(text) > _MAX_RUN_TAG_VALUE:
            raise RegistryError(f"tag {key!r} is longer than {_MAX_RUN_TAG_VALUE} characters")
        cleaned[key] = text
    return cleaned


def _check_key(kind: str, key: str) -> None:
    if not isinstance(key, str) or not _KEY.match(key) or ".." in key.split("/"):
        raise RegistryError(
            f"{kind} name {key!r} is not allowed: use at most 250 letters, digits, '_', '-', "
            "'.', ' ', ':' or '/'"
        )


def _training_bounds(window: Mapping[str, str]) -> tuple[datetime | None, datetime | None]:
    def parse(key: str) -> datetime | None:
        value = window.get(key)
        if value in (None, ""):
            return None
        try:
            return as_naive_utc(datetime.fromisoformat(str(value)))
        except ValueError as exc:
            raise RegistryError(
                f"training window {key} = {value!r} is not an ISO date or datetime"
            ) from exc

    return parse("train_start"), parse("test_end")


def _input_example(model: ModelArtifact) -> pd.DataFrame:
    """One row for MLflow's serving example: the first training row when the reference has
    every feature as a number, else zeros (serving enforces the signature, not the example)."""
    import pandas as pd

    reference = model.reference
    if reference is not None and reference.num_rows:
        try:
            first = reference.slice(0, 1).select(model.feature_names).to_pylist()[0]
            return pd.DataFrame(
                {
                    f: [math.nan if first[f] is None else float(first[f])]
                    for f in model.feature_names
                }
            )
        except (KeyError, TypeError, ValueError):
            pass
    return pd.DataFrame({f: [0.0] for f in model.feature_names})


# What the pyfunc model (registry/pyfunc.py) imports, and nothing of roiml: the environment
# MLflow builds from requirements.txt (mlflow models serve --env-manager virtualenv, any MLflow
# host) holds these alone. mlflow-skinny is enough to load and serve a pyfunc model, and full
# mlflow depends on it, so it is installed wherever roiml registers.
_MODEL_REQUIREMENTS = ("mlflow-skinny", "lightgbm", "numpy", "pandas", "pyarrow")


def _pip_requirements() -> list[str]:
    """The pyfunc model's requirements, pinned to the versions that registered it."""
    pinned = []
    for package in _MODEL_REQUIREMENTS:
        try:
            pinned.append(f"{package}=={package_version(package)}")
        except PackageNotFoundError:
            pinned.append(package)
    return pinned


def _artifact_dir(model_dir: Path) -> Path:
    """Where the pyfunc model at ``model_dir`` keeps the ModelArtifact directory."""
    from mlflow.models import Model

    from roiml.registry.pyfunc import ARTIFACT_KEY

    try:
        flavor = Model.load(str(model_dir)).flavors["python_function"]
        relative = flavor["artifacts"][ARTIFACT_KEY]["path"]
    except (KeyError, TypeError, OSError, MlflowException) as exc:
        raise RegistryError(
            f"{model_dir} is not a roiml pyfunc model (no {ARTIFACT_KEY} artifact); "
            "was it registered by roiml?"
        ) from exc
    return model_dir / str(relative)


def _alias_name(ref: str) -> str:
    """The alias a stage name stands for (``Production`` -> ``production``); other names are
    aliases already (MLflow aliases are case-sensitive, stage names are not)."""
    try:
        return STAGE_ALIASES.get(parse_stage(ref), ref)
    except RegistryError:
        return ref


def _aliases(registered: RegisteredModel) -> dict[str, str]:
    # MLflow hands versions back as int from some stores and str from others.
    return {alias: str(version) for alias, version in (registered.aliases or {}).items()}


def _json_tag(value: str | None, default: Any) -> Any:
    if not value:
        return default
    try:
        return json.loads(value)
    except ValueError:
        return default


def _from_millis(millis: int | None) -> datetime | None:
    if millis is None:
        return None
    return datetime.fromtimestamp(millis / 1000, UTC).replace(tzinfo=None)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _few(names: Sequence[str], limit: int = 10) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def _one_line(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, MlflowException) else str(exc)
    return " ".join(str(message).split())[:500]


def _quietly(action: Callable[[], object]) -> None:
    """Run a clean-up step whose failure must not hide the error being reported."""
    # Best effort by design: the caller re-raises the error that made clean-up necessary.
    with suppress(Exception):
        action()


@contextmanager
def _mlflow_errors(what: str) -> Iterator[None]:
    """Turn MLflow's exceptions into :class:`RegistryError` saying what was being done."""
    try:
        yield
    except MlflowException as exc:
        raise RegistryError(f"{what}: {_one_line(exc)}") from exc


def _num(model_version: ModelVersion) -> str:
    """A version's number as text: MLflow's SQL store hands back int, its REST client str."""
    return str(model_version.version)
