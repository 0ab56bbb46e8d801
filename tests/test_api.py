"""The prediction API in process: every route, explanations, the log, bad input, hot reload."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import get_args

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from model_world import SERVING_NOW, TENANT, WORLD_END, World
from roiml.client import ApiError, Client
from roiml.db.engine import make_engine
from roiml.db.enums import ModelType
from roiml.features.catalog import CATALOG
from roiml.models.artifact import ModelArtifact
from roiml.models.train import TrainingReport
from roiml.serving.app import asgi
from roiml.serving.components import Components
from roiml.serving.metrics import ServingMetrics
from roiml.serving.model_cache import ModelCache
from roiml.serving.prediction_log import PredictionLog
from roiml.serving.ratelimit import MemoryRateLimiter
from roiml.serving.schemas import BatchResponse, FeatureSetName, PredictionResponse
from roiml.settings import Settings
from roiml.store.materialize import materialize_day
from roiml.store.online_sqlite import SqliteOnlineStore
from roiml.store.retrieval import FeatureStore

ROUTES = {
    "move-probability": "move_probability_model",
    "transaction-type": "transaction_type_model",
    "contact-timing": "contact_timing_model",
    "property-value": "property_value_model",
}


@dataclass
class Api:
    client: TestClient
    components: Components
    versions: dict[str, str]


@pytest.fixture(scope="module")
def served_world(model_world: World) -> World:
    """The world's last day materialised into the embedded online store."""
    settings = model_world.settings
    engine = make_engine(settings.resolved_database_url)
    store = FeatureStore(
        engine, TENANT, settings.data_dir, SqliteOnlineStore(settings.online_store_path)
    )
    day = WORLD_END - timedelta(days=1)
    materialize_day(
        store,
        day,
        now=datetime.combine(day, datetime.min.time()) + timedelta(hours=2),
        on_time=True,
    )
    store.online.close()
    engine.dispose()
    return model_world


def _components(
    settings: Settings, trained: dict[str, TrainingReport], versions: dict[str, str]
) -> Components:
    artifacts = {name: ModelArtifact.load(r.artifact_dir) for name, r in trained.items()}

    def load(tenant: str, name: str) -> tuple[str, ModelArtifact]:
        return versions[name], artifacts[name]

    engine = make_engine(settings.resolved_database_url)
    return Components(
        settings=settings,
        engine=engine,
        online=SqliteOnlineStore(settings.online_store_path),
        models=ModelCache(load, lambda tenant, name: versions[name], poll_seconds=3600),
        prediction_log=PredictionLog(settings, engine),
        rate_limiter=MemoryRateLimiter(per_minute=600_000, burst=100_000),
        metrics=ServingMetrics(CollectorRegistry()),
        clock=lambda: SERVING_NOW,
    )


@pytest.fixture(scope="module")
def api(served_world: World, trained_models: dict[str, TrainingReport]) -> Iterator[Api]:
    versions = {name: "1" for name in ROUTES.values()}
    components = _components(served_world.settings, trained_models, versions)
    with TestClient(asgi(served_world.settings, components)) as client:
        yield Api(client, components, versions)


