"""The OpenAPI schema says exactly what the server accepts and answers (issue 18, item 10).

schemathesis' engine, as ``st run --checks all`` drives it (examples, coverage, fuzzing and
stateful phases), over the app in process with auth on and a token that holds every scope:
schema-valid requests must be accepted, schema-violating ones refused, and every answer's
status, content type and body documented, with no 5xx. Bounded and deterministic for CI: a
fixed seed, derandomized generation, no example database, a fixed number of examples.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
import schemathesis
from pydantic import SecretStr
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events, from_schema
from starlette.testclient import TestClient
from starlette.types import ASGIApp

import test_api
from model_world import TENANT, World
from roiml.models.train import TrainingReport
from roiml.serving.app import asgi
from test_api import ROUTES, _components

served_world = test_api.served_world  # test_api's module fixture, taken by name

SECRET = "schema-fuzz-" + "k" * 32
MAX_EXAMPLES = 25
SEED = 18

# Failures that are not a schema's fault, each with why. Keyed by check and operation; the
# predicate sees the response.
_EXCUSED: dict[tuple[str, str], tuple[str, Any]] = {}


def _excuse(check: str, operation: str, why: str, when: Any = lambda body: True) -> None:
    _EXCUSED[check, operation] = (why, when)


for _route in ROUTES:
    # JSON Schema cannot say "not after now": an instant inside the documented window but
    # after the serving clock is refused (422, "is in the future") by design.
    _excuse(
        "positive_data_acceptance",
        f"POST /api/ml/v1/predict/{_route}",
        "as_of_date after the serving clock",
        lambda body: b"is in the future" in body,
    )


@dataclass
class Found:
    """One failed check: which, where, the request body and the answer."""

    check: str
    operation: str
    title: str
    message: str
    request: Any
    status: int | None
    response: bytes


@pytest.fixture(scope="module")
def authed_app(served_world: World, trained_models: dict[str, TrainingReport]) -> Iterator[ASGIApp]:
    """The API with auth on (HS256), as a deployment runs it."""
    settings = served_world.settings.model_copy(
        update={"auth_enabled": True, "jwt_secret": SecretStr(SECRET)}
    )
    components = _components(settings, trained_models, {n: "1" for n in ROUTES.values()})
    app = asgi(settings, components)
    with TestClient(app):  # runs the lifespan: models loaded, the log writer started
        yield app


def _token() -> str:
    claims = {"sub": "fuzz", "tenant_id": TENANT, "scope": "admin", "exp": int(time.time()) + 3600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def _run(app: ASGIApp) -> tuple[int, list[Found]]:
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            "checks": {"enabled": True},
            "continue-on-failure": True,
            "headers": {"Authorization": f"Bearer {_token()}"},
        }
    )
    schema = schemathesis.openapi.from_asgi("/api/ml/openapi.json", app, config=config)
    cases = 0
    found: list[Found] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.FatalError):
            raise AssertionError(f"schemathesis stopped: {event.exception!r}")
        if isinstance(event, events.NonFatalError):
            raise AssertionError(f"schemathesis could not test an operation: {event.info}")
        if not isinstance(event, events.ScenarioFinished):
            continue
        recorder = event.recorder
        cases += len(recorder.cases)
        for case_id, checks in recorder.checks.items():
            for check in checks:
                if check.failure_info is None:
                    continue
                case = recorder.cases[case_id].value
                interaction = recorder.interactions.get(case_id)
                answer = interaction.response if interaction is not None else None
                failure = check.failure_info.failure
                found.append(
                    Found(
                        check.name,
                        case.operation.label,
                        failure.title,
                        failure.message,
                        case.body,
                        answer.status_code if answer is not None else None,
                        answer.content if answer is not None else b"",
                    )
                )
    return cases, found


def test_schemathesis_with_every_check_finds_nothing(authed_app: ASGIApp) -> None:
    cases, found = _run(authed_app)
    assert cases > 500, f"only {cases} cases ran"
    unexcused = []
    for failure in found:
        excuse = _EXCUSED.get((failure.check, failure.operation))
        if excuse is None or not excuse[1](failure.response):
            unexcused.append(failure)
    distinct = {(f.check, f.operation, f.title): f for f in unexcused}
    report = "\n".join(
        f"- {check} on {operation}: {title}\n  {f.message[:300]}\n  request {f.request!r:.300}\n"
        f"  answered {f.status} {f.response[:300]!r}"
        for (check, operation, title), f in sorted(distinct.items())
    )
    assert not distinct, f"{len(distinct)} distinct failures in {cases} cases:\n{report}"
