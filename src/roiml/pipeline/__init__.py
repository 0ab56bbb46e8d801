"""The daily feature pipeline: steps that hand data over through files, one CLI verb each.

The exports are loaded on first use (PEP 562): :mod:`roiml.pipeline.steps` imports the feature
engine and the store (DuckDB, Arrow, pandas), and every ``import roiml.pipeline.<module>`` runs
this file first, ``roiml pipeline --help`` reading the step names among them (issue 17).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from roiml.pipeline.shards import Shard, parse_shard
    from roiml.pipeline.step_names import STEPS
    from roiml.pipeline.steps import PipelineContext, run_day, run_step

__all__ = ["STEPS", "PipelineContext", "Shard", "parse_shard", "run_day", "run_step"]

# Exported name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "STEPS": "roiml.pipeline.step_names",
    "PipelineContext": "roiml.pipeline.steps",
    "Shard": "roiml.pipeline.shards",
    "parse_shard": "roiml.pipeline.shards",
    "run_day": "roiml.pipeline.steps",
    "run_step": "roiml.pipeline.steps",
}


def __getattr__(name: str) -> object:
    """Import an exported name on first access and keep it, so later accesses are plain."""
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
