"""Bad input is a 4xx that says what was wrong and what to do, never a 500 (issue 18, items 5
and 9): dates outside the window, non-finite numbers, classes no model has, bodies over the
limit; in a batch, a bad item is that item's error; feedback that is refused stores nothing."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import text

import test_api
from model_world import World
from roiml.features.sources import _time_clauses
from roiml.models.train import TrainingReport
from roiml.serving.app import asgi
from roiml.serving.schemas import REQUEST_MODELS
from roiml.settings import Settings
from test_api import ROUTES, Api, _components

# test_api's module fixtures (the served world and its API), taken by name.
api = test_api.api
served_world = test_api.served_world

JSON = {"content-type": "application/json"}
MOVE = "/v1/predict/move-probability"


def _post_raw(client: TestClient, path: str, raw: bytes) -> Any:
    """``raw`` as the JSON body: Python's encoder cannot write NaN or Infinity the way a client
    in another language might (its parser, which FastAPI uses, reads them)."""
    return client.post(path, content=raw, headers=JSON)


def _messages(response: Any) -> str:
    detail = response.json()["detail"]
    return detail if isinstance(detail, str) else " ".join(e["msg"] for e in detail)


def _assert_refused(response: Any, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    said = _messages(response)
    for fragment in fragments:
        assert fragment in said, said


# --- dates -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "as_of",
    ["0001-01-01T00:00:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1899-12-31T23:59:59Z"],
)
def test_an_as_of_date_outside_the_window_is_a_422_not_a_500(api: Api, as_of: str) -> None:
    response = api.client.post(MOVE, json={"entity_id": "user_1", "as_of_date": as_of})
    _assert_refused(response, 422, as_of, "from 1900 to 2200", "send one like")


@pytest.mark.parametrize(
    ("as_of", "fragment"),
    [
        ("2024-06-01", "RFC 3339"),  # no time
        ("2024-06-01T00:00:00", "with Z or an offset"),  # no offset
        ("2024-02-30T00:00:00Z", "not a calendar date"),
        ("1717200000", "RFC 3339"),  # a timestamp as text
    ],
)
def test_an_as_of_date_must_be_an_rfc3339_instant(api: Api, as_of: str, fragment: str) -> None:
    response = api.client.post(MOVE, json={"entity_id": "user_1", "as_of_date": as_of})
    _assert_refused(response, 422, fragment)


def test_a_number_is_not_a_date(api: Api) -> None:
    response = api.client.post(MOVE, json={"entity_id": "user_1", "as_of_date": 0})
    _assert_refused(response, 422, "RFC 3339")


def test_the_window_edge_is_served(api: Api) -> None:
    # Features computed as of 1900: nothing had happened yet, which is an answer, not an error.
    response = api.client.post(
        MOVE, json={"entity_id": "user_1", "as_of_date": "1900-01-01T00:00:00Z"}
    )
    assert response.status_code == 200, response.text


def test_a_lookback_before_year_one_does_not_overflow() -> None:
    # The audit's 500: year 1 minus a 90-day lookback raised OverflowError.
    _, params = _time_clauses("platform_sessions", 90, datetime(1, 1, 1), datetime(1, 1, 2))
    assert params["since"] == datetime.min


def test_one_bad_item_of_a_batch_of_1000_is_that_items_error(api: Api) -> None:
    requests: list[Any] = [
        {"entity_id": f"user_{i}", "prediction_type": "MOVE_PROBABILITY"} for i in range(996)
    ]
    requests[500] = {**requests[500], "as_of_date": "0001-01-01T00:00:00"}
    requests[600] = {**requests[600], "features": {"x": 1.0}, "horizon_months": True}
    requests.append(17)
    requests.append({"entity_id": "user_3"})
    requests.append({"entity_id": "ghost", "prediction_type": "CONTACT_TIMING"})
    requests.append({"entity_id": "user_4", "prediction_type": "PROPERTY_VALUE"})
    response = api.client.post("/v1/predict/batch", json={"requests": requests})
    assert response.status_code == 200, response.text
    body = response.json()
    errors = {e["index"]: e for e in body["errors"]}
    assert sorted(errors) == [500, 600, 996, 997, 998]
    assert len(body["predictions"]) == 995
    assert body["prediction_indexes"] == [i for i in range(1000) if i not in errors]
    assert errors[500]["status_code"] == 422
    assert errors[500]["entity_id"] == "user_500"
    assert "requests[500]: as_of_date" in errors[500]["detail"]
    assert "from 1900 to 2200" in errors[500]["detail"]
    assert "horizon_months" in errors[600]["detail"]
    assert errors[996]["entity_id"] is None and "an item is an object" in errors[996]["detail"]
    assert errors[997]["prediction_type"] is None and "prediction_type" in errors[997]["detail"]
    assert errors[998]["status_code"] == 404


# --- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_a_non_finite_feature_value_is_a_422(api: Api, value: bytes) -> None:
    raw = b'{"entity_id": "user_1", "features": {"doc_access_count_7d": ' + value + b"}}"
    _assert_refused(_post_raw(api.client, MOVE, raw), 422, "finite number")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b'{"entity_id": "user_1", "horizon_months": Infinity}', "finite number"),
        (b'{"entity_id": "user_1", "horizon_months": true}', "valid number"),
        (b'{"entity_id": "user_1", "horizon_months": "3"}', "valid number"),
        (b'{"entity_id": "user_1", "horizon_months": 13}', "less than or equal to 12"),
    ],
)
def test_horizon_months_is_a_finite_number_in_range(api: Api, raw: bytes, fragment: str) -> None:
    response = _post_raw(api.client, "/v1/predict/property-value", raw)
    _assert_refused(response, 422, fragment)


def test_each_route_names_its_own_model(api: Api) -> None:
    response = api.client.post(
        MOVE, json={"entity_id": "user_1", "prediction_type": "PROPERTY_VALUE"}
    )
    _assert_refused(response, 422, "does not match this route")
    response = api.client.post(MOVE, json={"entity_id": "user_1", "horizon_months": 3})
    _assert_refused(response, 422, "property-value predictions only")
    response = api.client.post(MOVE, json={"entity_id": "user_1", "entity_type": "AGENT"})
    _assert_refused(response, 422, "use USER")


# --- body size -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_limit(
    served_world: World,
    trained_models: dict[str, TrainingReport],
) -> Iterator[TestClient]:
    """The API with a 4 kB body limit."""
    settings: Settings = served_world.settings.model_copy(update={"api_max_body_bytes": 4096})
    components = _components(settings, trained_models, {n: "1" for n in ROUTES.values()})
    with TestClient(asgi(settings, components)) as client:
        yield client


def test_a_body_over_the_limit_is_a_413_before_it_is_parsed(small_limit: TestClient) -> None:
    big = b'{"entity_id": "user_1", "pad": "' + b"x" * 5000 + b'"}'
    response = _post_raw(small_limit, MOVE, big)
    _assert_refused(response, 413, "larger than 4,096 bytes", "ROIML_API_MAX_BODY_BYTES")
    assert response.headers["content-type"] == "application/json"
    # Under the limit, the same route answers as usual.
    assert small_limit.post(MOVE, json={"entity_id": "user_1"}).status_code == 200


def test_a_streamed_body_over_the_limit_is_a_413(small_limit: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"entity_id": "user_1", "pad": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    # A generator is sent chunked, with no Content-Length to judge it by.
    response = small_limit.post(MOVE, content=chunks(), headers=JSON)
    _assert_refused(response, 413, "larger than 4,096 bytes")
    batch = small_limit.post(
        "/v1/predict/batch", content=chunks(), headers=JSON
    )  # the batch route too
    assert batch.status_code == 413


@pytest.fixture(scope="module")
def live_small_limit(
    served_world: World, trained_models: dict[str, TrainingReport]
) -> Iterator[tuple[str, int]]:
    """The 4 kB-limit API served by uvicorn on a free port: what a client's connection sees."""
    settings: Settings = served_world.settings.model_copy(update={"api_max_body_bytes": 4096})
    components = _components(settings, trained_models, {n: "1" for n in ROUTES.values()})
    server = uvicorn.Server(
        uvicorn.Config(asgi(settings, components), host="127.0.0.1", port=0, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield "127.0.0.1", port
    server.should_exit = True
    thread.join(timeout=10)


def test_after_a_413_the_connection_serves_the_next_request(
    live_small_limit: tuple[str, int],
) -> None:
    """A client that sends its whole body before reading (as most do) gets the 413, not a
    reset, and its next request on the same connection is served."""
    connection = http.client.HTTPConnection(*live_small_limit, timeout=30)
    try:
        big = b'{"entity_id": "user_1", "pad": "' + b"x" * 2_000_000 + b'"}'
        connection.request("POST", MOVE, body=big, headers=JSON)
        answer = connection.getresponse()
        assert answer.status == 413 and b"larger than 4,096 bytes" in answer.read()

        def chunks() -> Iterator[bytes]:
            yield from [b" " * 100_000] * 20

        connection.request("POST", MOVE, body=chunks(), headers=JSON, encode_chunked=True)
        answer = connection.getresponse()
        assert answer.status == 413, answer.read()
        answer.read()
        bad = b'{"entity_id": "user_1", "as_of_date": "0001-01-01T00:00:00"}'
        connection.request("POST", MOVE, body=bad, headers=JSON)
        answer = connection.getresponse()
        assert answer.status == 422 and b"from 1900 to 2200" in answer.read()
        connection.request("POST", MOVE, body=b'{"entity_id": "user_1"}', headers=JSON)
        answer = connection.getresponse()
        assert answer.status == 200, answer.read()
        answer.read()
    finally:
        connection.close()


def test_the_default_limit_refuses_the_audits_8mb_body(api: Api) -> None:
    body = b'{"requests": [' + b",".join([b'{"entity_id": "user_1"}'] * 400_000) + b"]}"
    assert len(body) > 8_000_000
    response = _post_raw(api.client, "/v1/predict/batch", body)
    _assert_refused(response, 413, "larger than 1,048,576 bytes")


# --- feedback --------------------------------------------------------------------------------


def _outcome(api: Api, prediction_id: str) -> tuple[Any, ...]:
    with api.components.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT actual_value, actual_class, feedback_at FROM ml_predictions "
                "WHERE prediction_id = :p"
            ),
            {"p": prediction_id},
        ).one()
    return tuple(row)


