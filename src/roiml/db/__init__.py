"""Relational schema (SQLAlchemy 2), migrations (Alembic), engines and tenant-scoped sessions.

The table names below are plain constants; the ORM classes are loaded on first use (PEP 562),
all of them together, so that ``Base`` from here always carries the complete metadata. Modules
that need only the enums (``roiml.db.enums``: the feature catalog, the CLI's help) no longer
import SQLAlchemy's ORM through this file. ``roiml.db.base`` imported directly holds only the
tables whose modules were imported.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from roiml.db.base import Base
    from roiml.db.ml_tables import (
        MLExperiment,
        MLFeature,
        MLFeatureValue,
        MLModel,
        MLMonitoring,
        MLPrediction,
        ModelAliasEvent,
        MonitoringAlert,
        PipelineRun,
    )
    from roiml.db.source_models import (
        Agent,
        Alert,
        DocumentAccessEvent,
        EconomicIndicator,
        EmailEvent,
        MarketStatistic,
        PlatformSession,
        Property,
        Search,
        Transaction,
        User,
    )

__all__ = [
    "Agent",
    "Alert",
    "Base",
    "DocumentAccessEvent",
    "EconomicIndicator",
    "EmailEvent",
    "MLExperiment",
    "MLFeature",
    "MLFeatureValue",
    "MLModel",
    "MLMonitoring",
    "MLPrediction",
    "MarketStatistic",
    "ModelAliasEvent",
    "MonitoringAlert",
    "PipelineRun",
    "PlatformSession",
    "Property",
    "Search",
    "Transaction",
    "User",
]

SOURCE_TABLES: tuple[str, ...] = (
    "agents",
    "users",
    "properties",
    "document_access_events",
    "email_events",
    "platform_sessions",
    "alerts",
    "searches",
    "transactions",
    "market_statistics",
    "economic_indicators",
)
PIPELINE_TABLES: tuple[str, ...] = ("pipeline_runs",)
REGISTRY_TABLES: tuple[str, ...] = ("model_alias_events",)
MONITORING_TABLES: tuple[str, ...] = ("monitoring_alerts",)
ML_TABLES: tuple[str, ...] = (
    "ml_features",
    "ml_feature_values",
    "ml_models",
    "ml_experiments",
    "ml_predictions",
    "ml_monitoring",
)

# The modules that define ORM classes; loading any exported class loads them all.
_ORM_MODULES = ("roiml.db.base", "roiml.db.ml_tables", "roiml.db.source_models")


def __getattr__(name: str) -> object:
    """An exported ORM class (or ``Base``), importing every table module on first access."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    modules = [import_module(module) for module in _ORM_MODULES]
    for exported in __all__:
        globals()[exported] = next(getattr(m, exported) for m in modules if hasattr(m, exported))
    return globals()[name]
