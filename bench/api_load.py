"""The API under load, beside ``mlflow models serve`` of the same model, with ``wrk``.

    python -m bench api --data-dir DIR [--workers 2] [--duration 10]

``DIR`` must hold a demo run (``ROIML_DATA_DIR=DIR roiml demo --no-serve``): a world up to today,
fresh online features and the four models in production. The bench starts ``roiml serve`` on a
free 127.0.0.1 port and drives it with ``wrk`` (Debian's package) over many distinct homeowners:

* one request at a time (``-c1``): p50 / p99 latency of a single explained prediction;
* 16 connections: requests per second and p99;
* a batch of 1000 mixed requests: median of 10 back to back, and of 5 sent 2 s apart.

Then it serves the registry's production move model with ``mlflow models serve`` (no
explanations, no feature read) and drives it the same way, and prints both with their ratios.
Peak memory per API worker is read from ``/proc/<pid>/status`` (VmHWM). Results go to
``bench/results/api.json``.

    python -m bench api --data-dir DIR --compare before=OLD --compare after=NEW [--rounds 3]

serves each checkout (``git archive REV | tar -x -C OLD``) on the same data in turn, rounds
interleaved, and prints each one's medians over the rounds beside the ratios (last over first);
``mlflow`` is not run. Results go to ``bench/results/api_compare.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

RESULTS = Path(__file__).with_name("results")

_LUA = """
local ids = {}
for i = 1, %(users)d do ids[i] = "user_" .. (i - 1) end
local n = 0
request = function()
  n = n + 1
  local body = %(body)s
  return wrk.format("POST", "%(path)s", {["Content-Type"] = "application/json"}, body)
end
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up in {seconds} s")


def _wrk(url: str, script: str, connections: int, duration: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    threads = min(2, connections)
    run = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            handle.name,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    Path(handle.name).unlink()
    if run.stderr.strip():
        # wrk reports a broken script on stderr and then load-tests GET / instead.
        raise RuntimeError(f"wrk: {run.stderr.strip()}")
    out = run.stdout

    def ms(label: str) -> float:
        match = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
        if not match:
            return float("nan")
        return _to_ms(float(match.group(1)), match.group(2))

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    worst = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", out)
    return {
        "p50_ms": ms("50"),
        "p90_ms": ms("90"),
        "p99_ms": ms("99"),
        "requests_per_s": float(rate.group(1)) if rate else float("nan"),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "max_ms": _to_ms(float(worst.group(1)), worst.group(2)) if worst else float("nan"),
        # wrk's own report, kept so that an odd figure can be read again.
        "wrk_report": out.strip().splitlines(),
    }


def _to_ms(value: float, unit: str) -> float:
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def _peak_rss_mib(parent: int) -> list[float]:
    children = subprocess.run(
        ["pgrep", "-P", str(parent)], capture_output=True, text=True
    ).stdout.split()
    out = []
    for pid in [str(parent), *children]:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        if match:
            out.append(round(int(match.group(1)) / 1024, 1))
    return out


def _load(base: str, path: str, body: str, users: int, duration: int) -> dict[str, object]:
    script = _LUA % {"users": users, "body": body, "path": path}
    return {
        "single_c1": _wrk(base, script, 1, duration),
        "c16": _wrk(base, script, 16, duration),
    }


def _serve_and_load(
    args: argparse.Namespace, env: dict[str, str], source: str | None = None
) -> dict[str, object]:
    """``roiml serve`` (of the installed code, or of ``source``'s ``src``) under the load."""
    if source is not None:
        # Another checkout of roiml (``git archive REV | tar -x -C DIR``) on the same data.
        env = dict(env, PYTHONPATH=f"{Path(source).resolve() / 'src'}")
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "roiml.cli.main",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
        ],
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    results: dict[str, object] = {"workers": args.workers}
    try:
        _wait(f"{base}/health")
        # Substituted into _LUA as a value: a single % here (%% reached Lua and broke the script).
        move = "'{\"entity_id\": \"' .. ids[(n % #ids) + 1] .. '\"}'"
        results["roiml"] = _load(
            base, "/v1/predict/move-probability", move, args.users, args.duration
        )
        kinds = ["MOVE_PROBABILITY", "TRANSACTION_TYPE", "CONTACT_TIMING", "PROPERTY_VALUE"]
        batch = {
            "requests": [
                {"entity_id": f"user_{i % args.users}", "prediction_type": kinds[i % 4]}
                for i in range(1000)
            ]
        }
        times = []
        content = json.dumps(batch).encode()
        headers = {"Content-Type": "application/json"}
        settled = []
        with httpx.Client(base_url=base, timeout=60) as client:
            for _ in range(10):
                started = time.perf_counter()
                response = client.post("/v1/predict/batch", content=content, headers=headers)
                times.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
            # Back to back, each batch shares the CPU with the log writer storing the one
            # before (1000 rows of ~5 kB); a client sending batches now and then does not.
            for _ in range(5):
                time.sleep(2)
                started = time.perf_counter()
                response = client.post("/v1/predict/batch", content=content, headers=headers)
                settled.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
            answered = response.json()
        results["roiml_batch_1000_ms"] = statistics.median(times)
        results["roiml_batch_1000_ms_min_max"] = [min(times), max(times)]
        results["roiml_batch_1000_ms_settled"] = statistics.median(settled)
        results["roiml_batch_1000_served_errors"] = [
            len(answered["predictions"]),
            len(answered["errors"]),
        ]
        # The supervisor first, then each worker (and multiprocessing's resource tracker).
        results["roiml_peak_rss_mib_per_process"] = _peak_rss_mib(server.pid)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    return results


