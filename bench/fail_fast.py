"""What the unit tests used to assert with a stopwatch, measured here as medians and ratios.

    python -m bench fail-fast [--repeat 7] [--seconds 4] [--rate 250] [--skip-browser]

Each figure is set beside a baseline measured in the same sitting on the same machine, so the
ratio holds when the machine is busy (the absolute times do not, which is why they left the
tests):

- **prediction log, submit**: one ``submit`` of 10 records (the API's hot path), against a
  ``deque.extend`` of the same records under a lock (the least a queue can do). Was
  ``per_submit_us < 5000`` in ``tests/test_prediction_log.py``.
- **prediction log, database down**: single-record submits at ``--rate`` a second for
  ``--seconds`` while the database is a closed port, against the same load on SQLite: p50, p99
  and max of ``submit``. Was ``max(latencies) < 0.5`` in the PostgreSQL-stop test.
- **rate limiter, Redis down**: the first ``hit`` (Redis tried and refused) and the second (the
  breaker skips Redis) against a closed port, against ``MemoryRateLimiter.hit``. Was ``< 1.0 s``
  in ``tests/test_serving_security.py``.
- **registry, MLflow unreachable**: ``list_models`` refused with ``RegistryError`` against a
  closed port (with credentials in the URL as the test had it, and without), against
  ``list_models`` on the embedded (SQLite) registry. Was ``< 10 s`` in ``tests/test_registry.py``.
- **dashboard in chromium**: headless chromium drawing a rendered dashboard page (30 days, 20,000
  predictions) to a full-page screenshot, against the same chromium on ``about:blank``. Was
  ``< 30 s`` in ``tests/test_dashboard.py`` (skipped when chromium is not installed).

Prints one table and writes ``bench/results/fail_fast.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from bench._child import run_measured
from bench.dashboard import DAYS, NOW, TENANT, _median_seconds, _seed
from bench.prediction_archive import _rows

__all__ = ["main"]

RESULTS = Path(__file__).with_name("results")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _row(
    check: str, figure: str, value: float, baseline_name: str, baseline: float
) -> dict[str, Any]:
    return {
        "check": check,
        "figure": figure,
        "value": value,
        "baseline": baseline_name,
        "baseline_value": baseline,
        "ratio": float(f"{value / baseline:.3g}") if baseline > 0 else None,
    }


def _prediction_log(
    scratch: Path, repeat: int, seconds: float, rate: float
) -> list[dict[str, Any]]:
    from roiml.db.engine import make_engine
    from roiml.db.migrate import upgrade
    from roiml.serving.prediction_log import PredictionLog
    from roiml.settings import Settings

    def settings(name: str) -> Settings:
        return Settings(
            _env_file=None,
            data_dir=scratch / name,
            prediction_log_batch_size=250,
            prediction_log_flush_seconds=0.1,
        )

    up_settings = settings("up")
    up_settings.data_dir.mkdir(parents=True)
    sqlite = make_engine(up_settings.resolved_database_url)
    upgrade(sqlite)
    dead = make_engine(f"postgresql://postgres@127.0.0.1:{_closed_port()}/nowhere")
    load = int(seconds * rate)
    # Predictions as the API logs them (92 features and their explanation), each id once.
    records = iter(_rows(repeat * 1000 + 2 * load))
    rows: list[dict[str, Any]] = []
    try:
        # The hot path: 100 submits of 10 records, per submit; the writer drains in between.
        log = PredictionLog(settings("hot"), sqlite)
        batches: list[list[dict[str, Any]]] = []
        per_submit = []
        for _ in range(repeat):
            batches = [[next(records) for _ in range(10)] for _ in range(100)]
            started = time.perf_counter()
            for batch in batches:
                log.submit(batch)
            per_submit.append((time.perf_counter() - started) / len(batches))
            log.flush(timeout=60)
        log.close()
        queue: deque[dict[str, Any]] = deque()
        lock = threading.Lock()

        def extend() -> None:
            for batch in batches:
                with lock:
                    queue.extend(batch)
            queue.clear()

        floor = _median_seconds(extend, repeat) / len(batches)
        rows.append(
            _row(
                "prediction log: submit of 10 records",
                "median µs",
                round(statistics.median(per_submit) * 1e6, 1),
                "deque.extend under a lock, µs",
                round(floor * 1e6, 2),
            )
        )

        # A steady load with the database up (SQLite) and down (a closed PostgreSQL port).
        loads = {}
        for name, engine in (("up", sqlite), ("down", dead)):
            log = PredictionLog(settings(f"load-{name}"), engine, retry_max_seconds=1.0)
            latencies = []
            due = time.monotonic()
            for _ in range(load):
                item = [next(records)]
                began = time.perf_counter()
                log.submit(item)
                latencies.append(time.perf_counter() - began)
                due += 1 / rate
                time.sleep(max(0.0, due - time.monotonic()))
            log.flush(timeout=60)
            stats = log.stats()
            log.close()
            if name == "down":
                assert stats["spooled_records"] == len(latencies), stats
            latencies.sort()
            loads[name] = {
                "p50": latencies[len(latencies) // 2],
                "p99": latencies[int(len(latencies) * 0.99)],
                "max": latencies[-1],
            }
        for figure in ("p50", "p99", "max"):
            rows.append(
                _row(
                    f"prediction log: submit, database down ({int(rate)}/s)",
                    f"{figure} µs",
                    round(loads["down"][figure] * 1e6, 1),
                    f"database up, {figure} µs",
                    round(loads["up"][figure] * 1e6, 1),
                )
            )
    finally:
        sqlite.dispose()
        dead.dispose()
    return rows


def _rate_limiter(repeat: int) -> list[dict[str, Any]]:
    from roiml.serving.ratelimit import MemoryRateLimiter, RedisRateLimiter

    url = f"redis://127.0.0.1:{_closed_port()}/0"

    async def down() -> tuple[float, float]:
        limiter = RedisRateLimiter(url, per_minute=60, burst=1)
        try:
            started = time.perf_counter()
            first = await limiter.hit("t:a")
            tried = time.perf_counter()
            second = await limiter.hit("t:a")
            skipped = time.perf_counter()
        finally:
            await limiter.aclose()
        assert first.allowed and second.allowed and limiter.errors == 1
        return tried - started, skipped - tried

    measured = [asyncio.run(down()) for _ in range(repeat)]
    memory = MemoryRateLimiter(per_minute=60_000, burst=1_000_000)

    async def hits() -> None:
        for i in range(1000):
            await memory.hit(f"t:{i % 10}")

    floor = _median_seconds(lambda: asyncio.run(hits()), repeat) / 1000
    return [
        _row(
            f"rate limiter: Redis down, {which}",
            "median µs",
            round(statistics.median(m[index] for m in measured) * 1e6, 1),
            "MemoryRateLimiter.hit, µs",
            round(floor * 1e6, 2),
        )
        for index, which in enumerate(["first hit (tried, refused)", "next hit (breaker open)"])
    ]


def _registry(scratch: Path, repeat: int) -> list[dict[str, Any]]:
    from roiml.db.engine import make_engine
    from roiml.db.migrate import upgrade
    from roiml.errors import RegistryError
    from roiml.registry import ModelRegistry
    from roiml.settings import Settings

    settings = Settings(_env_file=None, data_dir=scratch / "registry")
    settings.data_dir.mkdir(parents=True)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    port = _closed_port()
    # As the test had it (credentials in the URL), and a plain closed port: a connect refused.
    offline = {
        "credentials in the URL": f"http://user:secret@127.0.0.1:{port}",
        "closed port": f"http://127.0.0.1:{port}",
    }

    def refused(uri: str) -> None:
        unreachable = settings.model_copy(update={"mlflow_tracking_uri": uri})
        try:
            ModelRegistry(unreachable, engine, "bench").list_models()
        except RegistryError:
            return
        raise AssertionError(f"an unreachable MLflow server at {uri} was not refused")

    try:
        embedded = ModelRegistry(settings, engine, "bench")
        embedded.list_models()  # creates the embedded store once, outside the timing
        baseline = _median_seconds(embedded.list_models, repeat)
        values = {
            kind: _median_seconds(lambda u=uri: refused(u), repeat) for kind, uri in offline.items()
        }
    finally:
        engine.dispose()
    return [
        _row(
            f"registry: MLflow unreachable ({kind}), list_models refused",
            "median ms",
            round(value * 1e3, 2),
            "embedded list_models, ms",
            round(baseline * 1e3, 1),
        )
        for kind, value in values.items()
    ]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _dashboard(scratch: Path, repeat: int) -> list[dict[str, Any]]:
    from roiml.db.engine import make_engine
    from roiml.db.migrate import upgrade
    from roiml.monitoring.dashboard import load_dashboard, render_page

    executable = _chromium()
    if executable is None:
        print("fail-fast: chromium is not installed; the dashboard figure is skipped")
        return []
    engine = make_engine(f"sqlite:///{scratch}/dashboard.db")
    try:
        upgrade(engine)
        _seed(engine, 20_000)
        page = scratch / "dashboard.html"
        page.write_text(render_page(load_dashboard(engine, TENANT, NOW, DAYS), base_path="/x"))
    finally:
        engine.dispose()

    def draw(url: str) -> float:
        shot = scratch / "shot.png"
        measured = run_measured(
            [
                executable,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={scratch / 'profile'}",
                "--window-size=1440,4000",
                f"--screenshot={shot}",
                url,
            ]
        )
        assert shot.stat().st_size > 0
        shot.unlink()
        return measured.seconds

    draw("about:blank")  # the first start fills the profile
    blank = statistics.median(draw("about:blank") for _ in range(repeat))
    drawn = statistics.median(draw(page.as_uri()) for _ in range(repeat))
    return [
        _row(
            "dashboard: chromium draws the page to a screenshot",
            "median s",
            round(drawn, 2),
            "chromium on about:blank, s",
            round(blank, 2),
        )
    ]


def main(argv: list[str] | None = None) -> None:
    """Run the measurements and print/write their results."""
    parser = argparse.ArgumentParser(prog="python -m bench fail-fast", description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=4.0, help="of steady submit load")
    parser.add_argument("--rate", type=float, default=250.0, help="submits a second")
    parser.add_argument("--skip-browser", action="store_true")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        rows += _prediction_log(scratch, args.repeat, args.seconds, args.rate)
        rows += _rate_limiter(args.repeat)
        rows += _registry(scratch, args.repeat)
        if not args.skip_browser:
            rows += _dashboard(scratch, max(1, args.repeat // 2))
    width = max(len(r["check"]) for r in rows) + 2
    header = f"{'check':<{width}}{'figure':<12}{'value':>10}  "
    print(header + f"{'baseline':<32}{'value':>10}{'ratio':>8}")
    for r in rows:
        ratio = "" if r["ratio"] is None else r["ratio"]
        print(
            f"{r['check']:<{width}}{r['figure']:<12}{r['value']:>10}  "
            f"{r['baseline']:<32}{r['baseline_value']:>10}{ratio:>8}"
        )
    RESULTS.mkdir(exist_ok=True)
    report = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "load_average": os.getloadavg(),
        "repeat": args.repeat,
        "results": rows,
    }
    (RESULTS / "fail_fast.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