@pytest.fixture
def prediction_id(api: Api) -> str:
    """A transaction-type prediction, logged, with no feedback yet."""
    response = api.client.post("/v1/predict/transaction-type", json={"entity_id": "user_12"})
    assert response.status_code == 200, response.text
    prediction: str = response.json()["prediction_id"]
    api.components.prediction_log.flush(timeout=5.0)
    return prediction


@pytest.mark.parametrize(
    ("raw", "status", "fragments"),
    [
        (b'{"actual_value": Infinity}', 422, ("finite number",)),
        (b'{"actual_value": NaN}', 422, ("finite number",)),
        (b'{"actual_value": -Infinity, "actual_class": "BUY"}', 422, ("finite number",)),
        (b'{"actual_class": "NOT_A_CLASS"}', 422, ("no model's class", "give the observed")),
        (b'{"actual_class": 3}', 422, ("valid string",)),
        (
            b'{"actual_value": 1, "observed_at": "9999-12-31T00:00:00Z"}',
            422,
            ("from 1900 to 2200",),
        ),
        (b'{"actual_value": 1, "observed_at": 0}', 422, ("RFC 3339",)),
        (b"{}", 422, ("give actual_value, actual_class or both",)),
        # A class, but of another model: the prediction is a transaction type.
        (b'{"actual_class": "HIGH"}', 409, ("TRANSACTION_TYPE", "BUY, SELL")),
        (b'{"actual_class": "MON-19", "actual_value": 1}', 409, ("nothing was recorded",)),
    ],
)
def test_refused_feedback_says_why_and_stores_nothing(
    api: Api, prediction_id: str, raw: bytes, status: int, fragments: tuple[str, ...]
) -> None:
    response = _post_raw(api.client, f"/v1/predictions/{prediction_id}/feedback", raw)
    _assert_refused(response, status, *fragments)
    assert _outcome(api, prediction_id) == (None, None, None)


