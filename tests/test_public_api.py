"""The public surface is pinned: adding or removing a name here is a deliberate API change."""

from __future__ import annotations

import importlib

import pytest

import roiml

PUBLIC = {
    "roiml": {
        "ApiError",
        "Client",
        "FeatureStore",
        "ModelRegistry",
        "Settings",
        "WorldConfig",
        "WorldReport",
        "generate_world",
        "get_settings",
        "import_file",
        "make_engine",
        "tenant_session",
        "upgrade_database",
        "world_stats",
    },
    "roiml.world": {"WorldConfig", "WorldReport", "generate_world", "truth_dir", "world_stats"},
    "roiml.ingest": {"import_file"},
    "roiml.settings": {"Environment", "Settings", "get_settings"},
    "roiml.errors": {
        "ConfigurationError",
        "DatabaseUnavailableError",
        "FeatureError",
        "ImportValidationError",
        "ModelError",
        "PipelineError",
        "PredictionLogFullError",
        "RegistryError",
        "RoimlError",
        "TrainingError",
        "WorldError",
    },
    "roiml.models": {"MODEL_NAMES", "ModelArtifact", "model_type_of"},
    "roiml.registry": {
        "STAGE_ALIASES",
        "AliasEvent",
        "MetricComparison",
        "ModelComparison",
        "ModelRegistry",
        "ModelVersionInfo",
        "RegisteredModelSummary",
        "RoimlPyfuncModel",
        "Stage",
        "list_mirrored",
        "lower_is_better",
        "parse_stage",
    },
}


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_exported_names_are_pinned(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert set(module.__all__) == PUBLIC[module_name]
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.{name} is exported but missing"


def test_version_is_set() -> None:
    assert roiml.__version__
