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
# Annual rates in percent: no loan or survey is above 30 %; only a policy rate goes below 0.
RATE: dict[str, Any] = {"minimum": 0, "maximum": 30}
POLICY_RATE: dict[str, Any] = {"minimum": -5, "maximum": 30}
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

    agent_id: Mapped[str] = mapped_column(
        String(64), primary_key=True, doc="the agent's id, chosen by the tenant"
    )
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False, doc="full name")
    brokerage: Mapped[str | None] = mapped_column(String(128), doc="the agent's brokerage")
    market_id: Mapped[str] = mapped_column(
        String(32), nullable=False, doc="the market the agent works in"
    )
    hired_at: Mapped[datetime] = mapped_column(
        DateTime(), nullable=False, doc="when the agent joined the tenant (UTC)"
    )


class User(TenantMixin, Base):
    """A homeowner on the platform."""

    __tablename__ = "users"

    user_id: Mapped[str] = mapped_column(
        String(64), primary_key=True, doc="the homeowner's id, chosen by the tenant"
    )
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_id: Mapped[str | None] = mapped_column(
        String(64), doc="the agent who keeps in touch (agents.agent_id)"
    )
    market_id: Mapped[str] = mapped_column(
        String(32), nullable=False, doc="the homeowner's market (metro or local area)"
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(), nullable=False, doc="when the homeowner joined the platform (UTC)"
    )
    birth_year: Mapped[int | None] = mapped_column(
        Integer, info={"minimum": 1880, "maximum": 2100}, doc="year of birth"
    )
    household_size: Mapped[int | None] = mapped_column(
        Integer, info={"minimum": 1, "maximum": 30}, doc="people in the household"
    )
    income_band: Mapped[int | None] = mapped_column(
        Integer, doc="1 (lowest) to 5 (highest)", info={"minimum": 1, "maximum": 5}
    )
    email_opt_in: Mapped[bool] = mapped_column(
        Boolean, nullable=False, doc="whether the homeowner accepts marketing email"
    )
    is_active: Mapped[bool] = mapped_column(
        Boolean, nullable=False, doc="whether the account is active"
    )
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

    property_id: Mapped[str] = mapped_column(
        String(64), primary_key=True, doc="the home's id, chosen by the tenant"
    )
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_user_id: Mapped[str] = mapped_column(
        String(64), nullable=False, info=A_USER, doc="the homeowner who owns it (users.user_id)"
    )
    market_id: Mapped[str] = mapped_column(
        String(32), nullable=False, doc="the home's market (metro, zip code or area)"
    )
    is_primary_residence: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=True, doc="whether the owner lives there"
    )
    property_type: Mapped[PropertyType] = enum_column(
        PropertyType, nullable=False, doc="kind of home"
    )
    bedrooms: Mapped[int | None] = mapped_column(Integer, info=ROOMS, doc="number of bedrooms")
    bathrooms: Mapped[float | None] = mapped_column(
        Float, info=ROOMS, doc="number of bathrooms (halves allowed)"
    )
    sqft: Mapped[int | None] = mapped_column(
        Integer, doc="living area, square feet", info={"greater_than": 0, "maximum": 200_000}
    )
    lot_sqft: Mapped[int | None] = mapped_column(
        Integer, doc="lot area, square feet", info={"minimum": 0, "maximum": 500_000_000}
    )
    year_built: Mapped[int | None] = mapped_column(
        Integer, info={"minimum": 1600, "maximum": 2100}, doc="year of construction"
    )
    has_pool: Mapped[bool | None] = mapped_column(Boolean, doc="whether the home has a pool")
    garage_spaces: Mapped[int | None] = mapped_column(Integer, info=ROOMS, doc="garage spaces")
    hoa_monthly: Mapped[float | None] = mapped_column(
        Float, info=NONNEGATIVE, doc="homeowners' association fee per month"
    )
    tax_annual: Mapped[float | None] = mapped_column(
        Float, info=NONNEGATIVE, doc="property tax per year"
    )
    purchased_at: Mapped[datetime] = mapped_column(
        DateTime(), nullable=False, doc="when the owner bought it (UTC)"
    )
    purchase_price: Mapped[float] = mapped_column(
        Float, nullable=False, info=POSITIVE, doc="what the owner paid"
    )
    mortgage_amount: Mapped[float | None] = mapped_column(
        Float, info=NONNEGATIVE, doc="the mortgage's principal at the start"
    )
    mortgage_rate: Mapped[float | None] = mapped_column(
        Float, doc="annual rate in percent", info=RATE
    )
    mortgage_term_years: Mapped[int | None] = mapped_column(
        Integer, info={"minimum": 1, "maximum": 50}, doc="the mortgage's term in years"
    )
    mortgage_started_at: Mapped[datetime | None] = mapped_column(
        DateTime(), doc="when the mortgage started (UTC)"
    )
    sold_at: Mapped[datetime | None] = mapped_column(
        DateTime(), doc="when the owner sold it, if sold (UTC)"
    )
    latitude: Mapped[float | None] = mapped_column(
        Float, doc="degrees north, WGS 84", info={"minimum": -90, "maximum": 90}
    )
    longitude: Mapped[float | None] = mapped_column(
        Float, doc="degrees east, WGS 84", info={"minimum": -180, "maximum": 180}
    )
    attributes: Mapped[dict[str, Any] | None] = mapped_column(
        JSONType, doc="the tenant's declared columns"
    )

    __table_args__ = (
        Index("ix_properties_tenant_owner", "tenant_id", "owner_user_id"),
        # A home's comparable sales (the API's computed vector): its market's homes and those
        # in a latitude box around it (migration 0010).
        Index("ix_properties_tenant_market", "tenant_id", "market_id"),
        Index("ix_properties_tenant_latitude", "tenant_id", "latitude"),
    )


