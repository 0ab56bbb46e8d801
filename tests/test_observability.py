"""Observability by convention (issue 21): JSON logs with a request id, one access-log line per
request, and Prometheus series with conventional names, a model-version label and bounded
labels.

The app here is the security tests' (real auth, rate limiter, health, metrics and model-health
routes over stub models, on a migrated SQLite file) wrapped in the API's outermost layer
(``_Edge``), which gives each request its id and writes its access line.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

sys.path.insert(0, str(Path(__file__).parent / "security"))

from serving_stubs import MOVE, make_api, make_parts, migrated_engine
from tests.test_api import ROUTES, _components, served_world  # noqa: F401 (a fixture)
from tests.test_serving_security import (
    SECRET,
    TestClient,
    bearer,
    claims,
    hs256,
    make_settings,
)

from model_world import World
from roiml.db.engine import tenant_session
from roiml.db.enums import EntityType, ModelStatus, ModelType
from roiml.db.ml_tables import MLFeatureValue, MLModel, MLMonitoring
from roiml.logs import (
    ContextFilter,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    current_request_id,
)
from roiml.models.train import TrainingReport
from roiml.serving.app import _Edge, asgi
from roiml.serving.metrics import ServingMetrics, class_label, render
from roiml.serving.monitoring_gauges import (
    TOP_FEATURES,
    MonitoringGauges,
    TenantState,
    read_tenant,
)
from roiml.serving.ratelimit import MemoryRateLimiter
from roiml.serving.request_context import request_id_of
from roiml.serving.security import current_tenant
from roiml.settings import Settings

MODEL_HEALTH = f"/api/ml/v1/models/{MOVE}/health"


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """Every record logged while the test runs, as the JSON lines production writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter({"tenant": current_tenant}))
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def records(stream: io.StringIO) -> list[dict[str, object]]:
    """The JSON objects written so far, one per line (every line must be one)."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def access_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [r for r in records(stream) if r["logger"] == "roiml.access"]


def ours(stream: io.StringIO) -> str:
    """The lines roiml wrote (not the test client's, which logs the URL it asked for)."""
    return "\n".join(json.dumps(r) for r in records(stream) if str(r["logger"]).startswith("roiml"))


def client_for(tmp_path: Path, settings: Settings, *, access_log: bool = True) -> TestClient:
    parts = make_parts(
        settings, migrated_engine(tmp_path), MemoryRateLimiter(600_000, 100_000), ["acme"]
    )
    app = make_api(settings, parts)

    @app.get("/api/ml/v1/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str | None]:
        # A record logged deep in a request names it without being handed its id.
        logging.getLogger("roiml.test").info("looking at a thing")
        return {"request_id": current_request_id()}

    return TestClient(_Edge(app, parts.metrics, access_log=access_log))


# --- the request id ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        b"4bf92f3577b34da6a3ce929d0e0e4736",
        b"01HGW2N7EHJVGFM7X6P8Z9Q4RT",
        b"c0ffee-42.req:7_a",
        b"x" * 128,
    ],
)
def test_a_sane_request_id_is_kept(given: bytes) -> None:
    assert request_id_of([(b"x-request-id", given)]) == given.decode()


@pytest.mark.parametrize(
    "given",
    [
        b"",
        b"x" * 129,
        b"has space",
        b'quote"d',
        b"new\nline",
        b"tab\there",
        "caf\u00e9".encode(),
        b"\xff\xfe",
        b'{"level":"ERROR"}',
        b"Bearer eyJhbGciOiJIUzI1NiJ9.e30.x",
    ],
)
def test_an_insane_request_id_is_replaced(given: bytes) -> None:
    made = request_id_of([(b"x-request-id", given)])
    assert len(made) == 32 and all(c in "0123456789abcdef" for c in made)
    assert made != request_id_of([(b"x-request-id", given)]), "a new id every time"


def test_the_id_is_answered_and_on_every_record_of_the_request(
    tmp_path: Path, lines: io.StringIO
) -> None:
    with client_for(tmp_path, make_settings(auth_enabled=False, jwt_secret=None)) as client:
        given = client.get("/v1/things/t-1", headers={"X-Request-ID": "abc-123"})
        made = client.get("/v1/things/t-2", headers={"X-Request-ID": "no good"})
    assert given.headers["x-request-id"] == "abc-123" == given.json()["request_id"]
    new_id = made.headers["x-request-id"]
    assert new_id != "no good" and new_id == made.json()["request_id"]
    inside = [r for r in records(lines) if r["logger"] == "roiml.test"]
    assert [r["request_id"] for r in inside] == ["abc-123", new_id]
    assert "no good" not in lines.getvalue()
    # Outside a request there is none.
    assert current_request_id() is None


