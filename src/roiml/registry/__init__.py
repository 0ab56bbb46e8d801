"""Model registry: MLflow versions, stages as aliases, and the tenant's mirror and alias history.

Importing this package imports MLflow (seconds); the CLI imports it only inside the
``roiml models`` verbs.
"""

from roiml.registry.compare import MetricComparison, ModelComparison, lower_is_better
from roiml.registry.history import AliasEvent
from roiml.registry.pyfunc import RoimlPyfuncModel
from roiml.registry.registry import ModelRegistry, ModelVersionInfo, RegisteredModelSummary
from roiml.registry.stages import STAGE_ALIASES, Stage, parse_stage

__all__ = [
    "STAGE_ALIASES",
    "AliasEvent",
    "MetricComparison",
    "ModelComparison",
    "ModelRegistry",
    "ModelVersionInfo",
    "RegisteredModelSummary",
    "RoimlPyfuncModel",
    "Stage",
    "lower_is_better",
    "parse_stage",
]
