"""A circuit breaker per dependency (Redis, the database): a dead one costs microseconds.

Closed, every call goes through; after ``failures`` consecutive failures it opens, and every
call fails at once with :class:`DependencyUnavailableError` (no connect, no timeout) until
``cooldown`` seconds have passed; then one call is let through as a probe (half-open): its
success closes the breaker, its failure opens it for another cool-down. Calls are bounded by
their clients' own timeouts (socket timeouts for Redis, the engine's for the database), so a
probe never hangs the breaker.

The store sits under serving: the online store and the prediction vectors use it, and the API
maps :class:`DependencyUnavailableError` to 503 with ``Retry-After``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from sqlalchemy import Engine, event
from sqlalchemy.exc import InterfaceError, OperationalError

from roiml.errors import RoimlError

__all__ = ["CircuitBreaker", "DependencyUnavailableError", "guard_engine"]

T = TypeVar("T")
State = Literal["closed", "open", "half-open"]


class DependencyUnavailableError(RoimlError):
    """A dependency (``dependency``: "redis", "database") cannot answer now: it failed, timed
    out, or its breaker is open. ``retry_after`` is when to try again, in seconds."""

    def __init__(self, dependency: str, detail: str, retry_after: float = 1.0) -> None:
        super().__init__(f"{dependency} is unavailable ({detail}); retry in a moment")
        self.dependency = dependency
        self.retry_after = retry_after

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` in whole seconds, at least 1."""
        return str(max(1, math.ceil(self.retry_after)))


class CircuitBreaker:
    """Counts consecutive failures of one dependency and short-circuits it while open.

    Thread-safe. The closed path costs one attribute read before the call and one after it,
    so the breaker adds nothing measurable to a healthy request.
    """

    def __init__(
        self,
        name: str,
        *,
        failures: int = 3,
        cooldown: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Open ``name``'s breaker after ``failures`` consecutive failures, for ``cooldown``
        seconds before a probe."""
        if failures < 1 or cooldown <= 0:
            raise ValueError("a breaker needs failures >= 1 and cooldown > 0")
        self.name = name
        self.failures = failures
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._count = 0
        self._opened_at: float | None = None
        self._probing = False
        self.last_error: str | None = None
        # How often it opened: for tests and the figures in docs/API.md.
        self.trips = 0

    @property
    def state(self) -> State:
        """``closed``, ``open`` (failing fast) or ``half-open`` (a probe may go through)."""
        opened = self._opened_at
        if opened is None:
            return "closed"
        if self._probing or self._clock() - opened >= self.cooldown:
            return "half-open"
        return "open"

    def retry_after(self) -> float:
        """Seconds until the next probe (the cool-down when closed)."""
        opened = self._opened_at
        if opened is None:
            return self.cooldown
        return max(0.0, opened + self.cooldown - self._clock())

    def allow(self) -> bool:
        """Whether a call may go now; True in half-open for the one probe only."""
        if self._opened_at is None:
            return True
        with self._lock:
            opened = self._opened_at
            if opened is None:
                return True
            if self._probing or self._clock() - opened < self.cooldown:
                return False
            self._probing = True
            return True

    def success(self) -> None:
        """Record a call that answered: closes the breaker."""
        if self._count == 0 and self._opened_at is None:
            return
        with self._lock:
            self._count = 0
            self._opened_at = None
            self._probing = False
            self.last_error = None

    def failure(self, error: BaseException | str) -> None:
        """Record a failed call: opens the breaker at the threshold, or again after a probe."""
        with self._lock:
            self._count += 1
            self.last_error = error if isinstance(error, str) else _describe(error)
            if self._probing or (self._opened_at is None and self._count >= self.failures):
                if self._opened_at is None:
                    self.trips += 1
                self._opened_at = self._clock()
                self._probing = False

    def unavailable(self, detail: str | None = None) -> DependencyUnavailableError:
        """The error a short-circuited (or failed) call raises."""
        reason = detail or f"circuit open after {self.last_error or 'failures'}"
        return DependencyUnavailableError(self.name, reason, self.retry_after() or self.cooldown)

    def call(
        self,
        fn: Callable[[], T],
        failures: tuple[type[BaseException], ...],
    ) -> T:
        """``fn()`` through the breaker: :class:`DependencyUnavailableError` at once while
        open, or when ``fn`` raises one of ``failures`` (recorded as a failure)."""
        if not self.allow():
            raise self.unavailable()
        try:
            result = fn()
        except failures as exc:
            self.failure(exc)
            raise self.unavailable(_describe(exc)) from exc
        except BaseException:
            # Not the dependency's fault (a bad argument, a bug): a probe must not stay taken.
            if self._probing:
                with self._lock:
                    self._probing = False
            raise
        self.success()
        return result


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def guard_engine(engine: Engine, breaker: CircuitBreaker) -> None:
    """Put every connect and statement of ``engine`` behind ``breaker``: while it is open they
    raise :class:`DependencyUnavailableError` at once, so every user of the engine (the
    prediction's reads, the prediction log's writer, the health check, feedback) stops paying
    a connect or statement timeout for a database that is down. Any answer of the server, an
    error of the statement's own included, counts as the database being up."""

    def refuse() -> None:
        if not breaker.allow():
            raise breaker.unavailable()

    @event.listens_for(engine, "do_connect")
    def _connecting(*_: Any) -> None:
        refuse()

    @event.listens_for(engine, "connect")
    def _connected(*_: Any) -> None:
        breaker.success()

    @event.listens_for(engine, "before_cursor_execute")
    def _executing(*_: Any) -> None:
        refuse()

    @event.listens_for(engine, "after_cursor_execute")
    def _executed(*_: Any) -> None:
        breaker.success()

    @event.listens_for(engine, "handle_error")
    def _failed(context: Any) -> None:
        error = context.sqlalchemy_exception
        if context.is_disconnect or isinstance(error, (OperationalError, InterfaceError)):
            breaker.failure(context.original_exception)
        else:
            breaker.success()
