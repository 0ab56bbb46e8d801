"""The models the API serves: each tenant's production versions, reloaded when the alias moves.

A request takes a reference to the loaded model once, so a reload swapping in a new version never
disturbs a request in flight; the old version is dropped when the last request using it ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TypeVar

from roiml.db.base import utcnow
from roiml.db.enums import ModelType
from roiml.errors import ModelError, RoimlError
from roiml.features.catalog import CATALOG, Catalog
from roiml.models.artifact import HORIZON_FEATURE, MODEL_NAMES, ModelArtifact
from roiml.models.predict import prepare

__all__ = ["LoadedModel", "ModelCache", "ModelUnavailableError"]

log = logging.getLogger(__name__)
PRODUCTION = "production"
T = TypeVar("T")


class ModelUnavailableError(RoimlError):
    """No production version of a model can be served for this tenant (HTTP 503)."""


@dataclass(frozen=True)
class LoadedModel:
    """One served model version."""

    artifact: ModelArtifact
    version: str
    loaded_at: datetime


# (tenant, model name) -> (version string, artifact) or raises; the registry in production,
# anything in tests.
Loader = Callable[[str, str], tuple[str, ModelArtifact]]
VersionProbe = Callable[[str, str], str | None]


class _BoundedCalls:
    """Registry calls in daemon threads of their own, each given up after its time limit.

    A call that hangs (a tracking server or artifact store that accepts and never answers) is
    left behind, not waited for; while it is still running, the same call is not started again,
    so a registry hung for an hour costs one thread per call site, not one per poll.
    """

    def __init__(self) -> None:
        self._running: dict[str, tuple[threading.Thread, float]] = {}
        self._lock = threading.Lock()

    def run(self, site: str, fn: Callable[[], T], seconds: float | None, what: str) -> T:
        """``fn()``, given up after ``seconds`` (``None``: unbounded, in this thread)."""
        if seconds is None:
            return fn()
        result: list[T] = []
        failed: list[BaseException] = []

        def call() -> None:
            try:
                result.append(fn())
            except BaseException as exc:
                failed.append(exc)

        with self._lock:
            running = self._running.get(site)
            if running is not None and running[0].is_alive():
                hung = time.monotonic() - running[1]
                raise ModelError(
                    f"{what} has not answered for {hung:.0f} s (an earlier call still waits); "
                    "is the registry or its artifact store answering?"
                )
            thread = threading.Thread(target=call, name=f"registry-{site}", daemon=True)
            self._running[site] = (thread, time.monotonic())
        thread.start()
        thread.join(seconds)
        if failed:
            raise failed[0]
        if not result:
            raise ModelError(
                f"{what} took over {seconds:g} s; is the registry or its artifact store answering?"
            )
        return result[0]

    def hung(self) -> list[str]:
        """The call sites whose last call is still running past its limit."""
        with self._lock:
            return [site for site, (thread, _) in self._running.items() if thread.is_alive()]


class ModelCache:
    """Loads each (tenant, model) on first use and polls for alias moves in the background."""

    def __init__(
        self,
        loader: Loader,
        probe: VersionProbe,
        poll_seconds: float,
        *,
        load_timeout: float | None = None,
        catalogs: Callable[[str], Catalog] | None = None,
    ) -> None:
        """Load with ``loader``, check aliases with ``probe`` every ``poll_seconds``; a load
        taking over ``load_timeout`` seconds (a registry or artifact store that stopped
        answering) is given up: the model is unavailable (503) until the next poll. A probe is
        given up after ``poll_seconds`` or ``load_timeout``, the shorter, so a hung registry
        delays the next alias check, never stops them."""
        self._loader = loader
        # Each tenant's catalog (its declared columns' features too), against which a model's
        # inputs are checked; the built-in one without.
        self._catalogs = catalogs
        self._load_timeout = load_timeout
        self._calls = _BoundedCalls()
        self._probe_timeout = None if load_timeout is None else min(load_timeout, poll_seconds)
        self._probe = probe
        self._poll_seconds = poll_seconds
        self._models: dict[tuple[str, ModelType], LoadedModel] = {}
        self._errors: dict[tuple[str, ModelType], str] = {}
        self._failed_at: dict[tuple[str, ModelType], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self, tenant: str, model_type: ModelType) -> LoadedModel:
        """The served version of ``model_type`` for ``tenant``, loading it the first time."""
        key = (tenant, model_type)
        loaded = self._models.get(key)
        if loaded is not None:
            return loaded
        failed = self._failed_at.get(key)
        if failed is not None and time.monotonic() - failed < self._poll_seconds:
            # Not again before the next poll: a batch of 250 items of a model with no production
            # version asked the registry 250 times (2 s).
            raise ModelUnavailableError(self._errors[key])
        with self._lock:
            loaded = self._models.get(key)
            if loaded is None:
                loaded = self._load(tenant, model_type)
        return loaded

    def status(self, tenant: str) -> dict[str, str]:
        """Per model: ``v<N>`` when loaded, else why not (for the health route)."""
        out = {}
        for model_type, name in MODEL_NAMES.items():
            loaded = self._models.get((tenant, model_type))
            if loaded is not None:
                out[name] = f"v{loaded.version}"
            else:
                out[name] = self._errors.get((tenant, model_type), "not loaded")
        return out

    def loaded(self) -> dict[tuple[str, ModelType], LoadedModel]:
        """A snapshot of everything loaded."""
        return dict(self._models)

    def preload(self, tenant: str) -> None:
        """Load every model of ``tenant`` now (at start-up), so no request pays for a registry
        read or for building explanation tables; a model that cannot load is logged and
        answered 503 until its alias points at one that can."""
        for model_type in MODEL_NAMES:
            try:
                self.get(tenant, model_type)
            except RoimlError as exc:
                log.warning("not serving %s for %s: %s", MODEL_NAMES[model_type], tenant, exc)

    def start(self) -> None:
        """Start polling the registry for alias moves."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._poll, name="model-poll", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def refresh(self) -> None:
        """Check every loaded model's alias once and swap in any new version."""
        for (tenant, model_type), current in list(self._models.items()):
            name = MODEL_NAMES[model_type]
            try:
                version = self._calls.run(
                    f"probe-{tenant}-{name}",
                    partial(self._probe, tenant, name),
                    self._probe_timeout,
                    f"checking {name}'s production alias",
                )
            except Exception as exc:  # the registry being away must not stop serving
                log.warning("could not check %s/%s in the registry: %s", tenant, name, exc)
                continue
            if version is not None and version != current.version:
                try:
                    with self._lock:
                        self._load(tenant, model_type)
                    log.info("%s/%s: now serving version %s", tenant, name, version)
                except RoimlError as exc:
                    log.error(
                        "%s/%s version %s not loaded, keeping %s: %s",
                        tenant,
                        name,
                        version,
                        current.version,
                        exc,
                    )

    def _load(self, tenant: str, model_type: ModelType) -> LoadedModel:
        key = (tenant, model_type)
        name = MODEL_NAMES[model_type]
        try:
            version, artifact = self._bounded_load(tenant, name)
            _check_features(artifact, self._catalogs(tenant) if self._catalogs else CATALOG)
            # Before the swap: requests keep the old version until the new one is ready.
            prepare(artifact)
        except RoimlError as exc:
            self._errors[key] = f"{name} cannot be served for tenant {tenant!r}: {exc}"
            self._failed_at[key] = time.monotonic()
            raise ModelUnavailableError(self._errors[key]) from exc
        loaded = LoadedModel(artifact, version, utcnow())
        self._models[key] = loaded
        self._errors.pop(key, None)
        self._failed_at.pop(key, None)
        return loaded

    def _bounded_load(self, tenant: str, name: str) -> tuple[str, ModelArtifact]:
        return self._calls.run(
            f"load-{tenant}-{name}",
            partial(self._loader, tenant, name),
            self._load_timeout,
            f"loading {name} (ROIML_MODEL_LOAD_TIMEOUT_SECONDS)",
        )

    def _poll(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            self.refresh()


def _check_features(artifact: ModelArtifact, catalog: Catalog) -> None:
    """A model is served only if every input it needs is still produced by the catalog."""
    unknown = [
        n for n in artifact.feature_names if n not in catalog.features and n != HORIZON_FEATURE
    ]
    if unknown:
        raise ModelError(
            f"{artifact.name} needs features the catalog no longer produces: {unknown[:5]}; "
            "retrain it on the current features"
        )
