"""The catalog: every definition by name and feature set, checked for consistency at import."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from functools import cached_property

from roiml.db.enums import EntityType
from roiml.errors import FeatureError
from roiml.features.definition import (
    CONTEXT,
    DERIVED,
    ComputedGroup,
    ContextJoin,
    FeatureDefinition,
    WindowGroup,
)
from roiml.features.definitions import ALL_FEATURES, CONTEXT_JOINS, GROUPS

__all__ = ["CATALOG", "Catalog"]


class Catalog:
    """Feature definitions, context joins and window groups, resolved by name."""

    def __init__(
        self,
        features: Iterable[FeatureDefinition],
        joins: Iterable[ContextJoin],
        groups: Iterable[WindowGroup | ComputedGroup],
    ) -> None:
        self.features: dict[str, FeatureDefinition] = {}
        for feature in features:
            if feature.name in self.features:
                raise ValueError(f"feature {feature.name!r} is defined twice")
            self.features[feature.name] = feature
        self.joins = {join.name: join for join in joins}
        self.groups = {group.name: group for group in groups}
        self._check()

    def _check(self) -> None:
        for feature in self.features.values():
            scope = feature.scope
            if scope not in (CONTEXT, DERIVED) and scope not in self.groups:
                raise ValueError(f"{feature.name}: unknown scope {scope!r}")
            for need in feature.needs:
                known = self.features if scope == DERIVED else self.joins
                if need not in known:
                    raise ValueError(f"{feature.name}: needs unknown {need!r}")
                if scope == DERIVED and self.features[need].scope == DERIVED:
                    raise ValueError(f"{feature.name}: derived features cannot build on {need!r}")
        for join in self.joins.values():
            for need in join.needs:
                if need not in self.joins:
                    raise ValueError(f"context join {join.name}: needs unknown {need!r}")
        for group in self.groups.values():
            for need in group.needs if isinstance(group, ComputedGroup) else ():
                if need not in self.joins:
                    raise ValueError(f"group {group.name}: needs unknown join {need!r}")
        for feature in self.features.values():
            among = feature.null_rate_among
            if among is not None and among not in self.features:
                raise ValueError(f"{feature.name}: null rate among unknown feature {among!r}")

    @cached_property
    def feature_sets(self) -> dict[str, tuple[str, ...]]:
        """Feature set name -> its features' names, in definition order."""
        sets: dict[str, list[str]] = {}
        for feature in self.features.values():
            if not feature.deprecated:
                sets.setdefault(feature.feature_set, []).append(feature.name)
        return {name: tuple(names) for name, names in sets.items()}

    def get(self, name: str) -> FeatureDefinition:
        """The definition of ``name``, or a :class:`FeatureError` suggesting close names."""
        try:
            return self.features[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.features, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise FeatureError(f"unknown feature {name!r}{hint}") from None

    def resolve(self, names: Sequence[str]) -> list[FeatureDefinition]:
        """Definitions of ``names`` (duplicates dropped, order kept)."""
        if isinstance(names, str):
            names = [names]
        if not names:
            raise FeatureError("no features requested")
        return [self.get(name) for name in dict.fromkeys(names)]

    def feature_set(self, name: str) -> tuple[str, ...]:
        """Names of the features in feature set ``name``."""
        try:
            return self.feature_sets[name.lower()]
        except KeyError:
            raise FeatureError(
                f"unknown feature set {name!r}; known sets: {', '.join(self.feature_sets)}"
            ) from None

    def expand(self, names_or_sets: Sequence[str]) -> list[str]:
        """Feature names from a mix of feature names and feature-set names."""
        out: list[str] = []
        for item in [names_or_sets] if isinstance(names_or_sets, str) else names_or_sets:
            if item.lower() in self.feature_sets and item not in self.features:
                out.extend(self.feature_sets[item.lower()])
            else:
                out.append(self.get(item).name)
        return list(dict.fromkeys(out))

    @staticmethod
    def check_entity_type(entity_type: str | EntityType) -> EntityType:
        """The entity type, validated; every feature is keyed by USER for now."""
        try:
            parsed = EntityType(str(entity_type).upper())
        except ValueError:
            raise FeatureError(
                f"unknown entity type {entity_type!r}; use one of {[e.value for e in EntityType]}"
            ) from None
        if parsed is not EntityType.USER:
            raise FeatureError(f"features are defined for USER entities only; got {parsed.value}")
        return parsed


CATALOG = Catalog(ALL_FEATURES, CONTEXT_JOINS, GROUPS)
