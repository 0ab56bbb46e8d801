"""BEHAVIORAL: how the homeowner engages - documents, emails, portal, alerts, searches (27),
and when (8, in :mod:`engagement_timing`)."""

from __future__ import annotations

from dataclasses import replace

from roiml.db.enums import DataType, FeatureCategory
from roiml.features.definition import CONTEXT, FeatureDefinition, TimeRelation
from roiml.features.definitions._sql import PER_DAY, days_since, in_window, ratio
from roiml.features.definitions.engagement_timing import ENGAGEMENT_TIMING

__all__ = ["BEHAVIORAL"]

_B = FeatureCategory.BEHAVIORAL
_INT, _FLOAT = DataType.INTEGER, DataType.FLOAT


def _count(
    name: str, sub: str, group: str, days: int, what: str, extra: str = ""
) -> FeatureDefinition:
    condition = in_window(days) + (f" AND {extra}" if extra else "")
    return FeatureDefinition(
        name,
        _B,
        sub,
        f"Number of {what} in the {days} days before as-of.",
        _INT,
        group,
        f"count(*) FILTER (WHERE {condition})",
        window_days=days,
        valid_min=0,
        valid_max=5000,
        fill=0,
    )


def _trend(name: str, sub: str, group: str, what: str) -> FeatureDefinition:
    # Last 30 days against the average 30 days of the 60 before: positive when picking up.
    return FeatureDefinition(
        name,
        _B,
        sub,
        f"{what} in the last 30 days minus the 30-day average of the 60 days before.",
        _FLOAT,
        group,
        f"count(*) FILTER (WHERE {in_window(30)}) "
        f"- count(*) FILTER (WHERE NOT ({in_window(30)})) / 2.0",
        window_days=90,
        valid_min=-5000,
        valid_max=5000,
        fill=0,
    )


def _rate(name: str, sub: str, group: str, days: int, event: str, what: str) -> FeatureDefinition:
    # The follow-up must itself have happened before as-of: an email sent before as-of may be
    # opened after it, and that open was not known then.
    return FeatureDefinition(
        name,
        _B,
        sub,
        f"Share of {what} in the {days} days before as-of.",
        _FLOAT,
        group,
        ratio(
            f"count(*) FILTER (WHERE {in_window(days)} AND e.{event} < c.as_of)",
            f"count(*) FILTER (WHERE {in_window(days)})",
        ),
        window_days=days,
        valid_min=0,
        valid_max=1,
        max_null_rate=0.35,
        # A campaign sent the day before as-of enters every recipient's denominator before anyone
        # could answer it, so the whole population's rate steps down at once on send days: a
        # day-over-day shift by construction, not a data fault (it failed the demo's gate).
        time_relation=TimeRelation.TENANT_EVENTS,
    )


def _since(
    name: str, sub: str, column: str, join: str, what: str, nulls: float
) -> FeatureDefinition:
    return FeatureDefinition(
        name,
        _B,
        sub,
        f"Days since the last {what} before as-of (null if none in the last 180 days).",
        _FLOAT,
        CONTEXT,
        days_since(f"c.{column}"),
        valid_min=0,
        valid_max=20000,
        max_null_rate=nulls,
        needs=(join,),
        time_relation=TimeRelation.CLOCK,
        clock_per_day=PER_DAY,
        restarts=True,
    )


