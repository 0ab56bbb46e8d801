"""The tenant's registered models as its database mirrors them: a listing without MLflow.

MLflow is the source of truth, but importing its client costs seconds of CPU before the first
request, and ``roiml models list`` is a verb people type. Every version the registry registers
is mirrored into ``ml_models`` and every alias move into ``model_alias_events`` in the same
call, so the tenant's models, their versions and where each alias points now can be read there
in one query each. An alias moved in MLflow directly (its UI, another client) reaches the
mirror when roiml next asks MLflow (the API's alias poll, ``roiml models history``, ``show``,
``promote``, ``list --from-mlflow``: :meth:`roiml.registry.ModelRegistry.reconcile_aliases`);
a version registered in MLflow directly never does. ``roiml models list --from-mlflow`` (and
:meth:`roiml.registry.ModelRegistry.list_models`) ask MLflow itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, select

from roiml.db import MLModel, ModelAliasEvent
from roiml.db.engine import tenant_session

__all__ = ["RegisteredModelSummary", "list_mirrored", "mlflow_name"]


@dataclass(frozen=True)
class RegisteredModelSummary:
    """One of the tenant's registered models, as a listing shows it."""

    name: str
    mlflow_name: str
    model_type: str | None
    latest_version: str | None
    versions: int
    aliases: dict[str, str] = field(default_factory=dict)
    updated_at: datetime | None = None


def mlflow_name(tenant_id: str, name: str) -> str:
    """The MLflow registered-model name of a tenant's model: tenants share one registry."""
    return f"{tenant_id}.{name}"


def list_mirrored(engine: Engine, tenant_id: str) -> list[RegisteredModelSummary]:
    """The tenant's registered models, by name, from ``ml_models`` and the alias history.

    ``updated_at`` is the latest of a version's mirror update and an alias move (MLflow's
    last-updated time counts the same two)."""
    with tenant_session(engine, tenant_id) as session:
        versions = session.execute(
            select(MLModel.name, MLModel.version, MLModel.model_type, MLModel.updated_at)
        ).all()
        moves = session.execute(
            select(
                ModelAliasEvent.model_name,
                ModelAliasEvent.alias,
                ModelAliasEvent.to_version,
                ModelAliasEvent.moved_at,
            ).order_by(ModelAliasEvent.moved_at, ModelAliasEvent.id)
        ).all()
    by_name: dict[str, list[tuple[str, str | None, datetime | None]]] = {}
    for name, version, model_type, updated_at in versions:
        by_name.setdefault(name, []).append(
            (version, model_type.value if model_type is not None else None, updated_at)
        )
    aliases: dict[str, dict[str, str]] = {}
    moved: dict[str, datetime] = {}
    for name, alias, to_version, moved_at in moves:  # oldest first: the last move holds
        held = aliases.setdefault(name, {})
        if to_version is None:
            held.pop(alias, None)
        else:
            held[alias] = to_version
        moved[name] = moved_at
    out = []
    for name in sorted(by_name):
        rows = sorted(by_name[name], key=lambda row: _number(row[0]))
        stamps = [row[2] for row in rows if row[2] is not None]
        if name in moved:
            stamps.append(moved[name])
        out.append(
            RegisteredModelSummary(
                name=name,
                mlflow_name=mlflow_name(tenant_id, name),
                model_type=rows[-1][1],
                latest_version=rows[-1][0],
                versions=len(rows),
                aliases=dict(sorted(aliases.get(name, {}).items())),
                updated_at=max(stamps) if stamps else None,
            )
        )
    return out


def _number(version: str) -> tuple[int, str]:
    # MLflow numbers versions 1, 2, ... 10: ordered as numbers, not as text.
    return (int(version), "") if version.isdigit() else (0, version)
