"""The daily pipeline, step by step, each step in its own process: wall time and peak RSS.

    python -m bench pipeline --url URL --tenant T --date 2024-12-30 [--shards 4]

Runs ``roiml pipeline step`` for every step as the Airflow DAG would, then the compute steps
again as ``--shards`` shards, to show how N workers split a tenant. Results go to
``bench/results/pipeline_<tenant>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench._child import run_measured
from roiml.pipeline.steps import COMPUTE_STEPS, STEPS

RESULTS = Path(__file__).with_name("results")


def _step(env: dict[str, str], args: list[str]) -> dict[str, object]:
    measured = run_measured(
        [sys.executable, "-m", "roiml.cli.main", "pipeline", "step", *args], env
    )
    return {
        "step": " ".join(args),
        "seconds": measured.seconds,
        "peak_rss_mib": measured.peak_rss_mib,
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench pipeline")
    parser.add_argument("--url", default="sqlite:///data/roiml.db")
    parser.add_argument("--tenant", default="demo")
    parser.add_argument("--date", default="2024-12-30")
    parser.add_argument("--shards", type=int, default=4)
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="roiml-pipeline-bench-"))
    env = dict(
        os.environ,
        ROIML_DATABASE_URL=args.url,
        ROIML_DATA_DIR=str(scratch),
        ROIML_TENANT_ID=args.tenant,
    )
    results = []
    try:
        for name in STEPS:
            result = _step(env, [name, "--date", args.date, "--on-time"])
            results.append(result)
            print(json.dumps(result), flush=True)
        for name in COMPUTE_STEPS:
            for index in range(args.shards):
                result = _step(
                    env, [name, "--date", args.date, "--shard", f"{index}/{args.shards}"]
                )
                results.append(result)
                print(json.dumps(result), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    whole = [r for r in results if "--shard" not in str(r["step"])]
    summary = {
        "tenant": args.tenant,
        "total_seconds": round(sum(float(r["seconds"]) for r in whole), 1),  # type: ignore[arg-type]
        "max_peak_rss_mib": max(int(r["peak_rss_mib"]) for r in whole),  # type: ignore[call-overload]
        "steps": results,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "steps"}))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"pipeline_{args.tenant}.json").write_text(json.dumps(summary, indent=2))
