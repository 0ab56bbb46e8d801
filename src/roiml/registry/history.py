"""The alias history: every move of a registry alias, so past deployments can be answered.

MLflow only knows where an alias points now (mlflow/mlflow#2169 asks for the rest); the
``model_alias_events`` table keeps each move with who made it and when, per tenant.

A move made outside roiml (MLflow's UI, ``MlflowClient.set_registered_model_alias``) reaches the
table when roiml next reads the registry: :func:`reconcile` records the difference between
MLflow's aliases and the last recorded move of each alias as a move by :data:`OUTSIDE_ACTOR`,
stamped with the moment it was observed (MLflow does not timestamp alias moves).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from roiml.db import ModelAliasEvent
from roiml.db.base import as_naive_utc
from roiml.db.engine import tenant_session
from roiml.registry.stages import AliasMove

__all__ = [
    "OUTSIDE_ACTOR",
    "AliasEvent",
    "alias_events",
    "default_actor",
    "lock_aliases",
    "reconcile",
    "record_moves",
    "recorded_aliases",
    "version_at",
]

log = logging.getLogger(__name__)

# The actor of a move roiml did not make but found in MLflow (its UI, another client): reserved,
# ModelRegistry.promote_model refuses it as a person's name.
OUTSIDE_ACTOR = "mlflow"
# model_alias_events.alias and .to_version; MLflow allows longer aliases (255 characters).
_MAX_ALIAS = 64
_MAX_VERSION = 32


@dataclass(frozen=True)
class AliasEvent:
    """One recorded alias move of one model (times naive UTC)."""

    model_name: str
    alias: str
    from_version: str | None
    to_version: str | None
    actor: str
    moved_at: datetime

    @property
    def outside_roiml(self) -> bool:
        """Whether the move was made in MLflow directly and only observed by roiml (then
        ``moved_at`` is when roiml saw it, not when it was made)."""
        return self.actor == OUTSIDE_ACTOR


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


def lock_aliases(session: Session, tenant_id: str, model_name: str) -> None:
    """Hold the writers of one model's alias history off until ``session`` commits.

    A promotion records its moves and moves MLflow's aliases inside one transaction; a
    reconciliation that read MLflow in between would take the promotion's moves for moves made
    outside roiml. Both take this lock first. PostgreSQL: a transaction-scoped advisory lock on
    (tenant, model), which the application role may take. SQLite: the database's write lock,
    taken now by an empty write rather than at the first insert (SQLite has one writer at a
    time; a transaction that read first and writes later fails when another wrote between).
    """
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:space), hashtext(:key))"),
            {"space": "roiml.model_alias_events", "key": f"{tenant_id}/{model_name}"},
        )
    else:
        session.execute(text("UPDATE model_alias_events SET alias = alias WHERE 1 = 0"))


def recorded_aliases(session: Session, model_name: str) -> dict[str, str]:
    """Where each alias of ``model_name`` points by the recorded history (alias -> version;
    an alias whose last move removed it is absent)."""
    rows = session.execute(
        select(ModelAliasEvent.alias, ModelAliasEvent.to_version)
        .where(ModelAliasEvent.model_name == model_name)
        .order_by(ModelAliasEvent.moved_at, ModelAliasEvent.id)
    ).all()
    held: dict[str, str] = {}
    for alias, to_version in rows:  # oldest first: the last move of each alias holds
        if to_version is None:
            held.pop(alias, None)
        else:
            held[alias] = to_version
    return held


def reconcile(
    session: Session,
    tenant_id: str,
    model_name: str,
    aliases: Mapping[str, str],
    observed_at: datetime,
) -> list[AliasEvent]:
    """Record, as moves by :data:`OUTSIDE_ACTOR` at ``observed_at``, every alias whose target
    in ``aliases`` (MLflow's now) differs from the recorded history; none when they agree, so
    reading twice records once. Call under :func:`lock_aliases`, in the caller's transaction.

    An alias or version longer than the table's columns (MLflow allows 255-character aliases)
    is left out with a warning rather than failing every later read."""
    recorded = recorded_aliases(session, model_name)
    moves = []
    for alias in sorted(set(aliases) | set(recorded)):
        before, after = recorded.get(alias), aliases.get(alias)
        if before == after:
            continue
        if len(alias) > _MAX_ALIAS or len(after or "") > _MAX_VERSION:
            log.warning(
                "alias %r of %s is longer than roiml's history keeps (%d characters); "
                "its move in MLflow is not recorded",
                alias[:80],
                model_name,
                _MAX_ALIAS,
            )
            continue
        moves.append(AliasMove(alias, before, after))
    return record_moves(session, tenant_id, model_name, moves, OUTSIDE_ACTOR, observed_at)


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
