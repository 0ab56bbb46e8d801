"""The feature-vector contract shared by the engine, the three store tiers and retrieval.

A *feature frame* is an Arrow table with ``entity_id`` (string), ``as_of`` (timestamp[us], naive
UTC: values are as of this instant, computed from source rows stamped strictly before it),
then one ``float64`` column per feature, in the feature set's declared order. Every feature is
stored as float64 (integers, booleans and category codes included; null stays null), so a
vector packs into one contiguous array on the hot path. The definitions keep the semantic dtype.
"""

from __future__ import annotations

import pyarrow as pa

from roiml.errors import FeatureError

__all__ = ["AS_OF", "ENTITY_ID", "FEATURE_TYPE", "check_feature_frame", "feature_columns"]

ENTITY_ID = "entity_id"
AS_OF = "as_of"
FEATURE_TYPE = pa.float64()
_KEY_TYPES = {ENTITY_ID: pa.string(), AS_OF: pa.timestamp("us")}


def feature_columns(frame: pa.Table) -> list[str]:
    """The feature column names of ``frame``, in order."""
    return [name for name in frame.column_names if name not in _KEY_TYPES]


def check_feature_frame(frame: pa.Table) -> None:
    """Raise :class:`FeatureError` naming what is wrong if ``frame`` breaks the contract."""
    for name, kind in _KEY_TYPES.items():
        if name not in frame.column_names:
            raise FeatureError(
                f"feature frame has no {name!r} column (columns: {frame.column_names})"
            )
        if frame.schema.field(name).type != kind:
            raise FeatureError(
                f"feature frame column {name!r} is {frame.schema.field(name).type}, expected {kind}"
            )
    for name in feature_columns(frame):
        if frame.schema.field(name).type != FEATURE_TYPE:
            raise FeatureError(
                f"feature column {name!r} is {frame.schema.field(name).type}; features are float64"
            )