def test_one_access_line_per_request_with_the_route_template(
    tmp_path: Path, lines: io.StringIO
) -> None:
    token = hs256(claims(tenant_id="acme", scope="predict"))
    with client_for(tmp_path, make_settings()) as client:
        answer = client.get(MODEL_HEALTH + "?secret=s3cr3t", headers=bearer(token))
        assert answer.status_code == 200, answer.text
        client.get("/v1/things/user_12345")
        client.get("/no/such/path")
    logged = access_lines(lines)
    assert [(r["method"], r["route"], r["status"]) for r in logged] == [
        ("GET", "/api/ml/v1/models/{model_name}/health", 200),
        ("GET", "/api/ml/v1/things/{thing_id}", 200),
        ("GET", "unmatched", 404),
    ]
    first = logged[0]
    assert first["tenant"] == "acme"
    assert first["request_id"] == answer.headers["x-request-id"]
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0
    assert first["client"] == "testclient"
    assert first["level"] == "INFO"
    assert str(first["ts"]).endswith("Z")
    assert first["message"].startswith(  # type: ignore[union-attr]
        "GET /api/ml/v1/models/{model_name}/health 200 "
    )
    text = ours(lines)
    # Neither the query string, nor an id in the path, nor the token reaches the log.
    assert "s3cr3t" not in text and "user_12345" not in text
    assert token not in text and SECRET not in text


