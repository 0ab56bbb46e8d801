"""The columns a tenant declares on ``properties`` become features of its catalog.

A tenant's contract (:mod:`roiml.ingest.extensions`) adds columns to the source tables; the
importer stores their values in the row's ``attributes`` JSON. Each column declared on
``properties`` becomes a PROPERTY feature ``property_x_<name>`` (sub-category ``declared``) of
the home owned as of the date, like the built-in home columns:

* numeric (integer, float): the value; valid range the declared minimum / maximum;
* boolean: 1 / 0;
* categorical with declared allowed values: the value's position in that list (0, 1, ...), so a
  code means the same value for as long as the list only grows at its end; a value outside the
  list is null (the importer refuses such values anyway);
* date or datetime: years from it to the date (a clock);
* categorical text without allowed values: no feature (there is no stable code to give it).

The values are the home's current attributes (as the built-in home columns are): a tenant that
overwrites a home's row changes its history too. :func:`tenant_catalog` is the built-in catalog
plus these; :func:`load_tenant_catalog` reads the tenant's contract file (cached on its mtime).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from roiml.db.enums import DataType, FeatureCategory
from roiml.features.catalog import CATALOG, Catalog
from roiml.features.definition import CONTEXT, ContextJoin, FeatureDefinition, TimeRelation
from roiml.features.definitions import ALL_FEATURES, CONTEXT_JOINS, GROUPS
from roiml.features.definitions._sql import PER_YEAR, owned
from roiml.ingest.contract import Kind
from roiml.ingest.extensions import ColumnRole, ExtensionColumn, TenantContract
from roiml.ingest.extensions import load_tenant_contract as _load_contract

__all__ = [
    "DECLARED_PREFIX",
    "HOME_ATTRIBUTES",
    "declared_feature",
    "declared_features",
    "load_tenant_catalog",
    "tenant_catalog",
]

DECLARED_PREFIX = "property_x_"
_SUB = "declared"
# The home's attributes, picked exactly as the built-in ``home`` join picks the home.
HOME_ATTRIBUTES = ContextJoin(
    name="home_attributes",
    relation="SELECT owner_user_id AS key, purchased_at AS ts, sold_at, property_id, attributes "
    "FROM properties WHERE is_primary_residence",
    columns=(f"{owned('attributes')} AS home_x_attributes",),
    tables=("properties",),
    ties=("property_id DESC NULLS LAST",),
)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def declared_feature(column: ExtensionColumn) -> FeatureDefinition | None:
    """The feature of a column declared on ``properties`` (None when it cannot be one)."""
    value = f"json_extract_string(c.home_x_attributes, '$.\"{column.name}\"')"
    unit = f" ({column.unit})" if column.unit else ""
    about = column.description or f"the tenant's column properties.{column.name}"
    lo, hi = column.minimum, column.maximum
    relation, per_day = TimeRelation.ORDINARY, 0.0
    if column.kind is Kind.BOOLEAN:
        dtype, expression = (
            DataType.BOOLEAN,
            (f"CASE {value} WHEN 'true' THEN 1 WHEN 'false' THEN 0 END"),
        )
        description, lo, hi = f"1 if {about}, else 0 (declared).", 0, 1
    elif column.allowed_values and column.role is ColumnRole.CATEGORICAL:
        cases = " ".join(
            f"WHEN {_literal(v)} THEN {i}" for i, v in enumerate(column.allowed_values)
        )
        dtype, expression = DataType.INTEGER, f"CASE {value} {cases} END"
        codes = ", ".join(f"{i} {v}" for i, v in enumerate(column.allowed_values))
        description, lo, hi = (
            f"{about} (declared), coded: {codes}.",
            0,
            len(column.allowed_values) - 1,
        )
    elif column.kind in (Kind.DATE, Kind.DATETIME):
        dtype = DataType.FLOAT
        expression = f"date_diff('day', TRY_CAST({value} AS TIMESTAMP), c.as_of) / 365.25"
        description, lo, hi = f"Years since {about} (declared).", None, None
        relation, per_day = TimeRelation.CLOCK, PER_YEAR
    elif column.kind in (Kind.INTEGER, Kind.FLOAT):
        dtype = DataType.INTEGER if column.kind is Kind.INTEGER else DataType.FLOAT
        expression = f"TRY_CAST({value} AS DOUBLE)"
        description = f"{about[:1].upper()}{about[1:]}{unit} (declared)."
    else:
        return None
    return FeatureDefinition(
        name=f"{DECLARED_PREFIX}{column.name}",
        category=FeatureCategory.PROPERTY,
        sub_category=_SUB,
        description=description,
        dtype=dtype,
        scope=CONTEXT,
        expression=expression,
        valid_min=lo,
        valid_max=hi,
        # A declared column is optional in every row: its null rate is the tenant's to know.
        max_null_rate=1.0,
        needs=(HOME_ATTRIBUTES.name,),
        time_relation=relation,
        clock_per_day=per_day,
    )


def declared_features(contract: TenantContract) -> tuple[FeatureDefinition, ...]:
    """The features of the columns ``contract`` declares on ``properties``, in its order."""
    found = (declared_feature(column) for column in contract.columns("properties"))
    return tuple(feature for feature in found if feature is not None)


def tenant_catalog(contract: TenantContract) -> Catalog:
    """The built-in catalog plus the features of ``contract``'s declared columns (the built-in
    catalog itself when it declares none)."""
    return _catalog(declared_features(contract))


@lru_cache(maxsize=64)
def _catalog(declared: tuple[FeatureDefinition, ...]) -> Catalog:
    # One Catalog per set of declared features: the compiler caches plans per catalog object.
    if not declared:
        return CATALOG
    return Catalog((*ALL_FEATURES, *declared), (*CONTEXT_JOINS, HOME_ATTRIBUTES), GROUPS)


def load_tenant_catalog(data_dir: Path, tenant: str) -> Catalog:
    """``tenant``'s catalog, from its contract under ``data_dir`` (built-in without one)."""
    return tenant_catalog(_load_contract(data_dir, tenant))
