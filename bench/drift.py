"""Drift of 100k current rows against 100k reference rows x 84 features, beside Evidently.

roiml computes every statistic (PSI, KS with p-value, normalised Wasserstein, means, null
rates) for all columns in one call (:func:`roiml.monitoring.drift.detect_drift`); Evidently
0.7.23's ``DataDriftPreset`` runs once per method on the same data (Wasserstein at 0.1, KS at
p < 0.05, PSI at 0.2), with roiml set to the same method and threshold (no Bonferroni), and the
per-column verdicts are compared.

Evidently 0.7.23 does not import beside pandas 3, so it runs in its own virtual environment,
``.venv-evidently`` (created on first use with ``python -m venv`` and pip from PyPI; gitignored),
in a child process reading the same Parquet files. roiml's figure is the median of ``--runs``
calls in this process; Evidently's is one ``Report.run`` per method (each takes tens of
seconds). A plain NumPy sort of the same 16.8M values is timed beside them as the floor any
exact KS / Wasserstein must pay. Results go to ``bench/results/drift.json``.

The data: 70 stable columns (normal, log-normal, Poisson counts with ties, uniform) and 14
shifted ones (mean shifts of 0.05-0.3 sd, wider spreads, heavier tails, a moved count rate).
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
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from roiml.monitoring.drift import DriftPolicy, detect_drift

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("results")
EVIDENTLY_VENV = ROOT / ".venv-evidently"
EVIDENTLY_PINS = ("evidently==0.7.23", "pandas<3")
METHODS = {"wasserstein": 0.1, "ks": 0.05, "psi": 0.2}

# Runs inside .venv-evidently: one Report per method, its time and every column's value.
EVIDENTLY_CHILD = """
import json, sys, time
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

folder, method, threshold = sys.argv[1], sys.argv[2], float(sys.argv[3])
reference = pd.read_parquet(f"{folder}/reference.parquet")
current = pd.read_parquet(f"{folder}/current.parquet")
definition = DataDefinition(numerical_columns=list(reference.columns))
started = time.perf_counter()
report = Report([DataDriftPreset(method=method, threshold=threshold)])
snapshot = report.run(
    Dataset.from_pandas(current, data_definition=definition),
    Dataset.from_pandas(reference, data_definition=definition),
)
seconds = time.perf_counter() - started
values = {}
for metric in snapshot.dict()["metrics"]:
    config = metric["config"]
    if config.get("type", "").endswith("ValueDrift"):
        values[config["column"]] = metric["value"]
print("ROIML-JSON " + json.dumps({"seconds": seconds, "values": values}))
"""


def generate(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Reference and current matrices, column names, and the names of the shifted columns."""
    rng = np.random.default_rng(seed)
    columns_ref: list[np.ndarray] = []
    columns_cur: list[np.ndarray] = []
    names: list[str] = []
    shifted: list[str] = []
    kinds = ("normal", "lognormal", "poisson", "uniform")
    for i in range(70):
        kind = kinds[i % 4]
        columns_ref.append(_draw(rng, kind, rows, 0.0, 1.0))
        columns_cur.append(_draw(rng, kind, rows, 0.0, 1.0))
        names.append(f"stable_{kind}_{i:02d}")
    changes = [
        ("normal", 0.3, 1.0),
        ("normal", 0.15, 1.0),
        ("normal", 0.05, 1.0),
        ("normal", 0.0, 1.3),
        ("normal", 0.0, 1.1),
        ("lognormal", 0.2, 1.0),
        ("lognormal", 0.0, 1.4),
        ("poisson", 0.3, 1.0),
        ("poisson", 0.1, 1.0),
        ("uniform", 0.2, 1.0),
        ("uniform", 0.0, 1.5),
        ("normal", 0.25, 1.2),
        ("lognormal", 0.1, 1.0),
        ("poisson", 0.5, 1.0),
    ]
    for j, (kind, shift, scale) in enumerate(changes):
        columns_ref.append(_draw(rng, kind, rows, 0.0, 1.0))
        columns_cur.append(_draw(rng, kind, rows, shift, scale))
        name = f"shifted_{kind}_{j:02d}"
        names.append(name)
        shifted.append(name)
    return np.column_stack(columns_ref), np.column_stack(columns_cur), names, shifted


def _draw(rng: np.random.Generator, kind: str, rows: int, shift: float, scale: float) -> np.ndarray:
    if kind == "normal":
        return rng.normal(shift, scale, rows)
    if kind == "lognormal":
        return rng.lognormal(shift * 0.5, 0.5 * scale, rows)
    if kind == "poisson":
        return rng.poisson(3.0 * (1 + shift), rows).astype(np.float64)
    return rng.uniform(shift, shift + scale, rows)


