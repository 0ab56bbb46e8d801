"""CLI start-up: how long ``roiml`` takes to print its help and to run a light verb.

    python -m bench cli [--runs 5]

Each command runs ``--runs`` times as a fresh child process (the installed ``roiml`` script beside
this interpreter, so Python's start-up and the script's imports are both counted), on a scratch
data directory whose SQLite database was migrated once beforehand. Reported per command: the
median wall seconds, the median CPU seconds (user + system of the child; on a busy machine wall
time also counts waiting for a core, CPU time does not), and each median over its target's
(issue 17: help under 1 s, a light verb under 2 s). Results go to
``bench/results/cli_startup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("results")
HELP_TARGET_SECONDS = 1.0
VERB_TARGET_SECONDS = 2.0
# (argv after ``roiml``, target seconds): the help pages, then two verbs that touch the database.
COMMANDS: tuple[tuple[tuple[str, ...], float | None], ...] = (
    (("--help",), HELP_TARGET_SECONDS),
    (("models", "--help"), HELP_TARGET_SECONDS),
    (("models", "list", "--help"), HELP_TARGET_SECONDS),
    (("features", "--help"), HELP_TARGET_SECONDS),
    # Their options come from light modules (roiml.ingest.options, roiml.pipeline.step_names).
    (("data", "--help"), HELP_TARGET_SECONDS),
    (("pipeline", "--help"), HELP_TARGET_SECONDS),
    (("models", "list"), VERB_TARGET_SECONDS),
    # The listing as it was before it read the database's mirror: MLflow's client (no target).
    (("models", "list", "--from-mlflow"), None),
    (("db", "current"), VERB_TARGET_SECONDS),
)


def _roiml() -> str:
    """The ``roiml`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("roiml")
    if not script.exists():
        raise SystemExit(f"{script} not found: install the project first (make demo does)")
    return str(script)


def _time_child(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``argv``; raises if it fails."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        # Output to a file, not a pipe: a long help page must not block the child on a full pipe.
        child = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
        # wait4 reports this child's own CPU time (RUSAGE_CHILDREN would sum every run so far).
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        if status != 0:
            out.seek(0)
            raise RuntimeError(f"{' '.join(argv)} failed:\n{out.read().decode()}")
    return wall, usage.ru_utime + usage.ru_stime


def measure(runs: int) -> list[dict[str, object]]:
    """Median wall and CPU seconds of each command in :data:`COMMANDS` over ``runs`` runs."""
    roiml = _roiml()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="roiml-cli-bench-") as data_dir:
        # Only the scratch settings: the caller's ROIML_* and .env must not pick another database.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROIML_")}
        env.update(
            ROIML_DATA_DIR=data_dir,
            ROIML_DATABASE_URL=f"sqlite:///{data_dir}/roiml.db",
            ROIML_MLFLOW_TRACKING_URI=f"sqlite:///{data_dir}/mlflow.db",
        )
        _time_child([roiml, "db", "upgrade"], env)
        for args, target in COMMANDS:
            timings = [_time_child([roiml, *args], env) for _ in range(runs)]
            wall = statistics.median(t[0] for t in timings)
            cpu = statistics.median(t[1] for t in timings)
            rows.append(
                {
                    "command": "roiml " + " ".join(args),
                    "runs": runs,
                    "median_wall_seconds": round(wall, 3),
                    "median_cpu_seconds": round(cpu, 3),
                    "target_seconds": target,
                    "wall_over_target": round(wall / target, 2) if target else None,
                    "cpu_over_target": round(cpu / target, 2) if target else None,
                }
            )
    return rows


def main(argv: list[str]) -> None:
    """Measure, print a table, write ``bench/results/cli_startup.json``."""
    parser = argparse.ArgumentParser(prog="python -m bench cli", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="Runs per command (median of them).")
    args = parser.parse_args(argv)
    rows = measure(args.runs)
    print(f"{'command':<36} {'wall s':>8} {'cpu s':>8} {'target':>7} {'wall/t':>7} {'cpu/t':>7}")
    for row in rows:
        print(
            f"{row['command']:<36} {row['median_wall_seconds']:>8} {row['median_cpu_seconds']:>8} "
            f"{row['target_seconds'] or '-':>7} {row['wall_over_target'] or '-':>7} "
            f"{row['cpu_over_target'] or '-':>7}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cli_startup.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
