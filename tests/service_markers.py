"""The markers a test must carry, read from what it asks for rather than kept by hand.

``make check`` runs ``-m "not slow and not postgres and not redis"``: a test that reaches
PostgreSQL or Redis, or trains on the session's model world, without its marker runs there
anyway (and needs the server, or minutes). ``conftest.py`` adds the markers at collection, before
``-m`` selects, from:

- the test's fixture closure: everything on PostgreSQL is built on ``postgres_admin_url``,
  everything on Redis on ``redis_url``, every trained-model test on ``model_world`` (a
  1,500-homeowner world, its snapshots and, for most, four trained models: minutes);
- a parameter named after the service (``"postgres"``, ``"redis"``, ``"postgres+redis"``), the
  convention of the tests that pick a backend per case with ``request.getfixturevalue``, which
  no closure shows.

A fixture fetched by ``getfixturevalue`` under any other parameter name still needs its marker
written by hand (``pytest.param(..., marks=pytest.mark.postgres)``, as in ``test_registry.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["FIXTURE_MARKERS", "markers_needed"]

# Fixture -> the marker every test depending on it (directly or through other fixtures) needs.
FIXTURE_MARKERS = {
    "postgres_admin_url": "postgres",
    "redis_url": "redis",
    "model_world": "slow",
}
_SERVICES = frozenset({"postgres", "redis"})


def markers_needed(fixturenames: Iterable[str], params: Mapping[str, object]) -> set[str]:
    """The markers for a test with this fixture closure and these parameter values."""
    needed = {FIXTURE_MARKERS[name] for name in fixturenames if name in FIXTURE_MARKERS}
    for value in params.values():
        if isinstance(value, str) and value and set(value.split("+")) <= _SERVICES:
            needed |= set(value.split("+"))
    return needed