class DocumentAccessEvent(TenantMixin, Base):
    """A homeowner opening one of their closing documents."""

    __tablename__ = "document_access_events"

    id: Mapped[int] = mapped_column(
        BigIntPK, primary_key=True, autoincrement=True, doc="assigned by the database"
    )
    user_id: Mapped[str] = mapped_column(
        String(64), nullable=False, doc="the homeowner (users.user_id)"
    )
    property_id: Mapped[str | None] = mapped_column(
        String(64), doc="the home the document is about"
    )
    document_type: Mapped[DocumentType] = enum_column(
        DocumentType, nullable=False, doc="kind of closing document"
    )
    action: Mapped[str] = mapped_column(String(16), nullable=False, doc="VIEW, DOWNLOAD or SHARE")
    occurred_at: Mapped[datetime] = mapped_column(
        DateTime(), nullable=False, doc="when it was opened (UTC)"
    )
    duration_seconds: Mapped[int | None] = mapped_column(
        Integer, info=NONNEGATIVE, doc="seconds spent on it"
    )
    device: Mapped[str | None] = mapped_column(
        String(16), doc="device class, e.g. desktop or mobile"
    )

    __table_args__ = (
        Index("ix_document_access_events_tenant_user_time", "tenant_id", "user_id", "occurred_at"),
    )


class EmailEvent(TenantMixin, Base):
    """One email sent to a homeowner, with when (if ever) it was opened and clicked."""

    __tablename__ = "email_events"

    id: Mapped[int] = mapped_column(
        BigIntPK, primary_key=True, autoincrement=True, doc="assigned by the database"
    )
    user_id: Mapped[str] = mapped_column(
        String(64), nullable=False, doc="the recipient (users.user_id)"
    )
    campaign_id: Mapped[str] = mapped_column(
        String(64), nullable=False, doc="the campaign it belongs to"
    )
    email_type: Mapped[EmailType] = enum_column(EmailType, nullable=False, doc="kind of email")
    sent_at: Mapped[datetime] = mapped_column(
        DateTime(), nullable=False, doc="when it was sent (UTC)"
    )
    opened_at: Mapped[datetime | None] = mapped_column(
        DateTime(), doc="when it was first opened, if ever (UTC)"
    )
    clicked_at: Mapped[datetime | None] = mapped_column(
        DateTime(), doc="when it was first clicked, if ever (UTC)"
    )
    unsubscribed: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, doc="whether the recipient unsubscribed from it"
    )

    __table_args__ = (Index("ix_email_events_tenant_user_time", "tenant_id", "user_id", "sent_at"),)


