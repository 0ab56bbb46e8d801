"""``roiml world stats``: the base rates of a tenant's data, to check against public facts.

Works on any tenant's source tables (generated or imported); reads the ground truth too when
the tenant's world was generated.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as ds
from sqlalchemy import Engine, and_, func, select

from roiml.db import SOURCE_TABLES, Base
from roiml.world.generate import truth_dir
from roiml.world.truth import MOVE_DAILY, P_MOVE

__all__ = ["world_stats"]


def _window(engine: Engine, tenant_id: str) -> tuple[datetime | None, datetime | None]:
    emails = Base.metadata.tables["email_events"]
    sessions = Base.metadata.tables["platform_sessions"]
    with engine.connect() as conn:
        first, last = conn.execute(
            select(func.min(emails.c.sent_at), func.max(emails.c.sent_at)).where(
                emails.c.tenant_id == tenant_id
            )
        ).one()
        if first is None:
            first, last = conn.execute(
                select(func.min(sessions.c.started_at), func.max(sessions.c.started_at)).where(
                    sessions.c.tenant_id == tenant_id
                )
            ).one()
    return _as_datetime(first), _as_datetime(last)


def _as_datetime(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


def world_stats(engine: Engine, data_dir: Path, tenant_id: str) -> dict[str, Any]:
    """Row counts and base rates of ``tenant_id``'s data (and truth, if generated)."""
    tables = Base.metadata.tables
    out: dict[str, Any] = {"tenant_id": tenant_id, "rows": {}}
    with engine.connect() as conn:
        for name in SOURCE_TABLES:
            table = tables[name]
            out["rows"][name] = conn.execute(
                select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id)
            ).scalar_one()
    first, last = _window(engine, tenant_id)
    users = out["rows"]["users"]
    if not users or first is None or last is None:
        return out
    years = max((last - first).days, 1) / 365.25
    out["window"] = {
        "start": first.date().isoformat(),
        "end": last.date().isoformat(),
        "years": round(years, 2),
    }
    tx = tables["transactions"]
    emails = tables["email_events"]
    alerts = tables["alerts"]
    users_t = tables["users"]
    in_window = and_(tx.c.tenant_id == tenant_id, tx.c.closed_at >= first, tx.c.closed_at <= last)
    with engine.connect() as conn:
        mix: dict[str, int] = dict(
            conn.execute(
                select(tx.c.transaction_type, func.count())
                .where(in_window)
                .group_by(tx.c.transaction_type)
            ).all()
        )
        movers = conn.execute(
            select(func.count(func.distinct(tx.c.user_id))).where(
                in_window, tx.c.transaction_type.in_(["SELL", "BUY"])
            )
        ).scalar_one()
        transactors = conn.execute(
            select(func.count(func.distinct(tx.c.user_id))).where(in_window)
        ).scalar_one()
        sent, opened, clicked = conn.execute(
            select(
                func.count(), func.count(emails.c.opened_at), func.count(emails.c.clicked_at)
            ).where(emails.c.tenant_id == tenant_id)
        ).one()
        alerts_sent, alerts_clicked = conn.execute(
            select(func.count(), func.count(alerts.c.clicked_at)).where(
                alerts.c.tenant_id == tenant_id
            )
        ).one()
        active = conn.execute(
            select(func.count()).where(
                users_t.c.tenant_id == tenant_id, users_t.c.is_active.is_(True)
            )
        ).scalar_one()
    out["rates"] = {
        "active_users": round(active / users, 4),
        "movers_per_year": round(movers / users / years, 4),
        "transacting_owners_per_year": round(transactors / users / years, 4),
        "email_open_rate": round(opened / sent, 4) if sent else None,
        "email_click_rate": round(clicked / sent, 4) if sent else None,
        "email_click_to_open": round(clicked / opened, 4) if opened else None,
        "alert_click_rate": round(alerts_clicked / alerts_sent, 4) if alerts_sent else None,
        "events_per_user_month": {
            name: round(out["rows"][name] / users / (years * 12), 2)
            for name in (
                "document_access_events",
                "email_events",
                "platform_sessions",
                "alerts",
                "searches",
            )
        },
    }
    out["transactions_in_window"] = {str(k): int(v) for k, v in sorted(mix.items())}
    out["truth"] = _truth_stats(truth_dir(data_dir, tenant_id))
    return out


def _truth_stats(folder: Path) -> dict[str, Any] | None:
    if not (folder / "world.json").exists():
        return None
    meta = json.loads((folder / "world.json").read_text())
    journeys = ds.dataset(folder / "journeys.parquet").to_table(columns=["kind", "first_type"])
    daily = ds.dataset(folder / MOVE_DAILY).to_table(columns=[P_MOVE])
    probability = daily[P_MOVE]
    return {
        "config": meta["config"],
        "journeys_by_kind": {
            str(row["values"]): int(row["counts"])
            for row in pc.value_counts(journeys["kind"]).to_pylist()
        },
        "first_closing_type": {
            str(row["values"]): int(row["counts"])
            for row in pc.value_counts(journeys["first_type"]).to_pylist()
        },
        "mean_true_p_move_180d": round(float(pc.mean(probability).as_py() or 0.0), 4),
        "p90_true_p_move_180d": round(float(pc.quantile(probability, 0.9)[0].as_py() or 0.0), 4),
    }
