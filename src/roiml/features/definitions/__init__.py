"""Every feature definition, by category. Add a feature here and nowhere else."""

from __future__ import annotations

from roiml.features.definition import FeatureDefinition
from roiml.features.definitions.behavioral import BEHAVIORAL
from roiml.features.definitions.context import CONTEXT_JOINS
from roiml.features.definitions.groups import WINDOW_GROUPS
from roiml.features.definitions.market import MARKET
from roiml.features.definitions.property import PROPERTY
from roiml.features.definitions.temporal import TEMPORAL
from roiml.features.definitions.transactional import TRANSACTIONAL

__all__ = ["ALL_FEATURES", "CONTEXT_JOINS", "WINDOW_GROUPS"]

ALL_FEATURES: tuple[FeatureDefinition, ...] = (
    *BEHAVIORAL,
    *PROPERTY,
    *TRANSACTIONAL,
    *MARKET,
    *TEMPORAL,
)
