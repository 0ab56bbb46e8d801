"""Score a whole population through the API's batch route, in process, as of a given instant.

The demo scores every homeowner once per model so that monitoring judges a full day; a
day-by-day replay does the same for each day it replays. Both go through the real API (routes,
validation, feature reads, explanations, the prediction log) with its clock set to ``now``, so
the predictions land in ``ml_predictions`` exactly as served ones would, on the day monitoring
then judges. Usage::

    counts = score_population(settings, "demo", ["user_0", "user_1"], datetime(2027, 3, 1, 9))
    # {"move_probability_model": 2, "transaction_type_model": 2, ...}; then
    # run_monitoring(settings, engine, "demo", date(2027, 3, 1), now=...)
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from roiml.db.base import as_naive_utc
from roiml.db.enums import PredictionType
from roiml.models.artifact import MODEL_NAMES
from roiml.serving.schemas import MAX_BATCH
from roiml.settings import Settings

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

__all__ = ["in_process_client", "score_population"]

log = logging.getLogger(__name__)


def in_process_client() -> type[TestClient]:
    """Starlette's TestClient (the API called in process), imported without the one warning
    Starlette 1.x gives on importing it while ``httpx`` rather than ``httpx2`` is installed:
    httpx2 is not on the package index this project installs from, and the client works as
    before on httpx. Any other warning still shows."""
    from starlette.exceptions import StarletteDeprecationWarning

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"Using `httpx` with `starlette\.testclient` is deprecated",
            category=StarletteDeprecationWarning,
        )
        from fastapi.testclient import TestClient

    return TestClient


def score_population(
    settings: Settings,
    tenant_id: str,
    entity_ids: Sequence[str],
    now: datetime,
    *,
    models: Sequence[str] | None = None,
) -> dict[str, int]:
    """Ask the API for one prediction of every entity from every model, as of ``now``.

    ``settings``: the database, stores and registry to serve from (the production-alias model
    of each name is used). ``tenant_id``: whose homeowners. ``entity_ids``: who to score.
    ``now``: the API's clock for the whole run (naive UTC, or aware and converted); features
    are read as fresh at that instant and every prediction is logged at it. ``models``:
    registered model names to score (default: all four).

    Returns, per model name, how many predictions were answered. The others (no production
    version, unknown homeowner, no features) are logged as a warning with their reason, not
    raised: a model without a production version answers none and its remaining chunks are not
    sent. Requests go to ``POST /v1/predict/batch`` in chunks of at most ``MAX_BATCH`` (1000)
    of one model each. All predictions are in the prediction log's store when this returns
    (the app's shutdown flushes it). The app runs as ``tenant_id`` with authentication off
    (a trusted caller in the same process); in production mode that is refused with a
    ConfigurationError.
    """
    from prometheus_client import CollectorRegistry

    from roiml.serving.app import asgi
    from roiml.serving.components import registry_components
    from roiml.serving.metrics import ServingMetrics

    names = list(models) if models is not None else list(MODEL_NAMES.values())
    kinds = {name: model_type for model_type, name in MODEL_NAMES.items()}
    unknown = [name for name in names if name not in kinds]
    if unknown:
        raise ValueError(f"unknown model name(s) {unknown}; known: {sorted(kinds)}")
    counts = dict.fromkeys(names, 0)
    ids = list(entity_ids)
    if not ids:
        return counts
    moment = as_naive_utc(now)
    scoped = settings.model_copy(update={"tenant_id": tenant_id, "auth_enabled": False})
    # Its own metrics registry: the process's default one may belong to a served app.
    components = registry_components(scoped, metrics=ServingMetrics(CollectorRegistry()))
    components.clock = lambda: moment
    with in_process_client()(asgi(scoped, components), raise_server_exceptions=True) as client:
        for name in names:
            kind = PredictionType(kinds[name].value)
            failures: Counter[tuple[int, str]] = Counter()
            for start in range(0, len(ids), MAX_BATCH):
                chunk = ids[start : start + MAX_BATCH]
                body = {"requests": [{"entity_id": e, "prediction_type": kind} for e in chunk]}
                response = client.post("/v1/predict/batch", json=body)
                if response.status_code != 200:
                    failures[response.status_code, str(response.json().get("detail"))] += len(chunk)
                    continue
                answer = response.json()
                counts[name] += len(answer["predictions"])
                for error in answer["errors"]:
                    failures[error["status_code"], error["detail"]] += 1
                if not answer["predictions"] and any(
                    error["status_code"] == 503 for error in answer["errors"]
                ):
                    # No model to serve (not promoted): the other chunks would fail the same way.
                    failures[503, "remaining chunks not sent"] += len(ids) - start - len(chunk)
                    break
            if failures:
                shown = "; ".join(
                    f"{count} x {status} {detail}"
                    for (status, detail), count in failures.most_common(3)
                )
                log.warning(
                    "scoring %s as of %s: %d of %d got no prediction (%s)",
                    name,
                    moment,
                    sum(failures.values()),
                    len(ids),
                    shown,
                )
    return counts
