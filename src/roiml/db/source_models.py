"""Source tables: what the platform records. Their schema is the published input contract.

Every table carries ``tenant_id``. Timestamps are naive UTC. Event tables are append-only with a
surrogate integer key; entities (users, properties, agents) are keyed by ``(tenant_id, id)``.
The ``ix_*`` indexes serve the feature engine's access path: one tenant, one entity, a time range.
``attributes`` (users, properties, transactions) holds the values of the columns a tenant declared
in its own contract (:mod:`roiml.ingest.extensions`), one JSON object per row, NULL without any.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Boolean, Date, DateTime, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from roiml.db.base import Base, BigIntPK, JSONType, TenantMixin, enum_column
from roiml.db.enums import AlertType, DocumentType, EmailType, PropertyType, TransactionType

# Limits of a column's values, read by the importer (which enforces them) and by the generator of
# docs/DATA_CONTRACT.md: inclusive minimum / maximum, exclusive greater_than. ``references``
# names the table whose key a value must be (checked at import, per tenant).
NONNEGATIVE: dict[str, Any] = {"minimum": 0}
POSITIVE: dict[str, Any] = {"greater_than": 0}
ROOMS: dict[str, Any] = {"minimum": 0, "maximum": 50}
PERCENT: dict[str, Any] = {"minimum": 0, "maximum": 100}
# Annual rates in percent: no loan or survey is above 30 % or below -5 %.
RATE: dict[str, Any] = {"minimum": -5, "maximum": 30}
A_USER: dict[str, Any] = {"references": "users"}
A_PROPERTY: dict[str, Any] = {"references": "properties"}

__all__ = [
    "Agent",
    "Alert",
    "DocumentAccessEvent",
    "EconomicIndicator",
    "EmailEvent",
    "MarketStatistic",
    "PlatformSession",
    "Property",
    "Search",
    "Transaction",
    "User",
]


class Agent(TenantMixin, Base):
    """An agent of the tenant who keeps in touch with homeowners."""

    __tablename__ = "agents"

    agent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    brokerage: Mapped[str | None] = mapped_column(String(128))
    market_id: Mapped[str] = mapped_column(String(32), nullable=False)
    hired_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False)


class User(TenantMixin, Base):
    """A homeowner on the platform."""

    __tablename__ = "users"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_id: Mapped[str | None] = mapped_column(String(64))
    market_id: Mapped[str] = mapped_column(String(32), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    birth_year: Mapped[int | None] = mapped_column(Integer, info={"minimum": 1880, "maximum": 2100})
    household_size: Mapped[int | None] = mapped_column(Integer, info={"minimum": 1, "maximum": 30})
    income_band: Mapped[int | None] = mapped_column(
        Integer, doc="1 (lowest) to 5 (highest)", info={"minimum": 1, "maximum": 5}
    )
    email_opt_in: Mapped[bool] = mapped_column(Boolean, nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False)
    attributes: Mapped[dict[str, Any] | None] = mapped_column(
        JSONType, doc="the tenant's declared columns"
    )

    __table_args__ = (
        Index("ix_users_tenant_market", "tenant_id", "market_id"),
        # Agent-level features count an agent's clients when one user's vector is computed.
        Index("ix_users_tenant_agent", "tenant_id", "agent_id"),
    )


class Property(TenantMixin, Base):
    """A home, its characteristics, purchase and mortgage. ``sold_at`` is set when it is sold."""

    __tablename__ = "properties"

    property_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_user_id: Mapped[str] = mapped_column(String(64), nullable=False, info=A_USER)
    market_id: Mapped[str] = mapped_column(String(32), nullable=False)
    is_primary_residence: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    property_type: Mapped[PropertyType] = enum_column(PropertyType, nullable=False)
    bedrooms: Mapped[int | None] = mapped_column(Integer, info=ROOMS)
    bathrooms: Mapped[float | None] = mapped_column(Float, info=ROOMS)
    sqft: Mapped[int | None] = mapped_column(
        Integer, doc="living area, square feet", info={"greater_than": 0, "maximum": 200_000}
    )
    lot_sqft: Mapped[int | None] = mapped_column(
        Integer, doc="lot area, square feet", info={"minimum": 0, "maximum": 500_000_000}
    )
    year_built: Mapped[int | None] = mapped_column(Integer, info={"minimum": 1600, "maximum": 2100})
    has_pool: Mapped[bool | None] = mapped_column(Boolean)
    garage_spaces: Mapped[int | None] = mapped_column(Integer, info=ROOMS)
    hoa_monthly: Mapped[float | None] = mapped_column(Float, info=NONNEGATIVE)
    tax_annual: Mapped[float | None] = mapped_column(Float, info=NONNEGATIVE)
    purchased_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    purchase_price: Mapped[float] = mapped_column(Float, nullable=False, info=POSITIVE)
    mortgage_amount: Mapped[float | None] = mapped_column(Float, info=NONNEGATIVE)
    mortgage_rate: Mapped[float | None] = mapped_column(
        Float, doc="annual rate in percent", info=RATE
    )
    mortgage_term_years: Mapped[int | None] = mapped_column(
        Integer, info={"minimum": 1, "maximum": 50}
    )
    mortgage_started_at: Mapped[datetime | None] = mapped_column(DateTime())
    sold_at: Mapped[datetime | None] = mapped_column(DateTime())
    latitude: Mapped[float | None] = mapped_column(
        Float, doc="degrees north, WGS 84", info={"minimum": -90, "maximum": 90}
    )
    longitude: Mapped[float | None] = mapped_column(
        Float, doc="degrees east, WGS 84", info={"minimum": -180, "maximum": 180}
    )
    attributes: Mapped[dict[str, Any] | None] = mapped_column(
        JSONType, doc="the tenant's declared columns"
    )

    __table_args__ = (Index("ix_properties_tenant_owner", "tenant_id", "owner_user_id"),)


class DocumentAccessEvent(TenantMixin, Base):
    """A homeowner opening one of their closing documents."""

    __tablename__ = "document_access_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64), nullable=False)
    property_id: Mapped[str | None] = mapped_column(String(64))
    document_type: Mapped[DocumentType] = enum_column(DocumentType, nullable=False)
    action: Mapped[str] = mapped_column(String(16), nullable=False, doc="VIEW, DOWNLOAD or SHARE")
    occurred_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    duration_seconds: Mapped[int | None] = mapped_column(Integer, info=NONNEGATIVE)
    device: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        Index("ix_document_access_events_tenant_user_time", "tenant_id", "user_id", "occurred_at"),
    )


class EmailEvent(TenantMixin, Base):
    """One email sent to a homeowner, with when (if ever) it was opened and clicked."""

    __tablename__ = "email_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64), nullable=False)
    campaign_id: Mapped[str] = mapped_column(String(64), nullable=False)
    email_type: Mapped[EmailType] = enum_column(EmailType, nullable=False)
    sent_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    opened_at: Mapped[datetime | None] = mapped_column(DateTime())
    clicked_at: Mapped[datetime | None] = mapped_column(DateTime())
    unsubscribed: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    __table_args__ = (Index("ix_email_events_tenant_user_time", "tenant_id", "user_id", "sent_at"),)


class PlatformSession(TenantMixin, Base):
    """A visit to the homeowner portal or app."""

    __tablename__ = "platform_sessions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64), nullable=False)
    started_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    duration_seconds: Mapped[int] = mapped_column(Integer, nullable=False, info=NONNEGATIVE)
    page_views: Mapped[int] = mapped_column(Integer, nullable=False, info=NONNEGATIVE)
    device: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        Index("ix_platform_sessions_tenant_user_time", "tenant_id", "user_id", "started_at"),
    )


class Alert(TenantMixin, Base):
    """A notification sent to a homeowner (price change, new listing, ...) and its click."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64), nullable=False)
    alert_type: Mapped[AlertType] = enum_column(AlertType, nullable=False)
    sent_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    clicked_at: Mapped[datetime | None] = mapped_column(DateTime())

    __table_args__ = (Index("ix_alerts_tenant_user_time", "tenant_id", "user_id", "sent_at"),)


