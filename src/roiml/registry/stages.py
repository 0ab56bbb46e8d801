"""Stages as MLflow aliases: what each stage is called, and how a promotion moves the aliases.

MLflow 3 dropped model-version stages for aliases. roiml keeps the four stages of the seed
(None -> Staging -> Production -> Archived) and carries each as one alias, so a stage is where
its alias points: ``staging``, ``production``, ``archived``. An alias names one version at a
time, so only the most recently archived version carries ``archived``; ``ml_models.status``
keeps ARCHIVED for every version that was ever archived.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from roiml.db.enums import ModelStatus
from roiml.errors import RegistryError

__all__ = [
    "STAGE_ALIASES",
    "AliasMove",
    "Stage",
    "parse_stage",
    "plan_promotion",
    "stage_of",
    "status_of",
]


class Stage(StrEnum):
    """The lifecycle stage of a model version."""

    NONE = "None"
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"


# Order matters only for determinism: the events of one promotion are written in this order.
STAGE_ALIASES: dict[Stage, str] = {
    Stage.STAGING: "staging",
    Stage.PRODUCTION: "production",
    Stage.ARCHIVED: "archived",
}

_STATUS: dict[Stage, ModelStatus] = {
    Stage.NONE: ModelStatus.TRAINED,
    Stage.STAGING: ModelStatus.STAGING,
    Stage.PRODUCTION: ModelStatus.DEPLOYED,
    Stage.ARCHIVED: ModelStatus.ARCHIVED,
}


def parse_stage(value: str) -> Stage:
    """The stage named ``value``, case-insensitively (``production``, ``Production``, ``none``)."""
    wanted = value.strip().lower()
    for stage in Stage:
        if wanted == stage.value.lower():
            return stage
    known = ", ".join(stage.value for stage in Stage)
    raise RegistryError(f"unknown stage {value!r}; the stages are: {known}")


def status_of(stage: Stage) -> ModelStatus:
    """The ``ml_models.status`` a version gets when it enters ``stage``."""
    return _STATUS[stage]


def stage_of(version: str, aliases: dict[str, str]) -> Stage:
    """The stage ``version`` is in, given the model's aliases (alias -> version)."""
    for stage, alias in STAGE_ALIASES.items():
        if aliases.get(alias) == version:
            return stage
    return Stage.NONE


@dataclass(frozen=True)
class AliasMove:
    """One alias changing target: ``from_version`` None = was unset, ``to_version`` None = unset."""

    alias: str
    from_version: str | None
    to_version: str | None


def plan_promotion(aliases: dict[str, str], version: str, stage: Stage) -> list[AliasMove]:
    """The alias moves that put ``version`` into ``stage``, given the current aliases.

    A version holds at most one stage alias, so entering a stage drops the version's other
    stage aliases. Entering Production hands the previous production version the ``archived``
    alias. An empty plan means the version is already there.
    """
    state = dict(aliases)
    moves: list[AliasMove] = []

    def move(alias: str, to_version: str | None) -> None:
        moves.append(AliasMove(alias, state.get(alias), to_version))
        if to_version is None:
            state.pop(alias, None)
        else:
            state[alias] = to_version

    def assign(target_version: str, target_alias: str | None) -> None:
        for alias in STAGE_ALIASES.values():
            if alias != target_alias and state.get(alias) == target_version:
                move(alias, None)
        if target_alias is not None and state.get(target_alias) != target_version:
            move(target_alias, target_version)

    previous_production = state.get(STAGE_ALIASES[Stage.PRODUCTION])
    assign(version, STAGE_ALIASES.get(stage))
    if (
        stage is Stage.PRODUCTION
        and previous_production is not None
        and previous_production != version
    ):
        assign(previous_production, STAGE_ALIASES[Stage.ARCHIVED])
    return moves