_COMPARED = {
    "c1_p50_ms": ("single_c1", "p50_ms"),
    "c1_p99_ms": ("single_c1", "p99_ms"),
    "c16_requests_per_s": ("c16", "requests_per_s"),
    "c16_p99_ms": ("c16", "p99_ms"),
}


def _figures(run: dict[str, object]) -> dict[str, float]:
    load = run["roiml"]
    assert isinstance(load, dict)
    out = {name: float(load[part][key]) for name, (part, key) in _COMPARED.items()}
    out["batch_1000_ms"] = float(run["roiml_batch_1000_ms"])  # type: ignore[arg-type]
    return out


def _compare(args: argparse.Namespace, env: dict[str, str]) -> dict[str, object]:
    """Each labelled checkout served in turn, ``--rounds`` times interleaved (A B A B ...).

    Interleaving puts every code through the same spells of a shared machine's load; the
    medians over rounds and their ratios (the last label over the first) are one sitting's.
    """
    labelled = [item.split("=", 1) for item in args.compare]
    runs: dict[str, list[dict[str, float]]] = {label: [] for label, _ in labelled}
    for round_ in range(args.rounds):
        for label, source in labelled:
            print(f"round {round_ + 1}/{args.rounds}: {label} ({source})", flush=True)
            runs[label].append(_figures(_serve_and_load(args, env, source)))
    medians = {
        label: {key: statistics.median(run[key] for run in each) for key in each[0]}
        for label, each in runs.items()
    }
    first, last = labelled[0][0], labelled[-1][0]
    return {
        "workers": args.workers,
        "users": args.users,
        "duration_s": args.duration,
        "rounds": runs,
        "medians": medians,
        f"ratios_{last}_over_{first}": {
            key: medians[last][key] / medians[first][key] for key in medians[first]
        },
        "targets": {"c1_p99_ms": "<= 10", "c16_requests_per_s": ">= 1000"},
        "load_average_after": os.getloadavg(),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench api")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--tenant", default="demo")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="a checkout of roiml to serve (repeat: before=DIR after=DIR); skips mlflow",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of --compare")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    env = dict(os.environ, ROIML_DATA_DIR=args.data_dir, ROIML_TENANT_ID=args.tenant)
    if args.compare:
        compared = _compare(args, env)
        print(json.dumps(compared, indent=2))
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "api_compare.json").write_text(json.dumps(compared, indent=2))
        return
    results = _serve_and_load(args, env)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "api.json").write_text(json.dumps(results, indent=2))  # kept if mlflow fails
    print(json.dumps(results, indent=2), flush=True)
    results.update(_mlflow(args, env))
    roiml, mlflow = results.get("roiml"), results.get("mlflow")
    if isinstance(roiml, dict) and isinstance(mlflow, dict):
        # roiml over mlflow: under 1 is roiml faster, except requests/s where over 1 is.
        results["ratios_roiml_over_mlflow"] = {
            "p50_c1": roiml["single_c1"]["p50_ms"] / mlflow["single_c1"]["p50_ms"],
            "p99_c1": roiml["single_c1"]["p99_ms"] / mlflow["single_c1"]["p99_ms"],
            "requests_per_s_c16": roiml["c16"]["requests_per_s"] / mlflow["c16"]["requests_per_s"],
            "p99_c16": roiml["c16"]["p99_ms"] / mlflow["c16"]["p99_ms"],
            "batch_1000": results["roiml_batch_1000_ms"] / results["mlflow_batch_1000_ms"],  # type: ignore[operator]
        }
    print(json.dumps(results, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "api.json").write_text(json.dumps(results, indent=2))


def _mlflow(args: argparse.Namespace, env: dict[str, str]) -> dict[str, object]:
    """``mlflow models serve`` of the production move model, same load, no explanations."""
    from roiml.models.artifact import ModelArtifact

    data = Path(args.data_dir)
    artifacts = sorted((data / "models" / args.tenant / "move_probability_model").glob("*"))
    if not artifacts:
        return {"mlflow": "no trained move model under the data dir"}
    names = ModelArtifact.load(artifacts[-1]).feature_names
    row = json.dumps({"dataframe_split": {"columns": names, "data": [[0.0] * len(names)]}})
    port = _free_port()
    uri = f"models:/{args.tenant}.move_probability_model@production"
    mlflow_env = dict(
        env,
        MLFLOW_TRACKING_URI=f"sqlite:///{(data / 'mlflow.db').resolve()}",
        MLFLOW_DISABLE_TELEMETRY="true",
        # mlflow execs `uvicorn` from PATH: the one beside this interpreter.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            uri,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=mlflow_env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{base}/health", 180)
        body = "'" + row.replace("'", "\\'") + "'"
        load = _load(base, "/invocations", body, args.users, args.duration)
        batch = json.dumps(
            {"dataframe_split": {"columns": names, "data": [[0.0] * len(names)] * 1000}}
        )
        times = []
        with httpx.Client(base_url=base, timeout=60) as client:
            for _ in range(10):
                started = time.perf_counter()
                client.post(
                    "/invocations", content=batch, headers={"Content-Type": "application/json"}
                ).raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
        return {
            "mlflow": load,
            "mlflow_batch_1000_ms": statistics.median(times),
            "mlflow_peak_rss_mib_per_process": _peak_rss_mib(server.pid),
        }
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