class Search(TenantMixin, Base):
    """A listing search run by a homeowner."""

    __tablename__ = "searches"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64), nullable=False)
    searched_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    market_id: Mapped[str] = mapped_column(String(32), nullable=False)
    min_price: Mapped[float | None] = mapped_column(Float, info=NONNEGATIVE)
    max_price: Mapped[float | None] = mapped_column(Float, info=NONNEGATIVE)
    bedrooms_min: Mapped[int | None] = mapped_column(Integer, info=ROOMS)
    property_type: Mapped[PropertyType | None] = enum_column(PropertyType, nullable=True)
    results_count: Mapped[int] = mapped_column(Integer, nullable=False, info=NONNEGATIVE)
    saved: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    __table_args__ = (Index("ix_searches_tenant_user_time", "tenant_id", "user_id", "searched_at"),)


class Transaction(TenantMixin, Base):
    """A closed real-estate transaction: BUY, SELL, REFINANCE or INVESTMENT."""

    __tablename__ = "transactions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64), nullable=False, info=A_USER)
    property_id: Mapped[str] = mapped_column(String(64), nullable=False, info=A_PROPERTY)
    agent_id: Mapped[str | None] = mapped_column(String(64))
    transaction_type: Mapped[TransactionType] = enum_column(TransactionType, nullable=False)
    opened_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    closed_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    price: Mapped[float | None] = mapped_column(Float, info=POSITIVE)
    loan_amount: Mapped[float | None] = mapped_column(Float, info=NONNEGATIVE)
    interest_rate: Mapped[float | None] = mapped_column(
        Float, doc="loan rate in percent", info=RATE
    )
    attributes: Mapped[dict[str, Any] | None] = mapped_column(
        JSONType, doc="the tenant's declared columns"
    )

    __table_args__ = (
        Index("ix_transactions_tenant_user_time", "tenant_id", "user_id", "closed_at"),
        Index("ix_transactions_tenant_agent_time", "tenant_id", "agent_id", "closed_at"),
    )


