"""Model registry: MLflow versions, stages as aliases, and the tenant's mirror and alias history.

The exports are loaded on first use (PEP 562): the pyfunc wrapper imports LightGBM, pandas and
MLflow's pyfunc module, the comparison scikit-learn's metrics, and the registry MLflow itself
(seconds each), while ``roiml.registry.stages`` or ``.history`` need none of them. The CLI
imports this package only inside the ``roiml models`` verbs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from roiml.lazy import lazy_exports

if TYPE_CHECKING:
    from roiml.registry.compare import MetricComparison, ModelComparison, lower_is_better
    from roiml.registry.history import AliasEvent
    from roiml.registry.listing import RegisteredModelSummary, list_mirrored
    from roiml.registry.pyfunc import RoimlPyfuncModel
    from roiml.registry.registry import ModelRegistry, ModelVersionInfo
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
    "list_mirrored",
    "lower_is_better",
    "parse_stage",
]

# Exported name -> the module that defines it.
__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "STAGE_ALIASES": "roiml.registry.stages",
        "AliasEvent": "roiml.registry.history",
        "MetricComparison": "roiml.registry.compare",
        "ModelComparison": "roiml.registry.compare",
        "ModelRegistry": "roiml.registry.registry",
        "ModelVersionInfo": "roiml.registry.registry",
        "RegisteredModelSummary": "roiml.registry.listing",
        "list_mirrored": "roiml.registry.listing",
        "RoimlPyfuncModel": "roiml.registry.pyfunc",
        "Stage": "roiml.registry.stages",
        "lower_is_better": "roiml.registry.compare",
        "parse_stage": "roiml.registry.stages",
    },
)