def _predict(api: Api, route: str, body: dict[str, object], prefix: str = "/v1") -> dict:
    response = api.client.post(f"{prefix}/predict/{route}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("prefix", ["/v1", "/api/ml/v1"])
def test_every_prediction_route_answers_with_an_explanation(
    api: Api, route: str, prefix: str
) -> None:
    body = _predict(api, route, {"entity_id": "user_3", "entity_type": "USER"}, prefix)
    assert body["entity_id"] == "user_3"
    assert body["prediction_id"].startswith("pred_")
    assert body["model_version"] == "1"
    assert body["feature_source"] == "online"
    assert 0 <= body["confidence"] <= 1
    assert len(body["top_features"]) == 5
    contributions = [abs(f["contribution"]) for f in body["top_features"]]
    assert contributions == sorted(contributions, reverse=True)
    if route == "move-probability":
        assert body["predicted_class"] in {"HIGH", "MEDIUM", "LOW"}
        assert 0 <= body["predicted_value"] <= 1
    if route == "transaction-type":
        assert body["predicted_class"] in {"BUY", "SELL", "REFINANCE", "INVESTMENT"}
        assert abs(sum(body["probabilities"].values()) - 1) < 1e-6
    if route == "contact-timing":
        assert body["predicted_class"][:3] in {"MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"}
        assert 0 <= body["details"]["best_hour"] <= 23
    if route == "property-value":
        details = body["details"]
        assert details["interval_low"] <= body["predicted_value"] <= details["interval_high"]


def test_given_features_are_used_as_given(api: Api) -> None:
    _predict(api, "move-probability", {"entity_id": "user_5"})
    move = next(
        loaded
        for (_, kind), loaded in api.components.models.loaded().items()
        if kind.value == "MOVE_PROBABILITY"
    )
    features = {n: 0.0 for n in move.artifact.feature_names}
    body = _predict(api, "move-probability", {"entity_id": "user_5", "features": features})
    assert body["feature_source"] == "given"
    assert all(f["value"] == 0.0 for f in body["top_features"])
    missing = dict(itertools.islice(features.items(), 3))
    response = api.client.post(
        "/v1/predict/move-probability", json={"entity_id": "user_5", "features": missing}
    )
    assert response.status_code == 422 and "missing" in response.json()["detail"]
    extra = {**features, "shoe_size": 42.0}
    response = api.client.post(
        "/v1/predict/move-probability", json={"entity_id": "user_5", "features": extra}
    )
    assert response.status_code == 422 and "shoe_size" in response.json()["detail"]


def test_past_as_of_date_computes_features_then(api: Api) -> None:
    body = _predict(
        api, "move-probability", {"entity_id": "user_8", "as_of_date": "2024-06-01T00:00:00Z"}
    )
    assert body["feature_source"] == "computed"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"entity_id": "user_1", "as_of_date": "2031-01-01T00:00:00Z"}, 422, "future"),
        ({"entity_id": "nobody_here"}, 404, "not a user"),
        ({"entity_id": "user_1", "entity_type": "AGENT"}, 422, "USER"),
        ({"entity_id": 12}, 422, "string"),
        ({"entity_id": ""}, 422, "at least 1"),
        ({"entity_id": "user_1", "prediction_type": "CONTACT_TIMING"}, 422, "does not match"),
        ({"entity_id": "user_1", "horizon_months": 3}, 422, "property-value"),
        ({"entity_id": "user_1", "bogus": 1}, 422, "Extra inputs"),
    ],
)
def test_bad_input_is_a_4xx_that_says_what_to_fix(
    api: Api, body: dict[str, object], status: int, fragment: str
) -> None:
    response = api.client.post("/v1/predict/move-probability", json=body)
    assert response.status_code == status, response.text
    assert fragment in response.text
    assert "Traceback" not in response.text


def test_malformed_json_and_unknown_routes(api: Api) -> None:
    response = api.client.post(
        "/v1/predict/move-probability",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422 and "Traceback" not in response.text
    assert api.client.post("/v1/predict/churn", json={"entity_id": "u"}).status_code == 404
    assert api.client.get("/v1/models/churn_model/health").status_code == 404


def test_batch_mixes_models_and_isolates_bad_items(api: Api) -> None:
    kinds = ["MOVE_PROBABILITY", "TRANSACTION_TYPE", "CONTACT_TIMING", "PROPERTY_VALUE"]
    requests = [{"entity_id": f"user_{i}", "prediction_type": kinds[i % 4]} for i in range(1, 41)]
    requests.append({"entity_id": "ghost", "prediction_type": "MOVE_PROBABILITY"})
    response = api.client.post("/v1/predict/batch", json={"requests": requests})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["predictions"]) == 40
    assert body["prediction_indexes"] == list(range(40))
    assert [(e["index"], e["status_code"]) for e in body["errors"]] == [(40, 404)]
    too_many = [{"entity_id": "user_1", "prediction_type": "MOVE_PROBABILITY"}] * 1001
    response = api.client.post("/v1/predict/batch", json={"requests": too_many})
    assert response.status_code == 422 and "1000" in response.text


def test_predictions_are_logged_and_take_feedback(api: Api) -> None:
    body = _predict(api, "transaction-type", {"entity_id": "user_11"})
    response = api.client.post(
        f"/v1/predictions/{body['prediction_id']}/feedback", json={"actual_class": "SELL"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["recorded"] is True
    # Stamped by the serving clock, as the prediction was, not by the wall's.
    assert response.json()["feedback_at"].startswith(SERVING_NOW.isoformat(timespec="seconds"))
    with api.components.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT actual_class, model_version, shap_values FROM ml_predictions "
                "WHERE prediction_id = :p"
            ),
            {"p": body["prediction_id"]},
        ).one()
    assert row.actual_class == "SELL" and row.model_version == "1"
    assert row.shap_values
    missing = api.client.post("/v1/predictions/pred_nope/feedback", json={"actual_value": 1})
    assert missing.status_code == 404
    empty = api.client.post(f"/v1/predictions/{body['prediction_id']}/feedback", json={})
    assert empty.status_code == 422


def test_model_health_counts_real_traffic(api: Api) -> None:
    for i in range(3):
        _predict(api, "contact-timing", {"entity_id": f"user_{20 + i}"})
    response = api.client.get("/v1/models/contact_timing_model/health")
    assert response.status_code == 200, response.text
    health = response.json()
    assert health["status"] == "DEPLOYED" and health["model_version"] == "1"
    assert health["prediction_count"] >= 3
    assert health["avg_latency_ms"] > 0
    assert health["last_prediction_at"] is not None


