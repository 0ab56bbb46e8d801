"""Relational schema (SQLAlchemy 2), migrations (Alembic), engines and tenant-scoped sessions."""

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