BEHAVIORAL: tuple[FeatureDefinition, ...] = (
    # document access (7)
    _count("doc_access_count_7d", "document_access", "documents", 7, "document views"),
    _count("doc_access_count_30d", "document_access", "documents", 30, "document views"),
    _count("doc_access_count_90d", "document_access", "documents", 90, "document views"),
    FeatureDefinition(
        "doc_unique_types_30d",
        _B,
        "document_access",
        "Distinct document types opened in the 30 days before as-of.",
        _INT,
        "documents",
        f"count(DISTINCT e.document_type) FILTER (WHERE {in_window(30)})",
        window_days=30,
        valid_min=0,
        valid_max=20,
        fill=0,
    ),
    _count(
        "doc_download_count_30d",
        "document_access",
        "documents",
        30,
        "document downloads",
        "e.action = 'DOWNLOAD'",
    ),
    _trend("doc_access_trend_30d", "document_access", "documents", "Document views"),
    _since(
        "days_since_last_doc_access",
        "document_access",
        "last_doc_at",
        "last_doc",
        "document view",
        0.8,
    ),
    # email engagement (6)
    _rate("email_open_rate_30d", "email_engagement", "emails", 30, "opened_at", "emails opened"),
    _rate("email_open_rate_90d", "email_engagement", "emails", 90, "opened_at", "emails opened"),
    _rate("email_click_rate_30d", "email_engagement", "emails", 30, "clicked_at", "emails clicked"),
    _rate("email_click_rate_90d", "email_engagement", "emails", 90, "clicked_at", "emails clicked"),
    # Campaign sends reach every homeowner at once: the 30-day count steps for everyone the day a
    # send enters or leaves the window.
    replace(
        _count("emails_received_30d", "email_engagement", "emails", 30, "emails received"),
        time_relation=TimeRelation.TENANT_EVENTS,
    ),
    _since(
        "days_since_last_email_open",
        "email_engagement",
        "last_open_at",
        "last_open",
        "email open",
        0.5,
    ),
    # platform engagement (6)
    _count("session_count_7d", "platform_engagement", "sessions", 7, "portal sessions"),
    _count("session_count_30d", "platform_engagement", "sessions", 30, "portal sessions"),
    FeatureDefinition(
        "avg_session_duration_30d",
        _B,
        "platform_engagement",
        "Mean portal session length in seconds over the 30 days before as-of (null if none).",
        _FLOAT,
        "sessions",
        f"avg(e.duration_seconds) FILTER (WHERE {in_window(30)})",
        window_days=30,
        valid_min=0,
        valid_max=86400,
        max_null_rate=0.9,
    ),
    FeatureDefinition(
        "page_views_30d",
        _B,
        "platform_engagement",
        "Portal pages viewed in the 30 days before as-of.",
        _INT,
        "sessions",
        f"coalesce(sum(e.page_views) FILTER (WHERE {in_window(30)}), 0)",
        window_days=30,
        valid_min=0,
        valid_max=100000,
        fill=0,
    ),
    _trend("session_trend_30d", "platform_engagement", "sessions", "Portal sessions"),
    _since(
        "days_since_last_session",
        "platform_engagement",
        "last_session_at",
        "last_session",
        "portal session",
        0.5,
    ),
    # alert interaction (4)
    _rate(
        "alert_click_rate_30d", "alert_interaction", "alerts", 30, "clicked_at", "alerts clicked"
    ),
    _rate(
        "alert_click_rate_90d", "alert_interaction", "alerts", 90, "clicked_at", "alerts clicked"
    ),
    _count(
        "alerts_clicked_30d",
        "alert_interaction",
        "alerts",
        30,
        "alerts clicked",
        "e.clicked_at < c.as_of",
    ),
    _since(
        "days_since_last_alert_click",
        "alert_interaction",
        "last_alert_click_at",
        "last_alert_click",
        "alert click",
        0.9,
    ),
    # search and browse (4)
    _count("search_count_7d", "search_browse", "searches", 7, "listing searches"),
    _count("search_count_30d", "search_browse", "searches", 30, "listing searches"),
    _count("saved_search_count_90d", "search_browse", "searches", 90, "saved searches", "e.saved"),
    FeatureDefinition(
        "search_price_to_home_value_90d",
        _B,
        "search_browse",
        "Mean upper price of searches in the 90 days before as-of, relative to the estimated "
        "value of the home (above 1: looking up-market).",
        _FLOAT,
        "searches",
        "avg(e.max_price / nullif(c.market_value_estimate, 0))",
        window_days=90,
        valid_min=0,
        valid_max=50,
        max_null_rate=0.95,
        needs=("market",),
    ),
    *ENGAGEMENT_TIMING,
)