class MarketStatistic(TenantMixin, Base):
    """Monthly statistics of one housing market (metro)."""

    __tablename__ = "market_statistics"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    market_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True, doc="first day of the month")
    published_at: Mapped[datetime] = mapped_column(
        DateTime(), nullable=False, doc="when the figures became known (after the month ends)"
    )
    median_price: Mapped[float] = mapped_column(Float, nullable=False, info=POSITIVE)
    price_index: Mapped[float] = mapped_column(Float, nullable=False, info=POSITIVE)
    inventory: Mapped[int] = mapped_column(Integer, nullable=False, info=NONNEGATIVE)
    new_listings: Mapped[int] = mapped_column(Integer, nullable=False, info=NONNEGATIVE)
    closed_sales: Mapped[int] = mapped_column(Integer, nullable=False, info=NONNEGATIVE)
    days_on_market: Mapped[float] = mapped_column(Float, nullable=False, info=NONNEGATIVE)
    months_supply: Mapped[float] = mapped_column(Float, nullable=False, info=NONNEGATIVE)
    list_to_sale_ratio: Mapped[float] = mapped_column(Float, nullable=False, info=POSITIVE)


class EconomicIndicator(TenantMixin, Base):
    """Weekly economic indicators: mortgage rates as a weekly survey; monthly series held."""

    __tablename__ = "economic_indicators"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    observed_on: Mapped[date] = mapped_column(Date, primary_key=True)
    mortgage_rate_30y: Mapped[float] = mapped_column(Float, nullable=False, info=RATE)
    mortgage_rate_15y: Mapped[float] = mapped_column(Float, nullable=False, info=RATE)
    fed_funds_rate: Mapped[float] = mapped_column(Float, nullable=False, info=RATE)
    unemployment_rate: Mapped[float] = mapped_column(Float, nullable=False, info=PERCENT)
    cpi_yoy: Mapped[float] = mapped_column(Float, nullable=False)
    consumer_confidence: Mapped[float] = mapped_column(Float, nullable=False)
