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
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "security"))

from serving_stubs import MOVE, make_api, make_parts, migrated_engine
from tests.test_serving_security import (
    SECRET,
    TestClient,
    bearer,
    claims,
    hs256,
    make_settings,
)

from roiml.logs import (
    ContextFilter,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    current_request_id,
)
from roiml.serving.app import _Edge
from roiml.serving.metrics import class_label
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
    record = _record(request_id="r1", route="/x", status=200)
    record.msg = "two\nlines %s"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert list(parsed)[:5] == ["ts", "level", "logger", "message", "request_id"]
    assert parsed["message"] == "two\nlines b"
    assert parsed["route"] == "/x" and parsed["status"] == 200
    assert parsed["level"] == "WARNING" and parsed["logger"] == "roiml.x"
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
