"""Window groups: source rows aggregated per frame row (``e.key = entity``, ``e.ts < as_of``)."""

from __future__ import annotations

from roiml.features.definition import WindowGroup

__all__ = ["WINDOW_GROUPS"]

WINDOW_GROUPS: tuple[WindowGroup, ...] = (
    WindowGroup(
        "documents",
        "SELECT user_id AS key, occurred_at AS ts, document_type, action "
        "FROM document_access_events",
        ("document_access_events",),
        lookback_days=90,
    ),
    WindowGroup(
        "emails",
        "SELECT user_id AS key, sent_at AS ts, opened_at, clicked_at FROM email_events",
        ("email_events",),
        lookback_days=90,
    ),
    WindowGroup(
        "sessions",
        "SELECT user_id AS key, started_at AS ts, duration_seconds, page_views "
        "FROM platform_sessions",
        ("platform_sessions",),
        lookback_days=90,
    ),
    WindowGroup(
        "alerts",
        "SELECT user_id AS key, sent_at AS ts, clicked_at FROM alerts",
        ("alerts",),
        lookback_days=90,
    ),
    WindowGroup(
        # The homeowner's own acts, stamped when they happened (an email counts when opened).
        "engagement",
        "SELECT user_id AS key, occurred_at AS ts FROM document_access_events "
        "UNION ALL SELECT user_id, opened_at FROM email_events WHERE opened_at IS NOT NULL "
        "UNION ALL SELECT user_id, started_at FROM platform_sessions "
        "UNION ALL SELECT user_id, clicked_at FROM alerts WHERE clicked_at IS NOT NULL",
        ("document_access_events", "email_events", "platform_sessions", "alerts"),
        lookback_days=90,
    ),
    WindowGroup(
        "searches",
        "SELECT user_id AS key, searched_at AS ts, market_id, max_price, saved FROM searches",
        ("searches",),
        lookback_days=90,
    ),
    WindowGroup(
        "transactions",
        "SELECT user_id AS key, closed_at AS ts, transaction_type FROM transactions",
        ("transactions",),
        lookback_days=None,
    ),
    WindowGroup(
        "holdings",
        "SELECT owner_user_id AS key, purchased_at AS ts, sold_at FROM properties",
        ("properties",),
        lookback_days=None,
    ),
)