def test_models_are_listed_with_their_feature_services(api: Api) -> None:
    listed = api.client.get("/v1/models")
    assert listed.status_code == 200, listed.text
    models = {m["name"]: m for m in listed.json()["models"]}
    assert set(models) == set(ROUTES.values())
    for name, model in models.items():
        assert model["status"] == "SERVING" and model["version"] == api.versions[name], model
        assert model["detail"] is None and model["loaded_at"] is not None
    service = api.client.get("/v1/models/move_probability_model/features")
    assert service.status_code == 200, service.text
    body = service.json()
    # The served artifact's inputs, in its order, each described by the catalog.
    artifact = api.components.models.get(TENANT, ModelType.MOVE_PROBABILITY).artifact
    assert [f["name"] for f in body["features"]] == list(artifact.feature_names)
    assert models["move_probability_model"]["feature_count"] == len(artifact.feature_names)
    # The value model's horizon is the request's own, not a stored feature.
    value = api.client.get("/v1/models/property_value_model/features").json()
    assert "horizon_months" not in [f["name"] for f in value["features"]]
    assert models["property_value_model"]["feature_count"] == len(value["features"])
    assert all(f["description"] and f["category"] for f in body["features"])
    unknown = api.client.get("/v1/models/no_such_model/features")
    assert unknown.status_code == 404 and "no_such_model" in unknown.json()["detail"]


