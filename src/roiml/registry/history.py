"""The alias history: every move of a registry alias, so past deployments can be answered.

MLflow only knows where an alias points now (mlflow/mlflow#2169 asks for the rest); the
``model_alias_events`` table keeps each move with who made it and when, per tenant.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from roiml.db import ModelAliasEvent
from roiml.db.base import as_naive_utc
from roiml.db.engine import tenant_session
from roiml.registry.stages import AliasMove

__all__ = ["AliasEvent", "alias_events", "default_actor", "record_moves", "version_at"]


@dataclass(frozen=True)
class AliasEvent:
    """One recorded alias move of one model (times naive UTC)."""

    model_name: str
    alias: str
    from_version: str | None
    to_version: str | None
    actor: str
    moved_at: datetime


def default_actor() -> str:
    """The operating-system user running this process (who promoted, when nobody is named)."""
    try:
        # The password database, not $USER: the one settings object is the only env reader.
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        # No pwd module (Windows) or a container uid without a passwd entry.
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def record_moves(
    session: Session,
    tenant_id: str,
    model_name: str,
    moves: Iterable[AliasMove],
    actor: str,
    moved_at: datetime,
) -> list[AliasEvent]:
    """Add one event row per move to ``session`` (the caller's transaction)."""
    events = [
        AliasEvent(model_name, m.alias, m.from_version, m.to_version, actor, moved_at)
        for m in moves
    ]
    session.add_all(
        ModelAliasEvent(
            tenant_id=tenant_id,
            model_name=e.model_name,
            alias=e.alias,
            from_version=e.from_version,
            to_version=e.to_version,
            actor=e.actor,
            moved_at=e.moved_at,
        )
        for e in events
    )
    return events


def alias_events(
    engine: Engine,
    tenant_id: str,
    model_name: str,
    *,
    at: datetime | None = None,
    alias: str | None = None,
) -> list[AliasEvent]:
    """The model's alias events in the order they happened, up to and including ``at``."""
    query = select(ModelAliasEvent).where(ModelAliasEvent.model_name == model_name)
    if at is not None:
        query = query.where(ModelAliasEvent.moved_at <= as_naive_utc(at))
    if alias is not None:
        query = query.where(ModelAliasEvent.alias == alias)
    # Moves of one promotion share a timestamp; the id keeps the order they were made in.
    query = query.order_by(ModelAliasEvent.moved_at, ModelAliasEvent.id)
    with tenant_session(engine, tenant_id) as session:
        return _events(session.scalars(query).all())


def version_at(
    engine: Engine, tenant_id: str, model_name: str, alias: str, at: datetime
) -> str | None:
    """The version ``alias`` pointed at, at moment ``at``; None if it pointed nowhere."""
    query = (
        select(ModelAliasEvent.to_version)
        .where(
            ModelAliasEvent.model_name == model_name,
            ModelAliasEvent.alias == alias,
            ModelAliasEvent.moved_at <= as_naive_utc(at),
        )
        .order_by(ModelAliasEvent.moved_at.desc(), ModelAliasEvent.id.desc())
        .limit(1)
    )
    with tenant_session(engine, tenant_id) as session:
        return session.execute(query).scalar_one_or_none()


def _events(rows: Sequence[ModelAliasEvent]) -> list[AliasEvent]:
    return [
        AliasEvent(r.model_name, r.alias, r.from_version, r.to_version, r.actor, r.moved_at)
        for r in rows
    ]
