"""World generation: wall time, rows per second and peak memory, SQLite and PostgreSQL.

Each size runs ``roiml world generate`` in a child process (so peak RSS is that run's alone),
against a fresh SQLite file and a fresh PostgreSQL database. Results go to
``bench/results/world_generate.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from sqlalchemy import text

from bench._child import run_measured
from roiml.db.engine import make_engine

RESULTS = Path(__file__).with_name("results")


def _run(users: int, url: str, data_dir: Path, years: int) -> dict[str, object]:
    env = dict(os.environ, ROIML_DATABASE_URL=url, ROIML_DATA_DIR=str(data_dir))
    roiml = [sys.executable, "-m", "roiml.cli.main"]
    subprocess.run([*roiml, "db", "upgrade"], env=env, check=True, capture_output=True)
    end = f"{2022 + years}-12-31"  # the last simulated day: --end is inclusive
    measured = run_measured(
        [*roiml, "world", "generate", "--users", str(users), "--end", end, "--seed", "42"], env
    )
    seconds = measured.seconds
    report = json.loads((data_dir / "world" / "demo" / "truth" / "world.json").read_text())
    rows = sum(report["rows"].values())
    return {
        "users": users,
        "seconds": round(seconds, 1),
        "rows": rows,
        "rows_per_second": round(rows / seconds),
        "peak_rss_mib": measured.peak_rss_mib,
        "steps": report["seconds"],
        "rows_per_table": report["rows"],
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench world")
    parser.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--years", type=int, default=2)
    parser.add_argument(
        "--postgres-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="a superuser URL; a scratch database is created next to it",
    )
    args = parser.parse_args(argv)
    results = []
    for users in sorted(args.users):
        for backend in args.backends:
            scratch = Path(tempfile.mkdtemp(prefix="roiml-bench-"))
            try:
                if backend == "sqlite":
                    result = _run(users, f"sqlite:///{scratch / 'world.db'}", scratch, args.years)
                else:
                    name = f"roiml_bench_{uuid.uuid4().hex[:8]}"
                    admin = make_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
                    with admin.connect() as conn:
                        conn.execute(text(f'CREATE DATABASE "{name}"'))
                    url = admin.url.set(database=name).render_as_string(hide_password=False)
                    try:
                        result = _run(users, url, scratch, args.years)
                    finally:
                        with admin.connect() as conn:
                            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                        admin.dispose()
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            result["backend"] = backend
            results.append(result)
            print(
                f"{backend:9s} {users:>9,} users  {result['seconds']:>7}s  "
                f"{result['rows']:>12,} rows  {result['rows_per_second']:>9,} rows/s  "
                f"peak {result['peak_rss_mib']} MiB  steps {result['steps']}",
                flush=True,
            )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "world_generate.json").write_text(json.dumps(results, indent=2))
