"""Training the four models, each in its own process: wall time, peak RSS and test metrics.

    python -m bench models --url URL --tenant T --data-dir DIR [--every-days 14] [--runs 1]

The first child computes (or reuses) the tenant's snapshot cache under ``DIR/training``; its
time is reported apart. Each model then trains with ``roiml train --no-register --json`` so the
figures are the model's own. With ``--runs 2`` every model trains twice and the metrics are
compared: same seed and data must give the same metrics. Results go to
``bench/results/models_<tenant>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bench._child import run_measured
from roiml.models.artifact import MODEL_NAMES

RESULTS = Path(__file__).with_name("results")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench models")
    parser.add_argument("--url", default="sqlite:///data/roiml.db")
    parser.add_argument("--tenant", default="demo")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--every-days", type=int, default=14)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args(argv)
    env = dict(
        os.environ,
        ROIML_DATABASE_URL=args.url,
        ROIML_DATA_DIR=args.data_dir,
        ROIML_TENANT_ID=args.tenant,
    )
    results = []
    for name in MODEL_NAMES.values():
        runs = []
        for _ in range(args.runs):
            measured = run_measured(
                [
                    sys.executable,
                    "-m",
                    "roiml.cli.main",
                    "train",
                    "--model",
                    name,
                    "--no-register",
                    "--json",
                    "--every-days",
                    str(args.every_days),
                ],
                env,
            )
            report = json.loads(measured.stdout)[0]
            runs.append(
                {
                    "model": name,
                    "process_seconds": measured.seconds,
                    "train_seconds": report["seconds"],
                    "snapshot_seconds": report["snapshot_seconds"],
                    "peak_rss_mib": measured.peak_rss_mib,
                    "rows": report["rows"],
                    "metrics": report["metrics"],
                    "baselines": report["baselines"],
                }
            )
            print(json.dumps(runs[-1]), flush=True)
        result = runs[0]
        result["reproducible"] = all(r["metrics"] == result["metrics"] for r in runs)
        results.append(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"models_{args.tenant}.json").write_text(json.dumps(results, indent=2))