def ensure_evidently() -> Path:
    """``.venv-evidently/bin/python``, building the environment on first use."""
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {EVIDENTLY_VENV} (first use): {' '.join(EVIDENTLY_PINS)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *EVIDENTLY_PINS], check=True
        )
    return python


def _evidently(python: Path, folder: Path, method: str, threshold: float) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run(
        [str(python), "-c", EVIDENTLY_CHILD, str(folder), method, str(threshold)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"evidently ({method}) failed:\n{done.stderr[-3000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("ROIML-JSON "))
    return dict(json.loads(line.removeprefix("ROIML-JSON ")))


def _time(fn: Any, runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def main(argv: list[str]) -> None:
    """Run the benchmark (``python -m bench drift``) and write its results."""
    parser = argparse.ArgumentParser(prog="python -m bench drift")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--no-evidently", action="store_true", help="time roiml alone")
    args = parser.parse_args(argv)

    reference, current, names, shifted = generate(args.rows, args.seed)
    default = DriftPolicy()
    keys = np.concatenate([reference, current]).T.copy()
    floor, _ = _time(lambda: np.sort(keys, axis=1), args.runs)
    ours, our_runs = _time(
        lambda: detect_drift(reference, current, names, default, args.threads), args.runs
    )
    ours_1, _ = _time(lambda: detect_drift(reference, current, names, default, 1), args.runs)
    verdicts = detect_drift(reference, current, names, default, args.threads)
    default_flags = sorted(n for n, d in verdicts.items() if d.drifted)
    result: dict[str, Any] = {
        "rows": args.rows,
        "features": len(names),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "roiml_all_statistics_s": {"threads": args.threads, "median": ours, "runs": our_runs},
        "roiml_one_thread_median_s": ours_1,
        "numpy_sort_same_values_median_s": floor,
        "default_policy_flags": default_flags,
        "default_policy_missed": sorted(set(shifted) - set(default_flags)),
        "default_policy_false_flags": sorted(set(default_flags) - set(shifted)),
        "methods": {},
    }
    print(
        f"roiml, all statistics, {args.rows:,} vs {args.rows:,} rows x {len(names)} features: "
        f"median {ours:.3f} s on {args.threads} threads ({ours_1:.3f} s on 1); "
        f"np.sort of the same values {floor:.3f} s"
    )
    print(
        f"default policy flags {len(default_flags)} of {len(shifted)} shifted columns, "
        f"false flags {result['default_policy_false_flags']}, "
        f"missed {result['default_policy_missed']}"
    )
    if not args.no_evidently:
        python = ensure_evidently()
        with tempfile.TemporaryDirectory(prefix="roiml-bench-drift-") as scratch:
            folder = Path(scratch)
            for name, matrix in (("reference", reference), ("current", current)):
                table = pa.table({n: pa.array(matrix[:, i]) for i, n in enumerate(names)})
                pq.write_table(table, folder / f"{name}.parquet")
            for method in args.methods:
                result["methods"][method] = _compare(
                    python, folder, method, reference, current, names, args.threads
                )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "drift.json").write_text(json.dumps(result, indent=2, default=float))


def _compare(
    python: Path,
    folder: Path,
    method: str,
    reference: np.ndarray,
    current: np.ndarray,
    names: list[str],
    threads: int,
) -> dict[str, Any]:
    threshold = METHODS[method]
    policy = DriftPolicy(
        numeric_method=method,  # type: ignore[arg-type]
        wasserstein_threshold=threshold,
        ks_pvalue=threshold,
        psi_threshold=threshold,
        bonferroni=False,
        categorical_max_levels=0,  # Evidently was told every column is numerical
    )
    ours = detect_drift(reference, current, names, policy, threads)
    theirs = _evidently(python, folder, method, threshold)
    values = theirs["values"]
    pvalue = method == "ks"
    # Evidently's rule: a distance drifts at >= threshold, a p-value below it.
    their_flags = {
        n for n in names if (values[n] < threshold if pvalue else values[n] >= threshold)
    }
    our_flags = {n for n, d in ours.items() if d.drifted}
    gaps = [abs((ours[n].statistic or 0.0) - values[n]) / max(abs(values[n]), 1e-12) for n in names]
    summary = {
        "threshold": threshold,
        "evidently_s": theirs["seconds"],
        "verdicts_agree": our_flags == their_flags,
        "only_roiml": sorted(our_flags - their_flags),
        "only_evidently": sorted(their_flags - our_flags),
        "flagged": len(our_flags),
        "max_relative_statistic_gap": max(gaps),
    }
    print(
        f"{method:>11} at {threshold}: Evidently {theirs['seconds']:.2f} s, verdicts "
        f"{'agree' if summary['verdicts_agree'] else 'DIFFER'} ({len(our_flags)} vs "
        f"{len(their_flags)} flagged), largest relative gap in the statistic "
        f"{summary['max_relative_statistic_gap']:.2g}"
    )
    return summary
