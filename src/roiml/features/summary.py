"""Each feature's summary in ``ml_features``: its definition, and the statistics of a computed
day (min, max, mean, std, null rate) and its importance. (The two-sample statistics that compare
two days are :mod:`roiml.two_sample`.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import Engine, select

from roiml.db.engine import tenant_session
from roiml.db.enums import FeatureType
from roiml.db.ml_tables import MLFeature
from roiml.features.catalog import CATALOG, Catalog
from roiml.features.frame import feature_columns
from roiml.features.validation import null_rate

__all__ = ["feature_statistics", "sync_feature_definitions"]


def feature_statistics(
    frame: pa.Table, catalog: Catalog = CATALOG
) -> dict[str, dict[str, float | None]]:
    """Per feature column of ``frame``: min, max, mean, std and null rate (NaN-aware; among
    the rows the definition's ``null_rate_among`` names, as the gate judges it)."""
    stats: dict[str, dict[str, float | None]] = {}
    for name in feature_columns(frame):
        values = frame[name].to_numpy(zero_copy_only=False).astype(np.float64)
        mask = ~np.isnan(values)
        present = values[mask]
        empty = present.size == 0
        definition = catalog.features.get(name)
        stats[name] = {
            "min_value": None if empty else float(present.min()),
            "max_value": None if empty else float(present.max()),
            "mean_value": None if empty else float(present.mean()),
            "std_dev": None if empty else float(present.std()),
            "null_rate": (
                null_rate(frame, definition, mask)
                if definition is not None and values.size
                else float(1.0 - present.size / max(values.size, 1))
            ),
        }
    return stats


def sync_feature_definitions(
    engine: Engine,
    tenant_id: str,
    statistics: Mapping[str, Mapping[str, float | None]] | None = None,
    importance: Mapping[str, float] | None = None,
    catalog: Catalog = CATALOG,
) -> int:
    """Upsert every definition (and any statistics / importance given) into ``ml_features``.

    One row per (tenant, name, version); returns the number of definitions synced.
    """
    statistics = statistics or {}
    importance = importance or {}
    with tenant_session(engine, tenant_id) as session:
        existing = {
            (row.name, row.version): row
            for row in session.scalars(select(MLFeature).where(MLFeature.tenant_id == tenant_id))
        }
        for definition in catalog.features.values():
            row = existing.get((definition.name, definition.version))
            if row is None:
                row = MLFeature(
                    tenant_id=tenant_id, name=definition.name, version=definition.version
                )
                session.add(row)
            fields: dict[str, Any] = {
                "description": definition.description,
                "category": definition.category,
                "sub_category": definition.sub_category,
                "feature_type": FeatureType.BATCH,
                "data_type": definition.dtype,
                "entity_type": definition.entity_type,
                "feature_set": definition.feature_set,
                "window_days": definition.window_days,
                "computation": definition.expression,
                "valid_min": definition.valid_min,
                "valid_max": definition.valid_max,
                "max_null_rate": definition.max_null_rate,
                "is_deprecated": definition.deprecated,
            }
            fields.update(statistics.get(definition.name, {}))
            if definition.name in importance:
                fields["importance"] = importance[definition.name]
            for key, value in fields.items():
                setattr(row, key, value)
    return len(catalog.features)