def test_the_online_store_is_read_as_it_is(api: Api, served_world: World) -> None:
    """Feast's online read: each asked set's stored vector with its as-of and age, no fallback;
    an id of no homeowner is a 404 item; bad input a 422 naming the fix."""
    body = {"entity_ids": ["user_3", "ghost", "user_4"], "feature_sets": ["property", "market"]}
    response = api.client.post("/v1/features/online", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["tenant_id"] == TENANT and answer["feature_sets"] == ["property", "market"]
    first, ghost, third = answer["results"]
    assert [first["entity_id"], ghost["entity_id"], third["entity_id"]] == body["entity_ids"]
    assert first["status"] == 200 and third["status"] == 200
    assert ghost["status"] == 404 and "ghost" in ghost["detail"]
    assert ghost["feature_sets"] == {"property": None, "market": None}
    stored = first["feature_sets"]["property"]
    # The materialised day's vector (as of that day), read at the serving clock.
    assert stored["as_of"].startswith(str(WORLD_END - timedelta(days=1)))
    as_of = datetime.fromisoformat(stored["as_of"].replace("Z", "+00:00")).replace(tzinfo=None)
    assert stored["age_seconds"] == pytest.approx((SERVING_NOW - as_of).total_seconds())
    # The same values a prediction reads from the online store (the library's own read).
    engine = make_engine(served_world.settings.resolved_database_url)
    store = FeatureStore(engine, TENANT, served_world.settings.data_dir, api.components.online)
    direct = store.get_online_features(["user_3"], ["property"], now=SERVING_NOW)[0]
    engine.dispose()
    assert direct.sets["property"] is not None
    assert stored["features"] == direct.sets["property"].values
    assert set(stored["features"]) >= {"property_sqft", "property_latitude"}

    every = api.client.post("/api/ml/v1/features/online", json={"entity_ids": ["user_3"]})
    assert every.status_code == 200
    assert every.json()["feature_sets"] == [
        "behavioral",
        "property",
        "transactional",
        "market",
        "temporal",
    ]
    # The schema names the catalog's sets, no more and no fewer.
    assert list(get_args(FeatureSetName)) == list(CATALOG.feature_sets)
    for bad, needle in (
        ({"entity_ids": ["user_3"], "feature_sets": ["nope"]}, "behavioral"),
        ({"entity_ids": []}, "entity_ids"),
        ({"entity_ids": [f"user_{i}" for i in range(101)]}, "entity_ids"),
        ({"entity_ids": ["user_3"], "extra": 1}, "extra"),
    ):
        refused = api.client.post("/v1/features/online", json=bad)
        assert refused.status_code == 422, refused.text
        assert needle in refused.text


def test_the_python_client_speaks_for_the_api(api: Api) -> None:
    """``roiml.Client``, as a notebook uses it: the same answers as the routes, a refusal an
    ApiError carrying the status and the API's detail."""
    # The test client's transport: the app in process, as the routes' own tests reach it.
    with Client("http://testserver", transport=api.client._transport) as client:
        answer = client.predict("move-probability", "user_3")
        assert answer["entity_id"] == "user_3" and answer["model_version"] == "1"
        given = client.predict("property-value", "user_3", horizon_months=6)
        assert given["details"]["interval_low"] <= given["predicted_value"]
        batch = client.predict_batch(
            [
                {"entity_id": "user_3", "prediction_type": "MOVE_PROBABILITY"},
                {"entity_id": "ghost", "prediction_type": "MOVE_PROBABILITY"},
            ]
        )
        assert batch["prediction_indexes"] == [0] and batch["errors"][0]["index"] == 1
        stored = client.online_features(["user_3"], ["market"])
        assert stored["results"][0]["feature_sets"]["market"] is not None
        assert {m["name"] for m in client.models()["models"]} == set(ROUTES.values())
        inputs = client.feature_service("move_probability_model")["features"]
        assert inputs and all("name" in f for f in inputs)
        with pytest.raises(ApiError) as unknown:
            client.predict("move-probability", "ghost")
        assert unknown.value.status == 404 and "ghost" in str(unknown.value.detail)
        with pytest.raises(ApiError) as refused:
            client.online_features(["user_3"], ["nope"])
        assert refused.value.status == 422 and "behavioral" in str(refused.value)


def test_service_health_and_metrics(api: Api) -> None:
    _predict(api, "move-probability", {"entity_id": "user_2"})
    health = api.client.get("/health")
    assert health.status_code == 200, health.text
    assert health.json()["database"] == "ok"
    metrics = api.client.get("/metrics").text
    assert "roiml_predictions_total" in metrics
    assert "roiml_feature_reads_total" in metrics
    assert 'route="/api/ml/v1/predict/move-probability"' in metrics


def test_openapi_docs_are_served(api: Api) -> None:
    schema = api.client.get("/api/ml/openapi.json").json()
    assert "/api/ml/v1/predict/move-probability" in schema["paths"]


@pytest.mark.parametrize("page", ["/api/ml/docs", "/api/ml/redoc"])
def test_the_docs_pages_need_no_internet(api: Api, page: str) -> None:
    """Swagger UI and ReDoc load every script, style and icon from the API itself (a CDN left
    the page blank on a server without internet), and each of those is served."""
    response = api.client.get(page)
    assert response.status_code == 200
    html = response.text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assets += re.findall(r"""url: ?["']([^"']+)["']""", html)  # Swagger UI's schema URL
    assert assets, html
    assert not [a for a in assets if "//" in a], html  # no other host
    assert "fonts.googleapis" not in html and "cdn" not in html.lower()
    for asset in assets:
        served = api.client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 0, asset


def test_a_moved_alias_is_served_without_a_restart(api: Api) -> None:
    before = _predict(api, "property-value", {"entity_id": "user_4"})
    assert before["model_version"] == "1"
    api.versions["property_value_model"] = "2"
    try:  # the module's api is shared: put the alias back even if an assertion fails
        api.components.models.refresh()
        after = _predict(api, "property-value", {"entity_id": "user_4"})
        assert after["model_version"] == "2"
    finally:
        api.versions["property_value_model"] = "1"
        api.components.models.refresh()


def _predictions_counted(api: Api) -> dict[str, float]:
    counted: dict[str, float] = {}
    for metric in api.components.metrics.predictions.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                model = sample.labels["model"]
                counted[model] = counted.get(model, 0.0) + sample.value
    return counted


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_a_response_is_the_bytes_of_its_model(api: Api, route: str) -> None:
    """The routes write their bodies with orjson, skipping pydantic: the bytes must be what
    the declared response model would have written (and what the OpenAPI schema promises)."""
    response = api.client.post(f"/v1/predict/{route}", json={"entity_id": "user_7"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    model = PredictionResponse.model_validate_json(response.content)
    assert response.content == model.model_dump_json().encode()
    assert response.json()["prediction_date"].endswith("+00:00")


def test_a_batch_is_the_bytes_of_its_model_and_counted_per_item(api: Api) -> None:
    kinds = ["MOVE_PROBABILITY", "TRANSACTION_TYPE", "CONTACT_TIMING", "PROPERTY_VALUE"]
    requests = [{"entity_id": f"user_{i}", "prediction_type": kinds[i % 4]} for i in range(80)]
    requests.append({"entity_id": "ghost", "prediction_type": "CONTACT_TIMING"})
    before = _predictions_counted(api)
    response = api.client.post("/v1/predict/batch", json={"requests": requests})
    assert response.status_code == 200, response.text
    model = BatchResponse.model_validate_json(response.content)
    assert response.content == model.model_dump_json().encode()
    assert len(model.predictions) == 80 and [e.index for e in model.errors] == [80]
    after = _predictions_counted(api)
    # 80 items, 4 models served side by side on the batch threads: 20 counted for each.
    assert {m: after[m] - before.get(m, 0.0) for m in after} == dict.fromkeys(ROUTES.values(), 20.0)