def test_a_refused_token_is_logged_without_it_or_a_traceback(
    tmp_path: Path, lines: io.StringIO
) -> None:
    forged = hs256(claims(tenant_id="acme"), secret="another-secret-" + "x" * 40)
    with client_for(tmp_path, make_settings()) as client:
        assert client.get(MODEL_HEALTH, headers=bearer(forged)).status_code == 401
        assert (
            client.get(MODEL_HEALTH, headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code
            == 401
        )
    logged = access_lines(lines)
    assert [r["status"] for r in logged] == [401, 401]
    assert all(r["tenant"] is None for r in logged)
    text = ours(lines)
    assert forged not in text and "dXNlcjpwYXNz" not in text
    assert "Traceback" not in text and not any("exception" in r for r in records(lines))


def test_the_access_log_can_be_turned_off(tmp_path: Path, lines: io.StringIO) -> None:
    settings = make_settings(auth_enabled=False, jwt_secret=None)
    with client_for(tmp_path, settings, access_log=False) as client:
        answer = client.get("/v1/things/1")
    assert answer.headers["x-request-id"], "the id is answered either way"
    assert access_lines(lines) == []


# --- the formats ---------------------------------------------------------------------------------


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("roiml.x", logging.WARNING, __file__, 1, "a %s", ("b",), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_have_stable_keys_and_escape_newlines() -> None:
    record = _record(request_id="r1", route="/x", status=200, color_message="\x1b[1mb\x1b[0m")
    record.msg = "two\nlines %s"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert list(parsed)[:5] == ["ts", "level", "logger", "message", "request_id"]
    assert parsed["message"] == "two\nlines b"
    assert parsed["route"] == "/x" and parsed["status"] == 200
    assert parsed["level"] == "WARNING" and parsed["logger"] == "roiml.x"
    assert "color_message" not in parsed, "uvicorn's coloured copy is not written"
    # Outside a request the key is there, null.
    assert json.loads(JsonFormatter().format(_record()))["request_id"] is None


def test_a_logged_exception_is_one_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "roiml.x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert len(line.splitlines()) == 1
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_text_lines_name_the_request() -> None:
    assert (
        TextFormatter().format(_record(request_id="r1")).endswith(" WARNING roiml.x [req r1]: a b")
    )
    assert TextFormatter().format(_record()).endswith(" WARNING roiml.x: a b")


def test_configure_logging_installs_one_handler_and_silences_uvicorns_access_log() -> None:
    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        configure_logging("INFO", "json")
        handler = configure_logging("DEBUG", "text")
        ours = [h for h in root.handlers if h.get_name() == "roiml"]
        assert ours == [handler]
        assert isinstance(handler.formatter, TextFormatter)
        assert root.level == logging.DEBUG
        assert logging.getLogger("uvicorn.access").disabled
        assert logging.getLogger("uvicorn.error").propagate
    finally:
        for h in list(root.handlers):
            if h.get_name() == "roiml":
                root.removeHandler(h)
        root.handlers[:] = before[0]
        root.setLevel(before[1])
        logging.getLogger("uvicorn.access").disabled = False


def test_the_settings_default_to_text_and_an_access_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROIML_LOG_FORMAT", raising=False)
    monkeypatch.delenv("ROIML_ACCESS_LOG", raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.log_format == "text" and settings.access_log is True
    monkeypatch.setenv("ROIML_LOG_FORMAT", "json")
    monkeypatch.setenv("ROIML_ACCESS_LOG", "false")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.log_format == "json" and settings.access_log is False
    monkeypatch.setenv("ROIML_LOG_FORMAT", "yaml")
    with pytest.raises(ValueError, match="log_format"):
        Settings(_env_file=None)  # type: ignore[call-arg]


# --- metric labels -------------------------------------------------------------------------------


def test_contact_timing_classes_are_counted_by_weekday() -> None:
    weekdays = {"MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"}
    slots = [f"{day}-{hour:02d}" for day in sorted(weekdays) for hour in range(24)]
    labels = {class_label("contact_timing_model", slot) for slot in slots}
    assert labels == weekdays, "168 slots, 7 label values"
    assert class_label("contact_timing_model", "garbage") == "other"
    assert class_label("contact_timing_model", None) == ""
    assert class_label("move_probability_model", "HIGH") == "HIGH"
    assert class_label("transaction_type_model", "REFINANCE") == "REFINANCE"
    assert class_label("property_value_model", None) == ""


def test_metrics_carry_the_model_version_and_the_conventional_names(
    tmp_path: Path,
) -> None:
    token = hs256(claims(tenant_id="acme", scope="predict"))
    with client_for(tmp_path, make_settings()) as client:
        client.post("/serve-stub?served=2", headers=bearer(token))
        text = client.get("/metrics", headers=bearer(token)).text
    assert (
        'roiml_predictions_total{model="move_probability_model",model_version="1",'
        'predicted_class="HIGH",tenant="acme"} 2.0' in text
    )
    assert "roiml_http_request_duration_seconds_bucket{" in text
    assert 'route="/serve-stub"' in text
    assert "roiml_http_request_seconds" not in text
    assert "roiml_prediction_duration_seconds" in text


# --- drift, decay and freshness gauges ---------------------------------------------------------

NOW = datetime(2026, 12, 7, 12, 0, 0)
TIMING = "contact_timing_model"


def _drift(score: float, drifted: bool) -> dict[str, object]:
    return {"method": "psi", "statistic": score * 0.2, "threshold": 0.2, "drifted": drifted}


def seed_monitoring(engine: Engine, tenant: str) -> None:
    """Two periods of the move model (the newer one drifting on 2 of 15 inputs and decayed),
    one unjudged period of the timing model, and two materialised days of two feature sets."""
    day = timedelta(days=1)
    newest = datetime(2026, 12, 6)
    features = {f"f{i:02d}": _drift(0.1 + i / 100, False) for i in range(13)}
    features |= {"mortgage_rate": _drift(3.0, True), "listing_views_7d": _drift(1.5, True)}
    with tenant_session(engine, tenant) as session:
        session.add_all(
            [
                MLMonitoring(
                    tenant_id=tenant,
                    model_name=MOVE,
                    model_version="3",
                    period_start=newest - day,
                    period_end=newest,
                    status="OK",
                    feature_drift={"old_feature": _drift(9.0, True)},
                    drift_detected=False,
                ),
                MLMonitoring(
                    tenant_id=tenant,
                    model_name=MOVE,
                    model_version="4",
                    period_start=newest,
                    period_end=newest + day,
                    status="DRIFT_DECAY",
                    feature_drift=features,
                    drift_detected=True,
                    performance_metrics={
                        "realised": {"auc": 0.61},
                        "estimated": {"auc": 0.7},
                        "decayed": True,
                    },
                ),
                MLMonitoring(
                    tenant_id=tenant,
                    model_name=TIMING,
                    model_version="2",
                    period_start=newest,
                    period_end=newest + day,
                    status="TOO_FEW_PREDICTIONS",
                    feature_drift={},
                    drift_detected=False,
                ),
                MLModel(
                    tenant_id=tenant,
                    name=MOVE,
                    version="4",
                    model_type=ModelType.MOVE_PROBABILITY,
                    status=ModelStatus.DEPLOYED,
                    metrics={"auc": 0.74},
                ),
            ]
        )
        for feature_set, as_of in (
            ("behavioral", newest - day),
            ("behavioral", newest),
            ("market", newest - day),
        ):
            session.add(
                MLFeatureValue(
                    tenant_id=tenant,
                    entity_type=EntityType.USER,
                    entity_id="user_1",
                    feature_set=feature_set,
                    as_of=as_of,
                    values={},
                )
            )


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
    }


def test_the_gauges_say_what_monitoring_found(tmp_path: Path) -> None:
    engine = migrated_engine(tmp_path)
    seed_monitoring(engine, "acme")
    seed_monitoring(engine, "globex")
    check_gauges(engine, "acme")
    engine.dispose()


@pytest.mark.postgres
def test_the_gauges_read_postgresql_under_row_level_security(app_engine: Engine) -> None:
    """The same reads as the application role: its own tenant's rows only."""
    tenant, other = f"obs_{uuid.uuid4().hex[:8]}", f"obs_{uuid.uuid4().hex[:8]}"
    seed_monitoring(app_engine, tenant)
    seed_monitoring(app_engine, other)
    check_gauges(app_engine, tenant)


def check_gauges(engine: Engine, tenant: str) -> None:
    gauges = MonitoringGauges(
        lambda tenant: read_tenant(engine, tenant, ["behavioral", "market", "temporal"]),
        lambda: [tenant],
        lambda: NOW,
    )
    gauges.refresh()
    registry = CollectorRegistry()
    registry.register(gauges)
    got = samples(registry)

    assert {dict(labels)["tenant"] for _, labels in got} == {tenant}

    def value(name: str, **labels: str) -> float | None:
        return got.get((name, tuple(sorted({"tenant": tenant, **labels}.items()))))

    move = {"model": MOVE, "model_version": "4"}
    assert value("roiml_model_drifting", **move) == 1.0
    assert value("roiml_model_drifted_features", **move) == 2.0
    assert value("roiml_model_decayed", **move) == 1.0
    assert value("roiml_model_monitoring_age_seconds", **move) == 12 * 3600
    assert value("roiml_model_performance", **move, metric="auc", kind="realised") == 0.61
    assert value("roiml_model_performance", **move, metric="auc", kind="estimated") == 0.7
    assert value("roiml_model_performance", **move, metric="auc", kind="registered") == 0.74
    scores = {
        dict(labels)["feature"]: v
        for (name, labels), v in got.items()
        if name == "roiml_feature_drift_score"
    }
    # Bounded: the 10 most drifted of 15 inputs, the drifting ones among them; the older
    # period's feature is not the model's current state.
    assert len(scores) == TOP_FEATURES
    assert scores["mortgage_rate"] == pytest.approx(3.0)
    assert scores["listing_views_7d"] == pytest.approx(1.5)
    assert "old_feature" not in scores and "f00" not in scores
    # Not judged (too few predictions): its age, but no verdict either way.
    timing = {"model": TIMING, "model_version": "2"}
    assert value("roiml_model_monitoring_age_seconds", **timing) == 12 * 3600
    assert value("roiml_model_drifting", **timing) is None
    assert value("roiml_model_decayed", **timing) is None
    # Freshness: the newest as_of of each set; a set never materialised has no series.
    assert value("roiml_feature_freshness_seconds", feature_set="behavioral") == 36 * 3600
    assert value("roiml_feature_freshness_seconds", feature_set="market") == 60 * 3600
    assert value("roiml_feature_freshness_seconds", feature_set="temporal") is None


def test_a_failed_read_keeps_the_last_values() -> None:
    reads: list[str] = []

    def read(tenant: str) -> TenantState:
        reads.append(tenant)
        if len(reads) > 1:
            raise OSError("database away")
        return TenantState(features_as_of={"market": NOW - timedelta(hours=2)})

    gauges = MonitoringGauges(read, lambda: ["acme"], lambda: NOW)
    gauges.refresh()
    gauges.refresh()  # fails: logged, the value stays
    registry = CollectorRegistry()
    registry.register(gauges)
    key = ("roiml_feature_freshness_seconds", (("feature_set", "market"), ("tenant", "acme")))
    assert samples(registry)[key] == 7200


def test_metrics_show_a_tenant_only_its_own_gauges(tmp_path: Path) -> None:
    def read(tenant: str) -> TenantState:
        return TenantState(features_as_of={"market": NOW - timedelta(hours=1)})

    settings = make_settings()
    parts = make_parts(
        settings, migrated_engine(tmp_path), MemoryRateLimiter(600_000, 100_000), ["acme"]
    )
    gauges = MonitoringGauges(read, lambda: ["acme", "globex"], lambda: NOW)
    gauges.refresh()
    parts.metrics.add_collector("monitoring", gauges)
    parts.metrics.add_collector("monitoring", gauges)  # again: replaced, not a duplicate
    with TestClient(make_api(settings, parts)) as client:
        acme = client.get("/metrics", headers=bearer(hs256(claims(tenant_id="acme")))).text
        public = client.get("/metrics").text
    assert 'roiml_feature_freshness_seconds{feature_set="market",tenant="acme"} 3600.0' in acme
    assert "globex" not in acme
    assert "# TYPE roiml_model_drifting gauge" in public and 'tenant="' not in public


def test_the_gauges_render_in_multiprocess_mode(tmp_path: Path) -> None:
    metrics = ServingMetrics(CollectorRegistry())
    gauges = MonitoringGauges(
        lambda tenant: TenantState(features_as_of={"market": NOW}), lambda: ["acme"], lambda: NOW
    )
    gauges.refresh()
    metrics.add_collector("monitoring", gauges)
    text = render(metrics, str(tmp_path), None, all_tenants=True).decode()
    assert 'roiml_feature_freshness_seconds{feature_set="market",tenant="acme"} 0.0' in text


# --- the app as served: four models, real artifacts ----------------------------------------------


def test_the_served_app_counts_by_version_and_logs_each_request(
    served_world: World,  # noqa: F811 (test_api's fixture, imported above)
    trained_models: dict[str, TrainingReport],
    lines: io.StringIO,
) -> None:
    """Every route of the real app over the trained models: each answer counted under the
    version that gave it (the contact-timing class as its weekday), each request one access
    line with its id, and the gauges read from the world's warm store in the background."""
    versions = {name: "7" for name in ROUTES.values()}
    components = _components(served_world.settings, trained_models, versions)
    with TestClient(asgi(served_world.settings, components)) as client:
        for route in ROUTES:
            answer = client.post(
                f"/v1/predict/{route}",
                json={"entity_id": "user_3"},
                headers={"X-Request-ID": route},
            )
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-request-id"] == route
        deadline = time.monotonic() + 30
        while "roiml_feature_freshness_seconds{" not in (text := client.get("/metrics").text):
            assert time.monotonic() < deadline, "the gauges were never read"
            time.sleep(0.1)
    for name in ROUTES.values():
        assert (
            f'roiml_prediction_duration_seconds_count{{model="{name}",model_version="7"}} 1.0'
            in text
        )
    timing = re.search(
        r'roiml_predictions_total\{model="contact_timing_model",model_version="7",'
        r'predicted_class="([^"]*)",tenant="m"\} 1.0',
        text,
    )
    assert timing is not None and timing.group(1) in {
        "MON",
        "TUE",
        "WED",
        "THU",
        "FRI",
        "SAT",
        "SUN",
    }
    # The day before the world's end was materialised (as of its midnight); now is 09:00 at
    # the end: 33 hours.
    assert 'roiml_feature_freshness_seconds{feature_set="market",tenant="m"} 118800.0' in text
    assert "# TYPE roiml_model_drifting gauge" in text
    served = [r for r in access_lines(lines) if str(r["route"]).startswith("/api/ml/v1/predict/")]
    assert [(r["request_id"], r["status"], r["tenant"]) for r in served] == [
        (route, 200, "m") for route in ROUTES
    ]
