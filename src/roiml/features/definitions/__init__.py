"""Every feature definition, by category. Add a feature here and nowhere else."""

from __future__ import annotations

from roiml.features.definition import ComputedGroup, FeatureDefinition, WindowGroup
from roiml.features.definitions.behavioral import BEHAVIORAL
from roiml.features.definitions.comparables import COMPARABLES, COMPARABLES_GROUP
from roiml.features.definitions.context import CONTEXT_JOINS
from roiml.features.definitions.groups import WINDOW_GROUPS
from roiml.features.definitions.market import MARKET
from roiml.features.definitions.property import PROPERTY
from roiml.features.definitions.temporal import TEMPORAL
from roiml.features.definitions.transactional import TRANSACTIONAL

__all__ = ["ALL_FEATURES", "CONTEXT_JOINS", "GROUPS"]

ALL_FEATURES: tuple[FeatureDefinition, ...] = (
    *BEHAVIORAL,
    *PROPERTY,
    *COMPARABLES,
    *TRANSACTIONAL,
    *MARKET,
    *TEMPORAL,
)
GROUPS: tuple[WindowGroup | ComputedGroup, ...] = (*WINDOW_GROUPS, COMPARABLES_GROUP)
