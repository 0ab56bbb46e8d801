"""The API says when it extrapolates past the tenant's data, and refuses past a limit (issue 19).

Unit tests of the gap and the per-tenant cache; the data end read on SQLite and on PostgreSQL
(as the application role, under row-level security); then the API over the shared trained world
with its clock pinned 0, 200 and 400 days past the world's data: the field in single and batch
answers and in the log, the refusal (nothing logged), and a batch mixing the three.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, text

import test_api
from model_world import SERVING_NOW, TENANT, WORLD_END, World
from roiml.db.engine import make_engine, tenant_session
from roiml.db.enums import PropertyType, TransactionType
from roiml.db.source_models import Property, Search, Transaction
from roiml.models.train import TrainingReport
from roiml.serving.app import asgi
from roiml.serving.components import Components
from roiml.serving.extrapolation import (
    LIMIT_SETTING,
    DataEnds,
    extrapolation_days,
    refusal,
    tenant_data_end,
)
from test_api import ROUTES, _components

served_world = test_api.served_world  # test_api's module fixture, taken by name

LIMIT = 365
# The world's events lie in [start, WORLD_END): its data end on the day before WORLD_END, so
# they are fresh through WORLD_END itself.
FRESH_THROUGH = WORLD_END


# ------------------------------------------------------------------------------ the gap


def test_the_gap_counts_from_the_day_after_the_data_end() -> None:
    end = datetime(2015, 5, 14, 13, 0)
    assert extrapolation_days(datetime(2015, 5, 14, 18, 0), end) is None
    assert extrapolation_days(datetime(2015, 5, 15, 23, 59), end) is None  # the next morning's
    assert extrapolation_days(datetime(2015, 5, 16, 0, 0), end) == 1
    assert extrapolation_days(datetime(2026, 12, 7, 9, 0), end) == 4224
    assert extrapolation_days(datetime(2014, 1, 1), end) is None
    assert extrapolation_days(datetime(2026, 12, 7), None) is None  # no dated rows


@given(
    end=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1)),
    later=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=20_000)),
    more=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)),
)
def test_the_gap_is_whole_days_and_grows_with_the_date(
    end: datetime, later: timedelta, more: timedelta
) -> None:
    asked = end + later
    gap = extrapolation_days(asked, end)
    expected = (asked.date() - end.date()).days - 1
    assert gap == (expected if expected >= 1 else None)
    further = extrapolation_days(asked + more, end)
    assert (further or 0) >= (gap or 0)


def test_the_refusal_names_the_gap_the_limit_the_setting_and_a_way_out() -> None:
    detail = refusal(datetime(2026, 12, 7, 9), datetime(2015, 5, 14, 13), 4224, 365, "kc")
    assert "4224 days" in detail and "365 days" in detail and LIMIT_SETTING in detail
    assert "2015-05-14" in detail and "as_of_date on or before 2016-05-14" in detail


# ------------------------------------------------------------------------------ the cache


class _Reads:
    """A data-end reader that counts its calls, can fail, and can be slow."""

    def __init__(self, values: list[datetime | Exception | None], delay: float = 0.0) -> None:
        self.values = values
        self.delay = delay
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, tenant: str) -> datetime | None:
        with self.lock:
            value = self.values[min(self.calls, len(self.values) - 1)]
            self.calls += 1
        time.sleep(self.delay)
        if isinstance(value, Exception):
            raise value
        return value


def _wait_for(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the background refresh did not run"
        time.sleep(0.01)


def test_the_data_end_is_read_once_then_refreshed_in_the_background() -> None:
    first, second = datetime(2024, 11, 30, 23), datetime(2024, 12, 1, 23)
    reads = _Reads([first, second], delay=0.05)
    now = [0.0]
    ends = DataEnds(reads, refresh_seconds=300, monotonic=lambda: now[0])
    try:
        assert ends.get("a") == first and reads.calls == 1
        now[0] = 299.0
        assert ends.get("a") == first and reads.calls == 1  # cached: no read
        now[0] = 301.0
        started = time.perf_counter()
        assert ends.get("a") == first  # stale while the refresh runs
        assert time.perf_counter() - started < 0.04  # the request did not wait for the read
        _wait_for(lambda: ends.get("a") == second)
        assert reads.calls == 2
    finally:
        ends.close()


def test_a_failed_read_answers_unflagged_and_is_tried_again() -> None:
    later = datetime(2024, 11, 30)
    reads = _Reads([ConnectionError("database away"), later])
    now = [0.0]
    ends = DataEnds(reads, refresh_seconds=300, retry_seconds=30, monotonic=lambda: now[0])
    try:
        assert ends.get("a") is None
        now[0] = 10.0
        assert ends.get("a") is None and reads.calls == 1  # not before the retry
        now[0] = 31.0
        ends.get("a")
        _wait_for(lambda: ends.get("a") == later)
    finally:
        ends.close()


def test_concurrent_first_requests_read_once() -> None:
    reads = _Reads([datetime(2024, 11, 30)], delay=0.1)
    ends = DataEnds(reads)
    got: list[datetime | None] = []
    threads = [threading.Thread(target=lambda: got.append(ends.get("a"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ends.close()
    assert reads.calls == 1 and got == [datetime(2024, 11, 30)] * 8


# ------------------------------------------------------------------------------ the read


def _seed(engine: Engine, tenant: str, last: datetime) -> None:
    """A home bought, a search and two closings for ``tenant``, the latest at ``last``."""
    with tenant_session(engine, tenant) as session:
        session.add(
            Property(
                property_id="p1",
                tenant_id=tenant,
                owner_user_id="u1",
                market_id="m1",
                property_type=PropertyType.SINGLE_FAMILY,
                purchased_at=last - timedelta(days=900),
                purchase_price=300_000.0,
            )
        )
        session.add(
            Search(
                tenant_id=tenant,
                user_id="u1",
                searched_at=last - timedelta(days=3),
                market_id="m1",
                results_count=4,
            )
        )
        for closed in (last - timedelta(days=400), last):
            session.add(
                Transaction(
                    tenant_id=tenant,
                    user_id="u1",
                    property_id="p1",
                    transaction_type=TransactionType.SELL,
                    opened_at=closed - timedelta(days=40),
                    closed_at=closed,
                    price=350_000.0,
                )
            )


def _check_data_end(engine: Engine, reader: Engine, tenant: str, other: str) -> None:
    _seed(engine, tenant, datetime(2015, 5, 14, 13, 30))
    _seed(engine, other, datetime(2024, 1, 2, 9, 0))
    assert tenant_data_end(reader, tenant) == datetime(2015, 5, 14, 13, 30)
    assert tenant_data_end(reader, other) == datetime(2024, 1, 2, 9, 0)
    assert tenant_data_end(reader, f"{tenant}_none") is None


def test_the_data_end_on_sqlite(sqlite_engine: Engine, tenant: str) -> None:
    _check_data_end(sqlite_engine, sqlite_engine, tenant, f"{tenant}_b")


def test_the_data_end_on_postgres_under_row_level_security(
    postgres_engine: Engine, app_engine: Engine, tenant: str
) -> None:
    _check_data_end(postgres_engine, app_engine, tenant, f"{tenant}_b")


# ------------------------------------------------------------------------------ the API


@dataclass
class Api:
    client: TestClient
    components: Components
    moment: list[datetime]

    def at(self, day: date) -> None:
        """Pin the serving clock to 09:00 of ``day``."""
        self.moment[0] = datetime.combine(day, datetime.min.time()) + timedelta(hours=9)

    def logged(self, prediction_id: str) -> float | None:
        assert self.components.prediction_log.flush(timeout=10)
        with self.components.engine.connect() as conn:
            value: float | None = conn.execute(
                text("SELECT extrapolation_days FROM ml_predictions WHERE prediction_id = :p"),
                {"p": prediction_id},
            ).scalar_one()
        return value

    def logged_count(self, entity: str) -> int:
        assert self.components.prediction_log.flush(timeout=10)
        with self.components.engine.connect() as conn:
            count: int = conn.execute(
                text("SELECT count(*) FROM ml_predictions WHERE entity_id = :e"), {"e": entity}
            ).scalar_one()
        return count


@pytest.fixture(scope="module")
def api(served_world: World, trained_models: dict[str, TrainingReport]) -> Iterator[Api]:
    settings = served_world.settings.model_copy(update={"api_max_extrapolation_days": LIMIT})
    components = _components(settings, trained_models, {n: "1" for n in ROUTES.values()})
    moment = [SERVING_NOW]
    components.clock = lambda: moment[0]
    with TestClient(asgi(settings, components)) as client:
        yield Api(client, components, moment)


def test_the_worlds_data_end_is_the_day_before_its_end(served_world: World) -> None:
    engine = make_engine(served_world.settings.resolved_database_url)
    end = tenant_data_end(engine, TENANT)
    engine.dispose()
    assert end is not None and end.date() == WORLD_END - timedelta(days=1)


def test_not_extrapolating_is_null_in_the_answer_and_the_log(api: Api) -> None:
    api.at(FRESH_THROUGH)
    response = api.client.post("/v1/predict/move-probability", json={"entity_id": "user_31"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["extrapolation_days"] is None
    assert api.logged(body["prediction_id"]) is None


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_within_the_limit_the_answer_and_the_log_name_the_gap(api: Api, route: str) -> None:
    api.at(FRESH_THROUGH + timedelta(days=200))
    response = api.client.post(f"/v1/predict/{route}", json={"entity_id": "user_32"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["extrapolation_days"] == 200
    assert api.logged(body["prediction_id"]) == 200.0


def test_beyond_the_limit_is_refused_and_nothing_is_logged(api: Api) -> None:
    api.at(FRESH_THROUGH + timedelta(days=400))
    before = api.logged_count("user_33")
    response = api.client.post("/v1/predict/property-value", json={"entity_id": "user_33"})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "400 days" in detail and f"{LIMIT} days" in detail and LIMIT_SETTING in detail
    assert (FRESH_THROUGH + timedelta(days=LIMIT)).isoformat() in detail
    assert api.logged_count("user_33") == before


def test_given_features_are_not_judged(api: Api) -> None:
    api.at(FRESH_THROUGH + timedelta(days=400))
    move = next(
        loaded
        for (_, kind), loaded in api.components.models.loaded().items()
        if kind.value == "MOVE_PROBABILITY"
    )
    features = dict.fromkeys(move.artifact.feature_names, 0.0)
    response = api.client.post(
        "/v1/predict/move-probability", json={"entity_id": "user_34", "features": features}
    )
    assert response.status_code == 200, response.text
    assert response.json()["extrapolation_days"] is None


def test_a_batch_mixes_the_three_item_by_item(api: Api) -> None:
    api.at(FRESH_THROUGH + timedelta(days=400))
    within = datetime.combine(FRESH_THROUGH + timedelta(days=100), datetime.min.time())
    requests = [
        # Not extrapolating: as of a day the data cover.
        {"entity_id": "user_35", "prediction_type": "MOVE_PROBABILITY",
         "as_of_date": "2024-06-01T00:00:00Z"},
        # Within the limit: as of 100 days past the data.
        {"entity_id": "user_36", "prediction_type": "PROPERTY_VALUE",
         "as_of_date": within.isoformat() + "Z"},
        # Beyond: now, 400 days past.
        {"entity_id": "user_37", "prediction_type": "TRANSACTION_TYPE"},
        {"entity_id": "user_38", "prediction_type": "CONTACT_TIMING",
         "as_of_date": (within + timedelta(days=10)).isoformat() + "Z"},
    ]  # fmt: skip
    before = api.logged_count("user_37")
    response = api.client.post("/v1/predict/batch", json={"requests": requests})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["prediction_indexes"] == [0, 1, 3]
    gaps = [p["extrapolation_days"] for p in body["predictions"]]
    assert gaps == [None, 100, 110]
    [error] = body["errors"]
    assert error["index"] == 2 and error["status_code"] == 422
    assert "400 days" in error["detail"] and LIMIT_SETTING in error["detail"]
    logged = [api.logged(p["prediction_id"]) for p in body["predictions"]]
    assert logged == [None, 100.0, 110.0]
    assert api.logged_count("user_37") == before


def test_the_schema_documents_the_field_and_the_refusal(api: Api) -> None:
    schema = api.client.get("/api/ml/openapi.json").json()
    field = schema["components"]["schemas"]["PredictionResponse"]["properties"]
    assert "extrapolation_days" in field
    assert LIMIT_SETTING in field["extrapolation_days"]["description"]
    route = schema["paths"]["/api/ml/v1/predict/move-probability"]["post"]["responses"]["422"]
    assert LIMIT_SETTING in route["description"]


def test_a_primed_tenant_is_read_in_the_background_once() -> None:
    reads = _Reads([datetime(2024, 11, 30)], delay=0.1)
    ends = DataEnds(reads)
    try:
        started = time.perf_counter()
        ends.prime("a")
        assert time.perf_counter() - started < 0.05  # the caller does not wait
        assert ends.get("a") == datetime(2024, 11, 30)  # a request during the read waits for it
        assert ends.get("a") == datetime(2024, 11, 30) and reads.calls == 1
    finally:
        ends.close()
