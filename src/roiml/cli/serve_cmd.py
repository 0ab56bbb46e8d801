"""``roiml serve``: the prediction API on uvicorn."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from roiml.cli.common import (
    console,
    global_overrides,
    handle_errors,
    open_engine,
    settings_or_exit,
)
from roiml.errors import DatabaseUnavailableError

if TYPE_CHECKING:
    from roiml.settings import Settings

__all__ = ["serve"]


@handle_errors
def serve(
    host: str | None = typer.Option(None, "--host", help="Default: ROIML_API_HOST (127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="Default: ROIML_API_PORT (8000)."),
    workers: int | None = typer.Option(
        None, "--workers", min=1, max=64, help="Server processes (default ROIML_API_WORKERS)."
    ),
) -> None:
    """Serve the API (docs at /api/ml/docs) with the registry's production models.

    Each worker binds its own SO_REUSEPORT socket and sets TCP_NODELAY on every connection
    (see docs/API.md for why not `uvicorn --workers`); this process starts a new one when one
    dies, a single worker included. Refuses to start on an address something already serves.
    """
    settings = settings_or_exit()
    from roiml.serving.security import check_startup
    from roiml.serving.server import serve as run

    check_startup(settings)
    _check_schema(settings)
    bind_host = host or settings.api_host
    bind_port = port or settings.api_port
    count = workers or settings.api_workers
    console.print(
        f"serving http://{bind_host}:{bind_port}/api/ml/docs with {count} worker(s); "
        f"auth {'on' if settings.auth_enabled else 'off'}"
    )
    # The workers read their settings afresh from the environment: `roiml --data-dir D
    # --tenant T serve` must reach them too.
    os.environ.update(global_overrides())
    run(settings, bind_host, bind_port, count)


def _check_schema(settings: Settings) -> None:
    """Refuse to serve a database that is not migrated: every request would fail on a missing
    table. A database that is down is only warned about: the API answers from the online store,
    spools its prediction log to disk and reports the outage on /health until it is back."""
    try:
        with open_engine(settings):
            pass
    except DatabaseUnavailableError as exc:
        console.print(f"[yellow]warning:[/yellow] {escape(str(exc))}")