def test_feedback_of_the_models_own_class_is_stored(api: Api, prediction_id: str) -> None:
    response = api.client.post(
        f"/v1/predictions/{prediction_id}/feedback",
        json={"actual_class": "REFINANCE", "observed_at": "2024-11-30T12:00:00+02:00"},
    )
    assert response.status_code == 200, response.text
    value, cls, at = _outcome(api, prediction_id)
    assert (value, cls) == (None, "REFINANCE")
    assert str(at).startswith("2024-11-30 10:00:00")


# --- the schema says it --------------------------------------------------------------------


def test_the_schema_states_the_limits(api: Api) -> None:
    schema = api.client.get("/api/ml/openapi.json").json()
    paths = schema["paths"]
    for route in ROUTES:
        responses = paths[f"/api/ml/v1/predict/{route}"]["post"]["responses"]
        assert {"400", "413", "422"} <= set(responses)
    feedback = paths["/api/ml/v1/predictions/{prediction_id}/feedback"]["post"]["responses"]
    assert {"409", "413", "422"} <= set(feedback)
    components = schema["components"]["schemas"]
    as_of = components["MoveProbabilityRequest"]["properties"]["as_of_date"]["anyOf"][0]
    assert as_of["format"] == "date-time" and as_of["pattern"].startswith("^(19")
    classes = components["FeedbackRequest"]["properties"]["actual_class"]["anyOf"][0]["enum"]
    assert {"HIGH", "BUY", "MON-19"} <= set(classes) and "NOT_A_CLASS" not in classes


def test_the_schema_names_each_models_inputs(
    api: Api, trained_models: dict[str, TrainingReport]
) -> None:
    """The features a route's schema requires are the served model's exact inputs."""
    schema = api.client.get("/api/ml/openapi.json").json()["components"]["schemas"]
    for kind, model in REQUEST_MODELS.items():
        features = schema[model.__name__]["properties"]["features"]["anyOf"][0]
        name = f"{kind.value.lower()}_model"
        artifact = trained_models[name].trained.artifact
        assert features["required"] == artifact.feature_names, name
        assert features["additionalProperties"] is False
