"""The circuit breaker's states: closed, open after N consecutive failures, one probe after
the cool-down, closed again on its success; and a model load that hangs, given up."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from roiml.store.breaker import CircuitBreaker, DependencyUnavailableError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _fail() -> None:
    raise ConnectionError("refused")


def test_opens_after_consecutive_failures_and_fails_fast() -> None:
    clock = Clock()
    breaker = CircuitBreaker("redis", failures=3, cooldown=1.0, clock=clock)
    for _ in range(2):
        with pytest.raises(DependencyUnavailableError):
            breaker.call(_fail, (ConnectionError,))
    assert breaker.state == "closed"
    assert breaker.call(lambda: 1, (ConnectionError,)) == 1  # a success resets the count
    for _ in range(3):
        with pytest.raises(DependencyUnavailableError):
            breaker.call(_fail, (ConnectionError,))
    assert breaker.state == "open" and breaker.trips == 1
    called = []
    started = time.perf_counter()
    with pytest.raises(DependencyUnavailableError) as caught:
        breaker.call(lambda: called.append(1), (ConnectionError,))
    assert time.perf_counter() - started < 0.001 and not called
    assert caught.value.dependency == "redis" and caught.value.retry_after_header == "1"


def test_one_probe_after_the_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker("database", failures=1, cooldown=2.0, clock=clock)
    with pytest.raises(DependencyUnavailableError):
        breaker.call(_fail, (ConnectionError,))
    clock.now += 2.5
    assert breaker.state == "half-open"
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else, while it runs
    breaker.failure("still down")
    assert breaker.state == "open" and breaker.retry_after() == pytest.approx(2.0)
    clock.now += 2.0
    assert breaker.call(lambda: "up", (ConnectionError,)) == "up"
    assert breaker.state == "closed" and breaker.allow()


def test_an_error_that_is_not_the_dependency_frees_the_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker("database", failures=1, cooldown=1.0, clock=clock)
    with pytest.raises(DependencyUnavailableError):
        breaker.call(_fail, (ConnectionError,))
    clock.now += 1.0

    def bug() -> None:
        raise ValueError("a bad argument")

    with pytest.raises(ValueError):
        breaker.call(bug, (ConnectionError,))
    assert breaker.allow()


def test_a_model_load_that_hangs_is_given_up() -> None:
    from roiml.db.enums import ModelType
    from roiml.serving.model_cache import ModelCache, ModelUnavailableError

    release = threading.Event()

    def hung_loader(tenant: str, name: str) -> Any:
        release.wait(10)
        raise RuntimeError("never loaded")

    cache = ModelCache(hung_loader, lambda t, n: "1", 3600, load_timeout=0.1)
    started = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match=r"took over 0\.1 s"):
        cache.get("t", ModelType.MOVE_PROBABILITY)
    assert time.perf_counter() - started < 1.0
    release.set()


def test_a_hung_registry_leaves_one_thread_per_call_not_one_per_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The alias poll's probe is bounded too; while a probe or load is still hung, the next poll
    or request does not start another (one left-behind thread per call site)."""
    from roiml.db.enums import ModelType
    from roiml.serving import model_cache
    from roiml.serving.model_cache import ModelCache, ModelUnavailableError

    # No real artifact: what is loaded does not matter here, only how long loading takes.
    monkeypatch.setattr(model_cache, "prepare", lambda artifact: None)
    release = threading.Event()
    loads = {"n": 0}

    def loader(tenant: str, name: str) -> Any:
        loads["n"] += 1
        if loads["n"] > 1:  # the first load works; every later one hangs
            release.wait(10)
        return "1", SimpleNamespace(name=name, feature_names=())

    probes = {"n": 0}

    def probe(tenant: str, name: str) -> str:
        probes["n"] += 1
        release.wait(10)
        return "2"

    def threads(prefix: str) -> int:
        return sum(t.name.startswith(prefix) and t.is_alive() for t in threading.enumerate())

    cache = ModelCache(loader, probe, 0.1, load_timeout=5)
    try:
        cache.get("t", ModelType.MOVE_PROBABILITY)
        started = time.perf_counter()
        cache.refresh()  # the probe hangs: given up after the poll interval (0.1 s)
        cache.refresh()  # still hung: not probed again
        cache.refresh()
        assert time.perf_counter() - started < 1.0
        assert probes["n"] == 1
        assert threads("registry-probe-") == 1
        # Serving goes on with the version it has.
        assert cache.get("t", ModelType.MOVE_PROBABILITY).version == "1"
    finally:
        release.set()
    # A load that hangs: the next request after the cool-down is told so at once.
    release.clear()
    cache = ModelCache(loader, lambda t, n: None, 0.05, load_timeout=0.1)
    try:
        with pytest.raises(ModelUnavailableError, match=r"took over 0\.1 s"):
            cache.get("t", ModelType.CONTACT_TIMING)
        time.sleep(0.06)
        started = time.perf_counter()
        with pytest.raises(ModelUnavailableError, match="has not answered for"):
            cache.get("t", ModelType.CONTACT_TIMING)
        assert time.perf_counter() - started < 0.05
        assert threads("registry-load-") == 1
    finally:
        release.set()
