"""Run a command as a child process and measure it: wall time and that child's own peak RSS."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Measured", "run_measured"]


@dataclass(frozen=True)
class Measured:
    """What one child did: seconds of wall time, peak resident memory, its standard output."""

    seconds: float
    peak_rss_mib: int
    stdout: str


def run_measured(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Measured:
    """Run ``argv``; raise with its stderr if it fails."""
    # Output goes to files, not pipes: a chatty child would fill a pipe and block before exiting.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(list(argv), env=dict(env) if env else None, stdout=out, stderr=err)
        # wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would keep the largest so far).
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if status != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{err.read().decode()}")
        return Measured(round(seconds, 2), round(usage.ru_maxrss / 1024), out.read().decode())