class PlatformSession(TenantMixin, Base):
    """A visit to the homeowner portal or app."""

    __tablename__ = "platform_sessions"

    id: Mapped[int] = mapped_column(
        BigIntPK, primary_key=True, autoincrement=True, doc="assigned by the database"
    )
    user_id: Mapped[str] = mapped_column(
        String(64), nullable=False, doc="the visitor (users.user_id)"
    )
    started_at: Mapped[datetime] = mapped_column(
        DateTime(), nullable=False, doc="when the visit started (UTC)"
    )
    duration_seconds: Mapped[int] = mapped_column(
        Integer, nullable=False, info=NONNEGATIVE, doc="length of the visit in seconds"
    )
    page_views: Mapped[int] = mapped_column(
        Integer, nullable=False, info=NONNEGATIVE, doc="pages viewed"
    )
    device: Mapped[str | None] = mapped_column(
        String(16), doc="device class, e.g. desktop or mobile"
    )

    __table_args__ = (
        Index("ix_platform_sessions_tenant_user_time", "tenant_id", "user_id", "started_at"),
    )


class Alert(TenantMixin, Base):
    """A notification sent to a homeowner (price change, new listing, ...) and its click."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(
        BigIntPK, primary_key=True, autoincrement=True, doc="assigned by the database"
    )
    user_id: Mapped[str] = mapped_column(
        String(64), nullable=False, doc="the recipient (users.user_id)"
    )
    alert_type: Mapped[AlertType] = enum_column(AlertType, nullable=False, doc="kind of alert")
    sent_at: Mapped[datetime] = mapped_column(
        DateTime(), nullable=False, doc="when it was sent (UTC)"
    )
    clicked_at: Mapped[datetime | None] = mapped_column(
        DateTime(), doc="when it was clicked, if ever (UTC)"
    )

    __table_args__ = (Index("ix_alerts_tenant_user_time", "tenant_id", "user_id", "sent_at"),)


class Search(TenantMixin, Base):
    """A listing search run by a homeowner."""

    __tablename__ = "searches"

    id: Mapped[int] = mapped_column(
        BigIntPK, primary_key=True, autoincrement=True, doc="assigned by the database"
    )
    user_id: Mapped[str] = mapped_column(
        String(64), nullable=False, doc="who searched (users.user_id)"
    )
    searched_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False, doc="when (UTC)")
    market_id: Mapped[str] = mapped_column(String(32), nullable=False, doc="the market searched")
    min_price: Mapped[float | None] = mapped_column(
        Float, info=NONNEGATIVE, doc="lowest price asked for"
    )
    max_price: Mapped[float | None] = mapped_column(
        Float, info=NONNEGATIVE, doc="highest price asked for"
    )
    bedrooms_min: Mapped[int | None] = mapped_column(
        Integer, info=ROOMS, doc="fewest bedrooms asked for"
    )
    property_type: Mapped[PropertyType | None] = enum_column(
        PropertyType, nullable=True, doc="kind of home asked for"
    )
    results_count: Mapped[int] = mapped_column(
        Integer, nullable=False, info=NONNEGATIVE, doc="listings found"
    )
    saved: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, doc="whether the search was saved"
    )

    __table_args__ = (Index("ix_searches_tenant_user_time", "tenant_id", "user_id", "searched_at"),)


class Transaction(TenantMixin, Base):
    """A closed real-estate transaction: BUY, SELL, REFINANCE or INVESTMENT."""

    __tablename__ = "transactions"

    id: Mapped[int] = mapped_column(
        BigIntPK, primary_key=True, autoincrement=True, doc="assigned by the database"
    )
    user_id: Mapped[str] = mapped_column(
        String(64),
        nullable=False,
        info=A_USER,
        doc="the homeowner on the tenant's side (users.user_id)",
    )
    property_id: Mapped[str] = mapped_column(
        String(64), nullable=False, info=A_PROPERTY, doc="the home (properties.property_id)"
    )
    agent_id: Mapped[str | None] = mapped_column(String(64), doc="the agent who handled it")
    transaction_type: Mapped[TransactionType] = enum_column(
        TransactionType, nullable=False, doc="BUY, SELL, REFINANCE or INVESTMENT"
    )
    opened_at: Mapped[datetime] = mapped_column(
        DateTime(), nullable=False, doc="when the transaction started (UTC)"
    )
    closed_at: Mapped[datetime] = mapped_column(
        DateTime(), nullable=False, doc="when it closed (UTC); a sale's date"
    )
    price: Mapped[float | None] = mapped_column(Float, info=POSITIVE, doc="the price paid")
    loan_amount: Mapped[float | None] = mapped_column(
        Float, info=NONNEGATIVE, doc="the loan's principal"
    )
    interest_rate: Mapped[float | None] = mapped_column(
        Float, doc="loan rate in percent", info=RATE
    )
    attributes: Mapped[dict[str, Any] | None] = mapped_column(
        JSONType, doc="the tenant's declared columns"
    )

    __table_args__ = (
        Index("ix_transactions_tenant_user_time", "tenant_id", "user_id", "closed_at"),
        Index("ix_transactions_tenant_agent_time", "tenant_id", "agent_id", "closed_at"),
        # The sales of the comparable window (migration 0010).
        Index("ix_transactions_tenant_time", "tenant_id", "closed_at"),
    )


class MarketStatistic(TenantMixin, Base):
    """Monthly statistics of one housing market (metro)."""

    __tablename__ = "market_statistics"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    market_id: Mapped[str] = mapped_column(String(32), primary_key=True, doc="the market")
    month: Mapped[date] = mapped_column(Date, primary_key=True, doc="first day of the month")
    published_at: Mapped[datetime] = mapped_column(
        DateTime(), nullable=False, doc="when the figures became known (after the month ends)"
    )
    median_price: Mapped[float] = mapped_column(
        Float, nullable=False, info=POSITIVE, doc="median sale price in the month"
    )
    price_index: Mapped[float] = mapped_column(
        Float, nullable=False, info=POSITIVE, doc="price index of the market"
    )
    inventory: Mapped[int] = mapped_column(
        Integer, nullable=False, info=NONNEGATIVE, doc="homes for sale at the month's end"
    )
    new_listings: Mapped[int] = mapped_column(
        Integer, nullable=False, info=NONNEGATIVE, doc="homes listed in the month"
    )
    closed_sales: Mapped[int] = mapped_column(
        Integer, nullable=False, info=NONNEGATIVE, doc="sales closed in the month"
    )
    days_on_market: Mapped[float] = mapped_column(
        Float, nullable=False, info=NONNEGATIVE, doc="median days from listing to contract"
    )
    months_supply: Mapped[float] = mapped_column(
        Float, nullable=False, info=NONNEGATIVE, doc="inventory over the monthly sales rate"
    )
    list_to_sale_ratio: Mapped[float] = mapped_column(
        Float, nullable=False, info=POSITIVE, doc="sale price over list price, median"
    )


class EconomicIndicator(TenantMixin, Base):
    """Weekly economic indicators: mortgage rates as a weekly survey; monthly series held."""

    __tablename__ = "economic_indicators"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    observed_on: Mapped[date] = mapped_column(Date, primary_key=True, doc="the week's survey date")
    mortgage_rate_30y: Mapped[float] = mapped_column(
        Float, nullable=False, info=RATE, doc="30-year fixed mortgage rate, percent"
    )
    mortgage_rate_15y: Mapped[float] = mapped_column(
        Float, nullable=False, info=RATE, doc="15-year fixed mortgage rate, percent"
    )
    fed_funds_rate: Mapped[float] = mapped_column(
        Float, nullable=False, info=POLICY_RATE, doc="federal funds rate, percent"
    )
    unemployment_rate: Mapped[float] = mapped_column(
        Float, nullable=False, info=PERCENT, doc="unemployment rate, percent"
    )
    cpi_yoy: Mapped[float] = mapped_column(
        Float, nullable=False, doc="consumer prices, change over a year, percent"
    )
    consumer_confidence: Mapped[float] = mapped_column(
        Float, nullable=False, doc="consumer confidence index"
    )
