#!/usr/bin/env bash
# The Airflow environment, kept apart from the project's .venv so that Airflow's pins and
# roiml's never meet.
#
#   scripts/airflow_env.sh                      build/refresh .venv-airflow, migrate Airflow's DB
#   scripts/airflow_env.sh airflow dags list    the same, then run the command inside that env
#   source scripts/airflow_env.sh               the same, and keep the variables in this shell
#
# Idempotent: the venv is rebuilt only when requirements-airflow.txt or the Python version
# changed (a stamp file records both); otherwise this costs a hash and `airflow db migrate`.
# Airflow's metadata is SQLite under $AIRFLOW_HOME (default ./.airflow; set AIRFLOW_HOME to a
# temp dir for a throwaway one). Variables honoured: PYTHON (python3), ROIML_AIRFLOW_VENV,
# AIRFLOW_HOME, ROIML_AIRFLOW_INSTALLER (uv, the default when found, or pip) and ROIML_CLI
# (default: the project's .venv/bin/roiml when it exists).

_roiml_airflow_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

_roiml_airflow_exports() {
  local root="$_roiml_airflow_root"
  export ROIML_AIRFLOW_VENV="${ROIML_AIRFLOW_VENV:-$root/.venv-airflow}"
  export AIRFLOW_HOME="${AIRFLOW_HOME:-$root/.airflow}"
  mkdir -p "$AIRFLOW_HOME"
  AIRFLOW_HOME="$(cd "$AIRFLOW_HOME" && pwd)"
  # Four slashes: sqlite:/// plus an absolute path.
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
  export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$root/dags}"
  export AIRFLOW__CORE__LOAD_EXAMPLES="${AIRFLOW__CORE__LOAD_EXAMPLES:-False}"
  if [[ -z "${ROIML_CLI:-}" && -x "$root/.venv/bin/roiml" ]]; then
    export ROIML_CLI="$root/.venv/bin/roiml"
  fi
  export PATH="$ROIML_AIRFLOW_VENV/bin:$PATH"
}

_roiml_airflow_build() (
  set -euo pipefail
  local root="$_roiml_airflow_root" venv="$ROIML_AIRFLOW_VENV"
  local python="${PYTHON:-python3}" requirements="$_roiml_airflow_root/requirements-airflow.txt"
  local want
  want="$(sha256sum "$requirements" | cut -d' ' -f1) $("$python" -c 'import sys; print(sys.version)' | head -n1)"

  # One builder at a time (parallel test runs would otherwise race on the same folder); the
  # lock lives outside the repo because the venv itself may be deleted while it is held.
  exec 9>"${TMPDIR:-/tmp}/roiml-airflow-env-$(printf %s "$venv" | cksum | cut -d' ' -f1).lock"
  flock 9

  if [[ -f "$venv/.installed" && "$(cat "$venv/.installed")" == "$want" ]]; then
    return 0
  fi
  echo "airflow_env: building $venv from requirements-airflow.txt" >&2
  local started=$SECONDS
  rm -rf "$venv"
  "$python" -m venv "$venv"
  # The file pins every package, so no resolution is needed; uv (from the project's .venv,
  # or on PATH) is several times faster than pip, and pip is the fallback.
  local uv=""
  if [[ "${ROIML_AIRFLOW_INSTALLER:-uv}" == uv ]]; then
    if [[ -x "$root/.venv/bin/uv" ]]; then uv="$root/.venv/bin/uv"; elif command -v uv >/dev/null; then uv="uv"; fi
  fi
  if [[ -n "$uv" ]]; then
    "$uv" pip sync --quiet --python "$venv/bin/python" "$requirements"
  else
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$requirements"
  fi
  "$venv/bin/python" -m pip check --disable-pip-version-check >&2
  echo "$want" >"$venv/.installed"
  echo "airflow_env: built in $((SECONDS - started)) s" >&2
)

_roiml_airflow_migrate() (
  set -euo pipefail
  local log="$AIRFLOW_HOME/db-migrate.log"
  if ! "$ROIML_AIRFLOW_VENV/bin/airflow" db migrate >"$log" 2>&1; then
    cat "$log" >&2
    echo "airflow_env: 'airflow db migrate' failed (log above)" >&2
    return 1
  fi
)

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
  # Sourced: export into the caller's shell, never leave set -e behind in it.
  _roiml_airflow_exports && _roiml_airflow_build && _roiml_airflow_migrate
else
  set -euo pipefail
  _roiml_airflow_exports
  _roiml_airflow_build
  _roiml_airflow_migrate
  if (($#)); then
    exec "$@"
  fi
fi
