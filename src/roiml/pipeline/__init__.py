"""The daily feature pipeline: steps that hand data over through files, one CLI verb each.

The exports are loaded on first use (PEP 562): :mod:`roiml.pipeline.steps` imports the feature
engine and the store (DuckDB, Arrow, pandas), and every ``import roiml.pipeline.<module>`` runs
this file first, ``roiml pipeline --help`` reading the step names among them (issue 17).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from roiml.lazy import lazy_exports

if TYPE_CHECKING:
    from roiml.pipeline.shards import Shard, parse_shard
    from roiml.pipeline.step_names import STEPS
    from roiml.pipeline.steps import PipelineContext, run_day, run_step

__all__ = ["STEPS", "PipelineContext", "Shard", "parse_shard", "run_day", "run_step"]

# Exported name -> the module that defines it.
__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "STEPS": "roiml.pipeline.step_names",
        "PipelineContext": "roiml.pipeline.steps",
        "Shard": "roiml.pipeline.shards",
        "parse_shard": "roiml.pipeline.shards",
        "run_day": "roiml.pipeline.steps",
        "run_step": "roiml.pipeline.steps",
    },
)
