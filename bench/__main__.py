"""``python -m bench [NAME ...]``: run the named benchmarks (all by default)."""

from __future__ import annotations

import argparse

from bench import (
    api_load,
    cli_startup,
    comparables,
    dashboard,
    drift,
    fail_fast,
    feature_engine,
    models_train,
    online_read,
    pipeline_daily,
    pit_join,
    prediction_archive,
    prediction_log_drain,
    real_sales_value,
    replay,
    world_generate,
)

BENCHMARKS = {
    "world": world_generate.main,
    "features": feature_engine.main,
    "online": online_read.main,
    "pit": pit_join.main,
    "pipeline": pipeline_daily.main,
    "models": models_train.main,
    "real-sales": real_sales_value.main,
    "api": api_load.main,
    "drift": drift.main,
    "dashboard": dashboard.main,
    "archive": prediction_archive.main,
    "log-drain": prediction_log_drain.main,
    "fail-fast": fail_fast.main,
    "replay": replay.main,
    "cli": cli_startup.main,
    "comparables": comparables.main,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], default=list(BENCHMARKS))
    args, rest = parser.parse_known_args()
    for name in args.names or list(BENCHMARKS):
        BENCHMARKS[name](rest)


if __name__ == "__main__":
    main()
