"""The circuit breaker's states: closed, open after N consecutive failures, one probe after
the cool-down, closed again on its success; and a model load that hangs, given up."""

from __future__ import annotations

import threading
import time
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
