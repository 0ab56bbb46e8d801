# The whole developer workflow. `make demo` and `make test` are the README's two commands:
# both build .venv from requirements.lock on first use, so a fresh clone needs only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint typecheck imports bench lock clean airflow

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv>=0.4,<1"
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

# DEMO_SERVE=0 runs the whole job and exits instead of serving.
demo: $(STAMP)
	$(BIN)/roiml demo $(if $(filter 0 false no,$(DEMO_SERVE)),--no-serve,--serve)

test: $(STAMP)
	$(BIN)/python -m pytest -q

check: $(STAMP) lint typecheck imports
	$(BIN)/python -m pytest -q -m "not slow and not postgres and not redis"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench dags
	$(BIN)/ruff format --check src tests bench dags

typecheck: $(STAMP)
	$(BIN)/mypy src

# The layers and no cycles (docs/ARCHITECTURE.md; the contract is in pyproject.toml).
imports: $(STAMP)
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m bench

# Re-resolve the pinned dependency set after editing pyproject.toml.
lock: $(STAMP)
	$(BIN)/uv pip compile --quiet pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

# The Airflow 3 environment, kept apart from the project's (tests/test_airflow_dag.py builds it too).
airflow: $(STAMP)
	scripts/airflow_env.sh

clean:
	rm -rf $(VENV) .venv-airflow .airflow .pytest_cache .mypy_cache .ruff_cache
