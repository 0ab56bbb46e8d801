"""``roiml serve``: uvicorn, one process per worker, each with its own SO_REUSEPORT socket.

Two choices here are measured, not folklore (bench/api_load.py):

* ``uvicorn --workers N`` hands every worker one shared, pre-bound socket, and connections
  accepted that way never get ``TCP_NODELAY``: each kept-alive response then waits on Nagle
  and delayed ACKs, ~40 ms (uvicorn issue #3149). Here every worker binds its own
  ``SO_REUSEPORT`` socket (the kernel spreads connections), and the HTTP protocol sets
  ``TCP_NODELAY`` on every connection it is handed, whichever way it was accepted.
* With several workers, Prometheus runs in multi-process mode over a shared directory, so
  ``/metrics`` adds up every process.
* Once the app has started, its heap (models, explanation tables, imported modules: hundreds of
  thousands of objects) is moved out of the collector's reach with ``gc.freeze()``; otherwise
  every full collection walks all of it, a pause of several milliseconds that lands on whichever
  request allocated last and dominates the p99. The GIL switch interval drops from 5 ms to 0.2 ms,
  so the event loop is not starved for a whole interval while a thread (prediction log writer,
  batch pool) holds the GIL.
* Logging is roiml's, in every process (:func:`configure_logging`): ``ROIML_LOG_FORMAT`` text
  or JSON, the request id on every record, and one access-log line per request written by the
  app (``roiml.access``, ``ROIML_ACCESS_LOG``); uvicorn's own access log is off and its
  dictConfig is not applied (``log_config=None``), so its messages go through the same handler.
* With several workers the ``roiml serve`` process supervises them and starts a new one when
  one dies, with a backoff; and one instance serves a port: ``SO_REUSEPORT`` would let a second
  instance bind beside the first without an error and take a share of its connections, so
  :func:`claim_address` refuses to start on an address already served.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import gc
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from contextlib import suppress
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from roiml.errors import ConfigurationError
from roiml.logs import configure_logging as configure_log_handler
from roiml.serving.security import current_tenant
from roiml.serving.supervisor_state import status_path, supervisor_status
from roiml.settings import Settings

__all__ = [
    "AddressClaim",
    "AddressInUseError",
    "FrozenHeapServer",
    "NoDelayHttpToolsProtocol",
    "bind_reuseport",
    "claim_address",
    "configure_logging",
    "serve",
    "supervisor_status",
]

log = logging.getLogger(__name__)


class AddressInUseError(ConfigurationError):
    """The address ``roiml serve`` was asked for is served already."""


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with Nagle off on every connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


class FrozenHeapServer(uvicorn.Server):
    """uvicorn's server that, once the app's startup has run, freezes the heap built so far out
    of the garbage collector's generations and shortens the GIL switch interval."""

    # The interpreter's default is 5 ms. Each time the request thread lets the GIL go (a socket
    # wait, a LightGBM or SQLite call), the prediction-log writer may take it for a whole
    # interval; a request does that several times. Measured under wrk at one connection:
    # p99 ~9.5 ms at 1 ms, ~5.5 ms at 0.2 ms, 16 connections no slower.
    switch_interval = 0.0002

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start serving, then freeze what startup allocated."""
        await super().startup(sockets=sockets)
        # Collect first, so garbage from loading models is freed rather than frozen forever.
        gc.collect()
        gc.freeze()
        sys.setswitchinterval(self.switch_interval)


def bind_reuseport(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` that other processes may bind too.

    It is not listening yet: the server calls ``listen()`` once the app's startup (loading the
    models) is done. The kernel spreads connections only over *listening* sockets of a
    ``SO_REUSEPORT`` group, so a worker still starting gets none; a socket listening from the
    start queued its share of connections until startup ended (a first request of ~1.8 s, the
    one-connection p99 of a bench started right after the first worker answered).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def configure_logging(settings: Settings) -> None:
    """This process's logging as ``settings`` ask (level, text or JSON), each record carrying
    the request id and the tenant of the request it was emitted for.

    MLflow, imported when the first model loads, gives its own loggers a handler of its own
    (plain text, not propagated) unless told not to: its lines then broke the JSON stream.
    Set here, before the workers are spawned, so they inherit it; SQLAlchemy keeps its own
    WARNING default, so no statement is logged, and Alembic (MLflow's store creating its
    tables: ~80 INFO lines on a new file) is held at WARNING, as MLflow itself held it.
    """
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    configure_log_handler(
        settings.log_level, settings.log_format, fields={"tenant": current_tenant}
    )
    alembic = logging.getLogger("alembic")
    alembic.setLevel(max(logging.WARNING, alembic.getEffectiveLevel()))


def _config(settings: Settings, metrics_dir: str | None = None) -> uvicorn.Config:
    from roiml.serving.app import asgi

    # uvicorn believes X-Forwarded-For from 127.0.0.1 unless told otherwise, and the rate
    # limiter keys on the address it resolves: a local client rotating the header was a new
    # client each request. Only the configured proxies are believed; none by default.
    proxies = [p.strip() for p in settings.trusted_proxies.split(",") if p.strip()]
    return uvicorn.Config(
        asgi(settings, multiprocess_dir=metrics_dir),
        http=NoDelayHttpToolsProtocol,
        loop="uvloop",
        lifespan="on",
        # The app writes one access line per request (route template, tenant, request id);
        # uvicorn's would repeat it with the raw path. Its dictConfig would give its loggers
        # handlers of their own, outside the configured format.
        access_log=False,
        log_config=None,
        log_level=settings.log_level.lower(),
        timeout_keep_alive=30,
        backlog=2048,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies,
    )


def _worker(host: str, port: int, metrics_dir: str) -> None:
    # A spawned worker reads the same environment and .env as its parent did; settings are not
    # pickled across, since secrets serialise masked.
    from roiml.settings import get_settings

    settings = get_settings()
    configure_logging(settings)
    sock = bind_reuseport(host, port)
    FrozenHeapServer(_config(settings, metrics_dir)).run(sockets=[sock])


class AddressClaim:
    """This process's claim to serve ``host:port``: an exclusive ``flock`` on
    ``<data_dir>/serve-<host>-<port>.lock``, held until :meth:`release` or the process ends."""

    def __init__(self, path: Path | None, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    def release(self) -> None:
        """Give the address up (the lock file stays: deleting it would race the next claim)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def claim_address(settings: Settings, host: str, port: int) -> AddressClaim:
    """Refuse to serve ``host:port`` if something serves it already, else claim it.

    Every worker binds with ``SO_REUSEPORT``, so a second ``roiml serve`` on the same port would
    bind without error and silently take a share of the connections. Two checks: a bind without
    ``SO_REUSEPORT`` fails while any process listens there (another instance, whatever its data
    directory, or another program); and the lock under the data directory covers two instances
    of one deployment starting together, before either listens.
    """
    if port == 0:
        return AddressClaim(None, None)  # an ephemeral port is never shared
    name = f"serve-{host.replace(':', '_').replace('/', '_')}-{port}.lock"
    path = settings.data_dir / name
    fd: int | None = None
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        log.warning("cannot open %s (%s); relying on the port check alone", path, exc)
    if fd is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise AddressInUseError(
                f"another roiml serve (pid {holder}) already serves {host}:{port} from this data "
                "directory; stop it first, or serve on another --port"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    try:
        _probe_bind(host, port)
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise
    return AddressClaim(path, fd)


def _probe_bind(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR only: a port still in TIME_WAIT from a stopped instance is free to take.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise AddressInUseError(
                f"{host}:{port} is already served (by another roiml serve or another program); "
                "stop it first, or serve on another --port"
            ) from None


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    """Serve the API until interrupted; refuse an address something serves already.

    This process supervises the workers, one included: a worker that dies is started again,
    after a pause that doubles while workers keep dying young (see :class:`_Supervisor`). The
    workers are spawned and read their settings from the environment, as this process did.
    """
    configure_logging(settings)
    claim = claim_address(settings, host, port)
    try:
        metrics_dir = tempfile.mkdtemp(prefix="roiml-metrics-")
        # Read by prometheus_client when each worker imports it: set before they start.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        status = status_path(settings, os.getpid())
        try:
            _Supervisor(host, port, workers, metrics_dir, status).run()
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            status.unlink(missing_ok=True)
    finally:
        claim.release()


class _Supervisor:
    """Starts the workers, restarts any that dies, stops them all on SIGTERM or SIGINT.

    A worker that dies is replaced after ``RESTART_DELAY`` seconds, doubled for each worker
    death in the last ``CRASH_WINDOW`` seconds (at most ``MAX_DELAY``): a worker killed once
    (out of memory, a stray SIGKILL) is back within a second, while one that fails at every
    start does not spin. Each death and restart is logged. What the dead worker had answered is
    in its prediction-log journal, which the surviving workers and its replacement replay.
    """

    RESTART_DELAY = 0.5
    MAX_DELAY = 30.0
    CRASH_WINDOW = 60.0

    def __init__(
        self, host: str, port: int, workers: int, metrics_dir: str, status: Path | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.metrics_dir = metrics_dir
        self.context = multiprocessing.get_context("spawn")
        self.slots: list[Any] = [None] * workers
        self.due: dict[int, float] = {}  # slot -> when to start its next worker
        self.deaths: deque[float] = deque()
        self.stopping = False
        self.status = status
        self.restarts = 0
        self.last_exit: dict[str, Any] | None = None

    def run(self) -> None:
        """Supervise until a stop signal, then stop the workers."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        try:
            for slot in range(len(self.slots)):
                self._start(slot)
            self._write_status()
            while not self.stopping:
                alive = [p.sentinel for p in self.slots if p is not None and p.is_alive()]
                timeout = 1.0
                if self.due:
                    timeout = max(0.0, min(min(self.due.values()) - time.monotonic(), 1.0))
                if alive:
                    multiprocessing.connection.wait(alive, timeout)
                else:
                    time.sleep(timeout)
                self._reap()
                now = time.monotonic()
                for slot, at in list(self.due.items()):
                    if at <= now and not self.stopping:
                        del self.due[slot]
                        self._start(slot)
                        self._write_status()
        finally:
            self._terminate()

    def _start(self, slot: int) -> None:
        process = self.context.Process(
            target=_worker,
            args=(self.host, self.port, self.metrics_dir),
            name=f"roiml-api-{slot}",
        )
        process.start()
        self.slots[slot] = process

    def _reap(self) -> None:
        now = time.monotonic()
        for slot, process in enumerate(self.slots):
            if process is None or process.is_alive() or self.stopping:
                continue
            process.join()
            self.slots[slot] = None
            with suppress(Exception):
                # Its live gauges stop counting in /metrics; its counters stay, as they should.
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(process.pid, self.metrics_dir)  # type: ignore[no-untyped-call]
            self.deaths.append(now)
            while self.deaths and self.deaths[0] < now - self.CRASH_WINDOW:
                self.deaths.popleft()
            delay = min(self.RESTART_DELAY * 2 ** (len(self.deaths) - 1), self.MAX_DELAY)
            self.due[slot] = now + delay
            self.restarts += 1
            self.last_exit = {
                "worker": slot,
                "pid": process.pid,
                "exit": _exit_status(process.exitcode),
                "at": time.time(),
            }
            self._write_status()
            log.warning(
                "roiml serve: worker %d (pid %s) exited with %s; starting a new one in %.1f s",
                slot,
                process.pid,
                _exit_status(process.exitcode),
                delay,
            )

    def _write_status(self) -> None:
        if self.status is None:
            return
        alive = sum(1 for p in self.slots if p is not None and p.is_alive())
        state = {
            "pid": os.getpid(),
            "workers": len(self.slots),
            "alive": alive,
            "restarting": len(self.due),
            "restarts": self.restarts,
            "last_exit": self.last_exit,
        }
        partial = self.status.with_suffix(".partial")
        try:
            partial.write_text(json.dumps(state))
            partial.replace(self.status)
        except OSError as exc:
            log.warning("cannot write the supervisor's status to %s: %s", self.status, exc)

    def _stop(self, *_: object) -> None:
        self.stopping = True
        for process in self.slots:
            if process is not None and process.is_alive():
                process.terminate()

    def _terminate(self) -> None:
        self._stop()
        deadline = time.monotonic() + 30.0
        for process in self.slots:
            if process is None:
                continue
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()


def _exit_status(code: int | None) -> str:
    if code is not None and code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"code {code}"
