"""What an optional extra leaves out is a clean error naming the extra, never a traceback."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from roiml.cli.main import app


def test_tune_without_optuna_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import optuna` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "optuna", None)
    monkeypatch.delitem(sys.modules, "roiml.models.tune", raising=False)
    result = CliRunner().invoke(app, ["tune", "--model", "move_probability_model"])
    assert result.exit_code != 0
    assert "pip install 'roiml[tune]'" in " ".join(result.output.split())
    assert "Traceback" not in result.output
