"""The markers conftest.py adds at collection: from fixture closures and backend parameters."""

from __future__ import annotations

import pytest

from service_markers import markers_needed


@pytest.mark.parametrize(
    ("fixtures", "params", "expected"),
    [
        # Every PostgreSQL fixture is built on postgres_admin_url: its closure names it.
        (["settings", "postgres_url", "postgres_admin_url", "postgres_engine"], {}, {"postgres"}),
        (["tmp_path", "redis_url"], {}, {"redis"}),
        (["postgres_admin_url", "redis_url"], {}, {"postgres", "redis"}),
        (["trained_models", "model_world", "tmp_path_factory"], {}, {"slow"}),
        (["settings", "sqlite_engine", "tmp_path"], {}, set()),
        # A backend chosen per case with request.getfixturevalue: named after the service.
        (["request", "settings"], {"backend": "postgres"}, {"postgres"}),
        (["request"], {"backend": "redis"}, {"redis"}),
        (["request"], {"backend": "postgres+redis"}, {"postgres", "redis"}),
        (["request"], {"backend": "sqlite"}, set()),
        # Other values that merely mention a service are not a backend.
        (["request"], {"url": "postgresql://postgres@127.0.0.1:1/x"}, set()),
        (["request"], {"phrase": "redis down", "count": 3, "empty": ""}, set()),
    ],
)
def test_markers_follow_fixtures_and_backend_parameters(
    fixtures: list[str], params: dict[str, object], expected: set[str]
) -> None:
    assert markers_needed(fixtures, params) == expected


def test_collected_items_carry_the_markers(request: pytest.FixtureRequest) -> None:
    """Whatever this session collected: each item has every marker its closure and parameters
    call for (conftest.py added the missing ones before ``-m`` selected)."""
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        for name in markers_needed(getattr(item, "fixturenames", ()), params):
            assert item.get_closest_marker(name) is not None, (item.nodeid, name)
