"""The layers of docs/ARCHITECTURE.md hold: the import-linter contract of pyproject.toml is kept
by the code, and breaks when a module imports a layer above it or two modules import each
other."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(source: Path, config: Path) -> subprocess.CompletedProcess[str]:
    # The package is found on PYTHONPATH first, so a copy of src/ is what gets analysed.
    env = {**os.environ, "PYTHONPATH": str(source)}
    return subprocess.run(
        [str(LINT), str(config), "--no-cache"],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_code_keeps_the_layers_and_has_no_cycles() -> None:
    result = _lint(ROOT / "src", ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("src")
    shutil.copytree(
        ROOT / "src" / "roiml",
        target / "roiml",
        ignore=shutil.ignore_patterns("__pycache__", "*.parquet", "*.yaml"),
    )
    return target


@pytest.mark.parametrize(
    ("module", "line", "said"),
    [
        # An arrow up: the feature frame importing the API's schemas.
        (
            "features/frame.py",
            "import roiml.serving.schemas  # noqa",
            [
                "roiml.features is not allowed to import roiml.serving",
                "roiml.features.frame -> roiml.serving.schemas",
            ],
        ),
        # A cycle: pipeline/steps.py imports pipeline/runs.py, which would import it back.
        (
            "pipeline/runs.py",
            "import roiml.pipeline.steps  # noqa",
            ["No cycles are allowed in roiml.pipeline"],
        ),
    ],
)
def test_an_arrow_up_or_a_cycle_breaks_the_contract(
    source_copy: Path, module: str, line: str, said: list[str]
) -> None:
    path = source_copy / "roiml" / module
    original = path.read_text()
    path.write_text(f"{original}\n{line}\n")
    try:
        result = _lint(source_copy, ROOT / "pyproject.toml")
    finally:
        path.write_text(original)
    assert result.returncode == 1
    for words in said:
        assert words in result.stdout, result.stdout
