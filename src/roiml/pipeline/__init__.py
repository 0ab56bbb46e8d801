"""The daily feature pipeline: steps that hand data over through files, one CLI verb each."""

from roiml.pipeline.shards import Shard, parse_shard
from roiml.pipeline.steps import STEPS, PipelineContext, run_day, run_step

__all__ = ["STEPS", "PipelineContext", "Shard", "parse_shard", "run_day", "run_step"]
