"""``roiml --help`` and each verb's help import only what printing the help needs (issue 17).

Nothing here is timed (``python -m bench cli`` measures the seconds): each case runs the real
``roiml`` entry point (``roiml.cli.main:app``) in a fresh interpreter and lists which heavy
packages ended up in ``sys.modules``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The machine-learning and serving stack: seconds of imports no help page needs.
ML_STACK = ("lightgbm", "sklearn", "mlflow", "scipy", "pandas", "fastapi", "optuna", "uvicorn")
# The data stack: needed by the verbs that touch data, not by their help.
DATA_STACK = ("sqlalchemy", "alembic", "duckdb", "pyarrow", "numpy", "redis")

# Runs the program as the console script does, then writes every module name in sys.modules.
_PROBE = """
import sys
report, sys.argv = sys.argv[1], ["roiml", *sys.argv[2:]]
from roiml.cli.main import app
try:
    app()
except SystemExit:
    pass
finally:
    with open(report, "w") as out:
        out.write(" ".join(sorted(sys.modules)))
"""

LIGHT_HELP = [
    (),
    ("db",),
    ("db", "current"),
    ("world",),
    ("data",),
    ("data", "import"),
    ("data", "real-sales"),
    ("features",),
    ("features", "compute"),
    ("models",),
    ("models", "list"),
    ("pipeline",),
    ("pipeline", "step"),
    ("pipeline", "run"),
    ("monitor",),
    ("monitor", "run"),
    ("train",),
    ("tune",),
    ("serve",),
    ("demo",),
]


def _modules(tmp_path: Path, *args: str, **settings: str) -> set[str]:
    """Every module ``roiml ARGS`` imported, run in a fresh interpreter (exit 0 asserted).

    ``settings`` are ROIML_* variables; the caller's own ROIML_* and .env do not reach it."""
    report = tmp_path / "modules.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROIML_")}
    env.update(ROIML_DATA_DIR=str(tmp_path / "data"), **settings)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(report), *args],
        cwd=tmp_path,  # no .env from the repository
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return set(report.read_text().split())


def _packages(tmp_path: Path, *args: str, **settings: str) -> set[str]:
    """The top-level packages ``roiml ARGS`` imported."""
    return {name.partition(".")[0] for name in _modules(tmp_path, *args, **settings)}


@pytest.mark.parametrize("path", LIGHT_HELP, ids=lambda p: " ".join(("roiml", *p, "--help")))
def test_help_imports_neither_the_ml_nor_the_data_stack(
    tmp_path: Path, path: tuple[str, ...]
) -> None:
    loaded = _packages(tmp_path, *path, "--help")
    assert "roiml" in loaded  # the probe did run the program
    assert loaded.isdisjoint(ML_STACK + DATA_STACK), sorted(loaded & {*ML_STACK, *DATA_STACK})


def test_root_help_imports_no_verb_group(tmp_path: Path) -> None:
    """``roiml --help`` lists the groups from ``main.GROUPS`` without importing their modules."""
    from roiml.cli.main import GROUPS

    loaded = _modules(tmp_path, "--help")
    assert "roiml.cli.main" in loaded
    assert loaded.isdisjoint(module for module, _ in GROUPS.values())


def test_db_current_imports_no_ml_stack(tmp_path: Path) -> None:
    """A light verb loads SQLAlchemy, and none of Alembic (its revision is read from the table
    and the migration files' names), the models, MLflow or pandas."""
    url = f"sqlite:///{tmp_path / 'roiml.db'}"
    _modules(tmp_path, "db", "upgrade", ROIML_DATABASE_URL=url)
    loaded = _packages(tmp_path, "db", "current", ROIML_DATABASE_URL=url)
    assert "sqlalchemy" in loaded and "alembic" not in loaded
    assert loaded.isdisjoint(ML_STACK), sorted(loaded & set(ML_STACK))


def test_models_list_reads_the_mirror_without_mlflow(tmp_path: Path) -> None:
    """``roiml models list`` answers from the database's mirror: no MLflow, no models stack;
    ``--from-mlflow`` is the verb that pays for MLflow's client."""
    url = f"sqlite:///{tmp_path / 'roiml.db'}"
    _modules(tmp_path, "db", "upgrade", ROIML_DATABASE_URL=url)
    loaded = _packages(tmp_path, "models", "list", ROIML_DATABASE_URL=url)
    assert "sqlalchemy" in loaded and "alembic" not in loaded
    assert loaded.isdisjoint(ML_STACK), sorted(loaded & set(ML_STACK))
    loaded = _packages(tmp_path, "models", "list", "--from-mlflow", ROIML_DATABASE_URL=url)
    assert "mlflow" in loaded


def test_version_prints_the_installed_version_and_imports_no_verb_group(tmp_path: Path) -> None:
    from importlib.metadata import version

    from roiml.cli.main import GROUPS

    loaded = _modules(tmp_path, "--version")
    assert loaded.isdisjoint(module for module, _ in GROUPS.values())
    done = subprocess.run(
        [sys.executable, "-m", "roiml.cli.main", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == f"roiml {version('roiml')}"
