"""``roiml demo`` end to end, as ``DEMO_SERVE=0 make demo`` runs it, on a smaller world: every
step of the README's first command must pass on a fresh data directory, on whatever day the
suite runs (the demo's world ends today)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_the_demo_runs_every_step(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROIML_")}
    env["ROIML_DATA_DIR"] = str(tmp_path / "data")
    # Enough homeowners for the shift check (it skips samples under 1,000) and for the value
    # model (it needs 200 sales in its training period).
    command = [sys.executable, "-m", "roiml.cli.main", "demo", "--users", "3000", "--no-serve"]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    for step in ("1. database", "2. world", "3. features", "4. models", "5. predictions"):
        assert step in output, output[-4000:]
    assert "all rules passed" in output
    assert output.count("in production") == 4
    assert "Traceback" not in output
