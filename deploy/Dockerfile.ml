# syntax=docker/dockerfile:1
#
# The roiml images, built from the repository root:
#
#   docker build -f deploy/Dockerfile.ml -t roiml .                          # API + CLI (default)
#   docker build -f deploy/Dockerfile.ml --target airflow -t roiml-airflow . # Airflow + roiml
#
# `roiml` (the last stage, so the default) is one image for the API (`roiml serve`), the
# pipeline CLI (`roiml pipeline ...`, `roiml db upgrade`, ...) and any one-off job.
#
# `airflow` is the official apache/airflow 3.x image with roiml added in its OWN virtual
# environment (/opt/roiml), rather than pip-installed into Airflow's interpreter: the DAG's
# tasks only shell out to the `roiml` CLI, so the project's pinned dependencies
# (requirements.lock) and Airflow's (its constraints) never have to agree on a version, and
# either side can be upgraded alone. The scheduler, API server and DAG processor ignore the
# extra venv; the Celery workers run `roiml` from it (ROIML_CLI, and `roiml` on PATH).
#
# Both stages install exactly the versions pinned in requirements.lock: the project's runtime
# dependencies (pyproject.toml) resolved with the lock as constraints, so the dev-only tools
# the lock also pins (pytest, mypy, ruff, hypothesis) stay out of the images.

ARG PYTHON_IMAGE=python:3.11-slim
# Match the Python of the lock (3.11) and the Airflow of requirements-airflow.txt.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11

# ---------------------------------------------------------------------------------------------
# build: /opt/roiml, a virtual environment holding roiml and its locked runtime dependencies.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    UV_NO_CACHE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
RUN python -m pip install "uv>=0.4,<1"
WORKDIR /build
# Dependencies first (a layer that changes only with the lock or pyproject.toml)...
COPY requirements.lock pyproject.toml ./
RUN uv venv /opt/roiml --python "$(command -v python3.11)" \
 && uv pip install --python /opt/roiml/bin/python --constraint requirements.lock -r pyproject.toml
# ...then the package itself, without touching the dependencies.
COPY README.md ./
COPY src ./src
RUN uv pip install --python /opt/roiml/bin/python --no-deps . \
 && /opt/roiml/bin/roiml --help >/dev/null

# ---------------------------------------------------------------------------------------------
# airflow: Airflow 3 (official image) + roiml in /opt/roiml, for the Airflow services.
FROM ${AIRFLOW_IMAGE} AS airflow
ARG ROIML_UID=50000
USER root
# Built here with this image's own Python (a venv is tied to the interpreter it was made with),
# by the same commands as the build stage.
COPY --from=build /usr/local/bin/uv /usr/local/bin/uv
COPY requirements.lock pyproject.toml README.md /tmp/roiml/
COPY src /tmp/roiml/src
RUN export UV_NO_CACHE=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
 && cd /tmp/roiml \
 && uv venv /opt/roiml --python "$(command -v python3.11)" \
 && uv pip install --python /opt/roiml/bin/python --constraint requirements.lock -r pyproject.toml \
 && uv pip install --python /opt/roiml/bin/python --no-deps . \
 && ln -s /opt/roiml/bin/roiml /usr/local/bin/roiml \
 && /usr/local/bin/roiml --help >/dev/null \
 && rm -rf /tmp/roiml /usr/local/bin/uv \
 && mkdir -p /data \
 && chown "${ROIML_UID}:0" /data \
 && chmod 2775 /data
# The DAG runs "${ROIML_CLI:-roiml}"; point it at the venv explicitly.
ENV ROIML_CLI=/opt/roiml/bin/roiml \
    ROIML_ENVIRONMENT=production \
    ROIML_DATA_DIR=/data \
    ROIML_LOG_LEVEL=INFO
USER airflow

# ---------------------------------------------------------------------------------------------
# roiml: the API and CLI image (default target).
FROM ${PYTHON_IMAGE} AS roiml
# uid 50000, group 0: the same as the Airflow workers (AIRFLOW_UID), which share the data
# volume with this image's containers.
ARG ROIML_UID=50000
# ROIML_* defaults: production refuses to start without ROIML_JWT_SECRET or
# ROIML_JWT_PUBLIC_KEY; every other setting keeps the default of roiml.settings.Settings unless
# the environment sets it (see .env.ml.example).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/roiml/bin:$PATH \
    ROIML_ENVIRONMENT=production \
    ROIML_DATA_DIR=/data \
    ROIML_TENANT_ID=demo \
    ROIML_APP_ROLE=roiml_app \
    ROIML_JWT_ALGORITHM=HS256 \
    ROIML_LOG_LEVEL=INFO
RUN useradd --uid "${ROIML_UID}" --gid 0 --home-dir /app --create-home \
        --shell /usr/sbin/nologin roiml \
 && mkdir -p /data \
 && chown "${ROIML_UID}:0" /data \
 && chmod 2775 /data
COPY --from=build /opt/roiml /opt/roiml
WORKDIR /app
USER roiml
EXPOSE 8000
# /health of `roiml serve` (the prediction-API issue); python because the slim image has no
# curl. One-shot jobs run from this image (roiml-migrate) disable it in the compose file.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["roiml", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "4"]
