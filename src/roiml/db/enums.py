"""The enums of the seed's ML schema and of the source tables, shared by models, API and CLI."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AlertType",
    "DataType",
    "DocumentType",
    "EmailType",
    "EntityType",
    "FeatureCategory",
    "FeatureType",
    "ModelStatus",
    "ModelType",
    "PredictionType",
    "PropertyType",
    "TransactionType",
]


class FeatureType(StrEnum):
    """How a feature is produced."""

    BATCH = "BATCH"
    ON_DEMAND = "ON_DEMAND"
    STREAMING = "STREAMING"


class FeatureCategory(StrEnum):
    BEHAVIORAL = "BEHAVIORAL"
    PROPERTY = "PROPERTY"
    TRANSACTIONAL = "TRANSACTIONAL"
    MARKET = "MARKET"
    TEMPORAL = "TEMPORAL"


class DataType(StrEnum):
    INTEGER = "INTEGER"
    FLOAT = "FLOAT"
    BOOLEAN = "BOOLEAN"
    STRING = "STRING"
    TIMESTAMP = "TIMESTAMP"
    JSON = "JSON"


class EntityType(StrEnum):
    USER = "USER"
    PROPERTY = "PROPERTY"
    AGENT = "AGENT"
    MARKET = "MARKET"
    TRANSACTION = "TRANSACTION"


class ModelType(StrEnum):
    MOVE_PROBABILITY = "MOVE_PROBABILITY"
    TRANSACTION_TYPE = "TRANSACTION_TYPE"
    CONTACT_TIMING = "CONTACT_TIMING"
    PROPERTY_VALUE = "PROPERTY_VALUE"


class ModelStatus(StrEnum):
    TRAINING = "TRAINING"
    TRAINED = "TRAINED"
    STAGING = "STAGING"
    DEPLOYED = "DEPLOYED"
    ARCHIVED = "ARCHIVED"
    FAILED = "FAILED"


class PredictionType(StrEnum):
    MOVE_PROBABILITY = "MOVE_PROBABILITY"
    TRANSACTION_TYPE = "TRANSACTION_TYPE"
    CONTACT_TIMING = "CONTACT_TIMING"
    PROPERTY_VALUE = "PROPERTY_VALUE"


class TransactionType(StrEnum):
    BUY = "BUY"
    SELL = "SELL"
    REFINANCE = "REFINANCE"
    INVESTMENT = "INVESTMENT"


class PropertyType(StrEnum):
    SINGLE_FAMILY = "SINGLE_FAMILY"
    CONDO = "CONDO"
    TOWNHOUSE = "TOWNHOUSE"
    MULTI_FAMILY = "MULTI_FAMILY"


class DocumentType(StrEnum):
    CLOSING_DISCLOSURE = "CLOSING_DISCLOSURE"
    DEED = "DEED"
    TITLE_POLICY = "TITLE_POLICY"
    MORTGAGE_NOTE = "MORTGAGE_NOTE"
    TAX_STATEMENT = "TAX_STATEMENT"
    INSURANCE = "INSURANCE"
    HOME_VALUE_REPORT = "HOME_VALUE_REPORT"


class EmailType(StrEnum):
    NEWSLETTER = "NEWSLETTER"
    MARKET_REPORT = "MARKET_REPORT"
    HOME_VALUE = "HOME_VALUE"
    ANNIVERSARY = "ANNIVERSARY"
    RATE_UPDATE = "RATE_UPDATE"


class AlertType(StrEnum):
    PRICE_CHANGE = "PRICE_CHANGE"
    NEW_LISTING = "NEW_LISTING"
    MARKET_UPDATE = "MARKET_UPDATE"
    HOME_VALUE = "HOME_VALUE"
    RATE_DROP = "RATE_DROP"
