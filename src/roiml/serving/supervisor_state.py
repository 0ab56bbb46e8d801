"""The serve supervisor's status file: written by the supervisor (``roiml.serving.server``),
read by a worker's ``/health`` (``roiml.serving.health``). Its own module so that health need not
import the server, which imports the app, which imports the routes, which import health."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from roiml.settings import Settings

__all__ = ["status_path", "supervisor_status"]


def status_path(settings: Settings, supervisor_pid: int) -> Path:
    """Where the supervisor of ``supervisor_pid`` writes its status."""
    return settings.data_dir / f"serve-supervisor-{supervisor_pid}.json"


def supervisor_status(settings: Settings) -> dict[str, Any] | None:
    """What the supervisor of this worker last wrote, or None (one worker, no supervisor).

    ``workers`` expected, ``alive`` (started and not dead: a replacement counts while it still
    loads its models), ``restarting`` (dead, waiting for their backoff), ``restarts`` since the
    start, ``last_exit`` (``worker``, ``pid``, ``exit``: ``signal SIGKILL`` or ``code N``,
    ``at``: Unix time). For ``/health``: one worker's process cannot see that its sibling died;
    ``alive < workers``, or a ``last_exit`` in the last minute, is a degraded service.
    """
    try:
        state: dict[str, Any] = json.loads(status_path(settings, os.getppid()).read_text())
    except (OSError, ValueError):
        return None
    return state
