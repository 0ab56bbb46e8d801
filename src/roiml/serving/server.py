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
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from roiml.settings import Settings

__all__ = ["FrozenHeapServer", "NoDelayHttpToolsProtocol", "bind_reuseport", "serve"]


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
        access_log=False,
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

    sock = bind_reuseport(host, port)
    FrozenHeapServer(_config(get_settings(), metrics_dir)).run(sockets=[sock])


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    """Serve the API until interrupted."""
    if workers == 1:
        sock = bind_reuseport(host, port)
        FrozenHeapServer(_config(settings)).run(sockets=[sock])
        return
    metrics_dir = tempfile.mkdtemp(prefix="roiml-metrics-")
    # Read by prometheus_client when each worker imports it: set before they start.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    context = multiprocessing.get_context("spawn")
    processes: list[Any] = [
        context.Process(target=_worker, args=(host, port, metrics_dir), name=f"roiml-api-{i}")
        for i in range(workers)
    ]
    for process in processes:
        process.start()

    def stop(*_: object) -> None:
        for process in processes:
            if process.is_alive():
                process.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for process in processes:
            process.join()
    finally:
        stop()
        shutil.rmtree(metrics_dir, ignore_errors=True)
